//! ScatterND (ONNX opsets 11, 13, 16, 18): writes slices of `updates` into a copy of `data`
//! at the positions addressed by the last axis of `indices` (optionally reducing).
use super::common::{scatter_into, Reduction};
use super::gather_nd::nd_offsets;
use crate::util::ints_of;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct ScatterND {
    pub reduction: Reduction,
}

impl ScatterND {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let reduction =
            Reduction::parse("ScatterND", &attrs.string_or("reduction", "none")?, opset)?;
        Ok(Arc::new(ScatterND { reduction }))
    }
}

impl Op for ScatterND {
    fn name(&self) -> &'static str {
        "ScatterND"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        ctx.input(1)?;
        ctx.input(2)?;
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let ind = inputs.req(1)?;
        let upd = inputs.req(2)?;
        let (starts, slice) = nd_offsets(op, x.shape(), ind.shape(), &ints_of(op, ind)?, 0)?;
        let q = ind.rank();
        let m = ind.shape()[q - 1];
        let mut want = ind.shape()[..q - 1].to_vec();
        want.extend_from_slice(&x.shape()[m..]);
        if upd.shape() != want.as_slice() {
            return Err(OpError::invalid(
                op,
                format!("updates shape {:?} should be {want:?}", upd.shape()),
            ));
        }
        let mut pos = Vec::with_capacity(upd.len());
        for s in starts {
            pos.extend(s..s + slice);
        }
        Ok(vec![scatter_into(op, x, &pos, upd, self.reduction)?])
    }

    fn describe(&self) -> String {
        format!("reduction={}", self.reduction.name())
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
    fn scatters_nd() {
        let x = Tensor::from_vec(vec![4], vec![1i64, 2, 3, 4]).unwrap();
        let i = Tensor::from_vec(vec![2, 1], vec![3i64, -4]).unwrap();
        let u = Tensor::from_vec(vec![2], vec![10i64, 20]).unwrap();
        let cases: &[(Reduction, &[i64])] = &[
            (Reduction::None, &[20, 2, 3, 10]),
            (Reduction::Mul, &[20, 2, 3, 40]),
            (Reduction::Min, &[1, 2, 3, 4]),
        ];
        for (red, want) in cases {
            let y = ScatterND { reduction: *red }
                .eval(&Inputs::new("ScatterND", &[Some(&x), Some(&i), Some(&u)]))
                .unwrap();
            assert_eq!(y[0].as_slice::<i64>().unwrap(), *want);
        }
        let m = Tensor::from_vec(vec![2, 2], vec![true, false, false, false]).unwrap();
        let i = Tensor::from_vec(vec![1, 1], vec![1i64]).unwrap();
        let u = Tensor::from_vec(vec![1, 2], vec![true, true]).unwrap();
        let y = ScatterND {
            reduction: Reduction::None,
        }
        .eval(&Inputs::new("ScatterND", &[Some(&m), Some(&i), Some(&u)]))
        .unwrap();
        assert_eq!(y[0].as_slice::<bool>().unwrap(), &[true, false, true, true]);
        let bad = Tensor::from_vec(vec![1], vec![1i64]).unwrap();
        assert!(ScatterND {
            reduction: Reduction::None
        }
        .eval(&Inputs::new("ScatterND", &[Some(&m), Some(&i), Some(&bad)]))
        .is_err());
    }
}
