//! Devices as the planner sees them: what a device can run, how long it takes, how much
//! memory it has, and what it costs to move tensors over its link to the host.
//!
//! The host CPU is one device; accelerators (the simulated NPU of `millrace-npu`, CUDA GPUs)
//! are others.

pub mod device;

pub use device::{Device, DeviceKind, HostLink};
