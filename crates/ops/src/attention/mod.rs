//! attention ops.
use crate::registry::Registry;

pub mod causal_conv;
pub mod common;
pub mod fused_attention;
pub mod linear_attention;
pub mod rotary;
pub mod sdpa;
pub mod tensor_scatter;

pub fn register(r: &mut Registry) {
    r.add("Attention", sdpa::Attention::from_onnx);
    r.add("RotaryEmbedding", rotary::RotaryEmbedding::from_onnx);
    r.add(
        "LinearAttention",
        linear_attention::LinearAttention::from_onnx,
    );
    r.add(
        "CausalConvWithState",
        causal_conv::CausalConvWithState::from_onnx,
    );
    r.add("TensorScatter", tensor_scatter::TensorScatter::from_onnx);
}
