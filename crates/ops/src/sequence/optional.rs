//! Optional: wraps its input in an optional, or makes an empty optional of the `type` attribute.
use millrace_core::Tensor;
use millrace_ir::{Attributes, InferCtx, Inputs, Op, OpError, Value, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Debug)]
pub struct Optional {
    pub ty: Option<ValueType>,
}

impl Optional {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let ty = match attrs.get("type") {
            None => None,
            Some(millrace_ir::Attr::Type(t)) => Some(t.clone()),
            Some(a) => {
                return Err(OpError::attribute(
                    "Optional",
                    "type",
                    format!("expected a type, found {}", a.kind()),
                ))
            }
        };
        Ok(Arc::new(Optional { ty }))
    }
}

impl Op for Optional {
    fn name(&self) -> &'static str {
        "Optional"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ValueType {
            dtype: ctx
                .opt_input(0)
                .and_then(|t| t.dtype)
                .or(self.ty.as_ref().and_then(|t| t.dtype)),
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
        let v = inputs.first().copied().flatten().cloned();
        if v.is_none() && self.ty.is_none() {
            return Err(OpError::invalid(
                op,
                "an empty Optional needs the `type` attribute",
            ));
        }
        Ok(vec![Value::Optional(v.map(Box::new))])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
