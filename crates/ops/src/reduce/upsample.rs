//! Upsample (ONNX opsets 7, 9; deprecated at 10): nearest or linear upsampling by `scales`
//! (attribute at opset 7, input from 9) with asymmetric coordinates.
use super::resize::Resize;
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

/// Builder for `Upsample`; the op itself is a [`Resize`] named `Upsample`.
#[derive(Clone, Debug, PartialEq)]
pub struct Upsample;

impl Upsample {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Resize::upsample(attrs, opset)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_core::Tensor;
    use millrace_ir::{Attr, Inputs};

    fn s(v: &str) -> Attr {
        Attr::String(v.as_bytes().to_vec())
    }

    #[test]
    fn cases() {
        // ONNX test upsample_nearest (opset 9): 1x1x2x2 scales [1,1,2,3].
        let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![1f32, 2., 3., 4.]).unwrap();
        let sc = Tensor::from_vec(vec![4], vec![1f32, 1., 2., 3.]).unwrap();
        let a = Attributes::new("Upsample", vec![("mode".into(), s("nearest"))]);
        let op = Resize::upsample(&a, 9).unwrap();
        let y = op
            .eval(&Inputs::new("Upsample", &[Some(&x), Some(&sc)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[1, 1, 4, 6]);
        assert_eq!(
            &y[0].as_slice::<f32>().unwrap()[..6],
            &[1., 1., 1., 2., 2., 2.]
        );
        // Opset 7 linear with the scales attribute: [1, 3] x2 -> [1, 2, 3, 3].
        let x = Tensor::from_vec(vec![2], vec![1f32, 3.]).unwrap();
        let a = Attributes::new(
            "Upsample",
            vec![
                ("mode".into(), s("linear")),
                ("scales".into(), Attr::Floats(vec![2.0])),
            ],
        );
        let op = Resize::upsample(&a, 7).unwrap();
        let y = op.eval(&Inputs::new("Upsample", &[Some(&x)])).unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[1., 2., 3., 3.]);
    }

    #[test]
    fn errors() {
        let a = Attributes::new("Upsample", vec![]);
        assert!(Upsample::from_onnx(&a, 7).is_err());
        let a = Attributes::new("Upsample", vec![("mode".into(), s("cubic"))]);
        assert!(Upsample::from_onnx(&a, 9).is_err());
        let op = Resize::upsample(&Attributes::new("Upsample", vec![]), 9).unwrap();
        let x = Tensor::from_vec(vec![2], vec![1f32, 3.]).unwrap();
        let sc = Tensor::from_vec(vec![1], vec![0.5f32]).unwrap();
        assert!(op
            .eval(&Inputs::new("Upsample", &[Some(&x), Some(&sc)]))
            .is_err());
    }
}
