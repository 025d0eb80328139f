//! Gelu (ONNX opset 20): `0.5 * x * (1 + erf(x / sqrt 2))`, or with `approximate="tanh"`
//! `0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))`, for float dtypes.
use super::unary::{Float, FloatKernel};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Gelu {
    /// `approximate="tanh"`.
    pub tanh: bool,
}

impl Gelu {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let tanh = match attrs.string_or("approximate", "none")?.as_str() {
            "none" => false,
            "tanh" => true,
            other => {
                return Err(OpError::attribute(
                    "Gelu",
                    "approximate",
                    format!("must be \"none\" or \"tanh\", got {other:?}"),
                ))
            }
        };
        Ok(Arc::new(Gelu { tanh }))
    }
}

impl FloatKernel for Gelu {
    fn apply<F: Float>(&self, x: F) -> F {
        let half = F::c(0.5);
        if self.tanh {
            let k = F::c((2.0 / std::f64::consts::PI).sqrt());
            let inner = k * (x + F::c(0.044715) * x * x * x);
            half * x * (F::c(1.0) + inner.tanh())
        } else {
            half * x * (F::c(1.0) + (x * F::c(std::f64::consts::FRAC_1_SQRT_2)).erf())
        }
    }

    fn vfunc(&self) -> Option<millrace_kernels::vmath::Func> {
        use millrace_kernels::vmath::Func;
        Some(if self.tanh {
            Func::GeluTanh
        } else {
            Func::Gelu
        })
    }

    fn attrs(&self) -> String {
        if self.tanh {
            "approximate=tanh".into()
        } else {
            String::new()
        }
    }
}

crate::float_op_impl!(Gelu, 12);

#[cfg(test)]
mod tests {
    use super::super::testutil::{build, close, run, t, vals};
    use super::*;
    use millrace_ir::Attr;

    #[test]
    fn exact_and_tanh() {
        let x = t::<f32>(&[4], vec![-3.0, -1.0, 0.0, 1.5]);
        close(
            &vals::<f32>(&Gelu { tanh: false }, &[&x]),
            &[-0.004049694, -0.15865526, 0.0, 1.3997892],
            1e-6,
        );
        close(
            &vals::<f32>(&Gelu { tanh: true }, &[&x]),
            &[-0.0036373, -0.15880801, 0.0, 1.3995715],
            1e-5,
        );
    }

    #[test]
    fn errors() {
        let attrs = vec![("approximate", Attr::String(b"fast".to_vec()))];
        assert!(build(Gelu::from_onnx, "Gelu", attrs, 20).is_err());
        assert!(run(&Gelu::default(), &[&t(&[1], vec![1i32])]).is_err());
    }
}
