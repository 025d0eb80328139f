//! Reduce ops: Reduce*, ArgMax/ArgMin, TopK, Resize/Upsample, Einsum and friends.
use crate::registry::Registry;

pub mod argmax;
pub mod argmin;
pub mod common;
pub mod einsum;
pub mod reduce_l1;
pub mod reduce_l2;
pub mod reduce_log_sum;
pub mod reduce_log_sum_exp;
pub mod reduce_max;
pub mod reduce_mean;
pub mod reduce_min;
pub mod reduce_prod;
pub mod reduce_sum;
pub mod reduce_sum_square;
pub mod resize;
pub mod topk;
pub mod upsample;

pub fn register(r: &mut Registry) {
    r.add("ArgMax", argmax::ArgMax::from_onnx);
    r.add("ArgMin", argmin::ArgMin::from_onnx);
    r.add("Einsum", einsum::Einsum::from_onnx);
    r.add("ReduceL1", reduce_l1::ReduceL1::from_onnx);
    r.add("ReduceL2", reduce_l2::ReduceL2::from_onnx);
    r.add("ReduceLogSum", reduce_log_sum::ReduceLogSum::from_onnx);
    r.add(
        "ReduceLogSumExp",
        reduce_log_sum_exp::ReduceLogSumExp::from_onnx,
    );
    r.add("ReduceMax", reduce_max::ReduceMax::from_onnx);
    r.add("ReduceMean", reduce_mean::ReduceMean::from_onnx);
    r.add("ReduceMin", reduce_min::ReduceMin::from_onnx);
    r.add("ReduceProd", reduce_prod::ReduceProd::from_onnx);
    r.add("ReduceSum", reduce_sum::ReduceSum::from_onnx);
    r.add("Resize", resize::Resize::from_onnx);
    r.add("TopK", topk::TopK::from_onnx);
    r.add("Upsample", upsample::Upsample::from_onnx);
    r.add(
        "ReduceSumSquare",
        reduce_sum_square::ReduceSumSquare::from_onnx,
    );
}
