//! Neg (ONNX opsets 6, 13): `-x` elementwise for float and signed integer dtypes.
use super::unary::SignOps;
use crate::util::output;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Neg;

impl Neg {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Neg))
    }
}

impl Op for Neg {
    fn name(&self) -> &'static str {
        "Neg"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let shape = x.shape().to_vec();
        let y = crate::dispatch_num!(op, x, |v: T| {
            if !<T as SignOps>::SIGNED {
                return Err(OpError::unsupported(op, format!("dtype {}", x.dtype())));
            }
            let out: Vec<T> = v.iter().map(|&a| a.neg_()).collect();
            output(op, shape, out)?
        });
        Ok(vec![y])
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
    fn values_by_dtype() {
        let x = t(&[3], vec![-2.5f64, 0.0, 3.0]);
        assert_eq!(vals::<f64>(&Neg, &[&x]), [2.5, -0.0, -3.0]);
        let i = t(&[2, 1], vec![-7i32, 5]);
        assert_eq!(vals::<i32>(&Neg, &[&i]), [7, -5]);
        assert!(run(&Neg, &[&t(&[1], vec![1u8])])
            .unwrap_err()
            .is_unsupported());
    }

    #[test]
    fn non_numeric_is_unsupported() {
        assert!(run(&Neg, &[&t(&[1], vec![true])])
            .unwrap_err()
            .is_unsupported());
    }
}
