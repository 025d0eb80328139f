//! Size (ONNX opsets 1, 13, 19, 21): the number of elements as an i64 scalar.
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Size;

impl Size {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Size))
    }
}

impl Op for Size {
    fn name(&self) -> &'static str {
        "Size"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        ctx.input(0)?;
        Ok(vec![ValueType::concrete(DType::I64, &[])])
    }

    fn cost(&self, _inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(&[], outputs)
    }

    fn fold_from_types(&self, inputs: &[ValueType]) -> Option<Vec<Tensor>> {
        Some(vec![Tensor::scalar(inputs.first()?.numel()? as i64)])
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        Ok(vec![Tensor::scalar(x.len() as i64)])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_elements() {
        for (shape, n) in [(vec![2, 3], 6i64), (vec![], 1), (vec![4, 0], 0)] {
            let x = Tensor::zeros(DType::Bool, shape);
            let y = Size.eval(&Inputs::new("Size", &[Some(&x)])).unwrap();
            assert_eq!(y[0].as_slice::<i64>().unwrap(), &[n]);
        }
    }
}
