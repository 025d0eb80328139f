//! LeakyRelu (ONNX opsets 6, 16): `x` if `x >= 0` else `alpha * x` (alpha 0.01), elementwise for float dtypes.
use super::unary::{Float, FloatKernel};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct LeakyRelu {
    pub alpha: f32,
}

impl Default for LeakyRelu {
    fn default() -> Self {
        LeakyRelu { alpha: 0.01 }
    }
}

impl LeakyRelu {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let op = LeakyRelu {
            alpha: attrs.float_or("alpha", 0.01)?,
        };
        Ok(Arc::new(op))
    }
}

impl FloatKernel for LeakyRelu {
    fn apply<F: Float>(&self, x: F) -> F {
        if x >= F::c(0.0) {
            x
        } else {
            F::c(self.alpha as f64) * x
        }
    }

    fn attrs(&self) -> String {
        format!("alpha={}", self.alpha)
    }
}

crate::float_op_impl!(LeakyRelu, 2);

#[cfg(test)]
mod tests {
    use super::super::testutil::{build, close, run, t, vals};
    use super::*;
    use millrace_ir::Attr;

    #[test]
    fn default_attributes() {
        let x = t::<f32>(&[3], vec![-2.0, 0.0, 3.0]);
        let op = build(LeakyRelu::from_onnx, "LeakyRelu", vec![], 22).unwrap();
        close(&vals::<f32>(op.as_ref(), &[&x]), &[-0.02, 0.0, 3.0], 1e-6);
    }

    #[test]
    fn custom_attribute() {
        let x = t::<f64>(&[2], vec![-2.0, 1.0]);
        let attrs = vec![("alpha", Attr::Float(0.5))];
        let op = build(LeakyRelu::from_onnx, "LeakyRelu", attrs, 22).unwrap();
        let got: Vec<f32> = vals::<f64>(op.as_ref(), &[&x])
            .iter()
            .map(|&v| v as f32)
            .collect();
        close(&got, &[-1.0, 1.0], 1e-6);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i64]);
        assert!(run(&LeakyRelu::default(), &[&x])
            .unwrap_err()
            .is_unsupported());
    }
}
