//! nn ops: convolution, GEMM/MatMul, pooling, normalization, softmax.
use crate::registry::Registry;

pub mod average_pool;
pub mod batch_norm;
pub mod common;
pub mod conv;
pub mod conv_transpose;
pub mod fused_conv;
pub mod fused_matmul;
pub mod gemm;
pub mod global_average_pool;
pub mod global_max_pool;
pub mod group_norm;
pub mod hardmax;
pub mod instance_norm;
pub mod layer_norm;
pub mod log_softmax;
pub mod lp_normalization;
pub mod lp_pool;
pub mod lrn;
pub mod matmul;
pub mod max_pool;
pub mod mvn;
pub mod pooling;
pub mod softmax;

pub fn register(r: &mut Registry) {
    r.add("Conv", conv::Conv::from_onnx);
    r.add("ConvTranspose", conv_transpose::ConvTranspose::from_onnx);
    r.add("Gemm", gemm::Gemm::from_onnx);
    r.add("MatMul", matmul::MatMul::from_onnx);
    r.add(
        "BatchNormalization",
        batch_norm::BatchNormalization::from_onnx,
    );
    r.add("MaxPool", max_pool::MaxPool::from_onnx);
    r.add("AveragePool", average_pool::AveragePool::from_onnx);
    r.add(
        "GlobalAveragePool",
        global_average_pool::GlobalAveragePool::from_onnx,
    );
    r.add("GlobalMaxPool", global_max_pool::GlobalMaxPool::from_onnx);
    r.add("Softmax", softmax::Softmax::from_onnx);
    r.add("LogSoftmax", log_softmax::LogSoftmax::from_onnx);
    r.add("Hardmax", hardmax::Hardmax::from_onnx);
    r.add("LRN", lrn::Lrn::from_onnx);
    r.add("LpPool", lp_pool::LpPool::from_onnx);
    r.add(
        "LpNormalization",
        lp_normalization::LpNormalization::from_onnx,
    );
    r.add(
        "MeanVarianceNormalization",
        mvn::MeanVarianceNormalization::from_onnx,
    );
    r.add(
        "LayerNormalization",
        layer_norm::LayerNormalization::from_onnx,
    );
    r.add(
        "InstanceNormalization",
        instance_norm::InstanceNormalization::from_onnx,
    );
    r.add(
        "GroupNormalization",
        group_norm::GroupNormalization::from_onnx,
    );
}
