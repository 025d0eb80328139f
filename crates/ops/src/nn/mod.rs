//! nn ops: convolution, GEMM/MatMul, pooling, normalization, softmax.
use crate::registry::Registry;

pub mod common;
pub mod conv;
pub mod gemm;
pub mod matmul;

pub fn register(r: &mut Registry) {
    r.add("Conv", conv::Conv::from_onnx);
    r.add("Gemm", gemm::Gemm::from_onnx);
    r.add("MatMul", matmul::MatMul::from_onnx);
}
