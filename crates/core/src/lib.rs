//! millrace-core: the vocabulary every other crate shares.
//!
//! [`DType`] names an element type, [`Tensor`] owns a dense row-major buffer of one dtype,
//! and [`Dim`] is a dimension that is either known or symbolic (`batch`, `seq`).
//! This crate depends on nothing else of ours.

mod dtype;
mod shape;
pub mod small_floats;
mod tensor;

pub use dtype::{DType, Elem};
pub use half::{bf16, f16};
pub use shape::{broadcast_shapes, numel, strides_of, Dim};
pub use small_floats::{
    E8M0Round, F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F8E8M0, I2, I4, U2, U4,
};
pub use tensor::{Tensor, TensorData, TensorError};
