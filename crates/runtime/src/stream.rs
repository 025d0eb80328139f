//! Pipelining across requests: a stream of frames flows through stages of the model at
//! the same time.
//!
//! [`CompiledModel::stream`] cuts the optimized graph (nodes in topological order) into K
//! contiguous stages of about equal cost and compiles each as its own sub-graph with its
//! own thread pool (the model's threads split across the stages). A [`Stream`] runs one
//! OS thread per stage, connected by bounded channels: while stage 2 works on frame 7,
//! stage 1 works on frame 8. Throughput approaches 1 / (slowest stage) instead of
//! 1 / (whole model); the latency of one frame is that of a plain run with fewer threads
//! per node, plus any time it queues between stages.
//!
//! What crosses a cut: the values a stage reads that earlier stages produced (or that are
//! graph inputs), and graph outputs produced early, which are carried to the end. Values
//! move between stages (no copy); constants stay in the stage that reads them, shared
//! through their `Arc` with the model. Cuts are never placed across a value that may be
//! a sequence or optional (produced by an op that [`Op::takes_values`](millrace_ir::Op)).
//!
//! Stage costs come from the op cost model ([`CompiledModel::estimated_node_costs`]:
//! FLOPs plus a bytes term) or from a profiled run ([`CompiledModel::measure_node_costs`]).
//!
//! Frames are delivered in submission order, each with its latency (submit to last
//! stage done) and its own result: an error in any stage fails that frame only, and a node
//! that panics fails only its frame (the stage carries on). Closing or dropping the stream
//! ends the stage threads after the frames in flight; should a stage thread end early
//! anyway, every frame still in flight comes back failed instead of hanging.
//!
//! ```no_run
//! # use millrace_runtime::{CompiledModel, StreamOptions};
//! # use millrace_core::Tensor;
//! # fn f(model: &CompiledModel, frames: Vec<Vec<(String, Tensor)>>) -> Result<(), millrace_runtime::Error> {
//! let mut stream = model.stream(&StreamOptions { stages: 2, ..StreamOptions::default() })?;
//! for out in stream.run_all(frames) {
//!     println!("frame {} in {:?}: {:?}", out.frame, out.latency, out.outputs?.len());
//! }
//! # Ok(()) }
//! ```
use crate::error::Error;
use crate::plan::StepTiming;
use crate::session::{CompiledModel, IoInfo};
use millrace_core::{Dim, Tensor};
use millrace_ir::{Graph, Value, ValueId, ValueKind};
use millrace_schedule::{allowed_cuts, balanced_ranges};
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How to build a [`Stream`].
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// Number of stages (at least 1, at most the number of places the graph can be cut + 1).
    pub stages: usize,
    /// Threads for all stages together; `None` uses the model's threads. Split evenly
    /// (the first stages get the remainder); every stage gets at least one.
    pub threads: Option<usize>,
    /// Frames that may wait between two stages (channel depth, at least 1).
    pub depth: usize,
    /// Cost of each node of [`CompiledModel::graph`], in any unit; `None` uses
    /// [`CompiledModel::estimated_node_costs`].
    pub node_costs: Option<Vec<f64>>,
    /// Time every node of every frame (outputs must then be tensors).
    pub profile: bool,
}

impl Default for StreamOptions {
    fn default() -> StreamOptions {
        StreamOptions {
            stages: 2,
            threads: None,
            depth: 1,
            node_costs: None,
            profile: false,
        }
    }
}

/// One stage of a stream, as planned.
#[derive(Clone, Debug)]
pub struct StageInfo {
    /// The stage's nodes: indices into [`CompiledModel::graph`]'s node list.
    pub nodes: Range<usize>,
    /// Its share of the total estimated cost (0..=1).
    pub share: f64,
    /// Threads in its pool.
    pub threads: usize,
    /// Names of the values it receives from earlier stages or the caller.
    pub inputs: Vec<String>,
    /// Names of the values it hands on (to later stages or as graph outputs).
    pub outputs: Vec<String>,
}

/// One frame's result.
#[derive(Debug)]
pub struct StreamOutput {
    /// The id [`Stream::submit`] returned (0, 1, 2, ... in submission order).
    pub frame: u64,
    /// The model's outputs in graph order, or why this frame failed.
    pub outputs: Result<Vec<(String, Tensor)>, Error>,
    /// From submit to the last stage finishing the frame.
    pub latency: Duration,
    /// With [`StreamOptions::profile`]: every node's timing, `frame` set to the frame id,
    /// `thread` a lane unique per stage worker, `start` from the stream's creation.
    pub timings: Vec<StepTiming>,
}

/// A compiled stage: its sub-model and how its values map to the whole graph.
struct Stage {
    model: CompiledModel,
    /// (value in the whole graph, input name in the sub-graph).
    inputs: Vec<(ValueId, String)>,
    /// Value in the whole graph of each sub-graph output, in order.
    outputs: Vec<ValueId>,
    /// Carried values no later stage (nor the final outputs) needs.
    drop_after: Vec<ValueId>,
    /// Index of its first node in the whole graph.
    first_node: usize,
    /// First thread lane of its pool.
    lane_base: usize,
}

/// The values of one frame between stages, keyed by value in the whole graph.
type Carry = HashMap<ValueId, Value>;

/// A frame in flight.
struct Frame {
    id: u64,
    submitted: Instant,
    state: Result<Carry, Error>,
    timings: Vec<StepTiming>,
}

/// What the last stage hands back.
struct Done {
    id: u64,
    latency: Duration,
    outputs: Result<Vec<(String, Tensor)>, Error>,
    timings: Vec<StepTiming>,
}

/// Frames flowing through the stages of a model at the same time. See the module docs.
pub struct Stream {
    input: Option<SyncSender<Frame>>,
    output: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
    stages: Vec<StageInfo>,
    model_inputs: Vec<IoInfo>,
    next_id: u64,
    next_out: u64,
    /// (name, value in the whole graph) of each runtime input.
    input_ids: Vec<(String, ValueId)>,
}

impl CompiledModel {
    /// Cuts the model into stages and starts a [`Stream`] over them.
    pub fn stream(&self, opts: &StreamOptions) -> Result<Stream, Error> {
        let g = self.graph();
        let costs = match &opts.node_costs {
            Some(c) if c.len() != g.nodes.len() => {
                return Err(Error::Invalid(format!(
                    "node_costs has {} entries; the model has {} nodes",
                    c.len(),
                    g.nodes.len()
                )))
            }
            Some(c) => c.iter().map(|&x| x.max(0.0)).collect(),
            None => self.estimated_node_costs(),
        };
        if opts.depth == 0 {
            return Err(Error::Invalid("stream depth must be at least 1".into()));
        }
        let bounds = balanced_ranges(&costs, &allowed_cuts(g), opts.stages)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let threads = split_threads(opts.threads.unwrap_or(self.threads()).max(1), bounds.len());
        let (stages, infos) =
            build_stages(g, &bounds, &threads, &costs, self.schedule(), self.idle())?;
        Ok(Stream::start(
            stages,
            infos,
            self.inputs(),
            g,
            opts.depth,
            opts.profile,
        ))
    }

    /// Estimated cost of each node (in FLOP-equivalents): FLOPs + 4 x bytes moved + a
    /// fixed per-node overhead, from the op cost model at the compiled shapes.
    pub fn estimated_node_costs(&self) -> Vec<f64> {
        let g = self.graph();
        g.nodes
            .iter()
            .map(|n| {
                let c = g.node_cost(n);
                c.flops as f64 + 4.0 * (c.bytes_read + c.bytes_written) as f64 + 1e4
            })
            .collect()
    }

    /// Measured cost of each node: the shortest of its times (seconds) over `runs`
    /// profiled runs on `inputs` (after one untimed run). The minimum, not the median:
    /// on a busy machine other work only ever adds time.
    pub fn measure_node_costs(
        &self,
        inputs: &[(String, Tensor)],
        runs: usize,
    ) -> Result<Vec<f64>, Error> {
        let n = self.graph().nodes.len();
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); n];
        self.run_named(inputs)?;
        for _ in 0..runs.max(1) {
            let (_, steps) = self.run_named_profiled(inputs)?;
            for s in steps {
                if let Some(t) = times.get_mut(s.step) {
                    t.push(s.time.as_secs_f64());
                }
            }
        }
        Ok(times
            .into_iter()
            .map(|t| t.into_iter().fold(f64::INFINITY, f64::min))
            .map(|t| if t.is_finite() { t } else { 0.0 })
            .collect())
    }
}

/// `total` threads over `k` stages: even, the first stages get the remainder, at least 1.
fn split_threads(total: usize, k: usize) -> Vec<usize> {
    (0..k)
        .map(|i| (total / k + usize::from(i < total % k)).max(1))
        .collect()
}

/// Builds and compiles one sub-graph per stage.
fn build_stages(
    g: &Graph,
    bounds: &[Range<usize>],
    threads: &[usize],
    costs: &[f64],
    schedule: crate::session::Schedule,
    idle: crate::IdleWorkers,
) -> Result<(Vec<Stage>, Vec<StageInfo>), Error> {
    let k = bounds.len();
    let cut = g
        .stage_graphs(bounds)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let is_output: HashSet<ValueId> = g.outputs.iter().copied().collect();
    let last_stage = &cut.last_reader;
    let total: f64 = costs.iter().sum();
    let mut stages = Vec::with_capacity(k);
    let mut infos = Vec::with_capacity(k);
    let mut lane_base = 0;
    // Values a frame carries between stages: runtime inputs, then stage outputs.
    let mut carried: Vec<ValueId> = g.runtime_inputs().collect();
    for (s, (range, part)) in bounds.iter().zip(cut.stages).enumerate() {
        let sub = part.graph;
        // Each input with the name it has in the stage's graph.
        let inputs: Vec<(ValueId, String)> = part
            .inputs
            .iter()
            .zip(&sub.inputs)
            .map(|(&v, &id)| (v, sub.value(id).name.clone()))
            .collect();
        let outputs = part.outputs;
        // After this stage, drop carried values nobody later reads (graph outputs stay).
        carried.extend(outputs.iter().copied());
        let needed_later =
            |v: &ValueId| is_output.contains(v) || last_stage.get(v).is_some_and(|&l| l > s);
        let drop_after: Vec<ValueId> = carried
            .iter()
            .copied()
            .filter(|v| !needed_later(v))
            .collect();
        carried.retain(needed_later);
        let info = StageInfo {
            nodes: range.clone(),
            share: if total > 0.0 {
                costs[range.clone()].iter().sum::<f64>() / total
            } else {
                0.0
            },
            threads: threads[s],
            inputs: inputs
                .iter()
                .map(|(v, _)| g.value(*v).name.clone())
                .collect(),
            outputs: outputs.iter().map(|v| g.value(*v).name.clone()).collect(),
        };
        let model = CompiledModel::from_optimized(sub, threads[s], schedule, idle)?;
        stages.push(Stage {
            model,
            inputs,
            outputs,
            drop_after,
            first_node: range.start,
            lane_base,
        });
        lane_base += threads[s];
        infos.push(info);
    }
    Ok((stages, infos))
}

/// Checks a frame's inputs against the model's: names, count, dtype, shape.
fn check_frame(model_inputs: &[IoInfo], inputs: &[(String, Tensor)]) -> Result<(), Error> {
    let expected = || {
        model_inputs
            .iter()
            .map(|i| i.name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (k, (name, t)) in inputs.iter().enumerate() {
        let Some(info) = model_inputs.iter().find(|i| &i.name == name) else {
            return Err(Error::UnknownInput {
                name: name.clone(),
                expected: expected(),
            });
        };
        if inputs[..k].iter().any(|(n, _)| n == name) {
            return Err(Error::DuplicateInput { name: name.clone() });
        }
        if info.kind != ValueKind::Tensor {
            return Err(Error::Invalid(format!(
                "input `{name}` must be a {:?}; streams take tensor inputs",
                info.kind
            )));
        }
        if let Some(dt) = info.dtype {
            if dt != t.dtype() {
                return Err(Error::InputDType {
                    name: name.clone(),
                    expected: dt,
                    got: t.dtype(),
                });
            }
        }
        if let Some(decl) = &info.shape {
            let fits = decl.len() == t.shape().len()
                && decl.iter().zip(t.shape()).all(|(d, &n)| match d {
                    Dim::Known(k) => *k == n,
                    _ => true,
                });
            if !fits {
                return Err(Error::InputShape {
                    name: name.clone(),
                    expected: millrace_ir::ValueType {
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                    }
                    .to_string(),
                    got: t.shape().to_vec(),
                });
            }
        }
    }
    for info in model_inputs {
        if !inputs.iter().any(|(n, _)| n == &info.name) {
            return Err(Error::MissingInput {
                name: info.name.clone(),
                ty: millrace_ir::ValueType {
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                }
                .to_string(),
            });
        }
    }
    Ok(())
}

impl Stage {
    /// Runs this stage on a frame's carried values.
    fn run(
        &self,
        index: usize,
        carry: &mut Carry,
        profile: Option<(&mut Vec<StepTiming>, Instant, u64)>,
    ) -> Result<(), Error> {
        let mut feeds: Vec<(&str, &Value)> = Vec::with_capacity(self.inputs.len());
        for (v, name) in &self.inputs {
            let val = carry.get(v).ok_or_else(|| {
                Error::Internal(format!("stage {index}: input `{name}` is not in the frame"))
            })?;
            feeds.push((name.as_str(), val));
        }
        let outs: Vec<Value> = match profile {
            None => self
                .model
                .run_values(&feeds)?
                .into_iter()
                .map(|(_, v)| v)
                .collect(),
            Some((timings, origin, frame)) => {
                let tensors = feeds
                    .iter()
                    .map(|(n, v)| match v {
                        Value::Tensor(t) => Ok((*n, t)),
                        other => Err(Error::Invalid(format!(
                            "`{n}` is a {}; profiled streams need tensors",
                            other.kind()
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let t0 = Instant::now();
                let (outs, steps) = self.model.run_profiled(&tensors)?;
                let base = t0.duration_since(origin);
                timings.extend(steps.into_iter().map(|mut st| {
                    st.step += self.first_node;
                    st.start += base;
                    st.thread += self.lane_base;
                    st.frame = frame as usize;
                    st
                }));
                outs.into_iter().map(|(_, t)| Value::Tensor(t)).collect()
            }
        };
        if outs.len() != self.outputs.len() {
            return Err(Error::Internal(format!(
                "stage {index} returned {} values, expected {}",
                outs.len(),
                self.outputs.len()
            )));
        }
        for v in &self.drop_after {
            carry.remove(v);
        }
        for (v, val) in self.outputs.iter().zip(outs) {
            carry.insert(*v, val);
        }
        Ok(())
    }
}

/// Panic payload as text.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl Stream {
    fn start(
        stages: Vec<Stage>,
        stages_info: Vec<StageInfo>,
        model_inputs: Vec<IoInfo>,
        g: &Graph,
        depth: usize,
        profile: bool,
    ) -> Stream {
        let origin = Instant::now();
        let (input_tx, rx) = sync_channel::<Frame>(depth);
        let mut rx = Some(rx);
        let (out_tx, out_rx) = channel::<Done>();
        let last = stages.len() - 1;
        // Final outputs: (name, value, constant if it is one).
        let final_outputs: Vec<(String, ValueId, Option<Tensor>)> = g
            .outputs
            .iter()
            .map(|&v| {
                (
                    g.value(v).name.clone(),
                    v,
                    g.constant(v).map(|c| c.as_ref().clone()),
                )
            })
            .collect();
        let mut threads = Vec::with_capacity(stages.len());
        for (index, stage) in stages.into_iter().enumerate() {
            let Some(input) = rx.take() else {
                break;
            };
            let next: Result<SyncSender<Frame>, Sender<Done>> = if index == last {
                Err(out_tx.clone())
            } else {
                let (tx, r) = sync_channel::<Frame>(depth);
                rx = Some(r);
                Ok(tx)
            };
            let finals = (index == last).then(|| final_outputs.clone());
            let handle = std::thread::Builder::new()
                .name(format!("millrace-stage-{index}"))
                .spawn(move || {
                    stage_loop(index, stage, input, next, finals, profile, origin);
                });
            match handle {
                Ok(h) => threads.push(h),
                // Could not start a thread: the channels close and frames fail.
                Err(_) => break,
            }
        }
        // Only the last stage's clone of the output sender remains.
        drop(out_tx);
        Stream {
            input: Some(input_tx),
            output: out_rx,
            threads,
            stages: stages_info,
            model_inputs,
            next_id: 0,
            next_out: 0,
            input_ids: g
                .runtime_inputs()
                .map(|v| (g.value(v).name.clone(), v))
                .collect(),
        }
    }

    /// The stages: nodes, estimated cost share, threads, values crossing each cut.
    pub fn stages(&self) -> &[StageInfo] {
        &self.stages
    }

    /// Frames submitted and not yet received.
    pub fn in_flight(&self) -> usize {
        (self.next_id - self.next_out) as usize
    }

    /// Submits one frame and returns its id; blocks while the first stage's queue is full.
    /// A frame whose inputs are wrong fails in order: [`Stream::recv`] returns its error.
    pub fn submit(&mut self, inputs: Vec<(String, Tensor)>) -> Result<u64, Error> {
        let id = self.next_id;
        let state = check_frame(&self.model_inputs, &inputs).map(|()| {
            inputs
                .into_iter()
                .filter_map(|(name, t)| {
                    let v = self.model_input_id(&name)?;
                    Some((v, Value::Tensor(t)))
                })
                .collect::<Carry>()
        });
        let frame = Frame {
            id,
            submitted: Instant::now(),
            state,
            timings: Vec::new(),
        };
        let sender = self
            .input
            .as_ref()
            .ok_or_else(|| Error::Invalid("the stream is closed".into()))?;
        if sender.send(frame).is_err() {
            return Err(Error::Internal("the stream's stages have stopped".into()));
        }
        self.next_id += 1;
        Ok(id)
    }

    fn model_input_id(&self, name: &str) -> Option<ValueId> {
        self.input_ids
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// The next frame's result, in submission order; `None` when no frame is in flight.
    /// Blocks until it is ready.
    pub fn recv(&mut self) -> Option<StreamOutput> {
        if self.next_out >= self.next_id {
            return None;
        }
        let id = self.next_out;
        self.next_out += 1;
        // The output channel closes only when every stage thread has ended, so this
        // cannot wait forever.
        match self.output.recv() {
            Ok(d) => Some(StreamOutput {
                frame: d.id,
                outputs: d.outputs,
                latency: d.latency,
                timings: d.timings,
            }),
            Err(_) => Some(StreamOutput {
                frame: id,
                outputs: Err(Error::Internal(
                    "a stream stage stopped before finishing this frame".into(),
                )),
                latency: Duration::ZERO,
                timings: Vec::new(),
            }),
        }
    }

    /// Runs every frame through the stream, keeping at most `stages + 1` in flight, and
    /// returns the results in order. Per-frame latency then includes up to one frame of
    /// queueing before the first stage; [`Stream::run_all_window`] trades that off.
    pub fn run_all(&mut self, frames: Vec<Vec<(String, Tensor)>>) -> Vec<StreamOutput> {
        self.run_all_window(frames, self.stages.len() + 1)
    }

    /// Like [`Stream::run_all`] with at most `window` frames in flight (at least 1). A
    /// larger window hides uneven stages at the cost of latency.
    pub fn run_all_window(
        &mut self,
        frames: Vec<Vec<(String, Tensor)>>,
        window: usize,
    ) -> Vec<StreamOutput> {
        let window = window.max(1);
        let mut results = Vec::with_capacity(frames.len());
        // Frames submitted before this call and not yet received come back here too, first
        // and in order, so every frame is delivered exactly once.
        for inputs in frames {
            while self.in_flight() >= window {
                if let Some(r) = self.recv() {
                    results.push(r);
                }
            }
            if let Err(e) = self.submit(inputs) {
                // The stream is closed or broken: what is in flight fails too; report
                // this frame in its place.
                while let Some(r) = self.recv() {
                    results.push(r);
                }
                results.push(StreamOutput {
                    frame: self.next_id,
                    outputs: Err(e),
                    latency: Duration::ZERO,
                    timings: Vec::new(),
                });
                self.next_id += 1;
                self.next_out = self.next_id;
            }
        }
        while let Some(r) = self.recv() {
            results.push(r);
        }
        results
    }

    /// Stops taking frames, finishes those in flight (their results are dropped), and
    /// waits for the stage threads to end.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.input = None;
        // Drain so no stage blocks on a full queue (the output channel is unbounded, so
        // this only speeds things up), then join.
        while self.output.try_recv().is_ok() {}
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("stages", &self.stages)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One stage's thread: take frames, run them (or pass failed ones on), hand them on.
fn stage_loop(
    index: usize,
    stage: Stage,
    input: Receiver<Frame>,
    next: Result<SyncSender<Frame>, Sender<Done>>,
    finals: Option<Vec<(String, ValueId, Option<Tensor>)>>,
    profile: bool,
    origin: Instant,
) {
    while let Ok(mut frame) = input.recv() {
        if let Ok(carry) = &mut frame.state {
            let prof = profile.then_some((&mut frame.timings, origin, frame.id));
            let r = catch_unwind(AssertUnwindSafe(|| stage.run(index, carry, prof)));
            let err = match r {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(p) => Some(Error::Internal(format!(
                    "stream stage {index} panicked: {}",
                    panic_text(p.as_ref())
                ))),
            };
            if let Some(e) = err {
                frame.state = Err(e);
            }
        }
        let sent = match &next {
            Ok(tx) => tx.send(frame).is_ok(),
            Err(out) => {
                let finals = finals.as_deref().unwrap_or(&[]);
                let outputs = frame.state.and_then(|mut carry| {
                    finals
                        .iter()
                        .enumerate()
                        .map(|(k, (name, v, constant))| {
                            let again = finals[k + 1..].iter().any(|(_, w, _)| w == v);
                            let val = match constant {
                                Some(c) => Some(Value::Tensor(c.clone())),
                                None if again => carry.get(v).cloned(),
                                None => carry.remove(v),
                            };
                            match val {
                                Some(Value::Tensor(t)) => Ok((name.clone(), t)),
                                Some(other) => Err(Error::Invalid(format!(
                                    "output `{name}` is a {}; streams return tensors",
                                    other.kind()
                                ))),
                                None => Err(Error::Internal(format!(
                                    "output `{name}` was never computed"
                                ))),
                            }
                        })
                        .collect()
                });
                out.send(Done {
                    id: frame.id,
                    latency: frame.submitted.elapsed(),
                    outputs,
                    timings: frame.timings,
                })
                .is_ok()
            }
        };
        if !sent {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Schedule;
    use millrace_core::DType;
    use millrace_ir::{Attributes, InferCtx, Inputs, Op, OpError, ValueType};
    use millrace_ops::registry::Registry;
    use std::sync::Arc;

    fn op(t: &str) -> Arc<dyn Op> {
        Registry::global().get(t).unwrap()(&Attributes::new(t, vec![]), 17).unwrap()
    }

    /// Panics when run: a stage must turn that into an error for its frame.
    #[derive(Debug)]
    struct Boom;
    impl Op for Boom {
        fn name(&self) -> &'static str {
            "Boom"
        }
        fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
            Ok(vec![ctx.input(0)?.clone()])
        }
        fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
            let x = inputs.req(0)?;
            if x.to_f64_vec().ok().and_then(|v| v.first().copied()) < Some(-10.0) {
                panic!("boom");
            }
            Ok(vec![x.clone()])
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    /// a = x @ w; b = Relu(a); c = Boom(b + a); d = c * c. Outputs d and a (a is made in
    /// the first node and read again by the third). `x_shape: None` leaves x untyped.
    fn model(x_shape: Option<&[usize]>) -> CompiledModel {
        let mut g = Graph::new("t");
        let x_ty = match x_shape {
            Some(s) => ValueType::concrete(DType::F32, s),
            None => ValueType {
                dtype: Some(DType::F32),
                shape: None,
            },
        };
        let x = g.add_value("x", x_ty);
        let w = g.add_constant("w", Tensor::from_vec(vec![3, 4], vec![0.5f32; 12]).unwrap());
        let [a, b, s, c, d] =
            ["a", "b", "s", "c", "d"].map(|n| g.add_value(n, ValueType::unknown()));
        g.add_node("mm", op("MatMul"), vec![Some(x), Some(w)], vec![a]);
        g.add_node("relu", op("Relu"), vec![Some(a)], vec![b]);
        g.add_node("add", op("Add"), vec![Some(b), Some(a)], vec![s]);
        g.add_node("boom", Arc::new(Boom), vec![Some(s)], vec![c]);
        g.add_node("sq", op("Mul"), vec![Some(c), Some(c)], vec![d]);
        g.inputs = vec![x, w];
        g.outputs = vec![d, a];
        g.infer_types().unwrap();
        CompiledModel::from_optimized(g, 2, Schedule::Sequential, crate::IdleWorkers::Spin).unwrap()
    }

    fn frame(v: f32) -> Vec<(String, Tensor)> {
        let data = vec![v, 1.0, -2.0, 0.5, v, 3.0];
        vec![("x".into(), Tensor::from_vec(vec![2, 3], data).unwrap())]
    }

    fn opts(stages: usize) -> StreamOptions {
        StreamOptions {
            stages,
            // Equal costs: the split depends on nothing measured.
            node_costs: Some(vec![1.0; 5]),
            ..StreamOptions::default()
        }
    }

    #[test]
    fn stream_outputs_equal_plain_runs_for_every_stage_count() {
        let m = model(Some(&[2, 3]));
        let frames: Vec<_> = (0..7).map(|i| frame(i as f32 - 3.0)).collect();
        let want: Vec<_> = frames.iter().map(|f| m.run_named(f).unwrap()).collect();
        for k in 1..=5 {
            let mut s = m.stream(&opts(k)).unwrap();
            assert_eq!(s.stages().len(), k);
            let got = s.run_all(frames.clone());
            assert_eq!(got.len(), frames.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.frame, i as u64);
                let outs = g.outputs.as_ref().unwrap();
                assert_eq!(outs, w, "{k} stages, frame {i}");
                // `a`, made in the first stage, is delivered as the second output.
                assert_eq!(outs[1].0, "a");
            }
        }
    }

    #[test]
    fn values_crossing_cuts_and_early_outputs_are_carried() {
        let m = model(Some(&[2, 3]));
        let s = m.stream(&opts(2)).unwrap();
        let st = s.stages();
        // Equal costs, 2 + 3 or 3 + 2: the first best split is taken.
        assert_eq!((st[0].nodes.clone(), st[1].nodes.clone()), (0..2, 2..5));
        assert_eq!(st[1].inputs, ["b", "a"]);
        assert_eq!(st[0].outputs, ["a", "b"]);
        assert_eq!(st[1].outputs, ["d"]);
        let st = m.stream(&opts(3)).unwrap().stages().to_vec();
        // Two nodes at most per stage; `a` is made in the first.
        assert_eq!(st.iter().map(|s| s.nodes.len()).sum::<usize>(), 5);
        assert!(st[0].outputs.contains(&"a".to_string()));
        assert_eq!(st[0].inputs, vec!["x".to_string()]);
        assert_eq!(st.iter().map(|s| s.threads).collect::<Vec<_>>(), [1, 1, 1]);
    }

    #[test]
    fn bad_frames_fail_alone_and_later_frames_work() {
        let m = model(Some(&[2, 3]));
        let mut s = m.stream(&opts(3)).unwrap();
        let bad_shape = vec![(
            "x".into(),
            Tensor::from_vec(vec![3, 2], vec![0.0f32; 6]).unwrap(),
        )];
        let unknown = vec![(
            "y".into(),
            Tensor::from_vec(vec![2, 3], vec![0.0f32; 6]).unwrap(),
        )];
        let frames = vec![
            frame(1.0),
            bad_shape,
            frame(-99.0),
            unknown,
            vec![],
            frame(2.0),
        ];
        let got = s.run_all(frames);
        assert!(got[0].outputs.is_ok());
        assert!(
            matches!(got[1].outputs, Err(Error::InputShape { .. })),
            "{:?}",
            got[1].outputs
        );
        let panicked = got[2].outputs.as_ref().unwrap_err().to_string();
        assert!(panicked.contains("panicked: boom"), "{panicked}");
        assert!(matches!(got[3].outputs, Err(Error::UnknownInput { .. })));
        assert!(matches!(got[4].outputs, Err(Error::MissingInput { .. })));
        assert_eq!(
            got[5].outputs.as_ref().unwrap(),
            &m.run_named(&frame(2.0)).unwrap()
        );
        // The stream still works after all that.
        s.submit(frame(3.0)).unwrap();
        assert!(s.recv().unwrap().outputs.is_ok());
        assert!(s.recv().is_none());
    }

    #[test]
    fn errors_inside_a_stage_fail_that_frame() {
        // x untyped: a wrong inner dimension is found by MatMul in the first stage.
        let m = model(None);
        let mut s = m.stream(&opts(2)).unwrap();
        let wrong = vec![(
            "x".into(),
            Tensor::from_vec(vec![2, 2], vec![0.0f32; 4]).unwrap(),
        )];
        let got = s.run_all(vec![wrong, frame(1.0)]);
        assert!(
            matches!(got[0].outputs, Err(Error::Node { .. })),
            "{:?}",
            got[0].outputs
        );
        assert!(got[1].outputs.is_ok());
    }

    #[test]
    fn dropping_or_closing_mid_stream_does_not_hang() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let m = model(Some(&[2, 3]));
            let mut s = m.stream(&opts(3)).unwrap();
            for i in 0..4 {
                s.submit(frame(i as f32)).unwrap();
            }
            assert!(s.recv().unwrap().outputs.is_ok());
            drop(s);
            let mut s = m.stream(&opts(2)).unwrap();
            s.submit(frame(0.0)).unwrap();
            s.close();
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the stream hung on drop");
    }

    #[test]
    fn too_many_stages_are_rejected_clearly() {
        let m = model(Some(&[2, 3]));
        let e = m.stream(&opts(6)).unwrap_err().to_string();
        assert!(e.contains("at most 5 stages"), "{e}");
        assert!(m.stream(&opts(0)).is_err());
        let mut o = opts(2);
        o.node_costs = Some(vec![1.0; 3]);
        assert!(m.stream(&o).is_err());
    }

    #[test]
    fn profiled_streams_tag_frames_and_lanes() {
        let m = model(Some(&[2, 3]));
        let mut o = opts(2);
        o.profile = true;
        o.threads = Some(4);
        let mut s = m.stream(&o).unwrap();
        let got = s.run_all(vec![frame(1.0), frame(2.0)]);
        for (f, r) in got.iter().enumerate() {
            assert_eq!(r.timings.len(), 5);
            let steps: Vec<_> = r.timings.iter().map(|t| t.step).collect();
            assert_eq!(steps, [0, 1, 2, 3, 4]);
            assert!(r.timings.iter().all(|t| t.frame == f));
            // Stage 0 (nodes 0..2) runs on lanes 0-1, stage 1 on lanes 2-3.
            assert_eq!(s.stages()[0].nodes, 0..2);
            assert!(r.timings[..2].iter().all(|t| t.thread < 2));
            assert!(r.timings[2..].iter().all(|t| (2..4).contains(&t.thread)));
            assert!(r.timings[2].start >= r.timings[1].start + r.timings[1].time);
        }
    }

    #[test]
    fn threads_split_between_stages() {
        assert_eq!(split_threads(2, 2), [1, 1]);
        assert_eq!(split_threads(5, 2), [3, 2]);
        assert_eq!(split_threads(1, 3), [1, 1, 1]);
    }
}
