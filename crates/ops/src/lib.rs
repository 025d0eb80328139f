//! millrace-ops: one file per operator.
//!
//! Each op file holds the op's struct (its parsed attributes), its constructor from ONNX
//! attributes (`from_onnx`), and its [`millrace_ir::Op`] impl: shape inference, cost,
//! reference evaluation. Files are grouped by family; each family's `mod.rs` registers
//! its ops in the [`registry::Registry`], one line per op.
//!
//! Nothing here may panic on input from a model or a request: every problem is an
//! [`millrace_ir::OpError`]. Unsupported cases are errors, never approximations.

// Test reference values are written out in full on purpose.
#![cfg_attr(test, allow(clippy::approx_constant, clippy::excessive_precision))]

pub mod attention;
pub mod control;
pub mod elementwise;
pub mod loss;
pub mod nn;
pub mod planned;
pub mod quant;
pub mod reduce;
pub mod registry;
pub mod rnn;
pub mod sequence;
pub mod signal;
pub mod tensor;
pub mod util;

#[cfg(test)]
pub(crate) mod into_check;

pub use registry::{Builder, Registry};
