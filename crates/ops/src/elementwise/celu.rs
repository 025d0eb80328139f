//! Celu (ONNX opsets 12): `max(0, x) + min(0, alpha * (e^(x / alpha) - 1))` (alpha 1), elementwise for float dtypes.
use super::unary::{Float, FloatKernel};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Celu {
    pub alpha: f32,
}

impl Default for Celu {
    fn default() -> Self {
        Celu { alpha: 1.0 }
    }
}

impl Celu {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let op = Celu {
            alpha: attrs.float_or("alpha", 1.0)?,
        };
        if op.alpha == 0.0 {
            return Err(OpError::attribute("Celu", "alpha", "must not be 0"));
        }
        Ok(Arc::new(op))
    }
}

impl FloatKernel for Celu {
    fn apply<F: Float>(&self, x: F) -> F {
        let a = F::c(self.alpha as f64);
        if x > F::c(0.0) {
            x
        } else {
            a * (x / a).exp_m1()
        }
    }

    fn attrs(&self) -> String {
        format!("alpha={}", self.alpha)
    }
}

crate::float_op_impl!(Celu, 5);

#[cfg(test)]
mod tests {
    use super::super::testutil::{build, close, run, t, vals};
    use super::*;
    use millrace_ir::Attr;

    #[test]
    fn default_attributes() {
        let x = t::<f32>(&[3], vec![-1.0, 0.0, 2.0]);
        let op = build(Celu::from_onnx, "Celu", vec![], 22).unwrap();
        close(
            &vals::<f32>(op.as_ref(), &[&x]),
            &[-0.6321205588285577, 0.0, 2.0],
            1e-6,
        );
    }

    #[test]
    fn custom_attribute() {
        let x = t::<f64>(&[1], vec![-2.0]);
        let attrs = vec![("alpha", Attr::Float(2.0))];
        let op = build(Celu::from_onnx, "Celu", attrs, 22).unwrap();
        let got: Vec<f32> = vals::<f64>(op.as_ref(), &[&x])
            .iter()
            .map(|&v| v as f32)
            .collect();
        close(&got, &[-1.2642411176571153], 1e-6);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i64]);
        assert!(run(&Celu::default(), &[&x]).unwrap_err().is_unsupported());
    }
}
