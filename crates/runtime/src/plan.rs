//! The execution plan and the executor.
//!
//! [`Plan::build`] turns an optimized graph into steps (nodes in topological order with
//! their inputs resolved to value slots), a static memory plan ([`crate::memplan`]: which
//! activations live at which offset of the run's arena, which nodes run in place or only
//! rename a buffer) and, for the parallel schedule, the dependency DAG with each node's
//! priority (its bottom level: the estimated time of the longest chain behind it).
//!
//! Execution:
//! - **sequential**: steps in order on the calling thread; each op uses the whole pool.
//! - **parallel**: dataflow over the DAG inside one `rayon::scope`: a node is spawned when
//!   its last producer finishes; of several newly ready nodes the one with the most work
//!   behind it runs at once on the same thread and the others are spawned, so idle workers
//!   steal them. Ops still split their own work with rayon, so the threads go to whatever
//!   is ready: branch parallelism when branches are ready, intra-op otherwise.
//!
//! Per-run state (the arena, value slots, counters) is pooled in [`RunStates`] and reused,
//! so a steady-state run of a model whose hot ops have the planned-buffer path allocates
//! no activation memory. Each step carries its node's [`Cost`], so a profiled run can
//! report time, thread lane and start next to the work done.
use crate::error::Error;
use crate::memplan::{self, Exec, MemoryReport, Storage};
use millrace_core::Tensor;
use millrace_ir::{invoke, ArgRef, Cost, F32View, Graph, Op, Value};
use millrace_schedule::{predict, Dag, Machine, Prediction};
use smallvec::SmallVec;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Outputs of a profiled run and the time of each step.
pub type Profiled = (Vec<(String, Tensor)>, Vec<StepTiming>);

/// How long one step (node) of a profiled run took, with what it computes.
#[derive(Clone, Debug)]
pub struct StepTiming {
    /// The node's name.
    pub node: String,
    /// The op type, e.g. `Conv`.
    pub op: &'static str,
    /// The step's index in the plan (its position in the optimized graph's node list).
    pub step: usize,
    /// When the step started, from the start of the profiled run (or stream).
    pub start: Duration,
    /// How long it took.
    pub time: Duration,
    /// The thread lane that ran it: the rayon worker index in the model's pool (0 when
    /// run outside it); in a stream, stage lanes follow each other.
    pub thread: usize,
    /// Which input of a stream it belongs to (0 for a single run).
    pub frame: usize,
    /// FLOPs and bytes of the node at the compiled shapes (zero where unknown).
    pub cost: Cost,
}

pub(crate) struct Step {
    pub name: String,
    pub op: Arc<dyn Op>,
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<usize>,
    /// Distinct owned values this step reads (their reader counts drop when it ends).
    pub reads_owned: Vec<usize>,
    /// FLOPs and bytes at the compiled shapes.
    pub cost: Cost,
    pub exec: Exec,
}

pub(crate) struct Plan {
    pub steps: Vec<Step>,
    pub n_values: usize,
    pub constants: Vec<Option<Arc<Tensor>>>,
    /// (name, value index) of runtime inputs.
    pub inputs: Vec<(String, usize)>,
    pub outputs: Vec<(String, usize)>,
    storage: Vec<Storage>,
    /// Concrete shapes of values, where known (for outputs computed on the planned path).
    out_shape: Vec<Option<Vec<usize>>>,
    arena_len: usize,
    /// How many steps read each owned value (graph outputs: never freed).
    readers: Vec<usize>,
    is_output: Vec<bool>,
    /// Parallel schedule: the DAG and each step's priority.
    parallel: Option<(Dag, Vec<f64>)>,
    memory: MemoryReport,
    prediction: Prediction,
}

/// One run's reusable state: the arena, the value slots and the counters.
pub(crate) struct RunState {
    arena: Vec<f32>,
    slots: Vec<Mutex<Option<Arc<Value>>>>,
    remaining: Vec<AtomicUsize>,
    pending: Vec<AtomicUsize>,
}

/// Run states kept between runs; a run takes one (or makes one) and gives it back.
#[derive(Default)]
pub(crate) struct RunStates(Mutex<Vec<RunState>>);

impl RunStates {
    fn take(&self, plan: &Plan) -> RunState {
        let got = self.0.lock().ok().and_then(|mut v| v.pop());
        got.unwrap_or_else(|| RunState {
            // ALIGN extra floats so the base can be moved to a 64-byte boundary.
            arena: vec![0.0; plan.arena_len + memplan::ALIGN],
            slots: (0..plan.n_values).map(|_| Mutex::new(None)).collect(),
            remaining: (0..plan.n_values).map(|_| AtomicUsize::new(0)).collect(),
            pending: (0..plan.steps.len()).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    fn give(&self, state: RunState) {
        if let Ok(mut v) = self.0.lock() {
            v.push(state);
        }
    }
}

/// The arena of one run, shared by the steps of a parallel run.
///
/// The memory plan guarantees that regions written by a step are not read or written by
/// any step that may run at the same time, and that a value's region is written before any
/// reader runs; all access goes through [`ArenaRef::read`] and [`ArenaRef::write`].
#[derive(Clone, Copy)]
struct ArenaRef {
    base: *mut f32,
    len: usize,
}

// SAFETY: the pointer is only dereferenced for regions the memory plan keeps disjoint
// between concurrently running steps (see the type's doc).
unsafe impl Send for ArenaRef {}
unsafe impl Sync for ArenaRef {}

impl ArenaRef {
    fn new(buf: &mut [f32]) -> ArenaRef {
        let skip = buf
            .as_ptr()
            .align_offset(memplan::ALIGN * 4)
            .min(memplan::ALIGN);
        let skip = skip.min(buf.len());
        let rest = &mut buf[skip..];
        ArenaRef {
            base: rest.as_mut_ptr(),
            len: rest.len(),
        }
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), Error> {
        if offset.checked_add(len).is_some_and(|end| end <= self.len) {
            Ok(())
        } else {
            Err(Error::Internal(format!(
                "arena region {offset}+{len} outside the arena of {}",
                self.len
            )))
        }
    }

    /// # Safety
    /// No step running at the same time may write the region (memory plan invariant).
    unsafe fn read(&self, offset: usize, len: usize) -> Result<&[f32], Error> {
        self.check(offset, len)?;
        // SAFETY: in bounds (checked); no concurrent writer (caller's contract).
        Ok(unsafe { std::slice::from_raw_parts(self.base.add(offset), len) })
    }

    /// # Safety
    /// No other step running at the same time may read or write the region, and the
    /// caller holds no other reference into it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn write(&self, offset: usize, len: usize) -> Result<&mut [f32], Error> {
        self.check(offset, len)?;
        // SAFETY: in bounds (checked); exclusive for the step (caller's contract).
        Ok(unsafe { std::slice::from_raw_parts_mut(self.base.add(offset), len) })
    }
}

/// Everything a step needs during one run.
struct Ctx<'p, 'f> {
    plan: &'p Plan,
    feeds: &'f [Option<ArgRef<'f>>],
    arena: ArenaRef,
    state: &'p RunState,
    profile: Option<(&'p Mutex<Vec<StepTiming>>, Instant)>,
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
}

type Args<'a> = SmallVec<[Option<F32View<'a>>; 6]>;

impl Plan {
    /// Plans `g`. `parallel` asks for the branch-parallel schedule; `None` lets the cost
    /// model decide for `threads` threads.
    pub fn build(g: &Graph, parallel: Option<bool>, threads: usize) -> Plan {
        let n = g.values.len();
        let mut constants = vec![None; n];
        for (v, t) in &g.constants {
            constants[v.index()] = Some(t.clone());
        }
        let mut is_output = vec![false; n];
        for o in &g.outputs {
            is_output[o.index()] = true;
        }
        let costs: Vec<Cost> = g.nodes.iter().map(|node| g.node_cost(node)).collect();
        let dag = Dag::build(g);
        let fb: Vec<(u64, u64)> = costs.iter().map(|c| (c.flops, c.bytes())).collect();
        let machine = Machine::default();
        let prediction = predict(&dag, &fb, threads, &machine);
        let parallel = parallel.unwrap_or_else(|| prediction.parallel_wins(0.03)) && threads > 1;
        let mem = memplan::plan(g, parallel.then_some(&dag));
        let mut readers = vec![0usize; n];
        let steps: Vec<Step> = g
            .nodes
            .iter()
            .enumerate()
            .map(|(si, node)| {
                let mut reads_owned: Vec<usize> = node
                    .inputs
                    .iter()
                    .flatten()
                    .map(|v| v.index())
                    .filter(|&i| constants[i].is_none() && mem.storage[i] == Storage::Owned)
                    .collect();
                reads_owned.sort_unstable();
                reads_owned.dedup();
                for &v in &reads_owned {
                    readers[v] += 1;
                }
                Step {
                    cost: costs[si],
                    name: node.name.clone(),
                    op: node.op.clone(),
                    inputs: node.inputs.iter().map(|i| i.map(|v| v.index())).collect(),
                    outputs: node.outputs.iter().map(|v| v.index()).collect(),
                    reads_owned,
                    exec: mem.exec[si],
                }
            })
            .collect();
        let parallel = parallel.then(|| {
            let single: Vec<f64> = fb
                .iter()
                .map(|&(f, b)| machine.time(f as f64, b as f64, 1.0))
                .collect();
            let priority = dag.bottom_levels(&single);
            (dag, priority)
        });
        Plan {
            steps,
            n_values: n,
            constants,
            inputs: g
                .runtime_inputs()
                .map(|v| (g.value(v).name.clone(), v.index()))
                .collect(),
            outputs: g
                .outputs
                .iter()
                .map(|v| (g.value(*v).name.clone(), v.index()))
                .collect(),
            storage: mem.storage,
            out_shape: g.values.iter().map(|v| v.ty.concrete_shape()).collect(),
            arena_len: mem.arena_len,
            readers,
            is_output,
            parallel,
            memory: mem.report,
            prediction,
        }
    }

    /// The total cost of one run.
    pub fn cost(&self) -> Cost {
        self.steps
            .iter()
            .fold(Cost::default(), |acc, s| acc + s.cost)
    }

    /// What the memory planner decided.
    pub fn memory(&self) -> &MemoryReport {
        &self.memory
    }

    /// The cost model's view of sequential vs parallel for this graph.
    pub fn prediction(&self) -> Prediction {
        self.prediction
    }

    /// Whether runs use the branch-parallel schedule.
    pub fn is_parallel(&self) -> bool {
        self.parallel.is_some()
    }

    /// Runs every step. `feeds[i]` is the argument for value `i` when it is a runtime input.
    #[cfg(test)]
    pub fn execute(&self, feeds: &[Option<ArgRef<'_>>]) -> Result<Vec<(String, Value)>, Error> {
        self.execute_profiled(&RunStates::default(), feeds, None)
    }

    /// Runs every step with a pooled run state; with `profile`, appends one
    /// [`StepTiming`] per step (sorted by start).
    pub fn execute_profiled(
        &self,
        states: &RunStates,
        feeds: &[Option<ArgRef<'_>>],
        profile: Option<&mut Vec<StepTiming>>,
    ) -> Result<Vec<(String, Value)>, Error> {
        let mut state = states.take(self);
        let result = self.execute_with(&mut state, feeds, profile);
        // Drop whatever a failed run left behind before the state is reused.
        for slot in &state.slots {
            if let Ok(mut s) = slot.lock() {
                *s = None;
            }
        }
        states.give(state);
        result
    }

    fn execute_with(
        &self,
        state: &mut RunState,
        feeds: &[Option<ArgRef<'_>>],
        profile: Option<&mut Vec<StepTiming>>,
    ) -> Result<Vec<(String, Value)>, Error> {
        for (r, &n) in state.remaining.iter().zip(&self.readers) {
            r.store(n, Ordering::Relaxed);
        }
        let timings = Mutex::new(Vec::new());
        let arena = ArenaRef::new(&mut state.arena);
        let ctx = Ctx {
            plan: self,
            feeds,
            arena,
            state,
            profile: profile.is_some().then(|| (&timings, Instant::now())),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
        };
        match &self.parallel {
            None => {
                for i in 0..self.steps.len() {
                    ctx.step(i)?;
                }
            }
            Some((dag, priority)) => {
                for (i, p) in state.pending.iter().enumerate() {
                    p.store(dag.preds(i).len(), Ordering::Relaxed);
                }
                let mut roots: Vec<usize> = (0..self.steps.len())
                    .filter(|&i| dag.preds(i).is_empty())
                    .collect();
                roots.sort_by(|&a, &b| priority[a].total_cmp(&priority[b]));
                rayon::scope(|scope| {
                    for r in roots {
                        let ctx = &ctx;
                        scope.spawn(move |sc| ctx.chain(sc, dag, priority, r));
                    }
                });
                if let Some(e) = ctx.error.lock().ok().and_then(|mut e| e.take()) {
                    return Err(e);
                }
            }
        }
        if let (Some(out), Ok(mut t)) = (profile, timings.into_inner()) {
            t.sort_by_key(|s: &StepTiming| (s.start, s.step));
            out.append(&mut t);
        }
        let mut result = Vec::with_capacity(self.outputs.len());
        for (k, (name, i)) in self.outputs.iter().enumerate() {
            let needed_again = self.outputs[k + 1..].iter().any(|(_, j)| j == i);
            let v = match (&self.constants[*i], feeds.get(*i).copied().flatten()) {
                (Some(c), _) => Some(Value::Tensor(c.as_ref().clone())),
                (None, Some(ArgRef::Tensor(t))) => Some(Value::Tensor(t.clone())),
                (None, Some(ArgRef::Value(v))) => Some(v.clone()),
                _ => {
                    let slot = state.slots[*i].lock().ok().and_then(|mut s| {
                        if needed_again {
                            s.clone()
                        } else {
                            s.take()
                        }
                    });
                    slot.map(|a| Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone()))
                }
            }
            .ok_or_else(|| Error::Internal(format!("output `{name}` was never computed")))?;
            result.push((name.clone(), v));
        }
        Ok(result)
    }
}

impl Ctx<'_, '_> {
    /// Runs step `i`, then whichever successors it made ready: the highest-priority one on
    /// this thread, the rest spawned.
    fn chain<'s>(
        &'s self,
        scope: &rayon::Scope<'s>,
        dag: &'s Dag,
        priority: &'s [f64],
        first: usize,
    ) {
        let mut at = first;
        loop {
            if self.failed.load(Ordering::Relaxed) {
                return;
            }
            if let Err(e) = self.step(at) {
                self.failed.store(true, Ordering::Relaxed);
                if let Ok(mut slot) = self.error.lock() {
                    slot.get_or_insert(e);
                }
                return;
            }
            let mut ready: SmallVec<[usize; 8]> = SmallVec::new();
            for &s in dag.succs(at) {
                if self.state.pending[s].fetch_sub(1, Ordering::AcqRel) == 1 {
                    ready.push(s);
                }
            }
            ready.sort_by(|&a, &b| priority[a].total_cmp(&priority[b]));
            let Some(next) = ready.pop() else {
                return;
            };
            for s in ready {
                scope.spawn(move |sc| self.chain(sc, dag, priority, s));
            }
            at = next;
        }
    }

    /// The owned value in slot `i` (`None` while it is not computed yet), shared so the
    /// reader holds it for the duration of its call.
    fn owned_value(&self, i: usize) -> Result<Option<Arc<Value>>, Error> {
        Ok(self.state.slots[i]
            .lock()
            .map_err(|_| Error::Internal("a value slot was poisoned".into()))?
            .clone())
    }

    fn step(&self, index: usize) -> Result<(), Error> {
        let plan = self.plan;
        let step = &plan.steps[index];
        let t0 = self.profile.map(|_| Instant::now());
        let node_err = |source| Error::Node {
            node: step.name.clone(),
            op: step.op.name().to_string(),
            source,
        };
        match step.exec {
            Exec::Alias => {}
            Exec::Into | Exec::InPlace { .. } => {
                // Owned inputs are held (Arc) for the duration of the call.
                let mut held: SmallVec<[Arc<Value>; 4]> = SmallVec::new();
                for &i in step.inputs.iter().flatten() {
                    if plan.constants[i].is_none()
                        && self.feeds.get(i).copied().flatten().is_none()
                        && plan.storage[i] == Storage::Owned
                    {
                        held.push(self.owned_value(i)?.ok_or_else(|| self.unready(step, i))?);
                    }
                }
                let mut held_iter = held.iter();
                let skip = match step.exec {
                    Exec::InPlace { index } => Some(index),
                    _ => None,
                };
                let mut args: Args<'_> = SmallVec::new();
                for (k, i) in step.inputs.iter().enumerate() {
                    let Some(i) = *i else {
                        args.push(None);
                        continue;
                    };
                    if Some(k) == skip {
                        args.push(None);
                        continue;
                    }
                    let view = if let Some(c) = &plan.constants[i] {
                        F32View::of(c)
                    } else if let Some(f) = self.feeds.get(i).copied().flatten() {
                        f.tensor().and_then(F32View::of)
                    } else {
                        match &plan.storage[i] {
                            Storage::Arena { offset, len, shape } => {
                                // SAFETY: the value was written by a step that finished
                                // before this one; no concurrent step writes it (plan).
                                let data = unsafe { self.arena.read(*offset, *len)? };
                                Some(F32View { shape, data })
                            }
                            Storage::Owned => held_iter
                                .next()
                                .and_then(|v| v.as_tensor())
                                .and_then(F32View::of),
                        }
                    };
                    args.push(Some(view.ok_or_else(|| {
                        Error::Internal(format!(
                            "node `{}`: input #{k} is not an f32 tensor on the planned-buffer path",
                            step.name
                        ))
                    })?));
                }
                let out = step.outputs[0];
                match &plan.storage[out] {
                    Storage::Arena { offset, len, shape } => {
                        // SAFETY: the plan gives this output a region no concurrent step
                        // touches; for in place, only this step still uses the input.
                        let buf = unsafe { self.arena.write(*offset, *len)? };
                        match skip {
                            Some(k) => step.op.eval_inplace(k, &args, buf, shape),
                            None => step.op.eval_into(&args, buf, shape),
                        }
                        .map_err(node_err)?;
                    }
                    Storage::Owned => {
                        let shape = self.out_shape(step, out)?;
                        let mut buf = vec![0f32; shape.iter().product()];
                        step.op
                            .eval_into(&args, &mut buf, &shape)
                            .map_err(node_err)?;
                        let t = Tensor::from_vec(shape, buf)
                            .map_err(|e| Error::Internal(format!("node `{}`: {e}", step.name)))?;
                        self.store(out, Value::Tensor(t))?;
                    }
                }
            }
            Exec::Call => {
                let mut held: SmallVec<[Arc<Value>; 4]> = SmallVec::new();
                let mut copies: SmallVec<[Value; 2]> = SmallVec::new();
                for &i in step.inputs.iter().flatten() {
                    if plan.constants[i].is_some() || self.feeds.get(i).copied().flatten().is_some()
                    {
                        continue;
                    }
                    match &plan.storage[i] {
                        Storage::Owned => {
                            held.push(self.owned_value(i)?.ok_or_else(|| self.unready(step, i))?)
                        }
                        Storage::Arena { offset, len, shape } => {
                            // SAFETY: as above: written before, not written concurrently.
                            let data = unsafe { self.arena.read(*offset, *len)? };
                            let t =
                                Tensor::from_vec(shape.clone(), data.to_vec()).map_err(|e| {
                                    Error::Internal(format!("node `{}`: {e}", step.name))
                                })?;
                            copies.push(Value::Tensor(t));
                        }
                    }
                }
                let (mut h, mut c) = (held.iter(), copies.iter());
                let mut args: SmallVec<[Option<ArgRef<'_>>; 6]> = SmallVec::new();
                for i in &step.inputs {
                    args.push(match *i {
                        None => None,
                        Some(i) => Some(if let Some(t) = &plan.constants[i] {
                            ArgRef::Tensor(t)
                        } else if let Some(f) = self.feeds.get(i).copied().flatten() {
                            f
                        } else {
                            let v = match plan.storage[i] {
                                Storage::Owned => h.next().map(|a| a.as_ref()),
                                Storage::Arena { .. } => c.next(),
                            };
                            ArgRef::Value(v.ok_or_else(|| self.unready(step, i))?)
                        }),
                    });
                }
                let outs = invoke(step.op.as_ref(), &args).map_err(node_err)?;
                drop(args);
                if outs.len() < step.outputs.len() {
                    return Err(Error::Internal(format!(
                        "node `{}` ({}) produced {} outputs, the graph expects {}",
                        step.name,
                        step.op.name(),
                        outs.len(),
                        step.outputs.len()
                    )));
                }
                for (&slot, v) in step.outputs.iter().zip(outs) {
                    self.store(slot, v)?;
                }
            }
        }
        // Inputs whose last reader this was.
        for &v in &step.reads_owned {
            if plan.state_free(self.state, v) {
                if let Ok(mut s) = self.state.slots[v].lock() {
                    *s = None;
                }
            }
        }
        if let (Some((timings, origin)), Some(t0)) = (self.profile, t0) {
            let timing = StepTiming {
                node: step.name.clone(),
                op: step.op.name(),
                step: index,
                start: t0.duration_since(origin),
                time: t0.elapsed(),
                thread: rayon::current_thread_index().unwrap_or(0),
                frame: 0,
                cost: step.cost,
            };
            if let Ok(mut t) = timings.lock() {
                t.push(timing);
            }
        }
        Ok(())
    }

    /// Stores an owned output; outputs nobody reads (and that are not graph outputs) are
    /// dropped at once.
    fn store(&self, slot: usize, v: Value) -> Result<(), Error> {
        if self.plan.readers[slot] == 0 && !self.plan.is_output[slot] {
            return Ok(());
        }
        *self.state.slots[slot]
            .lock()
            .map_err(|_| Error::Internal("a value slot was poisoned".into()))? = Some(Arc::new(v));
        Ok(())
    }

    fn out_shape(&self, step: &Step, out: usize) -> Result<Vec<usize>, Error> {
        self.plan.out_shapes(out).ok_or_else(|| {
            Error::Internal(format!(
                "node `{}`: output shape unknown on the planned-buffer path",
                step.name
            ))
        })
    }

    fn unready(&self, step: &Step, i: usize) -> Error {
        Error::Internal(format!(
            "node `{}` reads value #{i} before it is computed",
            step.name
        ))
    }
}

impl Plan {
    /// Counts down a value's readers; true when the last one is done (never for graph outputs).
    fn state_free(&self, state: &RunState, v: usize) -> bool {
        !self.is_output[v] && state.remaining[v].fetch_sub(1, Ordering::AcqRel) == 1
    }

    fn out_shapes(&self, v: usize) -> Option<Vec<usize>> {
        self.out_shape.get(v).cloned().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_core::DType;
    use millrace_ir::{Attributes, ValueType};
    use millrace_ops::registry::Registry;

    /// `z = Relu(x @ w)` with x: [2, 3] fed at run time and w: [3, 4] constant.
    fn graph() -> Graph {
        let mut g = Graph::new("t");
        let op =
            |t: &str| Registry::global().get(t).unwrap()(&Attributes::new(t, vec![]), 17).unwrap();
        let x = g.add_value("x", ValueType::concrete(DType::F32, &[2, 3]));
        let w = g.add_constant("w", Tensor::from_vec(vec![3, 4], vec![1.0f32; 12]).unwrap());
        let y = g.add_value("y", ValueType::unknown());
        let z = g.add_value("z", ValueType::unknown());
        g.add_node("mm", op("MatMul"), vec![Some(x), Some(w)], vec![y]);
        g.add_node("act", op("Relu"), vec![Some(y)], vec![z]);
        g.inputs = vec![x, w];
        g.outputs = vec![z];
        g.infer_types().unwrap();
        g
    }

    #[test]
    fn profiled_runs_time_every_step_with_its_cost() {
        let g = graph();
        let plan = Plan::build(&g, Some(false), 1);
        let x = Tensor::from_vec(vec![2, 3], vec![1.0f32, -2.0, 3.0, 0.5, 0.5, 0.5]).unwrap();
        let mut feeds: Vec<Option<ArgRef<'_>>> = vec![None; plan.n_values];
        feeds[plan.inputs[0].1] = Some(ArgRef::Tensor(&x));
        let plain = plan.execute(&feeds).unwrap();
        let mut prof = Vec::new();
        let profiled = plan
            .execute_profiled(&RunStates::default(), &feeds, Some(&mut prof))
            .unwrap();
        let vals = |o: &[(String, Value)]| match &o[0].1 {
            Value::Tensor(t) => t.to_f64_vec().unwrap(),
            _ => panic!("not a tensor"),
        };
        assert_eq!(vals(&plain), vals(&profiled));
        assert_eq!(vals(&plain), vec![2.0, 2.0, 2.0, 2.0, 1.5, 1.5, 1.5, 1.5]);
        assert_eq!(prof.len(), 2);
        assert_eq!((prof[0].node.as_str(), prof[0].op), ("mm", "MatMul"));
        assert_eq!((prof[1].node.as_str(), prof[1].op), ("act", "Relu"));
        // MatMul [2,3] x [3,4]: 2 * 8 outputs * 3 = 48 FLOPs.
        assert_eq!(prof[0].cost.flops, 48);
        assert_eq!(plan.cost().flops, 48 + prof[1].cost.flops);
    }
}

/// The planned-buffer paths (arena, in place, alias) and the parallel schedule, with small
/// test ops that implement the hooks next to registry ops that do not.
#[cfg(test)]
mod planned_tests {
    use super::*;
    use millrace_core::DType;
    use millrace_ir::{InferCtx, Inputs, OpError, ValueType};
    use std::any::Any;

    /// `y = x * k + (second input, if any)`, with every hook.
    #[derive(Debug)]
    struct Axpy(f32);
    impl Op for Axpy {
        fn name(&self) -> &'static str {
            "Axpy"
        }
        fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
            Ok(vec![ctx.input(0)?.clone()])
        }
        fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
            let x = inputs.req(0)?;
            let views: Vec<_> = (0..inputs.len())
                .map(|i| inputs.opt(i).and_then(F32View::of))
                .collect();
            let mut out = vec![0.0; x.len()];
            self.eval_into(&views, &mut out, x.shape())?;
            Ok(vec![Tensor::from_vec(x.shape().to_vec(), out).unwrap()])
        }
        fn writes_into(&self, i: &[ValueType], _o: &[ValueType]) -> bool {
            i.iter().all(|t| t.dtype == Some(DType::F32))
        }
        fn eval_into(
            &self,
            inputs: &[Option<F32View<'_>>],
            out: &mut [f32],
            _s: &[usize],
        ) -> Result<(), OpError> {
            let x = F32View::req(inputs, "Axpy", 0)?;
            for (k, o) in out.iter_mut().enumerate() {
                *o = x.data[k] * self.0
                    + inputs.get(1).copied().flatten().map_or(0.0, |y| y.data[k]);
            }
            Ok(())
        }
        fn inplace_input(&self, _i: &[ValueType], _o: &[ValueType]) -> Option<usize> {
            Some(0)
        }
        fn eval_inplace(
            &self,
            index: usize,
            inputs: &[Option<F32View<'_>>],
            io: &mut [f32],
            _s: &[usize],
        ) -> Result<(), OpError> {
            assert_eq!(index, 0);
            assert!(inputs[0].is_none());
            for (k, o) in io.iter_mut().enumerate() {
                *o = *o * self.0 + inputs.get(1).copied().flatten().map_or(0.0, |y| y.data[k]);
            }
            Ok(())
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    /// A reshape to 1-D that declares itself an alias, and fails when asked to.
    #[derive(Debug)]
    struct View {
        fail: bool,
    }
    impl Op for View {
        fn name(&self) -> &'static str {
            "View"
        }
        fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
            let t = ctx.input(0)?;
            Ok(vec![ValueType::concrete(
                DType::F32,
                &[t.numel().unwrap_or(0)],
            )])
        }
        fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
            if self.fail {
                return Err(OpError::invalid("View", "asked to fail"));
            }
            let x = inputs.req(0)?;
            Ok(vec![x.clone().reshape(vec![x.len()]).unwrap()])
        }
        fn is_alias(&self) -> bool {
            !self.fail
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    /// Relu with no planned-buffer path: the generic path, reading a copy of an arena value.
    #[derive(Debug)]
    struct PlainRelu;
    impl Op for PlainRelu {
        fn name(&self) -> &'static str {
            "PlainRelu"
        }
        fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
            Ok(vec![ctx.input(0)?.clone()])
        }
        fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
            let x = inputs.req(0)?;
            let v: Vec<f32> = x
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.max(0.0))
                .collect();
            Ok(vec![Tensor::from_vec(x.shape().to_vec(), v).unwrap()])
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    /// x -> a = Axpy2(x) -> b = Axpy3(a) [in place] -> f = Flatten(b) [alias] ;
    /// x -> c = Axpy(-1)(x) ; d = Axpy1(f', c)... laid out as a diamond with a fallback Relu.
    fn graph() -> Graph {
        let mut g = Graph::new("t");
        let x = g.add_value("x", ValueType::concrete(DType::F32, &[2, 3, 4]));
        let u = || ValueType::unknown();
        let a = g.add_value("a", u());
        let b = g.add_value("b", u());
        let f = g.add_value("f", u());
        let c = g.add_value("c", u());
        let r = g.add_value("r", u());
        let d = g.add_value("d", u());
        let e = g.add_value("e", u());
        g.add_node("a", Arc::new(Axpy(2.0)), vec![Some(x)], vec![a]);
        g.add_node("b", Arc::new(Axpy(3.0)), vec![Some(a)], vec![b]);
        g.add_node("c", Arc::new(Axpy(-1.0)), vec![Some(x)], vec![c]);
        g.add_node("f", Arc::new(View { fail: false }), vec![Some(b)], vec![f]);
        g.add_node("r", Arc::new(PlainRelu), vec![Some(c)], vec![r]); // reads an arena value
        let r2 = g.add_value("r2", u());
        g.add_node(
            "fl",
            Arc::new(View { fail: false }),
            vec![Some(r)],
            vec![r2],
        );
        g.add_node("d", Arc::new(Axpy(1.0)), vec![Some(f), Some(r2)], vec![d]);
        g.add_node("e", Arc::new(Axpy(0.5)), vec![Some(d), Some(f)], vec![e]);
        g.inputs = vec![x];
        g.outputs = vec![e];
        g.infer_types().unwrap();
        g
    }

    fn expected(x: &[f32]) -> Vec<f32> {
        x.iter()
            .map(|&v| {
                let f = v * 6.0;
                let d = f + (-v).max(0.0);
                d * 0.5 + f
            })
            .collect()
    }

    fn run(plan: &Plan, states: &RunStates, x: &Tensor) -> Vec<f32> {
        let mut feeds: Vec<Option<ArgRef<'_>>> = vec![None; plan.n_values];
        feeds[plan.inputs[0].1] = Some(ArgRef::Tensor(x));
        let out = plan.execute_profiled(states, &feeds, None).unwrap();
        match &out[0].1 {
            Value::Tensor(t) => t.as_slice::<f32>().unwrap().to_vec(),
            _ => panic!("not a tensor"),
        }
    }

    #[test]
    fn arena_in_place_and_alias_give_the_same_numbers() {
        let g = graph();
        let xs: Vec<f32> = (0..24).map(|i| i as f32 * 0.37 - 4.0).collect();
        let x = Tensor::from_vec(vec![2, 3, 4], xs.clone()).unwrap();
        assert_eq!(g.value(g.outputs[0]).ty.concrete_shape(), Some(vec![24]));
        for parallel in [false, true] {
            let plan = Plan::build(&g, Some(parallel), 2);
            assert_eq!(plan.is_parallel(), parallel);
            let m = plan.memory().clone();
            assert_eq!(m.parallel, parallel);
            assert_eq!(m.in_place, 1, "{m:?}"); // b over a
            assert_eq!(m.aliases, 1, "{m:?}"); // f over b (fl reads an owned Relu output)
            assert_eq!(m.copies, 1, "{m:?}"); // Relu reads c from the arena
            assert!(
                m.arena_bytes > 0 && m.arena_bytes <= m.naive_bytes + 4 * 64,
                "{m:?}"
            );
            let states = RunStates::default();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            for _ in 0..3 {
                let got = pool.install(|| run(&plan, &states, &x));
                assert_eq!(got, expected(&xs));
            }
            // The state was reused, not rebuilt.
            assert_eq!(states.0.lock().unwrap().len(), 1);
        }
    }

    #[test]
    fn parallel_runs_time_every_step_on_lanes() {
        let g = graph();
        let plan = Plan::build(&g, Some(true), 2);
        let x = Tensor::from_vec(vec![2, 3, 4], vec![1.0f32; 24]).unwrap();
        let mut feeds: Vec<Option<ArgRef<'_>>> = vec![None; plan.n_values];
        feeds[plan.inputs[0].1] = Some(ArgRef::Tensor(&x));
        let mut prof = Vec::new();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| plan.execute_profiled(&RunStates::default(), &feeds, Some(&mut prof)))
            .unwrap();
        assert_eq!(prof.len(), g.nodes.len());
        let mut steps: Vec<usize> = prof.iter().map(|p| p.step).collect();
        steps.sort_unstable();
        assert_eq!(steps, (0..g.nodes.len()).collect::<Vec<_>>());
        assert!(prof.windows(2).all(|w| w[0].start <= w[1].start));
        assert!(prof.iter().all(|p| p.thread < 2));
    }

    #[test]
    fn an_error_in_a_branch_is_reported_and_the_state_reused() {
        let mut g = Graph::new("t");
        let x = g.add_value("x", ValueType::concrete(DType::F32, &[4]));
        let a = g.add_value("a", ValueType::unknown());
        let b = g.add_value("b", ValueType::unknown());
        let c = g.add_value("c", ValueType::unknown());
        g.add_node("a", Arc::new(Axpy(2.0)), vec![Some(x)], vec![a]);
        g.add_node("b", Arc::new(View { fail: true }), vec![Some(x)], vec![b]);
        g.add_node("c", Arc::new(Axpy(1.0)), vec![Some(a), Some(b)], vec![c]);
        g.inputs = vec![x];
        g.outputs = vec![c];
        g.infer_types().unwrap();
        let x = Tensor::from_vec(vec![4], vec![1.0f32; 4]).unwrap();
        for parallel in [false, true] {
            let plan = Plan::build(&g, Some(parallel), 2);
            let states = RunStates::default();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            for _ in 0..2 {
                let mut feeds: Vec<Option<ArgRef<'_>>> = vec![None; plan.n_values];
                feeds[plan.inputs[0].1] = Some(ArgRef::Tensor(&x));
                let err = pool
                    .install(|| plan.execute_profiled(&states, &feeds, None))
                    .unwrap_err();
                assert!(err.to_string().contains("asked to fail"), "{err}");
            }
            assert_eq!(states.0.lock().unwrap().len(), 1);
        }
    }

    /// A Concat whose inputs are made by planned-path nodes and read by it alone becomes a
    /// no-op: the producers write into their pieces of its buffer.
    #[test]
    fn concat_inputs_are_written_in_place() {
        use millrace_ir::{Attr, Attributes};
        let concat = millrace_ops::registry::Registry::global()
            .get("Concat")
            .unwrap()(
            &Attributes::new("Concat", vec![("axis".to_string(), Attr::Int(0))]),
            17,
        )
        .unwrap();
        let mut g = Graph::new("t");
        let x = g.add_value("x", ValueType::concrete(DType::F32, &[5]));
        let u = ValueType::unknown;
        let (a, b, c, d) = (
            g.add_value("a", u()),
            g.add_value("b", u()),
            g.add_value("c", u()),
            g.add_value("d", u()),
        );
        g.add_node("a", Arc::new(Axpy(2.0)), vec![Some(x)], vec![a]);
        g.add_node("b", Arc::new(Axpy(-1.0)), vec![Some(x)], vec![b]);
        g.add_node("c", concat, vec![Some(a), Some(b)], vec![c]);
        g.add_node("d", Arc::new(Axpy(1.0)), vec![Some(c)], vec![d]);
        g.inputs = vec![x];
        g.outputs = vec![d];
        g.infer_types().unwrap();
        let xs = vec![1.0f32, -2.0, 3.0, 0.5, 4.0];
        let x = Tensor::from_vec(vec![5], xs.clone()).unwrap();
        let want: Vec<f32> = xs
            .iter()
            .map(|v| v * 2.0)
            .chain(xs.iter().map(|v| -v))
            .collect();
        for parallel in [false, true] {
            let plan = Plan::build(&g, Some(parallel), 2);
            assert_eq!(plan.steps[2].exec, Exec::Alias);
            assert_eq!(plan.memory().copies, 0);
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            let states = RunStates::default();
            for _ in 0..2 {
                assert_eq!(pool.install(|| run(&plan, &states, &x)), want);
            }
        }
    }
}
