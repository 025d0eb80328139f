//! OptionalHasElement: whether an optional holds a value (an absent input, or an empty optional, does not; a plain tensor or sequence does).
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, InferCtx, Inputs, Op, OpError, Value, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Debug)]
pub struct OptionalHasElement;

impl OptionalHasElement {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(OptionalHasElement))
    }
}

impl Op for OptionalHasElement {
    fn name(&self) -> &'static str {
        "OptionalHasElement"
    }

    fn infer(&self, _ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ValueType::concrete(DType::Bool, &[])])
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
        let _op = self.name();
        let has = match inputs.first().copied().flatten() {
            None | Some(Value::Optional(None)) => false,
            Some(_) => true,
        };
        Ok(vec![Value::Tensor(Tensor::scalar(has))])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
