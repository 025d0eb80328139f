//! Dynamic batching: a bounded queue per model version and worker threads (instances) that
//! combine compatible requests into one execution.
//!
//! One worker at a time *forms* a batch: it takes the oldest live request, then collects
//! queued requests that can join it (same inputs, dtypes and shapes except the first
//! dimension) until the batch has `max_batch_size` rows, reaches a preferred size with nothing
//! else to join, or the oldest request has waited the batch delay. It then hands the forming
//! role on and runs the batch while another worker forms the next one, so `instances` batches
//! run at once. Inputs are concatenated along dimension 0, outputs split back along it.
//!
//! Robustness: a request whose client went away or whose deadline passed while queued is
//! never run (the latter is answered with a timeout); if a batch of several requests fails
//! (or panics, or returns an output that cannot be split), each request is re-run alone so
//! one bad request cannot fail the others; every request taken from the queue is answered
//! exactly once. After [`Batcher::shutdown`] no request is accepted, the batch delay is no
//! longer waited for, and the workers exit once the queue is empty.

use std::collections::{BTreeSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use millrace::{DType, Tensor, TensorData};
use millrace_core::{with_data, Elem};
use tokio::sync::oneshot;

use crate::error::ServeError;
use crate::metrics::{ModelMetrics, Timings};

/// Runs a model on named inputs (all outputs, in the model's order). Implemented by the
/// served model version; tests substitute their own.
pub trait Runner: Send + Sync + 'static {
    fn run(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, ServeError>;
}

/// What a request must share with others to join their batch: each input's name, dtype and
/// shape without the first dimension.
pub type BatchKey = Vec<(String, DType, Vec<usize>)>;

/// How a model version's queue batches.
#[derive(Clone, Debug)]
pub struct BatchPolicy {
    /// Largest batch in rows; requests are combined only when `combine` is set.
    pub max_batch_size: usize,
    /// Whether requests are combined at all.
    pub combine: bool,
    /// How long the oldest request of a forming batch waits for others.
    pub delay: Duration,
    /// Batch sizes that run at once when reached.
    pub preferred: BTreeSet<usize>,
    /// Requests that may wait; `None`: no limit.
    pub max_queue_size: Option<usize>,
}

/// A successful answer with how long its parts took.
#[derive(Debug)]
pub struct Done {
    pub outputs: Vec<(String, Tensor)>,
    pub timings: Timings,
}

/// The channel a request is answered on.
pub type Reply = oneshot::Sender<Result<Done, ServeError>>;

/// A queued request.
pub struct Job {
    /// Inputs in the model's declared order.
    pub inputs: Vec<(String, Tensor)>,
    /// Outputs wanted (empty: all).
    pub outputs: Vec<String>,
    /// Rows along the first dimension (1 for a model that does not batch).
    pub rows: usize,
    /// `Some` when the request may join others.
    pub key: Option<BatchKey>,
    pub enqueued: Instant,
    pub deadline: Option<Instant>,
    /// The timeout, for messages.
    pub timeout: Option<Duration>,
    pub reply: Reply,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    forming: bool,
    running: usize,
    stop: bool,
}

struct Shared {
    /// "model `m` version 1", for messages.
    label: String,
    policy: BatchPolicy,
    queue: Mutex<Queue>,
    cv: Condvar,
    metrics: Arc<ModelMetrics>,
    runner: Arc<dyn Runner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Workers never panic while holding the lock; if one did, the queue is still whole.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn timeout_error(&self, job: &Job) -> ServeError {
        let t = job
            .timeout
            .map(|t| format!(" after {} ms", t.as_millis()))
            .unwrap_or_default();
        ServeError::new(
            crate::error::ErrorKind::Timeout,
            format!(
                "the request to {} timed out{t} while waiting in the queue",
                self.label
            ),
        )
    }

    /// Removes a job from the queue's pending count.
    fn unqueue(&self) {
        self.metrics.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The queue and workers of one model version.
pub struct Batcher {
    shared: Arc<Shared>,
}

impl Batcher {
    /// Starts `instances` worker threads.
    pub fn start(
        label: String,
        policy: BatchPolicy,
        instances: usize,
        runner: Arc<dyn Runner>,
        metrics: Arc<ModelMetrics>,
    ) -> Result<Batcher, ServeError> {
        let shared = Arc::new(Shared {
            label,
            policy,
            queue: Mutex::new(Queue::default()),
            cv: Condvar::new(),
            metrics,
            runner,
        });
        for i in 0..instances.max(1) {
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("millrace-serve-{i}"))
                .spawn(move || worker(&s))
                .map_err(|e| {
                    shared.lock().stop = true;
                    shared.cv.notify_all();
                    ServeError::internal(format!(
                        "{}: cannot start a worker thread: {e}",
                        shared.label
                    ))
                })?;
        }
        Ok(Batcher { shared })
    }

    /// The batching policy.
    pub fn policy(&self) -> &BatchPolicy {
        &self.shared.policy
    }

    /// Queues a job, or refuses it when the queue is full or shut down.
    pub fn submit(&self, job: Job) -> Result<(), ServeError> {
        let s = &self.shared;
        let mut q = s.lock();
        if q.stop {
            return Err(ServeError::unavailable(format!(
                "{} is shutting down",
                s.label
            )));
        }
        if let Some(max) = s.policy.max_queue_size {
            if q.jobs.len() >= max {
                return Err(ServeError::unavailable(format!(
                    "the queue for {} is full ({max} requests waiting); retry later",
                    s.label
                )));
            }
        }
        q.jobs.push_back(job);
        s.metrics.pending.fetch_add(1, Ordering::Relaxed);
        drop(q);
        s.cv.notify_all();
        Ok(())
    }

    /// Stops accepting jobs; queued ones still run, then the workers exit.
    pub fn shutdown(&self) {
        self.shared.lock().stop = true;
        self.shared.cv.notify_all();
    }

    /// Whether jobs are queued or running.
    pub fn busy(&self) -> bool {
        let q = self.shared.lock();
        !q.jobs.is_empty() || q.running > 0 || q.forming
    }

    /// Requests waiting in the queue.
    pub fn queued(&self) -> usize {
        self.shared.lock().jobs.len()
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What the queue scan does with a job.
enum Take {
    Keep,
    Drop,
    Expired,
    Join,
}

fn worker(s: &Shared) {
    loop {
        let mut q = s.lock();
        loop {
            if q.stop && q.jobs.is_empty() {
                return;
            }
            if !q.forming && !q.jobs.is_empty() {
                break;
            }
            q = s.cv.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        q.forming = true;
        let (q, batch) = form(s, q);
        let mut q = q;
        q.forming = false;
        if !batch.is_empty() {
            q.running += 1;
        }
        drop(q);
        s.cv.notify_all();
        if batch.is_empty() {
            continue;
        }
        run_batch(s, batch);
        s.lock().running -= 1;
        s.cv.notify_all();
    }
}

/// Forms one batch (possibly empty when every queued job was dropped or expired).
fn form<'a>(s: &'a Shared, mut q: MutexGuard<'a, Queue>) -> (MutexGuard<'a, Queue>, Vec<Job>) {
    let now = Instant::now();
    let classify = |j: &Job, now: Instant| {
        if j.reply.is_closed() {
            Take::Drop
        } else if j.deadline.is_some_and(|d| d <= now) {
            Take::Expired
        } else {
            Take::Join
        }
    };
    // The oldest live job.
    let first = loop {
        let Some(j) = q.jobs.pop_front() else {
            return (q, Vec::new());
        };
        s.unqueue();
        match classify(&j, now) {
            Take::Drop | Take::Keep => {}
            Take::Expired => {
                let e = s.timeout_error(&j);
                let _ = j.reply.send(Err(e));
            }
            Take::Join => break j,
        }
    };
    let p = &s.policy;
    let mut rows = first.rows;
    let key = first.key.clone();
    let until = first.enqueued + p.delay;
    let mut batch = vec![first];
    let Some(key) = key.filter(|_| p.combine && p.max_batch_size > 0) else {
        return (q, batch);
    };
    loop {
        let now = Instant::now();
        let mut i = 0;
        // A compatible request too large for the rows left: the batch is as full as it can
        // get, and waiting cannot make it fuller (the delay is for requests not yet come).
        let mut full = false;
        while i < q.jobs.len() && rows < p.max_batch_size {
            let j = &q.jobs[i];
            let take = match classify(j, now) {
                Take::Join if j.key.as_ref() != Some(&key) => Take::Keep,
                Take::Join if rows + j.rows > p.max_batch_size => {
                    full = true;
                    Take::Keep
                }
                t => t,
            };
            if matches!(take, Take::Keep) {
                i += 1;
                continue;
            }
            let Some(j) = q.jobs.remove(i) else { break };
            s.unqueue();
            match take {
                Take::Expired => {
                    let e = s.timeout_error(&j);
                    let _ = j.reply.send(Err(e));
                }
                Take::Join => {
                    rows += j.rows;
                    batch.push(j);
                }
                Take::Drop | Take::Keep => {}
            }
        }
        if full || rows >= p.max_batch_size || q.stop || p.preferred.contains(&rows) {
            break;
        }
        let now = Instant::now();
        if now >= until {
            break;
        }
        q =
            s.cv.wait_timeout(q, until - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
    }
    (q, batch)
}

/// Runs the model, turning a panic into an error.
fn guarded_run(
    s: &Shared,
    inputs: &[(String, Tensor)],
) -> Result<Vec<(String, Tensor)>, ServeError> {
    s.metrics.record_exec();
    match catch_unwind(AssertUnwindSafe(|| s.runner.run(inputs))) {
        Ok(r) => r,
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(ServeError::internal(format!(
                "{} failed unexpectedly: {what}",
                s.label
            )))
        }
    }
}

fn answer(
    job: Job,
    outputs: Result<Vec<(String, Tensor)>, ServeError>,
    timings: Timings,
    label: &str,
) {
    let r = outputs.and_then(|o| {
        crate::state::select_outputs(label, o, &job.outputs)
            .map(|outputs| Done { outputs, timings })
    });
    let _ = job.reply.send(r);
}

fn run_alone(s: &Shared, job: Job, start: Instant) {
    let queue = start.saturating_duration_since(job.enqueued);
    let t0 = Instant::now();
    let r = guarded_run(s, &job.inputs);
    let t1 = Instant::now();
    let timings = Timings {
        queue,
        compute_infer: t1 - t0,
        ..Timings::default()
    };
    answer(job, r, timings, &s.label);
}

fn run_batch(s: &Shared, mut batch: Vec<Job>) {
    let start = Instant::now();
    // The batch delay may have outlived a deadline or a client.
    batch.retain(|j| !j.reply.is_closed());
    let (expired, batch): (Vec<Job>, Vec<Job>) = batch
        .into_iter()
        .partition(|j| j.deadline.is_some_and(|d| d <= start));
    for j in expired {
        let e = s.timeout_error(&j);
        let _ = j.reply.send(Err(e));
    }
    if batch.len() <= 1 {
        if let Some(j) = batch.into_iter().next() {
            run_alone(s, j, start);
        }
        return;
    }
    let t0 = Instant::now();
    let combined = concat_inputs(&batch);
    let t1 = Instant::now();
    let run = combined.and_then(|inputs| guarded_run(s, &inputs));
    let t2 = Instant::now();
    let rows: Vec<usize> = batch.iter().map(|j| j.rows).collect();
    let split = run.and_then(|outs| split_outputs(outs, &rows));
    let t3 = Instant::now();
    match split {
        Ok(parts) => {
            for (job, outputs) in batch.into_iter().zip(parts) {
                let timings = Timings {
                    queue: start.saturating_duration_since(job.enqueued),
                    compute_input: t1 - t0,
                    compute_infer: t2 - t1,
                    compute_output: t3 - t2,
                };
                answer(job, Ok(outputs), timings, &s.label);
            }
        }
        Err(_) => {
            // Find the culprit: each request alone, so the others still succeed.
            for job in batch {
                if job.reply.is_closed() {
                    continue;
                }
                run_alone(s, job, start);
            }
        }
    }
}

fn cat<T: Elem>(first: &[T], rest: &[&Tensor]) -> Option<TensorData> {
    let total = first.len() + rest.iter().map(|t| t.len()).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(first);
    for t in rest {
        out.extend_from_slice(T::slice(t.data())?);
    }
    Some(T::wrap(out))
}

/// Concatenates a tensor list along dimension 0 (same dtype, same trailing shape).
pub fn concat0(parts: &[&Tensor]) -> Result<Tensor, ServeError> {
    let Some((first, rest)) = parts.split_first() else {
        return Err(ServeError::internal("nothing to concatenate"));
    };
    if first.rank() == 0 {
        return Err(ServeError::internal("cannot concatenate scalars"));
    }
    let mut shape = first.shape().to_vec();
    for t in rest {
        if t.dtype() != first.dtype() || t.rank() != first.rank() || t.shape()[1..] != shape[1..] {
            return Err(ServeError::internal(format!(
                "cannot batch a {} {:?} tensor with a {} {:?} one",
                first.dtype(),
                first.shape(),
                t.dtype(),
                t.shape()
            )));
        }
        shape[0] += t.shape()[0];
    }
    let data = with_data!(first.data(), v => cat(v, rest))
        .ok_or_else(|| ServeError::internal("mixed dtypes in a batch"))?;
    Tensor::new(shape, data).map_err(|e| ServeError::internal(format!("batching inputs: {e}")))
}

fn slice_rows<T: Elem>(v: &[T], row_len: usize, rows: &[usize]) -> Vec<TensorData> {
    let mut at = 0;
    rows.iter()
        .map(|&r| {
            let n = r * row_len;
            let part = v[at..at + n].to_vec();
            at += n;
            T::wrap(part)
        })
        .collect()
}

/// Splits a tensor along dimension 0 into pieces of `rows` rows (which must add up).
pub fn split0(t: &Tensor, rows: &[usize]) -> Result<Vec<Tensor>, ServeError> {
    let total: usize = rows.iter().sum();
    if t.rank() == 0 || t.shape()[0] != total {
        return Err(ServeError::internal(format!(
            "an output of shape {:?} cannot be split into batches of {rows:?} rows",
            t.shape()
        )));
    }
    let row_len: usize = t.shape()[1..].iter().product();
    let datas = with_data!(t.data(), v => slice_rows(v, row_len, rows));
    datas
        .into_iter()
        .zip(rows)
        .map(|(d, &r)| {
            let mut shape = t.shape().to_vec();
            shape[0] = r;
            Tensor::new(shape, d)
                .map_err(|e| ServeError::internal(format!("splitting outputs: {e}")))
        })
        .collect()
}

fn concat_inputs(batch: &[Job]) -> Result<Vec<(String, Tensor)>, ServeError> {
    let first = &batch[0];
    first
        .inputs
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let parts: Vec<&Tensor> = batch
                .iter()
                .map(|j| match j.inputs.get(i) {
                    Some((n, t)) if n == name => Ok(t),
                    _ => Err(ServeError::internal(
                        "batched requests have different inputs",
                    )),
                })
                .collect::<Result<_, _>>()?;
            Ok((name.clone(), concat0(&parts)?))
        })
        .collect()
}

fn split_outputs(
    outs: Vec<(String, Tensor)>,
    rows: &[usize],
) -> Result<Vec<Vec<(String, Tensor)>>, ServeError> {
    let mut per_job: Vec<Vec<(String, Tensor)>> = rows.iter().map(|_| Vec::new()).collect();
    for (name, t) in outs {
        for (dst, piece) in per_job.iter_mut().zip(split0(&t, rows)?) {
            dst.push((name.clone(), piece));
        }
    }
    Ok(per_job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_and_split_round_trip() {
        let a = Tensor::from_vec(vec![1, 2], vec![1i64, 2]).unwrap();
        let b = Tensor::from_vec(vec![2, 2], vec![3i64, 4, 5, 6]).unwrap();
        let c = concat0(&[&a, &b]).unwrap();
        assert_eq!(c.shape(), &[3, 2]);
        assert_eq!(c.to_i64_vec().unwrap(), vec![1, 2, 3, 4, 5, 6]);
        let parts = split0(&c, &[1, 2]).unwrap();
        assert_eq!(parts[0], a);
        assert_eq!(parts[1], b);
        assert!(split0(&c, &[1, 1]).is_err());
        let s = Tensor::from_vec(vec![1, 1], vec!["x".to_string()]).unwrap();
        assert!(concat0(&[&a, &s]).is_err());
        let d = Tensor::from_vec(vec![1, 3], vec![1i64, 2, 3]).unwrap();
        assert!(concat0(&[&a, &d]).is_err());
    }
}
