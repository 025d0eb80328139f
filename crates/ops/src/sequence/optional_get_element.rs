//! OptionalGetElement: the value inside an optional (a plain tensor or sequence passes through); an error when empty.
use millrace_core::Tensor;
use millrace_ir::{Attributes, InferCtx, Inputs, Op, OpError, Value, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Debug)]
pub struct OptionalGetElement;

impl OptionalGetElement {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(OptionalGetElement))
    }
}

impl Op for OptionalGetElement {
    fn name(&self) -> &'static str {
        "OptionalGetElement"
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
        match inputs.first().copied().flatten() {
            Some(Value::Optional(Some(v))) => Ok(vec![v.as_ref().clone()]),
            Some(Value::Optional(None)) | None => {
                Err(OpError::invalid(op, "the optional is empty"))
            }
            Some(v) => Ok(vec![v.clone()]),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
