//! SequenceEmpty: an empty sequence of the `dtype` attribute's element type (default float).
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, InferCtx, Inputs, Op, OpError, Value, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Debug)]
pub struct SequenceEmpty {
    pub dtype: DType,
}

impl SequenceEmpty {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let code = attrs.int_or("dtype", 1)?;
        let dtype = DType::from_onnx_code(code as i32)
            .ok_or_else(|| OpError::unsupported("SequenceEmpty", format!("dtype code {code}")))?;
        Ok(Arc::new(SequenceEmpty { dtype }))
    }
}

impl Op for SequenceEmpty {
    fn name(&self) -> &'static str {
        "SequenceEmpty"
    }

    fn infer(&self, _ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ValueType::of_dtype(self.dtype)])
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

    fn eval_values(&self, _inputs: &[Option<&Value>]) -> Result<Vec<Value>, OpError> {
        let _op = self.name();
        Ok(vec![Value::Sequence(vec![])])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
