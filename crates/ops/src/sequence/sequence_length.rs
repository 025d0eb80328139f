//! SequenceLength: the number of tensors in a sequence, as an i64 scalar.
use super::*;
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, InferCtx, Inputs, Op, OpError, Value, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Debug)]
pub struct SequenceLength;

impl SequenceLength {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(SequenceLength))
    }
}

impl Op for SequenceLength {
    fn name(&self) -> &'static str {
        "SequenceLength"
    }

    fn infer(&self, _ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ValueType::concrete(DType::I64, &[])])
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
        Ok(vec![Value::Tensor(Tensor::scalar(
            seq(op, inputs, 0)?.len() as i64,
        ))])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
