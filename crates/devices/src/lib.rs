//! Devices as the planner sees them: what a device can run, how long it takes, how much
//! memory it has, and what it costs to move tensors over its link to the host.
//!
//! The host CPU is one device ([`CpuDevice`], or several: groups of its cores);
//! accelerators (the simulated NPU of `millrace-npu`, CUDA GPUs) are others.
//! [`partition`] places every node of an optimized graph on one of them, inserting the
//! copies device boundaries need, and estimates the latency of the result.

pub mod cpu;
pub mod device;
pub mod partition;

pub use cpu::CpuDevice;
pub use device::{Device, DeviceKind, HostLink};
pub use partition::{
    partition, DeviceSummary, Fallback, Location, PartitionOptions, Placement, Transfer,
};

/// Why a device could not be built or a graph could not be placed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeviceError {
    /// A bad device description or argument.
    #[error("{0}")]
    Invalid(String),
    /// The device list has no host device to fall back to and hold inputs and outputs.
    #[error("no host device among the devices: add `cpu` (graph inputs and outputs live on the host, and nodes no accelerator takes fall back to it)")]
    NoHost,
    /// No device can run a node.
    #[error("node `{node}` ({op}) runs on none of the devices: {reasons}")]
    Unplaceable {
        node: String,
        op: String,
        reasons: String,
    },
}
