//! Expand (ONNX opsets 8, 13): broadcasts the input to a shape (bidirectional broadcast).
use super::common::{const_ints, take};
use crate::util::{broadcast_all, broadcast_dims, broadcast_index, ints_of};
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Expand;

impl Expand {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Expand))
    }
}

fn to_shape(op: &str, v: &[i64]) -> Result<Vec<usize>, OpError> {
    v.iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| OpError::invalid(op, format!("invalid dimension {d}")))
        })
        .collect()
}

impl Op for Expand {
    fn name(&self) -> &'static str {
        "Expand"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let shape = match (&x.shape, const_ints(ctx, 1)) {
            (Some(xs), Some(s)) => {
                let s: Vec<Dim> = to_shape(self.name(), &s)?
                    .into_iter()
                    .map(Dim::Known)
                    .collect();
                Some(broadcast_dims(self.name(), &[xs, &s])?)
            }
            _ => None,
        };
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let s = to_shape(op, &ints_of(op, inputs.req(1)?)?)?;
        let out = broadcast_all(op, &[x.shape(), &s])?;
        if out == x.shape() {
            return Ok(vec![x.clone()]);
        }
        let idx = broadcast_index(&out, x.shape());
        Ok(vec![take(op, x.data(), &idx, out)?])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;

    #[test]
    fn expands_both_ways() {
        let x = Tensor::from_vec(vec![3, 1], vec![1i64, 2, 3]).unwrap();
        let cases: &[(&[i64], Option<&[usize]>, &[i64])] = &[
            (
                &[2, 1, 2],
                Some(&[2, 3, 2]),
                &[1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3],
            ),
            (&[1, 1], Some(&[3, 1]), &[1, 2, 3]),
            (&[4], Some(&[3, 4]), &[1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]),
            (&[2, 2], None, &[]),
            (&[0], Some(&[3, 0]), &[]),
        ];
        for (s, shape, want) in cases {
            let st = Tensor::from_vec(vec![s.len()], s.to_vec()).unwrap();
            let y = Expand.eval(&Inputs::new("Expand", &[Some(&x), Some(&st)]));
            match shape {
                Some(shape) => {
                    let y = y.unwrap();
                    assert_eq!(y[0].shape(), *shape);
                    assert_eq!(y[0].as_slice::<i64>().unwrap(), *want);
                }
                None => assert!(y.is_err()),
            }
        }
    }
}
