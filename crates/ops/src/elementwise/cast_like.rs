//! CastLike (ONNX opsets 15, 19, 21, 23, 24, 25): casts `input` to the dtype of
//! `target_type`, with Cast's semantics (`saturate` 19+, `round_mode` 24+).
use super::cast::{cast_tensor, read_opts, CastOpts};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct CastLike {
    pub opts: CastOpts,
}

impl CastLike {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let opts = read_opts("CastLike", attrs)?;
        Ok(Arc::new(CastLike { opts }))
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
        Ok(vec![cast_tensor(self.name(), x, like.dtype(), self.opts)?])
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
        assert_eq!(vals::<i64>(&CastLike::default(), &[&x, &like]), [1, -2, 0]);
        let s = t(&[1], vec![String::new()]);
        assert_eq!(
            vals::<String>(&CastLike::default(), &[&x, &s]),
            ["1.9", "-2.9000001", "0"]
        );
    }

    #[test]
    fn missing_target_is_an_error() {
        let x = t(&[1], vec![1.0f32]);
        assert!(run(&CastLike::default(), &[&x]).is_err());
    }
}
