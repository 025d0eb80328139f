//! Sign (ONNX opsets 9, 13): -1, 0 or 1 by the sign of x, for every numeric dtype (NaN stays NaN).
use super::unary::SignOps;
use crate::util::output;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Sign;

impl Sign {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Sign))
    }
}

impl Op for Sign {
    fn name(&self) -> &'static str {
        "Sign"
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
            let out: Vec<T> = v.iter().map(|&a| a.sign_()).collect();
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
        let x = t(&[4], vec![-2.5f32, 0.0, 3.0, f32::NAN]);
        let y = vals::<f32>(&Sign, &[&x]);
        assert_eq!(&y[..3], &[-1.0, 0.0, 1.0]);
        assert!(y[3].is_nan());
        let i = t(&[3], vec![-7i64, 0, 5]);
        assert_eq!(vals::<i64>(&Sign, &[&i]), [-1, 0, 1]);
        assert_eq!(vals::<u8>(&Sign, &[&t(&[2], vec![0u8, 9])]), [0, 1]);
    }

    #[test]
    fn non_numeric_is_unsupported() {
        assert!(run(&Sign, &[&t(&[1], vec![true])])
            .unwrap_err()
            .is_unsupported());
    }
}
