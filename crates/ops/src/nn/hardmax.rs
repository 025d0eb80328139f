//! Hardmax (ONNX opsets 1, 11, 13): 1 at the first maximum along `axis`, 0 elsewhere
//! (coerced to 2-D before opset 13). Implemented by [`super::softmax::Softmax`].
use super::softmax::{Kind, Softmax};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

pub struct Hardmax;

impl Hardmax {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Softmax::parse(Kind::Hardmax, attrs, opset)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::conv::tests::attrs;
    use millrace_core::Tensor;
    use millrace_ir::{Attr, Inputs};

    #[test]
    fn first_maximum_wins() {
        let op = Hardmax::from_onnx(&attrs("Hardmax", vec![("axis", Attr::Int(0))]), 13).unwrap();
        let t = Tensor::from_vec(vec![3, 2], vec![1.0f32, 5.0, 3.0, 5.0, 3.0, 0.0]).unwrap();
        let y = op.eval(&Inputs::new("Hardmax", &[Some(&t)])).unwrap();
        assert_eq!(
            y[0].as_slice::<f32>().unwrap(),
            &[0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
        );
        // Opset 11, axis 0: one hot over the whole flattened tensor.
        let op = Hardmax::from_onnx(&attrs("Hardmax", vec![("axis", Attr::Int(0))]), 11).unwrap();
        let y = op.eval(&Inputs::new("Hardmax", &[Some(&t)])).unwrap();
        assert_eq!(
            y[0].as_slice::<f32>().unwrap(),
            &[0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
        );
    }
}
