//! And (ONNX opsets 1, 7): logical `a && b` of bool tensors with numpy broadcasting.
use super::binary::{infer_broadcast, Legacy};
use super::logic::eval_bool2;
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct And {
    pub legacy: Legacy,
}

impl And {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(And {
            legacy: Legacy::read(attrs, opset)?,
        }))
    }
}

impl Op for And {
    fn name(&self) -> &'static str {
        "And"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![infer_broadcast(self.name(), ctx, Some(DType::Bool))?])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        eval_bool2(self.name(), &self.legacy, inputs, |a, b| a && b)
    }

    fn describe(&self) -> String {
        self.legacy.describe()
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
    fn truth_table_with_broadcast() {
        let a = t(&[2, 2], vec![false, false, true, true]);
        let b = t(&[2], vec![false, true]);
        assert_eq!(
            vals::<bool>(&And::default(), &[&a, &b]),
            [false, false, false, true]
        );
    }

    #[test]
    fn non_bool_is_an_error() {
        let a = t(&[1], vec![1i32]);
        assert!(run(&And::default(), &[&a, &a]).is_err());
    }
}
