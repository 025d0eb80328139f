//! Per-model-version counters and their Prometheus text exposition, with Triton's metric
//! names and `model` / `version` labels so existing Triton dashboards work.
//!
//! Counting rules (all counters only grow):
//! - `nv_inference_request_success` / `_failure`: requests that reached a known model version
//!   and succeeded / failed (bad input, queue full, timeout, model error, shutting down).
//! - `nv_inference_count`: inferences, i.e. rows (the first dimension of a batchable model's
//!   inputs, 1 otherwise) of successful requests; `nv_inference_exec_count`: model executions
//!   (batches, including requests re-run alone after a batch failed), so the average batch
//!   size is `count / exec_count`.
//! - Durations (microseconds, cumulative, successful requests only, as Triton): request (from
//!   `infer` to the answer), queue (waiting for a batch), and the compute input (concatenate),
//!   infer (run) and output (split) time of the batch each request was in.
//! - `nv_inference_pending_request_count`: requests queued and not yet taken into a batch.
//!
//! The hot path only does relaxed atomic adds; rendering reads each counter once.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Counters of one model version.
#[derive(Debug, Default)]
pub struct ModelMetrics {
    pub success: AtomicU64,
    pub failure: AtomicU64,
    pub inference_count: AtomicU64,
    pub exec_count: AtomicU64,
    pub request_us: AtomicU64,
    pub queue_us: AtomicU64,
    pub compute_input_us: AtomicU64,
    pub compute_infer_us: AtomicU64,
    pub compute_output_us: AtomicU64,
    pub pending: AtomicI64,
}

/// Timings of one answered request, measured by the batcher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    pub queue: Duration,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl ModelMetrics {
    /// Records a successful request of `rows` inferences.
    pub fn record_success(&self, rows: u64, total: Duration, t: &Timings) {
        let r = Ordering::Relaxed;
        self.success.fetch_add(1, r);
        self.inference_count.fetch_add(rows, r);
        self.request_us.fetch_add(us(total), r);
        self.queue_us.fetch_add(us(t.queue), r);
        self.compute_input_us.fetch_add(us(t.compute_input), r);
        self.compute_infer_us.fetch_add(us(t.compute_infer), r);
        self.compute_output_us.fetch_add(us(t.compute_output), r);
    }

    /// Records a failed request.
    pub fn record_failure(&self) {
        self.failure.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one model execution.
    pub fn record_exec(&self) {
        self.exec_count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Escapes a Prometheus label value.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

type Getter = fn(&ModelMetrics) -> i64;

/// (name, type, help, value) of every exported metric, in output order.
const METRICS: [(&str, &str, &str, Getter); 10] = [
    (
        "nv_inference_request_success",
        "counter",
        "Number of successful inference requests, all batch sizes",
        |m| m.success.load(Ordering::Relaxed) as i64,
    ),
    (
        "nv_inference_request_failure",
        "counter",
        "Number of failed inference requests, all batch sizes",
        |m| m.failure.load(Ordering::Relaxed) as i64,
    ),
    (
        "nv_inference_count",
        "counter",
        "Number of inferences performed (does not include cached requests)",
        |m| m.inference_count.load(Ordering::Relaxed) as i64,
    ),
    (
        "nv_inference_exec_count",
        "counter",
        "Number of model executions performed (does not include cached requests)",
        |m| m.exec_count.load(Ordering::Relaxed) as i64,
    ),
    (
        "nv_inference_request_duration_us",
        "counter",
        "Cumulative inference request duration in microseconds (includes cached requests)",
        |m| m.request_us.load(Ordering::Relaxed) as i64,
    ),
    (
        "nv_inference_queue_duration_us",
        "counter",
        "Cumulative inference queuing duration in microseconds (includes cached requests)",
        |m| m.queue_us.load(Ordering::Relaxed) as i64,
    ),
    (
        "nv_inference_compute_input_duration_us",
        "counter",
        "Cumulative compute input duration in microseconds (does not include cached requests)",
        |m| m.compute_input_us.load(Ordering::Relaxed) as i64,
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "counter",
        "Cumulative compute inference duration in microseconds (does not include cached requests)",
        |m| m.compute_infer_us.load(Ordering::Relaxed) as i64,
    ),
    (
        "nv_inference_compute_output_duration_us",
        "counter",
        "Cumulative inference compute output duration in microseconds (does not include cached requests)",
        |m| m.compute_output_us.load(Ordering::Relaxed) as i64,
    ),
    (
        "nv_inference_pending_request_count",
        "gauge",
        "Instantaneous number of pending requests awaiting execution per-model.",
        |m| m.pending.load(Ordering::Relaxed).max(0),
    ),
];

/// The Prometheus text exposition of `(model, version, metrics)`.
pub fn render<'a>(
    models: impl Iterator<Item = (&'a str, &'a str, &'a ModelMetrics)> + Clone,
) -> String {
    let mut out = String::new();
    for (name, kind, help, get) in METRICS {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (model, version, m) in models.clone() {
            let _ = writeln!(
                out,
                "{name}{{model=\"{}\",version=\"{}\"}} {}",
                escape(model),
                escape(version),
                get(m)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let a = ModelMetrics::default();
        a.record_success(
            3,
            Duration::from_micros(100),
            &Timings {
                queue: Duration::from_micros(10),
                compute_infer: Duration::from_micros(50),
                ..Timings::default()
            },
        );
        a.record_failure();
        a.record_exec();
        let b = ModelMetrics::default();
        let text = render([("m", "1", &a), ("q\"x", "2", &b)].into_iter());
        assert!(text.contains("# TYPE nv_inference_count counter\n"));
        assert!(text.contains("# TYPE nv_inference_pending_request_count gauge\n"));
        assert!(text.contains("nv_inference_count{model=\"m\",version=\"1\"} 3\n"));
        assert!(text.contains("nv_inference_request_failure{model=\"m\",version=\"1\"} 1\n"));
        assert!(
            text.contains("nv_inference_compute_infer_duration_us{model=\"m\",version=\"1\"} 50\n")
        );
        assert!(text.contains("nv_inference_count{model=\"q\\\"x\",version=\"2\"} 0\n"));
        assert_eq!(text.lines().filter(|l| l.starts_with("# HELP")).count(), 10);
    }
}
