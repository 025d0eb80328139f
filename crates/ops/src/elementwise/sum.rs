//! Sum (ONNX opsets 1, 6, 8, 13): elementwise sum of one or more inputs with numpy broadcasting.
use super::binary::{eval_variadic, infer_broadcast, Arith, ArithKernel};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Sum;

impl Sum {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let _ = attrs.ints("consumed_inputs")?;
        Ok(Arc::new(Sum))
    }
}

impl ArithKernel for Sum {
    fn apply<T: Arith>(&self, a: T, b: T) -> T {
        T::add(a, b)
    }
}

impl Op for Sum {
    fn name(&self) -> &'static str {
        "Sum"
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
    fn sums_many_inputs() {
        let a = t(&[2], vec![1.0f32, 2.0]);
        let b = t(&[2, 1], vec![10.0f32, 20.0]);
        let c = t(&[], vec![100.0f32]);
        let y = run(&Sum, &[&a, &b, &c]).unwrap();
        assert_eq!(y[0].shape(), &[2, 2]);
        assert_eq!(
            y[0].as_slice::<f32>().unwrap(),
            &[111.0, 112.0, 121.0, 122.0]
        );
        assert_eq!(vals::<f64>(&Sum, &[&t(&[1], vec![2.5f64])]), [2.5]);
    }

    #[test]
    fn incompatible_shapes_are_an_error() {
        let a = t(&[2], vec![1.0f32, 2.0]);
        let b = t(&[3], vec![1.0f32, 2.0, 3.0]);
        assert!(run(&Sum, &[&a, &b]).is_err());
    }
}
