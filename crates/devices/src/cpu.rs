//! The host CPU (or a group of its cores) as a [`Device`]: runs every op, in host memory,
//! with a roofline time per node.
//!
//! A node of `f` FLOPs that reads and writes `b` bytes takes
//! `overhead + max(f / peak_flops, b / bandwidth)` on the group, where `peak_flops` and
//! `bandwidth` are the whole group's rates (the CLI passes the FMA peak and triad bandwidth
//! measured with `millrace_kernels::peak` on that many threads, as `millrace profile` does).
//! The measured FMA peak is an upper bound: real convolutions reach part of it, so the
//! estimate is optimistic for the CPU by the same factor for every node.
use crate::device::{Device, DeviceKind, HostLink};
use crate::DeviceError;
use millrace_ir::{Graph, NodeId};

/// Fixed cost of dispatching one node on the CPU, seconds (scheduling, fork/join).
pub const DEFAULT_NODE_OVERHEAD_S: f64 = 5e-6;

/// The host CPU, or `threads` of its cores acting as one device.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuDevice {
    name: String,
    threads: usize,
    peak_flops: f64,
    bandwidth: f64,
    node_overhead_s: f64,
}

impl CpuDevice {
    /// A CPU group of `threads` cores reaching `peak_flops` FLOP/s and `bandwidth` bytes/s
    /// together. Rates must be positive and finite.
    pub fn new(
        name: impl Into<String>,
        threads: usize,
        peak_flops: f64,
        bandwidth: f64,
    ) -> Result<CpuDevice, DeviceError> {
        let name = name.into();
        if threads == 0 {
            return Err(DeviceError::Invalid(format!(
                "device `{name}`: a CPU group needs at least one thread"
            )));
        }
        for (what, x) in [("peak FLOP/s", peak_flops), ("bandwidth", bandwidth)] {
            if !(x > 0.0 && x.is_finite()) {
                return Err(DeviceError::Invalid(format!(
                    "device `{name}`: {what} must be a positive number, got {x}"
                )));
            }
        }
        Ok(CpuDevice {
            name,
            threads,
            peak_flops,
            bandwidth,
            node_overhead_s: DEFAULT_NODE_OVERHEAD_S,
        })
    }

    /// A CPU group with rates assumed rather than measured: 80 GFLOP/s per thread (about
    /// one AVX-512 core at half its peak) and 12 GB/s per thread up to 20 GB/s in all, the
    /// defaults of `millrace_schedule::Machine`.
    pub fn with_default_rates(
        name: impl Into<String>,
        threads: usize,
    ) -> Result<CpuDevice, DeviceError> {
        let t = threads.max(1) as f64;
        CpuDevice::new(name, threads, 80e9 * t, (12e9 * t).min(20e9))
    }

    /// Sets the fixed per-node cost (seconds, finite, at least 0).
    pub fn with_node_overhead(mut self, seconds: f64) -> Result<CpuDevice, DeviceError> {
        if !(seconds >= 0.0 && seconds.is_finite()) {
            return Err(DeviceError::Invalid(format!(
                "device `{}`: node overhead must be a finite number >= 0, got {seconds}",
                self.name
            )));
        }
        self.node_overhead_s = seconds;
        Ok(self)
    }

    /// Threads in the group.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The group's peak rate, FLOP/s.
    pub fn peak_flops(&self) -> f64 {
        self.peak_flops
    }

    /// The group's memory bandwidth, bytes/s.
    pub fn bandwidth(&self) -> f64 {
        self.bandwidth
    }

    /// Roofline seconds for `flops` and `bytes`.
    pub fn time(&self, flops: u64, bytes: u64) -> f64 {
        self.node_overhead_s + (flops as f64 / self.peak_flops).max(bytes as f64 / self.bandwidth)
    }
}

impl Device for CpuDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DeviceKind {
        DeviceKind::Cpu
    }

    fn supports(&self, _graph: &Graph, _node: NodeId) -> Result<(), String> {
        Ok(())
    }

    fn node_time(&self, graph: &Graph, node: NodeId) -> f64 {
        let Some(n) = graph.nodes.get(node.index()) else {
            return 0.0;
        };
        let c = graph.node_cost(n);
        self.time(c.flops, c.bytes_read.saturating_add(c.bytes_written))
    }

    fn memory_bytes(&self) -> Option<u64> {
        None
    }

    fn link(&self) -> Option<HostLink> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roofline_takes_the_slower_bound() {
        let d = CpuDevice::new("cpu", 4, 100e9, 10e9)
            .unwrap()
            .with_node_overhead(0.0)
            .unwrap();
        // Compute-bound: 1 GFLOP, 1 MB -> 10 ms vs 0.1 ms.
        assert!((d.time(1_000_000_000, 1_000_000) - 0.01).abs() < 1e-12);
        // Memory-bound: 1 MFLOP, 100 MB -> 10 ms.
        assert!((d.time(1_000_000, 100_000_000) - 0.01).abs() < 1e-12);
        assert!(d.is_host());
        assert_eq!(d.upload_time(1 << 20), 0.0);
    }

    #[test]
    fn bad_rates_are_errors() {
        assert!(CpuDevice::new("cpu", 0, 1e9, 1e9).is_err());
        assert!(CpuDevice::new("cpu", 1, 0.0, 1e9).is_err());
        assert!(CpuDevice::new("cpu", 1, 1e9, f64::NAN).is_err());
        assert!(CpuDevice::with_default_rates("cpu", 2)
            .unwrap()
            .with_node_overhead(-1.0)
            .is_err());
    }
}
