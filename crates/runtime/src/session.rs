//! Models and compiled models: the public API.
use crate::error::Error;
use crate::idle::IdleWorkers;
use crate::plan::{Plan, RunStates};
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{ArgRef, Graph, Value, ValueKind, ValueType};
use millrace_onnx::{import_model, load_model, OnnxModel};
use millrace_passes::{default_pipeline, PassOptions, PassReport};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// A graph input or output as the user sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct IoInfo {
    pub name: String,
    pub dtype: Option<DType>,
    /// `None` when even the rank is unknown.
    pub shape: Option<Vec<Dim>>,
    /// Tensor, sequence of tensors, or optional; `dtype` and `shape` describe the elements.
    pub kind: ValueKind,
}

impl fmt::Display for IoInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.name,
            ValueType {
                dtype: self.dtype,
                shape: self.shape.clone()
            }
        )
    }
}

fn io_info(g: &Graph, id: millrace_ir::ValueId) -> IoInfo {
    let v = g.value(id);
    IoInfo {
        name: v.name.clone(),
        dtype: v.ty.dtype,
        shape: v.ty.shape.clone(),
        kind: g.kinds.get(&id).cloned().unwrap_or(ValueKind::Tensor),
    }
}

/// An imported ONNX model, not yet compiled.
#[derive(Clone, Debug)]
pub struct Model {
    onnx: OnnxModel,
}

/// How to compile a model.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// Concrete shapes for inputs whose declared shape has symbolic or unknown dims.
    /// Inputs left out keep their declared shape (symbolic dims then resolve at run time).
    pub input_shapes: HashMap<String, Vec<usize>>,
    /// Threads for intra-op parallelism; `None` uses the machine's available parallelism.
    pub threads: Option<usize>,
    /// Which passes to skip or where to stop.
    pub passes: PassOptions,
    /// Run independent branches concurrently or one node after another.
    pub schedule: Schedule,
    /// What the pool's idle workers do while a run is in progress.
    pub idle: IdleWorkers,
}

/// How the executor orders nodes (`--schedule`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Schedule {
    /// Parallel where the cost model predicts a gain, else sequential.
    #[default]
    Auto,
    /// One node after another in topological order, each using every thread.
    Sequential,
    /// Independent branches run at the same time, sharing the thread pool.
    Parallel,
}

impl std::str::FromStr for Schedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Schedule, Error> {
        match s {
            "auto" => Ok(Schedule::Auto),
            "sequential" => Ok(Schedule::Sequential),
            "parallel" => Ok(Schedule::Parallel),
            _ => Err(Error::Invalid(format!(
                "unknown schedule `{s}`: expected auto, sequential or parallel"
            ))),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Schedule::Auto => "auto",
            Schedule::Sequential => "sequential",
            Schedule::Parallel => "parallel",
        })
    }
}

impl Model {
    /// Loads a model file (external data is read from beside it). Large initializers are
    /// decoded on the current rayon pool: rayon's global one, or the caller's inside
    /// `ThreadPool::install`; [`Model::load_with_threads`] bounds them instead.
    pub fn load(path: impl AsRef<Path>) -> Result<Model, Error> {
        Ok(Model {
            onnx: load_model(path.as_ref())?,
        })
    }

    /// [`Model::load`] with the initializers decoded on `threads` threads (a pool that
    /// lives for the load only): the same count as the compiled model's, so loading
    /// uses no more cores than running.
    pub fn load_with_threads(path: impl AsRef<Path>, threads: usize) -> Result<Model, Error> {
        let path = path.as_ref();
        build_pool(threads)?.install(|| Model::load(path))
    }

    /// Loads a model from bytes. Models with external data need [`Model::load`], or a `base_dir`.
    pub fn from_bytes(bytes: &[u8], base_dir: Option<&Path>) -> Result<Model, Error> {
        Ok(Model {
            onnx: import_model(bytes, base_dir)?,
        })
    }

    /// The imported graph, before optimization.
    pub fn graph(&self) -> &Graph {
        &self.onnx.graph
    }

    pub fn opset(&self) -> i64 {
        self.onnx.opset
    }

    pub fn producer(&self) -> &str {
        &self.onnx.producer
    }

    /// The inputs a caller must feed (initializers excluded).
    pub fn inputs(&self) -> Vec<IoInfo> {
        self.graph()
            .runtime_inputs()
            .map(|v| io_info(self.graph(), v))
            .collect()
    }

    pub fn outputs(&self) -> Vec<IoInfo> {
        self.graph()
            .outputs
            .iter()
            .map(|&v| io_info(self.graph(), v))
            .collect()
    }

    /// Fixes input shapes, optimizes, and plans the model.
    pub fn compile(&self, opts: &CompileOptions) -> Result<CompiledModel, Error> {
        let mut g = self.onnx.graph.clone();
        bind_input_shapes(&mut g, &opts.input_shapes)?;
        g.infer_types()?;
        let threads = opts.threads.unwrap_or_else(default_threads).max(1);
        let pool = build_pool(threads)?;
        // The passes run on the model's own threads: packing weights writes fresh memory,
        // and its page faults (most of compile time) scale with threads.
        let reports = pool.install(|| default_pipeline().run(&mut g, &opts.passes))?;
        let mut compiled = CompiledModel::with_pool(g, pool, opts.schedule, opts.idle);
        compiled.reports = reports;
        Ok(compiled)
    }
}

impl CompiledModel {
    /// Plans an already optimized graph (concrete shapes bound, passes run) on its own pool
    /// of `threads`. Used by [`Model::compile`] and for the stages of a stream.
    pub(crate) fn from_optimized(
        graph: Graph,
        threads: usize,
        schedule: Schedule,
        idle: IdleWorkers,
    ) -> Result<CompiledModel, Error> {
        let pool = build_pool(threads)?;
        Ok(CompiledModel::with_pool(graph, pool, schedule, idle))
    }

    /// Plans an optimized graph on `pool`.
    fn with_pool(
        graph: Graph,
        pool: rayon::ThreadPool,
        schedule: Schedule,
        idle: IdleWorkers,
    ) -> CompiledModel {
        let threads = pool.current_num_threads();
        // Size every worker's kernel scratch now, so no run allocates it later.
        pool.broadcast(|_| millrace_kernels::reserve_scratch());
        let parallel = match schedule {
            Schedule::Auto => None,
            Schedule::Sequential => Some(false),
            Schedule::Parallel => Some(true),
        };
        let plan = Plan::build(&graph, parallel, threads);
        CompiledModel {
            graph,
            plan,
            states: RunStates::default(),
            pool,
            threads,
            schedule,
            idle,
            reports: Vec::new(),
        }
    }
}

/// A model's pool of `threads` workers.
fn build_pool(threads: usize) -> Result<rayon::ThreadPool, Error> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("millrace-{i}"))
        .build()
        .map_err(|e| Error::ThreadPool(e.to_string()))
}

/// The number of threads used when none is asked for.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Checks user shapes against the declared input types and binds symbolic dims.
fn bind_input_shapes(g: &mut Graph, shapes: &HashMap<String, Vec<usize>>) -> Result<(), Error> {
    let inputs: Vec<_> = g.runtime_inputs().collect();
    let expected = || {
        inputs
            .iter()
            .map(|v| g.value(*v).name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for name in shapes.keys() {
        if !inputs.iter().any(|v| &g.value(*v).name == name) {
            return Err(Error::UnknownInput {
                name: name.clone(),
                expected: expected(),
            });
        }
    }
    let mut bindings: HashMap<String, usize> = HashMap::new();
    for &v in &inputs {
        let value = g.value(v);
        let Some(shape) = shapes.get(&value.name) else {
            continue;
        };
        check_shape(&value.name, &value.ty, shape)?;
        if let Some(decl) = &value.ty.shape {
            for (d, &n) in decl.iter().zip(shape) {
                if let Dim::Sym(s) = d {
                    if let Some(&prev) = bindings.get(s) {
                        if prev != n {
                            return Err(Error::SymbolConflict {
                                symbol: s.clone(),
                                first: prev,
                                second: n,
                            });
                        }
                    }
                    bindings.insert(s.clone(), n);
                }
            }
        }
        g.values[v.index()].ty.shape = Some(shape.iter().map(|&d| Dim::Known(d)).collect());
    }
    g.bind_symbols(&bindings);
    Ok(())
}

/// Does a concrete shape fit a declared type?
fn check_shape(name: &str, ty: &ValueType, got: &[usize]) -> Result<(), Error> {
    if let Some(decl) = &ty.shape {
        let fits = decl.len() == got.len()
            && decl
                .iter()
                .zip(got)
                .all(|(d, &g)| d.known().is_none_or(|k| k == g));
        if !fits {
            return Err(Error::InputShape {
                name: name.to_string(),
                expected: ty.to_string(),
                got: got.to_vec(),
            });
        }
    }
    Ok(())
}

/// A model ready to run: optimized graph, plan, and its own thread pool.
///
/// `Send + Sync`: share it (e.g. in an `Arc`) and call [`CompiledModel::run`] from any
/// number of threads; the weights are held once.
pub struct CompiledModel {
    graph: Graph,
    plan: Plan,
    /// Arenas and value slots of finished runs, reused by the next ones.
    states: RunStates,
    pool: rayon::ThreadPool,
    threads: usize,
    schedule: Schedule,
    idle: IdleWorkers,
    reports: Vec<PassReport>,
}

impl CompiledModel {
    /// Runs the model on named inputs and returns the outputs in graph order.
    pub fn run(&self, inputs: &[(&str, &Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        let args: Vec<(&str, ArgRef<'_>)> = inputs
            .iter()
            .map(|(n, t)| (*n, ArgRef::Tensor(t)))
            .collect();
        let feeds = self.feeds(&args)?;
        let outs = self.install(|| self.plan.execute_profiled(&self.states, &feeds, None))?;
        outs.into_iter()
            .map(|(name, v)| match v {
                Value::Tensor(t) => Ok((name, t)),
                other => Err(Error::Invalid(format!(
                    "output `{name}` is a {}; use run_values for models with sequence or optional outputs",
                    other.kind()
                ))),
            })
            .collect()
    }

    /// Like [`CompiledModel::run`] with owned names.
    pub fn run_named(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
        self.run(&refs)
    }

    /// Runs a model whose inputs or outputs may be sequences or optionals.
    pub fn run_values(&self, inputs: &[(&str, &Value)]) -> Result<Vec<(String, Value)>, Error> {
        let args: Vec<(&str, ArgRef<'_>)> =
            inputs.iter().map(|(n, v)| (*n, ArgRef::Value(v))).collect();
        let feeds = self.feeds(&args)?;
        self.install(|| self.plan.execute_profiled(&self.states, &feeds, None))
    }

    /// Validates inputs and lays them out by value index.
    fn feeds<'a>(&self, inputs: &[(&str, ArgRef<'a>)]) -> Result<Vec<Option<ArgRef<'a>>>, Error> {
        let mut feeds: Vec<Option<ArgRef<'a>>> = vec![None; self.plan.n_values];
        let expected = || {
            self.plan
                .inputs
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (name, arg) in inputs {
            let Some((_, idx)) = self.plan.inputs.iter().find(|(n, _)| n == name) else {
                return Err(Error::UnknownInput {
                    name: name.to_string(),
                    expected: expected(),
                });
            };
            if feeds[*idx].is_some() {
                return Err(Error::DuplicateInput {
                    name: name.to_string(),
                });
            }
            let id = millrace_ir::ValueId(*idx as u32);
            let kind = self
                .graph
                .kinds
                .get(&id)
                .cloned()
                .unwrap_or(ValueKind::Tensor);
            let ty = &self.graph.values[*idx].ty;
            let check_tensor = |t: &Tensor| -> Result<(), Error> {
                if let Some(dt) = ty.dtype {
                    if dt != t.dtype() {
                        return Err(Error::InputDType {
                            name: name.to_string(),
                            expected: dt,
                            got: t.dtype(),
                        });
                    }
                }
                Ok(())
            };
            match (arg.tensor(), arg, &kind) {
                (Some(t), _, ValueKind::Tensor) => {
                    check_tensor(t)?;
                    check_shape(name, ty, t.shape())?;
                }
                (_, ArgRef::Value(Value::Sequence(ts)), ValueKind::Sequence) => {
                    ts.iter().try_for_each(check_tensor)?;
                }
                (_, ArgRef::Value(Value::Optional(_)), ValueKind::Optional(_)) => {}
                (_, a, k) => {
                    let got = match a {
                        ArgRef::Tensor(_) => "tensor",
                        ArgRef::Value(v) => v.kind(),
                    };
                    return Err(Error::Invalid(format!(
                        "input `{name}` must be a {k:?}, got a {got}"
                    )));
                }
            }
            feeds[*idx] = Some(*arg);
        }
        for (name, idx) in &self.plan.inputs {
            if feeds[*idx].is_none() {
                return Err(Error::MissingInput {
                    name: name.clone(),
                    ty: self.graph.values[*idx].ty.to_string(),
                });
            }
        }
        Ok(feeds)
    }

    /// The optimized graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The schedule asked for at compile time.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// What the pool's idle workers do during a run, as asked for at compile time.
    pub fn idle(&self) -> IdleWorkers {
        self.idle
    }

    /// Runs `f` on the model's pool, its other workers doing as [`CompiledModel::idle`] says.
    fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        crate::idle::install(&self.pool, self.idle, f)
    }

    /// Whether runs use the branch-parallel schedule (asked for, or chosen by the cost
    /// model under [`Schedule::Auto`]).
    pub fn is_parallel(&self) -> bool {
        self.plan.is_parallel()
    }

    /// The cost model's estimate of a sequential and a branch-parallel run.
    pub fn prediction(&self) -> millrace_schedule::Prediction {
        self.plan.prediction()
    }

    /// What the memory planner decided: arena size against one allocation per value,
    /// in-place and aliased nodes, values left to the ops' own allocations.
    pub fn memory_report(&self) -> &crate::memplan::MemoryReport {
        self.plan.memory()
    }

    /// What each pass did during compilation.
    pub fn pass_reports(&self) -> &[PassReport] {
        &self.reports
    }

    pub fn inputs(&self) -> Vec<IoInfo> {
        self.graph
            .runtime_inputs()
            .map(|v| io_info(&self.graph, v))
            .collect()
    }

    pub fn outputs(&self) -> Vec<IoInfo> {
        self.graph
            .outputs
            .iter()
            .map(|&v| io_info(&self.graph, v))
            .collect()
    }

    /// Like [`CompiledModel::run`], also timing every node: one
    /// [`StepTiming`](crate::plan::StepTiming) per step in execution order, with the node's
    /// FLOPs and bytes at the compiled shapes.
    pub fn run_profiled(&self, inputs: &[(&str, &Tensor)]) -> Result<crate::plan::Profiled, Error> {
        let args: Vec<(&str, ArgRef<'_>)> = inputs
            .iter()
            .map(|(n, t)| (*n, ArgRef::Tensor(t)))
            .collect();
        let feeds = self.feeds(&args)?;
        let mut timings = Vec::new();
        let outs = self.install(|| {
            self.plan
                .execute_profiled(&self.states, &feeds, Some(&mut timings))
        })?;
        let outs = outs
            .into_iter()
            .map(|(name, v)| match v {
                Value::Tensor(t) => Ok((name, t)),
                other => Err(Error::Invalid(format!(
                    "output `{name}` is a {}; profiling needs tensor outputs",
                    other.kind()
                ))),
            })
            .collect::<Result<_, _>>()?;
        Ok((outs, timings))
    }

    /// Like [`CompiledModel::run_profiled`] with owned names.
    pub fn run_named_profiled(
        &self,
        inputs: &[(String, Tensor)],
    ) -> Result<crate::plan::Profiled, Error> {
        let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
        self.run_profiled(&refs)
    }

    /// FLOPs and bytes of one run at the compiled shapes (sum over nodes; ops whose cost is
    /// unknown count as zero).
    pub fn cost(&self) -> millrace_ir::Cost {
        self.plan.cost()
    }
}

impl fmt::Debug for CompiledModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledModel")
            .field("graph", &self.graph.name)
            .field("nodes", &self.graph.nodes.len())
            .field("threads", &self.threads)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn compiled_model_is_send_and_sync() {
        assert_send_sync::<CompiledModel>();
    }
}
