//! HardSigmoid (ONNX opsets 6, 22): `max(0, min(1, alpha * x + beta))` (alpha 0.2, beta 0.5), elementwise for float dtypes.
use super::unary::{Float, FloatKernel};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct HardSigmoid {
    pub alpha: f32,
    pub beta: f32,
}

impl Default for HardSigmoid {
    fn default() -> Self {
        HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        }
    }
}

impl HardSigmoid {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let op = HardSigmoid {
            alpha: attrs.float_or("alpha", 0.2)?,
            beta: attrs.float_or("beta", 0.5)?,
        };
        Ok(Arc::new(op))
    }
}

impl FloatKernel for HardSigmoid {
    fn apply<F: Float>(&self, x: F) -> F {
        let v = F::c(self.alpha as f64) * x + F::c(self.beta as f64);
        if v < F::c(0.0) {
            F::c(0.0)
        } else if v > F::c(1.0) {
            F::c(1.0)
        } else {
            v
        }
    }

    fn attrs(&self) -> String {
        format!("alpha={} beta={}", self.alpha, self.beta)
    }
}

crate::float_op_impl!(HardSigmoid, 3);

#[cfg(test)]
mod tests {
    use super::super::testutil::{build, close, run, t, vals};
    use super::*;
    use millrace_ir::Attr;

    #[test]
    fn default_attributes() {
        let x = t::<f32>(&[4], vec![-5.0, 0.0, 1.0, 5.0]);
        let op = build(HardSigmoid::from_onnx, "HardSigmoid", vec![], 22).unwrap();
        close(
            &vals::<f32>(op.as_ref(), &[&x]),
            &[0.0, 0.5, 0.7, 1.0],
            1e-6,
        );
    }

    #[test]
    fn custom_attribute() {
        let x = t::<f64>(&[2], vec![1.0, -0.5]);
        let attrs = vec![("alpha", Attr::Float(0.5))];
        let op = build(HardSigmoid::from_onnx, "HardSigmoid", attrs, 22).unwrap();
        let got: Vec<f32> = vals::<f64>(op.as_ref(), &[&x])
            .iter()
            .map(|&v| v as f32)
            .collect();
        close(&got, &[1.0, 0.25], 1e-6);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i64]);
        assert!(run(&HardSigmoid::default(), &[&x])
            .unwrap_err()
            .is_unsupported());
    }
}
