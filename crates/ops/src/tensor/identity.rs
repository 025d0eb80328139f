//! Identity (ONNX opsets 1, 13, 14, 16, 19, 21): the output is the input.
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Identity;

impl Identity {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Identity))
    }
}

impl Op for Identity {
    fn name(&self) -> &'static str {
        "Identity"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, _inputs: &[ValueType], _outputs: &[ValueType]) -> Cost {
        Cost::default()
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        Ok(vec![inputs.req(0)?.clone()])
    }

    /// Identity also passes sequences and optionals through.
    fn takes_values(&self) -> bool {
        true
    }

    fn eval_values(
        &self,
        inputs: &[Option<&millrace_ir::Value>],
    ) -> Result<Vec<millrace_ir::Value>, OpError> {
        let v = inputs
            .first()
            .copied()
            .flatten()
            .ok_or(OpError::MissingInput {
                op: "Identity".into(),
                index: 0,
            })?;
        Ok(vec![v.clone()])
    }

    /// Output 0 is input 0's data under a new shape: the executor may alias it.
    fn is_alias(&self) -> bool {
        true
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_any_dtype_through() {
        let x = Tensor::from_vec(vec![2], vec![true, false]).unwrap();
        let y = Identity
            .eval(&Inputs::new("Identity", &[Some(&x)]))
            .unwrap();
        assert_eq!(y[0], x);
        assert!(Identity.eval(&Inputs::new("Identity", &[])).is_err());
    }
}
