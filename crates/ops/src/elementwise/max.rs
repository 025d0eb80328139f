//! Max (ONNX opsets 1, 6, 8, 12, 13): elementwise maximum of one or more inputs with numpy broadcasting (NaN propagates).
use super::binary::{eval_variadic, infer_broadcast, Arith, ArithKernel};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Max;

impl Max {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let _ = attrs.ints("consumed_inputs")?;
        Ok(Arc::new(Max))
    }
}

impl ArithKernel for Max {
    fn apply<T: Arith>(&self, a: T, b: T) -> T {
        T::max(a, b)
    }
}

impl Op for Max {
    fn name(&self) -> &'static str {
        "Max"
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
    fn variadic_broadcast_max() {
        let a = t(&[2, 1], vec![1i64, 5]);
        let b = t(&[3], vec![2i64, 4, 6]);
        let y = run(&Max, &[&a, &b]).unwrap();
        assert_eq!(y[0].shape(), &[2, 3]);
        assert_eq!(y[0].as_slice::<i64>().unwrap(), &[2, 4, 6, 5, 5, 6]);
        let f = t(&[2], vec![-1.0f32, f32::NAN]);
        let g = vals::<f32>(&Max, &[&f, &t(&[1], vec![0.0f32])]);
        assert_eq!(g[0], 0.0);
        assert!(g[1].is_nan());
    }

    #[test]
    fn dtype_mismatch_is_an_error() {
        let a = t(&[1], vec![1i64]);
        let b = t(&[1], vec![1i32]);
        assert!(run(&Max, &[&a, &b]).is_err());
    }
}
