//! SequenceInsert: inserts a tensor at a position (default: the end).
use super::*;
use millrace_core::Tensor;
use millrace_ir::{Attributes, InferCtx, Inputs, Op, OpError, Value, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Debug)]
pub struct SequenceInsert;

impl SequenceInsert {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(SequenceInsert))
    }
}

impl Op for SequenceInsert {
    fn name(&self) -> &'static str {
        "SequenceInsert"
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
        let t = tensor(op, inputs, 1)?.ok_or(OpError::MissingInput {
            op: op.to_string(),
            index: 1,
        })?;
        if s.first().is_some_and(|f| f.dtype() != t.dtype()) {
            return Err(OpError::invalid(
                op,
                "the tensor dtype differs from the sequence elements",
            ));
        }
        let at = match tensor(op, inputs, 2)? {
            Some(p) => resolve(op, position(op, p)?, s.len(), true)?,
            None => s.len(),
        };
        s.insert(at, t.clone());
        Ok(vec![Value::Sequence(s)])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
