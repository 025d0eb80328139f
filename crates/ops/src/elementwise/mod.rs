//! Elementwise ops: unary math, activations, binary arithmetic and comparison, Cast.
use crate::registry::Registry;

pub mod relu;

pub fn register(r: &mut Registry) {
    r.add("Relu", relu::Relu::from_onnx);
}
