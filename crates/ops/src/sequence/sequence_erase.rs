//! SequenceErase: removes the tensor at a position (default: the last).
use super::*;
use millrace_core::Tensor;
use millrace_ir::{Attributes, InferCtx, Inputs, Op, OpError, Value, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Debug)]
pub struct SequenceErase;

impl SequenceErase {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(SequenceErase))
    }
}

impl Op for SequenceErase {
    fn name(&self) -> &'static str {
        "SequenceErase"
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
        let mut s = seq(op, inputs, 0)?.to_vec();
        if s.is_empty() {
            return Err(OpError::invalid(op, "cannot erase from an empty sequence"));
        }
        let at = match tensor(op, inputs, 1)? {
            Some(p) => resolve(op, position(op, p)?, s.len(), false)?,
            None => s.len() - 1,
        };
        s.remove(at);
        Ok(vec![Value::Sequence(s)])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
