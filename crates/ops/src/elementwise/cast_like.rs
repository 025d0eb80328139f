//! CastLike (ONNX opsets 15, 19, 21): casts `input` to the dtype of `target_type`, with
//! Cast's semantics.
use super::cast::{cast_tensor, read_saturate};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct CastLike;

impl CastLike {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        read_saturate(attrs)?;
        Ok(Arc::new(CastLike))
    }
}

impl Op for CastLike {
    fn name(&self) -> &'static str {
        "CastLike"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let mut t = ctx.input(0)?.clone();
        t.dtype = ctx.input(1)?.dtype;
        Ok(vec![t])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(&inputs[..inputs.len().min(1)], outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let like = inputs.req(1)?;
        Ok(vec![cast_tensor(self.name(), x, like.dtype())?])
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
    fn casts_to_target_dtype() {
        let x = t(&[3], vec![1.9f32, -2.9, 0.0]);
        let like = t(&[0], Vec::<i64>::new());
        assert_eq!(vals::<i64>(&CastLike, &[&x, &like]), [1, -2, 0]);
        let s = t(&[1], vec![String::new()]);
        assert_eq!(
            vals::<String>(&CastLike, &[&x, &s]),
            ["1.9", "-2.9000001", "0"]
        );
    }

    #[test]
    fn missing_target_is_an_error() {
        let x = t(&[1], vec![1.0f32]);
        assert!(run(&CastLike, &[&x]).is_err());
    }
}
