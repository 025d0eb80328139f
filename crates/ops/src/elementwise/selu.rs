//! Selu (ONNX opsets 6, 22): `gamma * x` if `x > 0` else `gamma * alpha * (e^x - 1)`, elementwise for float dtypes.
use super::unary::{Float, FloatKernel};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Selu {
    pub alpha: f32,
    pub gamma: f32,
}

impl Default for Selu {
    fn default() -> Self {
        Selu {
            alpha: 1.673_263_2,
            gamma: 1.050_701,
        }
    }
}

impl Selu {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let op = Selu {
            alpha: attrs.float_or("alpha", 1.673_263_2)?,
            gamma: attrs.float_or("gamma", 1.050_701)?,
        };
        Ok(Arc::new(op))
    }
}

impl FloatKernel for Selu {
    fn apply<F: Float>(&self, x: F) -> F {
        let g = F::c(self.gamma as f64);
        if x > F::c(0.0) {
            g * x
        } else {
            g * F::c(self.alpha as f64) * x.exp_m1()
        }
    }

    fn attrs(&self) -> String {
        format!("alpha={} gamma={}", self.alpha, self.gamma)
    }
}

crate::float_op_impl!(Selu, 4);

#[cfg(test)]
mod tests {
    use super::super::testutil::{build, close, run, t, vals};
    use super::*;
    use millrace_ir::Attr;

    #[test]
    fn default_attributes() {
        let x = t::<f32>(&[3], vec![-1.0, 0.0, 2.0]);
        let op = build(Selu::from_onnx, "Selu", vec![], 22).unwrap();
        close(
            &vals::<f32>(op.as_ref(), &[&x]),
            &[-1.1113307, 0.0, 2.101402],
            1e-6,
        );
    }

    #[test]
    fn custom_attribute() {
        let x = t::<f64>(&[1], vec![1.0]);
        let attrs = vec![("gamma", Attr::Float(1.0))];
        let op = build(Selu::from_onnx, "Selu", attrs, 22).unwrap();
        let got: Vec<f32> = vals::<f64>(op.as_ref(), &[&x])
            .iter()
            .map(|&v| v as f32)
            .collect();
        close(&got, &[1.0], 1e-6);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i64]);
        assert!(run(&Selu::default(), &[&x]).unwrap_err().is_unsupported());
    }
}
