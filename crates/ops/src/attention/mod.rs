//! attention ops.
use crate::registry::Registry;

pub mod common;
pub mod rotary;
pub mod sdpa;
pub mod tensor_scatter;

pub fn register(r: &mut Registry) {
    r.add("Attention", sdpa::Attention::from_onnx);
    r.add("RotaryEmbedding", rotary::RotaryEmbedding::from_onnx);
    r.add("TensorScatter", tensor_scatter::TensorScatter::from_onnx);
}
