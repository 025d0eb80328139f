//! ConcatFromSequence (ONNX opset 11): concatenates a sequence's tensors along `axis`, or
//! stacks them along a new axis when `new_axis` is 1.
use super::*;
use crate::util::normalize_axis;
use millrace_core::Tensor;
use millrace_ir::{Attributes, InferCtx, Inputs, Op, OpError, Value, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Debug)]
pub struct ConcatFromSequence {
    pub axis: i64,
    pub new_axis: bool,
}

impl ConcatFromSequence {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let axis = attrs.req_int("axis")?;
        let new_axis = attrs.int_or("new_axis", 0)?;
        if !(0..=1).contains(&new_axis) {
            return Err(OpError::attribute(
                "ConcatFromSequence",
                "new_axis",
                "must be 0 or 1",
            ));
        }
        Ok(Arc::new(ConcatFromSequence {
            axis,
            new_axis: new_axis == 1,
        }))
    }
}

impl Op for ConcatFromSequence {
    fn name(&self) -> &'static str {
        "ConcatFromSequence"
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
        let first = s
            .first()
            .ok_or_else(|| OpError::invalid(op, "the sequence is empty"))?;
        let out = if self.new_axis {
            let axis = normalize_axis(op, self.axis, first.rank() + 1)?;
            crate::control::stack(op, s, axis)?
        } else {
            let axis = normalize_axis(op, self.axis, first.rank())?;
            concat_axis(op, s, axis)?
        };
        Ok(vec![Value::Tensor(out)])
    }

    fn describe(&self) -> String {
        format!("axis={} new_axis={}", self.axis, u8::from(self.new_axis))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
