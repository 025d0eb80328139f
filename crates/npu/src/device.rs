//! The simulated NPU as a [`millrace_devices::Device`], so the partitioner can place nodes on
//! it: a node is supported when lowering does not send it to the host, and its time is the
//! simulated time of the node alone with the compiler's tiling (weights streamed).
use crate::config::NpuConfig;
use crate::lower::{self, Work};
use millrace_devices::{Device, DeviceKind, HostLink};
use millrace_ir::{Graph, NodeId};

/// A simulated NPU card.
#[derive(Clone, Debug)]
pub struct NpuDevice {
    name: String,
    cfg: NpuConfig,
}

impl NpuDevice {
    /// A device named `name` (`npu0`) described by `cfg`.
    pub fn new(name: impl Into<String>, cfg: NpuConfig) -> NpuDevice {
        NpuDevice {
            name: name.into(),
            cfg,
        }
    }

    /// Its description.
    pub fn config(&self) -> &NpuConfig {
        &self.cfg
    }
}

impl Device for NpuDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DeviceKind {
        DeviceKind::Npu
    }

    fn supports(&self, graph: &Graph, node: NodeId) -> Result<(), String> {
        let Some(n) = graph.nodes.get(node.index()) else {
            return Err(format!("no node #{}", node.index()));
        };
        match lower::node_work(graph, n, &self.cfg).work {
            Work::Host { reason } => Err(reason),
            _ => Ok(()),
        }
    }

    fn node_time(&self, graph: &Graph, node: NodeId) -> f64 {
        let Some(n) = graph.nodes.get(node.index()) else {
            return f64::INFINITY;
        };
        let w = lower::node_work(graph, n, &self.cfg);
        match &w.work {
            Work::Free => 0.0,
            Work::Host { .. } => f64::INFINITY,
            _ => {
                let budget = lower::tile_budget(&self.cfg, 0);
                match lower::choose_tiling(&w, &self.cfg, budget, true) {
                    Some((_, cycles)) => self.cfg.seconds(cycles),
                    None => f64::INFINITY,
                }
            }
        }
    }

    fn memory_bytes(&self) -> Option<u64> {
        Some(self.cfg.dram_bytes)
    }

    fn link(&self) -> Option<HostLink> {
        Some(self.cfg.host_link())
    }
}
