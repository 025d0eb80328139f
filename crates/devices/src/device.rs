//! The device interface: what the partitioner asks of a device (support, time per node,
//! memory, and the cost of moving tensors over its link to the host).

use millrace_ir::{Graph, NodeId};

/// What kind of hardware a device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// The host CPU (or a group of its cores).
    Cpu,
    /// A neural processing unit (matrix unit, vector unit, on-chip SRAM).
    Npu,
    /// A CUDA GPU.
    Cuda,
}

/// The link between the host and a device (PCIe or similar).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostLink {
    /// Sustained bandwidth in bytes per second, each direction.
    pub bandwidth: f64,
    /// Fixed cost of one transfer in seconds.
    pub latency: f64,
}

impl HostLink {
    /// Seconds to move `bytes` across the link (one transfer).
    pub fn transfer_time(&self, bytes: u64) -> f64 {
        if bytes == 0 {
            return 0.0;
        }
        self.latency + bytes as f64 / self.bandwidth
    }
}

/// A device the partitioner can place nodes on.
pub trait Device: Send + Sync {
    /// A short unique name (`cpu`, `npu0`).
    fn name(&self) -> &str;
    /// What it is.
    fn kind(&self) -> DeviceKind;
    /// `Ok` when the device can run `node` of `graph` (types inferred), else why not.
    fn supports(&self, graph: &Graph, node: NodeId) -> Result<(), String>;
    /// Estimated seconds to run `node` with its inputs already in device memory.
    fn node_time(&self, graph: &Graph, node: NodeId) -> f64;
    /// Bytes of device memory; `None` for the host.
    fn memory_bytes(&self) -> Option<u64>;
    /// The device's link to the host; `None` for the host itself.
    fn link(&self) -> Option<HostLink>;

    /// Whether the device computes in host memory (no link to cross): the host CPU or a
    /// group of its cores.
    fn is_host(&self) -> bool {
        self.link().is_none()
    }

    /// Seconds to move a tensor of `bytes` from host memory into device memory (zero for
    /// the host). Devices whose uploads cost more than one link transfer (staging, layout
    /// conversion) override this.
    fn upload_time(&self, bytes: u64) -> f64 {
        self.link().map_or(0.0, |l| l.transfer_time(bytes))
    }

    /// Seconds to move a tensor of `bytes` from device memory back to host memory (zero for
    /// the host).
    fn download_time(&self, bytes: u64) -> f64 {
        self.link().map_or(0.0, |l| l.transfer_time(bytes))
    }
}
