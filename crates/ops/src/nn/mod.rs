//! nn ops: convolution, GEMM/MatMul, pooling, normalization, softmax.
use crate::registry::Registry;

pub mod common;
pub mod conv;

pub fn register(r: &mut Registry) {
    r.add("Conv", conv::Conv::from_onnx);
}
