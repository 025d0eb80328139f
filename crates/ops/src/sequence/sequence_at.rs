//! SequenceAt: the tensor at a (possibly negative) position of a sequence.
use super::*;
use millrace_core::Tensor;
use millrace_ir::{Attributes, InferCtx, Inputs, Op, OpError, Value, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Debug)]
pub struct SequenceAt;

impl SequenceAt {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(SequenceAt))
    }
}

impl Op for SequenceAt {
    fn name(&self) -> &'static str {
        "SequenceAt"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ValueType {
            dtype: ctx.opt_input(0).and_then(|t| t.dtype),
            shape: None,
        }])
    }

    fn eval(&self, _inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        Err(OpError::unsupported(
            self.name(),
            "runs through eval_values",
        ))
    }

    fn takes_values(&self) -> bool {
        true
    }

    fn eval_values(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, OpError> {
        let op = self.name();
        let s = seq(op, inputs, 0)?;
        let p = position(
            op,
            tensor(op, inputs, 1)?.ok_or(OpError::MissingInput {
                op: op.to_string(),
                index: 1,
            })?,
        )?;
        let i = resolve(op, p, s.len(), false)?;
        Ok(vec![Value::Tensor(s[i].clone())])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
