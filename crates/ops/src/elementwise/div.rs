//! Div (ONNX opsets 1, 6, 7, 13, 14): `a / b` elementwise with numpy broadcasting; integer division truncates toward zero.
use super::binary::{eval_arith, infer_broadcast, no_int_zero, Arith, ArithKernel, Legacy};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Div {
    pub legacy: Legacy,
}

impl Div {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Div {
            legacy: Legacy::read(attrs, opset)?,
        }))
    }
}

impl ArithKernel for Div {
    fn apply<T: Arith>(&self, a: T, b: T) -> T {
        T::div(a, b)
    }

    fn vbin(&self) -> Option<millrace_kernels::vmath::Bin> {
        Some(millrace_kernels::vmath::Bin::Div)
    }

    fn check<T: Arith>(&self, op: &str, b: &[T]) -> Result<(), OpError> {
        no_int_zero(op, b)
    }
}

impl Op for Div {
    fn name(&self) -> &'static str {
        "Div"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![infer_broadcast(self.name(), ctx, None)?])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        eval_arith(self.name(), self, &self.legacy, inputs)
    }

    crate::arith_into_hooks!();

    fn describe(&self) -> String {
        self.legacy.describe()
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
    fn divides_floats_and_truncates_ints() {
        let a = t(&[3], vec![1.0f32, -3.0, 1.0]);
        let b = t(&[3], vec![4.0f32, 2.0, 0.0]);
        assert_eq!(
            vals::<f32>(&Div::default(), &[&a, &b]),
            [0.25, -1.5, f32::INFINITY]
        );
        let x = t(&[4], vec![7i64, -7, 7, -7]);
        let y = t(&[4], vec![2i64, 2, -2, -2]);
        assert_eq!(vals::<i64>(&Div::default(), &[&x, &y]), [3, -3, -3, 3]);
        let s = t(&[], vec![3i32]);
        let v = t(&[2], vec![10i32, -10]);
        assert_eq!(vals::<i32>(&Div::default(), &[&v, &s]), [3, -3]);
    }

    #[test]
    fn integer_division_by_zero_is_an_error() {
        let x = t(&[2], vec![1i32, 2]);
        let y = t(&[2], vec![1i32, 0]);
        assert!(matches!(
            run(&Div::default(), &[&x, &y]),
            Err(OpError::Invalid { .. })
        ));
    }
}
