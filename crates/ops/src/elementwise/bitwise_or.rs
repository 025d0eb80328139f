//! BitwiseOr (ONNX opset 18): bitwise `a | b` of integer tensors with numpy broadcasting.
use super::binary::infer_broadcast;
use super::logic::{eval_bits, BitKernel, Bits};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct BitwiseOr;

impl BitwiseOr {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(BitwiseOr))
    }
}

impl BitKernel for BitwiseOr {
    fn apply<T: Bits>(&self, a: T, b: T) -> T {
        a | b
    }
}

impl Op for BitwiseOr {
    fn name(&self) -> &'static str {
        "BitwiseOr"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![infer_broadcast(self.name(), ctx, None)?])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        eval_bits(self.name(), self, inputs)
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
    fn bitwise_with_broadcast() {
        let a = t(&[2, 2], vec![0b1100u8, 0b1010, 0xff, 0]);
        let b = t(&[2], vec![0b1010u8, 0b0110]);
        assert_eq!(
            vals::<u8>(&BitwiseOr, &[&a, &b]),
            [0b1110, 0b1110, 0xff, 0b0110]
        );
        let x = t(&[1], vec![-1i32]);
        let y = t(&[1], vec![6i32]);
        assert_eq!(vals::<i32>(&BitwiseOr, &[&x, &y]), [-1]);
    }

    #[test]
    fn floats_are_unsupported() {
        let a = t(&[1], vec![1.0f32]);
        assert!(run(&BitwiseOr, &[&a, &a]).unwrap_err().is_unsupported());
    }
}
