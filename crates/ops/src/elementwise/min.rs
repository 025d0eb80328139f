//! Min (ONNX opsets 1, 6, 8, 12, 13): elementwise minimum of one or more inputs with numpy broadcasting (NaN propagates).
use super::binary::{eval_variadic, infer_broadcast, Arith, ArithKernel};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Min;

impl Min {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let _ = attrs.ints("consumed_inputs")?;
        Ok(Arc::new(Min))
    }
}

impl ArithKernel for Min {
    fn apply<T: Arith>(&self, a: T, b: T) -> T {
        T::min(a, b)
    }
}

impl Op for Min {
    fn name(&self) -> &'static str {
        "Min"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![infer_broadcast(self.name(), ctx, None)?])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let n = inputs.len().saturating_sub(1).max(1) as u64;
        Cost::elementwise(inputs, outputs, n)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        Ok(vec![eval_variadic(self.name(), self, inputs, false)?])
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
    fn variadic_broadcast_min() {
        let a = t(&[2, 2], vec![1.0f32, 5.0, 3.0, f32::NAN]);
        let b = t(&[2], vec![2.0f32, 4.0]);
        let c = t(&[], vec![3.5f32]);
        let y = vals::<f32>(&Min, &[&a, &b, &c]);
        assert_eq!(&y[..3], &[1.0, 3.5, 2.0]);
        assert!(y[3].is_nan());
        let i = t(&[3], vec![3u16, 1, 2]);
        assert_eq!(vals::<u16>(&Min, &[&i]), [3, 1, 2]);
        assert_eq!(vals::<u16>(&Min, &[&i, &t(&[1], vec![2u16])]), [2, 1, 2]);
    }

    #[test]
    fn no_inputs_is_an_error() {
        assert!(run(&Min, &[]).is_err());
    }
}
