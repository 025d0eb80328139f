//! ConstantOfShape (ONNX opsets 9, 20, 21): a tensor of the given shape filled with `value`.
use super::common::{checked_numel, const_ints};
use crate::util::ints_of;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct ConstantOfShape {
    /// One-element tensor holding the fill value and dtype.
    pub value: Tensor,
}

impl ConstantOfShape {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let value = match attrs.tensor("value")? {
            Some(t) => {
                if t.len() != 1 {
                    return Err(OpError::attribute(
                        "ConstantOfShape",
                        "value",
                        "must hold exactly one element",
                    ));
                }
                t
            }
            None => Tensor::scalar(0.0f32),
        };
        Ok(Arc::new(ConstantOfShape { value }))
    }
}

fn to_shape(op: &str, v: &[i64]) -> Result<Vec<usize>, OpError> {
    v.iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| OpError::invalid(op, format!("negative dimension {d}")))
        })
        .collect()
}

impl Op for ConstantOfShape {
    fn name(&self) -> &'static str {
        "ConstantOfShape"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let dtype = self.value.dtype();
        if let Some(s) = const_ints(ctx, 0) {
            return Ok(vec![ValueType::concrete(
                dtype,
                &to_shape(self.name(), &s)?,
            )]);
        }
        let rank = ctx
            .input(0)?
            .concrete_shape()
            .and_then(|s| s.first().copied());
        Ok(vec![match rank {
            Some(0) => ValueType::concrete(dtype, &[]),
            _ => ValueType::of_dtype(dtype),
        }])
    }

    fn cost(&self, _inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(&[], outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let shape = to_shape(op, &ints_of(op, inputs.req(0)?)?)?;
        let n = checked_numel(op, &shape)?;
        let data = self
            .value
            .data()
            .gather(std::iter::repeat_n(0, n))
            .ok_or_else(|| OpError::attribute(op, "value", "must hold exactly one element"))?;
        Ok(vec![
            Tensor::new(shape, data).map_err(|e| OpError::tensor(op, e))?
        ])
    }

    fn describe(&self) -> String {
        format!("dtype={}", self.value.dtype())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills() {
        let s = Tensor::from_vec(vec![2], vec![2i64, 3]).unwrap();
        let op = ConstantOfShape {
            value: Tensor::from_vec(vec![1], vec![7i32]).unwrap(),
        };
        let y = op
            .eval(&Inputs::new("ConstantOfShape", &[Some(&s)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[2, 3]);
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[7; 6]);
        let e = Tensor::from_vec(vec![0], Vec::<i64>::new()).unwrap();
        let y = op
            .eval(&Inputs::new("ConstantOfShape", &[Some(&e)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[] as &[usize]);
        let bad = Tensor::from_vec(vec![1], vec![-1i64]).unwrap();
        assert!(op
            .eval(&Inputs::new("ConstantOfShape", &[Some(&bad)]))
            .is_err());
    }
}
