//! loss ops.
use crate::registry::Registry;

pub mod common;
pub mod cum_prod;
pub mod det;
pub mod nll_loss;
pub mod rms_norm;
pub mod sce_loss;
pub mod shrink;
pub mod swish;

pub fn register(r: &mut Registry) {
    r.add(
        "NegativeLogLikelihoodLoss",
        nll_loss::NegativeLogLikelihoodLoss::from_onnx,
    );
    r.add(
        "SoftmaxCrossEntropyLoss",
        sce_loss::SoftmaxCrossEntropyLoss::from_onnx,
    );
    r.add("RMSNormalization", rms_norm::RMSNormalization::from_onnx);
    r.add("Swish", swish::Swish::from_onnx);
    r.add("Shrink", shrink::Shrink::from_onnx);
    r.add("CumProd", cum_prod::CumProd::from_onnx);
    r.add("Det", det::Det::from_onnx);
}
