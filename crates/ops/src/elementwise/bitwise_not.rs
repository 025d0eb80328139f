//! BitwiseNot (ONNX opset 18): bitwise complement of an integer tensor.
use super::binary::dispatch_int;
use crate::util::output;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct BitwiseNot;

impl BitwiseNot {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(BitwiseNot))
    }
}

impl Op for BitwiseNot {
    fn name(&self) -> &'static str {
        "BitwiseNot"
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
        let y = dispatch_int!(op, x, |v: T| output(
            op,
            shape,
            v.iter().map(|&a| !a).collect::<Vec<T>>()
        )?);
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
    fn complements() {
        assert_eq!(
            vals::<u8>(&BitwiseNot, &[&t(&[2], vec![0u8, 0x0f])]),
            [0xff, 0xf0]
        );
        assert_eq!(
            vals::<i16>(&BitwiseNot, &[&t(&[2], vec![0i16, -5])]),
            [-1, 4]
        );
        assert!(run(&BitwiseNot, &[&t(&[1], vec![true])]).is_err());
    }
}
