//! Compress (ONNX opsets 9, 11): keeps the slices along `axis` (or of the flattened input)
//! where the 1-D bool `condition` is true.
use super::common::take;
use crate::util::normalize_axis;
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Compress {
    pub axis: Option<i64>,
}

impl Compress {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Compress {
            axis: attrs.int("axis")?,
        }))
    }
}

impl Op for Compress {
    fn name(&self) -> &'static str {
        "Compress"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let count = match ctx.constant(1).map(|c| c.to_i64_vec()) {
            Some(Ok(v)) => Dim::Known(v.iter().filter(|&&b| b != 0).count()),
            _ => Dim::Sym("compressed".into()),
        };
        let shape = match (self.axis, &x.shape) {
            (None, _) => Some(vec![count]),
            (Some(a), Some(s)) => {
                let a = normalize_axis(self.name(), a, s.len())?;
                let mut o = s.clone();
                o[a] = count;
                Some(o)
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
        let c = inputs.req(1)?;
        if c.rank() != 1 {
            return Err(OpError::invalid(op, "condition must be 1-D"));
        }
        let cond = c.to_i64_vec().map_err(|e| OpError::tensor(op, e))?;
        let (shape, axis) = match self.axis {
            None => (vec![x.len()], 0),
            Some(a) => (x.shape().to_vec(), normalize_axis(op, a, x.rank())?),
        };
        if shape.is_empty() {
            return Err(OpError::invalid(
                op,
                "input must have rank >= 1 with an axis",
            ));
        }
        let d = shape[axis];
        let keep: Vec<usize> = cond
            .iter()
            .enumerate()
            .filter(|(_, &b)| b != 0)
            .map(|(i, _)| i)
            .collect();
        if keep.iter().any(|&i| i >= d) {
            return Err(OpError::invalid(
                op,
                "condition selects beyond the axis length",
            ));
        }
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let mut idx = Vec::with_capacity(outer * keep.len() * inner);
        for o in 0..outer {
            for &k in &keep {
                let base = (o * d + k) * inner;
                idx.extend(base..base + inner);
            }
        }
        let mut out = shape;
        out[axis] = keep.len();
        Ok(vec![take(op, x.data(), &idx, out)?])
    }

    fn describe(&self) -> String {
        match self.axis {
            Some(a) => format!("axis={a}"),
            None => String::new(),
        }
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
    fn compresses() {
        let x = Tensor::from_vec(vec![3, 2], vec![1i32, 2, 3, 4, 5, 6]).unwrap();
        let c = Tensor::from_vec(vec![2], vec![false, true]).unwrap();
        let cases: &[(Option<i64>, &[usize], &[i32])] = &[
            (Some(0), &[1, 2], &[3, 4]),
            (Some(-1), &[3, 1], &[2, 4, 6]),
            (None, &[1], &[2]),
        ];
        for (axis, shape, want) in cases {
            let y = Compress { axis: *axis }
                .eval(&Inputs::new("Compress", &[Some(&x), Some(&c)]))
                .unwrap();
            assert_eq!(y[0].shape(), *shape);
            assert_eq!(y[0].as_slice::<i32>().unwrap(), *want);
        }
        let long = Tensor::from_vec(vec![4], vec![false, false, false, true]).unwrap();
        assert!(Compress { axis: Some(0) }
            .eval(&Inputs::new("Compress", &[Some(&x), Some(&long)]))
            .is_err());
    }
}
