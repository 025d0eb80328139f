//! Tile (ONNX opsets 6, 13): repeats the input `repeats[i]` times along each axis.
use super::common::{const_ints, dim_product, for_each_index, take};
use crate::util::ints_of;
use millrace_core::{strides_of, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Tile;

impl Tile {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Tile))
    }
}

fn check(op: &str, rank: usize, reps: &[i64]) -> Result<Vec<usize>, OpError> {
    if reps.len() != rank {
        return Err(OpError::invalid(
            op,
            format!("repeats {reps:?} do not match rank {rank}"),
        ));
    }
    reps.iter()
        .map(|&r| {
            usize::try_from(r).map_err(|_| OpError::invalid(op, format!("negative repeat {r}")))
        })
        .collect()
}

impl Op for Tile {
    fn name(&self) -> &'static str {
        "Tile"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let shape = match (&x.shape, const_ints(ctx, 1)) {
            (Some(s), Some(r)) => {
                let r = check(self.name(), s.len(), &r)?;
                Some(
                    s.iter()
                        .zip(r)
                        .map(|(d, r)| dim_product(&[d.clone(), Dim::Known(r)]))
                        .collect(),
                )
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
        let r = check(op, x.rank(), &ints_of(op, inputs.req(1)?)?)?;
        let s = x.shape();
        let out: Vec<usize> = s.iter().zip(&r).map(|(d, r)| d * r).collect();
        let st = strides_of(s);
        let mut idx = Vec::with_capacity(out.iter().product());
        for_each_index(&out, |ix| {
            idx.push(
                ix.iter()
                    .zip(s)
                    .zip(&st)
                    .map(|((&i, &d), &t)| (i % d) * t)
                    .sum(),
            );
        });
        Ok(vec![take(op, x.data(), &idx, out)?])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles() {
        let x = Tensor::from_vec(vec![2, 2], vec![1i32, 2, 3, 4]).unwrap();
        let r = Tensor::from_vec(vec![2], vec![1i64, 2]).unwrap();
        let y = Tile
            .eval(&Inputs::new("Tile", &[Some(&x), Some(&r)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[2, 4]);
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[1, 2, 1, 2, 3, 4, 3, 4]);
        let r = Tensor::from_vec(vec![2], vec![2i64, 0]).unwrap();
        let y = Tile
            .eval(&Inputs::new("Tile", &[Some(&x), Some(&r)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[4, 0]);
        let r = Tensor::from_vec(vec![1], vec![2i64]).unwrap();
        assert!(Tile
            .eval(&Inputs::new("Tile", &[Some(&x), Some(&r)]))
            .is_err());
    }
}
