//! millrace-kernels: CPU compute kernels.
//!
//! Kernels take slices and dimensions and write into output buffers they are given; they
//! never allocate their outputs and know nothing of graphs or ONNX.

pub mod activation;
pub mod conv;
pub mod depthwise;
pub mod dgemm;
pub mod gemm;
pub mod peak;
pub mod pool;
pub mod vmath;
pub mod winograd;
