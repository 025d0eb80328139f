//! LogSoftmax (ONNX opsets 1, 11, 13): `x - max - log(sum(exp(x - max)))` along `axis`
//! (coerced to 2-D before opset 13). Implemented by [`super::softmax::Softmax`].
use super::softmax::{Kind, Softmax};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

pub struct LogSoftmax;

impl LogSoftmax {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Softmax::parse(Kind::LogSoftmax, attrs, opset)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::conv::tests::attrs;
    use millrace_core::Tensor;
    use millrace_ir::{Attr, Inputs};

    #[test]
    fn stable_log_probabilities() {
        let op =
            LogSoftmax::from_onnx(&attrs("LogSoftmax", vec![("axis", Attr::Int(-1))]), 13).unwrap();
        assert_eq!(op.name(), "LogSoftmax");
        let t = Tensor::from_vec(vec![1, 2], vec![1000.0f64, 1000.0]).unwrap();
        let y = op.eval(&Inputs::new("LogSoftmax", &[Some(&t)])).unwrap();
        for v in y[0].as_slice::<f64>().unwrap() {
            assert!((v + 2f64.ln()).abs() < 1e-12);
        }
    }
}
