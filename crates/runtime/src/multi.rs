//! Multi-device parallelism on the host: groups of CPU cores acting as separate devices,
//! each a [`CompiledModel`] with its own thread pool (the threads split between groups).
//!
//! - **Data parallel** ([`Model::compile_data_parallel`]): a batch of `N` rows is split
//!   along dimension 0 into `K` contiguous slices, sized in proportion to each group's speed
//!   (its threads, or speeds the caller measured, e.g. with
//!   [`DataParallel::measure_row_times`]); each group's model is compiled for its slice, the
//!   slices run at the same time, and the outputs are concatenated along dimension 0. Every
//!   input and output must have the batch as its first dimension. Each group holds its own
//!   copy of the (prepacked) weights: `K` times the weight memory.
//! - **Pipeline parallel** ([`Model::compile_pipeline_parallel`]): the model compiled for a
//!   micro-batch of `M` rows is cut into `K` stages on separate pools (a
//!   [`Stream`](crate::Stream)); a batch of `N` rows becomes `N / M` micro-batches that flow
//!   through the stages as frames, stage 2 working on micro-batch 1 while stage 1 works on
//!   micro-batch 2, and the outputs are concatenated in order.
//!
//! Both compute what one model on all threads computes, up to the summation order of
//! kernels run on fewer threads (the tests hold them to a relative L2 error of 1e-5).
use crate::error::Error;
use crate::session::{default_threads, CompileOptions, CompiledModel, Model};
use crate::stream::{StageInfo, Stream, StreamOptions};
use millrace_core::Tensor;
use std::ops::Range;
use std::sync::Mutex;
use std::time::Instant;

/// How to build a [`DataParallel`].
#[derive(Clone, Debug, Default)]
pub struct DataParallelOptions {
    /// Number of groups (at least 1, at most the threads and the batch).
    pub groups: usize,
    /// Threads for all groups together; `None` uses the compile options' threads, else the
    /// machine's. Split evenly, the first groups taking the remainder.
    pub threads: Option<usize>,
    /// Relative speed of each group (rows per second, any scale); `None` weighs groups by
    /// their threads.
    pub speeds: Option<Vec<f64>>,
}

/// One group of a [`DataParallel`] model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// Threads in its pool.
    pub threads: usize,
    /// The rows of the batch it computes.
    pub rows: Range<usize>,
}

/// A model whose batch is split across CPU thread groups that run at the same time.
pub struct DataParallel {
    groups: Vec<(CompiledModel, Range<usize>)>,
    batch: usize,
}

/// How to build a [`PipelineParallel`].
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Number of stages (thread groups).
    pub stages: usize,
    /// Threads for all stages together; `None` as for [`DataParallelOptions::threads`].
    pub threads: Option<usize>,
    /// Rows per micro-batch (must divide the batch); `None`: batch / stages, rounded down
    /// to a divisor of the batch.
    pub micro_batch: Option<usize>,
    /// Micro-batches in flight at once (`None`: stages + 1).
    pub in_flight: Option<usize>,
    /// Cost per node of the micro-batch model to balance stages by; `None` uses the
    /// estimated costs.
    pub node_costs: Option<Vec<f64>>,
}

impl Default for PipelineOptions {
    fn default() -> PipelineOptions {
        PipelineOptions {
            stages: 2,
            threads: None,
            micro_batch: None,
            in_flight: None,
            node_costs: None,
        }
    }
}

/// A model cut into stages on separate thread groups, a batch flowing through them as
/// micro-batches.
pub struct PipelineParallel {
    stream: Mutex<Stream>,
    micro: CompiledModel,
    micro_batch: usize,
    batch: usize,
    in_flight: usize,
}

/// Splits `total` threads into `k` groups (the first take the remainder).
fn split_threads(total: usize, k: usize) -> Vec<usize> {
    (0..k)
        .map(|i| (total / k + usize::from(i < total % k)).max(1))
        .collect()
}

/// `n` rows split in proportion to `weights` (largest remainder), in order.
fn split_rows(n: usize, weights: &[f64]) -> Vec<Range<usize>> {
    let sum: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| n as f64 * w / sum).collect();
    let mut rows: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let mut left = n - rows.iter().sum::<usize>().min(n);
    for &i in order.iter().cycle().take(weights.len() * 2) {
        if left == 0 {
            break;
        }
        rows[i] += 1;
        left -= 1;
    }
    let mut start = 0;
    rows.iter()
        .map(|&r| {
            let range = start..start + r;
            start += r;
            range
        })
        .collect()
}

/// The batch every runtime input shares as its first dimension, from the compile options.
fn batch_of(model: &Model, opts: &CompileOptions) -> Result<usize, Error> {
    let mut batch = None;
    for i in model.inputs() {
        let Some(shape) = opts.input_shapes.get(&i.name) else {
            return Err(Error::Invalid(format!(
                "splitting a batch needs every input's shape: give one for `{}`",
                i.name
            )));
        };
        let Some(&b) = shape.first() else {
            return Err(Error::Invalid(format!(
                "input `{}` is a scalar: it has no batch dimension to split",
                i.name
            )));
        };
        match batch {
            None => batch = Some(b),
            Some(prev) if prev != b => {
                return Err(Error::Invalid(format!(
                    "inputs disagree on the batch (first dimension): {prev} and {b} (`{}`)",
                    i.name
                )))
            }
            _ => {}
        }
    }
    batch.ok_or_else(|| Error::Invalid("the model has no inputs to split".into()))
}

/// The compile options with the batch dimension of every input set to `rows`.
fn with_batch(opts: &CompileOptions, rows: usize, threads: usize) -> CompileOptions {
    let mut o = opts.clone();
    for s in o.input_shapes.values_mut() {
        if let Some(first) = s.first_mut() {
            *first = rows;
        }
    }
    o.threads = Some(threads);
    o
}

/// Rows `r` of input `name` along dimension 0.
fn slice_rows(name: &str, t: &Tensor, r: &Range<usize>) -> Result<Tensor, Error> {
    millrace_ops::tensor::rows::slice_rows(&format!("input {name}"), t, r).map_err(Error::Invalid)
}

/// Concatenates the outputs of several parts along dimension 0, output by output.
fn concat_outputs(parts: Vec<Vec<(String, Tensor)>>) -> Result<Vec<(String, Tensor)>, Error> {
    millrace_ops::tensor::rows::concat_rows(parts).map_err(Error::Invalid)
}

impl Model {
    /// Compiles the model once per thread group, each for its rows of the batch. `opts`
    /// must give every input's shape; their first dimension is the batch. See the module
    /// docs.
    pub fn compile_data_parallel(
        &self,
        opts: &CompileOptions,
        dp: &DataParallelOptions,
    ) -> Result<DataParallel, Error> {
        let batch = batch_of(self, opts)?;
        let k = dp.groups;
        let total = dp
            .threads
            .or(opts.threads)
            .unwrap_or_else(default_threads)
            .max(1);
        if k == 0 {
            return Err(Error::Invalid(
                "data parallelism needs at least one group".into(),
            ));
        }
        if k > total {
            return Err(Error::Invalid(format!(
                "{k} groups need at least {k} threads; {total} given"
            )));
        }
        if k > batch {
            return Err(Error::Invalid(format!(
                "a batch of {batch} cannot be split across {k} groups"
            )));
        }
        let threads = split_threads(total, k);
        let weights: Vec<f64> = match &dp.speeds {
            Some(s) if s.len() != k => {
                return Err(Error::Invalid(format!(
                    "{} speeds given for {k} groups",
                    s.len()
                )))
            }
            Some(s) if s.iter().any(|x| !(x.is_finite() && *x > 0.0)) => {
                return Err(Error::Invalid(
                    "group speeds must be positive numbers".into(),
                ))
            }
            Some(s) => s.clone(),
            None => threads.iter().map(|&t| t as f64).collect(),
        };
        let rows = split_rows(batch, &weights);
        if let Some(i) = rows.iter().position(|r| r.is_empty()) {
            return Err(Error::Invalid(format!(
                "group {i} would get no rows of the batch of {batch}; use fewer groups or a larger batch"
            )));
        }
        let mut groups = Vec::with_capacity(k);
        for (r, &t) in rows.into_iter().zip(&threads) {
            let m = self.compile(&with_batch(opts, r.len(), t))?;
            for o in m.outputs() {
                let first = o
                    .shape
                    .as_ref()
                    .and_then(|s| s.first())
                    .and_then(|d| d.known());
                if first != Some(r.len()) {
                    return Err(Error::Invalid(format!(
                        "output `{o}` does not have the batch ({} rows in this group) as its first dimension, so the batch cannot be split",
                        r.len()
                    )));
                }
            }
            groups.push((m, r));
        }
        Ok(DataParallel { groups, batch })
    }

    /// Compiles the model for one micro-batch and cuts it into stages on separate thread
    /// groups. `opts` must give every input's shape; their first dimension is the batch.
    pub fn compile_pipeline_parallel(
        &self,
        opts: &CompileOptions,
        pp: &PipelineOptions,
    ) -> Result<PipelineParallel, Error> {
        let batch = batch_of(self, opts)?;
        if pp.stages == 0 {
            return Err(Error::Invalid("a pipeline needs at least one stage".into()));
        }
        let micro_batch = match pp.micro_batch {
            Some(0) => return Err(Error::Invalid("the micro-batch must be at least 1".into())),
            Some(m) if batch % m != 0 => {
                return Err(Error::Invalid(format!(
                    "a micro-batch of {m} does not divide the batch of {batch}"
                )))
            }
            Some(m) => m,
            None => {
                let target = (batch / pp.stages).max(1);
                (1..=target).rev().find(|m| batch % m == 0).unwrap_or(1)
            }
        };
        let total = pp
            .threads
            .or(opts.threads)
            .unwrap_or_else(default_threads)
            .max(1);
        let micro = self.compile(&with_batch(opts, micro_batch, total))?;
        let stream = micro.stream(&StreamOptions {
            stages: pp.stages,
            threads: Some(total),
            node_costs: pp.node_costs.clone(),
            ..StreamOptions::default()
        })?;
        let in_flight = pp.in_flight.unwrap_or(pp.stages + 1);
        if in_flight == 0 {
            return Err(Error::Invalid(
                "at least one micro-batch must be in flight".into(),
            ));
        }
        Ok(PipelineParallel {
            stream: Mutex::new(stream),
            micro,
            micro_batch,
            batch,
            in_flight,
        })
    }
}

/// Checks a batch's inputs and cuts them into the given row ranges.
fn split_inputs(
    inputs: &[(&str, &Tensor)],
    batch: usize,
    ranges: &[Range<usize>],
) -> Result<Vec<Vec<(String, Tensor)>>, Error> {
    for (name, t) in inputs {
        if t.shape().first() != Some(&batch) {
            return Err(Error::Invalid(format!(
                "input `{name}` has shape {:?}; this model was split for a batch of {batch} (first dimension)",
                t.shape()
            )));
        }
    }
    ranges
        .iter()
        .map(|r| {
            inputs
                .iter()
                .map(|(n, t)| Ok((n.to_string(), slice_rows(n, t, r)?)))
                .collect()
        })
        .collect()
}

impl DataParallel {
    /// Runs the batch: each group its rows, all at once; outputs in graph order.
    pub fn run(&self, inputs: &[(&str, &Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        let ranges: Vec<Range<usize>> = self.groups.iter().map(|(_, r)| r.clone()).collect();
        let parts = split_inputs(inputs, self.batch, &ranges)?;
        let results: Vec<Result<Vec<(String, Tensor)>, Error>> = std::thread::scope(|s| {
            let mut handles = Vec::new();
            let mut it = self.groups.iter().zip(&parts);
            let first = it.next();
            for ((m, _), part) in it {
                handles.push(s.spawn(move || m.run_named(part)));
            }
            let mut out = vec![match first {
                Some(((m, _), part)) => m.run_named(part),
                None => Ok(Vec::new()),
            }];
            for h in handles {
                out.push(h.join().unwrap_or_else(|_| {
                    Err(Error::Invalid("a data-parallel group panicked".into()))
                }));
            }
            out
        });
        concat_outputs(results.into_iter().collect::<Result<Vec<_>, _>>()?)
    }

    /// Like [`DataParallel::run`] with owned names.
    pub fn run_named(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
        self.run(&refs)
    }

    /// Seconds per row of each group, running alone on its rows of `inputs` (the shortest
    /// of `runs` runs after one untimed run). Their inverses are speeds for
    /// [`DataParallelOptions::speeds`].
    pub fn measure_row_times(
        &self,
        inputs: &[(String, Tensor)],
        runs: usize,
    ) -> Result<Vec<f64>, Error> {
        let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let ranges: Vec<Range<usize>> = self.groups.iter().map(|(_, r)| r.clone()).collect();
        let parts = split_inputs(&refs, self.batch, &ranges)?;
        self.groups
            .iter()
            .zip(&parts)
            .map(|((m, r), part)| {
                m.run_named(part)?;
                let mut best = f64::INFINITY;
                for _ in 0..runs.max(1) {
                    let t = Instant::now();
                    m.run_named(part)?;
                    best = best.min(t.elapsed().as_secs_f64());
                }
                Ok(best / r.len() as f64)
            })
            .collect()
    }

    /// The groups: threads and rows of each.
    pub fn groups(&self) -> Vec<GroupInfo> {
        self.groups
            .iter()
            .map(|(m, r)| GroupInfo {
                threads: m.threads(),
                rows: r.clone(),
            })
            .collect()
    }

    /// The batch the model was split for.
    pub fn batch(&self) -> usize {
        self.batch
    }
}

impl PipelineParallel {
    /// Runs the batch as micro-batches through the stages; outputs in graph order.
    /// Concurrent callers take turns (one batch flows at a time).
    pub fn run(&self, inputs: &[(&str, &Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        let ranges: Vec<Range<usize>> = (0..self.batch / self.micro_batch)
            .map(|i| i * self.micro_batch..(i + 1) * self.micro_batch)
            .collect();
        let frames = split_inputs(inputs, self.batch, &ranges)?;
        let mut stream = self
            .stream
            .lock()
            .map_err(|_| Error::Invalid("the pipeline's stream lock is poisoned".into()))?;
        let outs = stream.run_all_window(frames, self.in_flight);
        drop(stream);
        let parts = outs
            .into_iter()
            .map(|o| o.outputs)
            .collect::<Result<Vec<_>, _>>()?;
        concat_outputs(parts)
    }

    /// Like [`PipelineParallel::run`] with owned names.
    pub fn run_named(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
        self.run(&refs)
    }

    /// The stages as planned (node ranges of [`PipelineParallel::micro_model`]'s graph,
    /// cost shares, threads).
    pub fn stages(&self) -> Vec<StageInfo> {
        self.stream
            .lock()
            .map(|s| s.stages().to_vec())
            .unwrap_or_default()
    }

    /// The model compiled for one micro-batch, whose graph the stages cut.
    pub fn micro_model(&self) -> &CompiledModel {
        &self.micro
    }

    /// Rows per micro-batch.
    pub fn micro_batch(&self) -> usize {
        self.micro_batch
    }

    /// The batch the model was compiled for.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Micro-batches in flight at once.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_weights() {
        let r = split_rows(4, &[1.0, 1.0]);
        assert_eq!(r, vec![0..2, 2..4]);
        let r = split_rows(10, &[3.0, 1.0]);
        assert_eq!(r, vec![0..8, 8..10]); // 7.5 / 2.5: the remainder goes to the first
        let r = split_rows(5, &[1.0, 1.0, 1.0]);
        assert_eq!(r.iter().map(|r| r.len()).sum::<usize>(), 5);
        assert_eq!(r.last().map(|r| r.end), Some(5));
    }

    #[test]
    fn rows_slice_and_join_back() {
        let t = Tensor::from_vec(vec![4, 2], (0..8).map(|x| x as f32).collect()).unwrap();
        let a = slice_rows("x", &t, &(0..1)).unwrap();
        let b = slice_rows("x", &t, &(1..4)).unwrap();
        assert_eq!(b.shape(), &[3, 2]);
        let out =
            concat_outputs(vec![vec![("y".to_string(), a)], vec![("y".to_string(), b)]]).unwrap();
        assert_eq!(out[0].1, t);
        assert!(slice_rows("x", &t, &(3..5)).is_err());
    }
}
