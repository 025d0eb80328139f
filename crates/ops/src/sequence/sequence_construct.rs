//! SequenceConstruct: a sequence of its input tensors, which must share a dtype.
use super::*;
use millrace_core::Tensor;
use millrace_ir::{Attributes, InferCtx, Inputs, Op, OpError, Value, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Debug)]
pub struct SequenceConstruct;

impl SequenceConstruct {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(SequenceConstruct))
    }
}

impl Op for SequenceConstruct {
    fn name(&self) -> &'static str {
        "SequenceConstruct"
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
        let mut out = Vec::with_capacity(inputs.len());
        for i in 0..inputs.len() {
            let t = tensor(op, inputs, i)?.ok_or(OpError::MissingInput {
                op: op.to_string(),
                index: i,
            })?;
            if out.first().is_some_and(|f: &Tensor| f.dtype() != t.dtype()) {
                return Err(OpError::invalid(op, "sequence elements must share a dtype"));
            }
            out.push(t.clone());
        }
        Ok(vec![Value::Sequence(out)])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
