//! ReverseSequence (ONNX opset 10): reverses the first `sequence_lens[b]` steps along
//! `time_axis` for each batch entry `b` along `batch_axis`.
use super::common::{for_each_index, take};
use crate::util::ints_of;
use millrace_core::{strides_of, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct ReverseSequence {
    pub batch_axis: usize,
    pub time_axis: usize,
}

impl ReverseSequence {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let b = attrs.int_or("batch_axis", 1)?;
        let t = attrs.int_or("time_axis", 0)?;
        if !matches!((b, t), (0, 1) | (1, 0)) {
            return Err(OpError::attribute(
                "ReverseSequence",
                "batch_axis",
                "batch_axis and time_axis must be 0 and 1 in some order",
            ));
        }
        Ok(Arc::new(ReverseSequence {
            batch_axis: b as usize,
            time_axis: t as usize,
        }))
    }
}

impl Op for ReverseSequence {
    fn name(&self) -> &'static str {
        "ReverseSequence"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        ctx.input(1)?;
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let lens = ints_of(op, inputs.req(1)?)?;
        if x.rank() < 2 {
            return Err(OpError::invalid(op, "input must have rank >= 2"));
        }
        let s = x.shape();
        let (nb, nt) = (s[self.batch_axis], s[self.time_axis]);
        if lens.len() != nb {
            return Err(OpError::invalid(
                op,
                "sequence_lens must have one entry per batch",
            ));
        }
        if lens.iter().any(|&l| l < 0 || l as usize > nt) {
            return Err(OpError::invalid(op, "sequence length out of range"));
        }
        let st = strides_of(s);
        let mut idx = Vec::with_capacity(x.len());
        for_each_index(s, |ix| {
            let b = ix[self.batch_axis];
            let t = ix[self.time_axis];
            let l = lens[b] as usize;
            let src_t = if t < l { l - 1 - t } else { t };
            let mut p = 0;
            for (a, (&i, &k)) in ix.iter().zip(&st).enumerate() {
                p += if a == self.time_axis { src_t } else { i } * k;
            }
            idx.push(p);
        });
        Ok(vec![take(op, x.data(), &idx, s.to_vec())?])
    }

    fn describe(&self) -> String {
        format!(
            "batch_axis={} time_axis={}",
            self.batch_axis, self.time_axis
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverses_prefixes() {
        // time x batch = 3 x 2
        let x = Tensor::from_vec(vec![3, 2], vec![0i32, 10, 1, 11, 2, 12]).unwrap();
        let l = Tensor::from_vec(vec![2], vec![3i64, 2]).unwrap();
        let op = ReverseSequence {
            batch_axis: 1,
            time_axis: 0,
        };
        let y = op
            .eval(&Inputs::new("ReverseSequence", &[Some(&x), Some(&l)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[2, 11, 1, 10, 0, 12]);
        let bad = Tensor::from_vec(vec![2], vec![4i64, 1]).unwrap();
        assert!(op
            .eval(&Inputs::new("ReverseSequence", &[Some(&x), Some(&bad)]))
            .is_err());
    }
}
