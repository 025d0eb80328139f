//! ThresholdedRelu (ONNX opsets 10, 22): `x` if `x > alpha` else 0 (alpha 1), elementwise for float dtypes.
use super::unary::{Float, FloatKernel};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct ThresholdedRelu {
    pub alpha: f32,
}

impl Default for ThresholdedRelu {
    fn default() -> Self {
        ThresholdedRelu { alpha: 1.0 }
    }
}

impl ThresholdedRelu {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let op = ThresholdedRelu {
            alpha: attrs.float_or("alpha", 1.0)?,
        };
        Ok(Arc::new(op))
    }
}

impl FloatKernel for ThresholdedRelu {
    fn apply<F: Float>(&self, x: F) -> F {
        if x > F::c(self.alpha as f64) {
            x
        } else {
            F::c(0.0)
        }
    }

    fn attrs(&self) -> String {
        format!("alpha={}", self.alpha)
    }
}

crate::float_op_impl!(ThresholdedRelu, 1);

#[cfg(test)]
mod tests {
    use super::super::testutil::{build, close, run, t, vals};
    use super::*;
    use millrace_ir::Attr;

    #[test]
    fn default_attributes() {
        let x = t::<f32>(&[4], vec![0.5, 1.0, 1.5, -3.0]);
        let op = build(ThresholdedRelu::from_onnx, "ThresholdedRelu", vec![], 22).unwrap();
        close(
            &vals::<f32>(op.as_ref(), &[&x]),
            &[0.0, 0.0, 1.5, 0.0],
            1e-6,
        );
    }

    #[test]
    fn custom_attribute() {
        let x = t::<f64>(&[1], vec![0.5]);
        let attrs = vec![("alpha", Attr::Float(0.25))];
        let op = build(ThresholdedRelu::from_onnx, "ThresholdedRelu", attrs, 22).unwrap();
        let got: Vec<f32> = vals::<f64>(op.as_ref(), &[&x])
            .iter()
            .map(|&v| v as f32)
            .collect();
        close(&got, &[0.5], 1e-6);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i64]);
        assert!(run(&ThresholdedRelu::default(), &[&x])
            .unwrap_err()
            .is_unsupported());
    }
}
