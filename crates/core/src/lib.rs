//! millrace-core: the vocabulary every other crate shares.
//!
//! [`DType`] names an element type, [`Tensor`] owns a dense row-major buffer of one dtype,
//! and [`Dim`] is a dimension that is either known or symbolic (`batch`, `seq`).
//! This crate depends on nothing else of ours.

mod dtype;
mod shape;
mod tensor;

pub use dtype::{DType, Elem};
pub use half::{bf16, f16};
pub use shape::{broadcast_shapes, numel, strides_of, Dim};
pub use tensor::{Tensor, TensorData, TensorError};
