//! Elu (ONNX opsets 6, 22): `x` if `x >= 0` else `alpha * (e^x - 1)` (alpha 1), elementwise for float dtypes.
use super::unary::{Float, FloatKernel};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Elu {
    pub alpha: f32,
}

impl Default for Elu {
    fn default() -> Self {
        Elu { alpha: 1.0 }
    }
}

impl Elu {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let op = Elu {
            alpha: attrs.float_or("alpha", 1.0)?,
        };
        Ok(Arc::new(op))
    }
}

impl FloatKernel for Elu {
    fn apply<F: Float>(&self, x: F) -> F {
        if x >= F::c(0.0) {
            x
        } else {
            F::c(self.alpha as f64) * x.exp_m1()
        }
    }

    fn attrs(&self) -> String {
        format!("alpha={}", self.alpha)
    }
}

crate::float_op_impl!(Elu, 4);

#[cfg(test)]
mod tests {
    use super::super::testutil::{build, close, run, t, vals};
    use super::*;
    use millrace_ir::Attr;

    #[test]
    fn default_attributes() {
        let x = t::<f32>(&[3], vec![-1.0, 0.0, 2.0]);
        let op = build(Elu::from_onnx, "Elu", vec![], 22).unwrap();
        close(
            &vals::<f32>(op.as_ref(), &[&x]),
            &[-0.6321205588285577, 0.0, 2.0],
            1e-6,
        );
    }

    #[test]
    fn custom_attribute() {
        let x = t::<f64>(&[1], vec![-1.0]);
        let attrs = vec![("alpha", Attr::Float(2.0))];
        let op = build(Elu::from_onnx, "Elu", attrs, 22).unwrap();
        let got: Vec<f32> = vals::<f64>(op.as_ref(), &[&x])
            .iter()
            .map(|&v| v as f32)
            .collect();
        close(&got, &[-1.2642411176571153], 1e-6);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i64]);
        assert!(run(&Elu::default(), &[&x]).unwrap_err().is_unsupported());
    }
}
