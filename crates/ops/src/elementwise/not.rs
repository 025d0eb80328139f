//! Not (ONNX opset 1): logical negation of a bool tensor.
use crate::util::{output, typed};
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Not;

impl Not {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Not))
    }
}

impl Op for Not {
    fn name(&self) -> &'static str {
        "Not"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let mut t = ctx.input(0)?.clone();
        t.dtype = Some(DType::Bool);
        Ok(vec![t])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let v = typed::<bool>(self.name(), x)?;
        let y = v.iter().map(|&b| !b).collect();
        Ok(vec![output(self.name(), x.shape().to_vec(), y)?])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, t, vals};
    use super::*;

    #[test]
    fn negates() {
        let a = t(&[1, 2], vec![true, false]);
        assert_eq!(vals::<bool>(&Not, &[&a]), [false, true]);
        assert!(run(&Not, &[&t(&[1], vec![1u8])]).is_err());
    }
}
