//! Mod (ONNX opsets 10, 13): remainder with numpy broadcasting; `fmod=0` takes the sign of
//! the divisor (integers only), `fmod=1` the sign of the dividend like C `fmod`.
use super::binary::{eval_arith, infer_broadcast, no_int_zero, Arith, ArithKernel, Legacy};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Mod {
    pub fmod: bool,
}

impl Mod {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let fmod = match attrs.int_or("fmod", 0)? {
            0 => false,
            1 => true,
            v => {
                return Err(OpError::attribute(
                    "Mod",
                    "fmod",
                    format!("must be 0 or 1, got {v}"),
                ))
            }
        };
        Ok(Arc::new(Mod { fmod }))
    }
}

impl ArithKernel for Mod {
    fn apply<T: Arith>(&self, a: T, b: T) -> T {
        if self.fmod {
            T::fmod(a, b)
        } else {
            T::pymod(a, b)
        }
    }

    fn check<T: Arith>(&self, op: &str, b: &[T]) -> Result<(), OpError> {
        if !T::INT && !self.fmod {
            return Err(OpError::invalid(
                op,
                "fmod must be 1 for floating-point inputs",
            ));
        }
        no_int_zero(op, b)
    }
}

impl Op for Mod {
    fn name(&self) -> &'static str {
        "Mod"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![infer_broadcast(self.name(), ctx, None)?])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 2)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        eval_arith(self.name(), self, &Legacy::default(), inputs)
    }

    fn describe(&self) -> String {
        format!("fmod={}", self.fmod as i32)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, t, vals};
    use super::*;

    #[test]
    fn sign_follows_divisor_or_dividend() {
        let a = t(&[4], vec![-4i32, 7, 5, -7]);
        let b = t(&[4], vec![3i32, -3, 8, -2]);
        assert_eq!(vals::<i32>(&Mod { fmod: false }, &[&a, &b]), [2, -2, 5, -1]);
        assert_eq!(vals::<i32>(&Mod { fmod: true }, &[&a, &b]), [-1, 1, 5, -1]);
        let x = t(&[3], vec![-4.5f32, 7.0, 5.25]);
        let y = t(&[], vec![2.0f32]);
        assert_eq!(
            vals::<f32>(&Mod { fmod: true }, &[&x, &y]),
            [-0.5, 1.0, 1.25]
        );
    }

    #[test]
    fn errors() {
        let x = t(&[1], vec![1.0f32]);
        assert!(run(&Mod { fmod: false }, &[&x, &x]).is_err());
        let a = t(&[1], vec![1i64]);
        let z = t(&[1], vec![0i64]);
        assert!(run(&Mod { fmod: true }, &[&a, &z]).is_err());
    }
}
