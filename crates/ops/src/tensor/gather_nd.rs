//! GatherND (ONNX opsets 11, 12, 13): gathers slices of `data` addressed by the last axis of
//! `indices`, with `batch_dims` leading batch axes.
use super::common::{gather_cost, take};
use super::gather::fix_index;
use crate::util::ints_of;
use millrace_core::{strides_of, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct GatherND {
    pub batch_dims: usize,
}

impl GatherND {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let b = attrs.int_or("batch_dims", 0)?;
        let batch_dims = usize::try_from(b)
            .map_err(|_| OpError::attribute("GatherND", "batch_dims", "must be >= 0"))?;
        Ok(Arc::new(GatherND { batch_dims }))
    }
}

/// For ND indexing (GatherND/ScatterND): each index tuple's flat start in `data`, the slice
/// length, and the shape of the tuple grid `indices.shape[..-1]`.
pub(crate) fn nd_offsets(
    op: &str,
    data_shape: &[usize],
    idx_shape: &[usize],
    idx: &[i64],
    b: usize,
) -> Result<(Vec<usize>, usize), OpError> {
    let q = idx_shape.len();
    let r = data_shape.len();
    let Some(&m) = idx_shape.last() else {
        return Err(OpError::invalid(op, "indices must have rank >= 1"));
    };
    if b >= q || b >= r || m > r - b || data_shape[..b] != idx_shape[..b] {
        return Err(OpError::invalid(
            op,
            format!("indices {idx_shape:?} do not fit data {data_shape:?} with batch_dims {b}"),
        ));
    }
    let st = strides_of(data_shape);
    let slice: usize = data_shape[b + m..].iter().product();
    let batch_stride: usize = data_shape[b..].iter().product();
    let per_batch: usize = idx_shape[b..q - 1].iter().product();
    let tuples = idx.len() / m.max(1);
    let mut out = Vec::with_capacity(tuples);
    for t in 0..idx_shape[..q - 1].iter().product::<usize>() {
        let batch = t.checked_div(per_batch).unwrap_or(0);
        let mut p = batch * batch_stride;
        for k in 0..m {
            let v = *idx
                .get(t * m + k)
                .ok_or_else(|| OpError::invalid(op, "indices too short"))?;
            p += fix_index(op, v, data_shape[b + k])? * st[b + k];
        }
        out.push(p);
    }
    Ok((out, slice))
}

impl Op for GatherND {
    fn name(&self) -> &'static str {
        "GatherND"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let i = ctx.input(1)?;
        let shape = match (&x.shape, &i.shape) {
            (Some(xs), Some(is)) => match is.last().and_then(|d| d.known()) {
                Some(m) if self.batch_dims + m <= xs.len() && !is.is_empty() => {
                    let mut s = is[..is.len() - 1].to_vec();
                    s.extend(xs[self.batch_dims + m..].iter().cloned());
                    Some(s)
                }
                Some(_) => return Err(OpError::invalid(self.name(), "indices do not fit data")),
                None => None,
            },
            _ => None,
        };
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        gather_cost(inputs, outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let ind = inputs.req(1)?;
        let (starts, slice) = nd_offsets(
            op,
            x.shape(),
            ind.shape(),
            &ints_of(op, ind)?,
            self.batch_dims,
        )?;
        let m = ind.shape().last().copied().unwrap_or(0);
        let mut idx = Vec::with_capacity(starts.len() * slice);
        for s in starts {
            idx.extend(s..s + slice);
        }
        let q = ind.rank();
        let mut shape = ind.shape()[..q - 1].to_vec();
        shape.extend_from_slice(&x.shape()[self.batch_dims + m..]);
        Ok(vec![take(op, x.data(), &idx, shape)?])
    }

    fn describe(&self) -> String {
        format!("batch_dims={}", self.batch_dims)
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
    fn gathers_nd() {
        let x = Tensor::from_vec(vec![2, 2], vec![0i32, 1, 2, 3]).unwrap();
        let cases: &[(usize, Tensor, &[usize], &[i32])] = &[
            (
                0,
                Tensor::from_vec(vec![2, 2], vec![0i64, 0, 1, 1]).unwrap(),
                &[2],
                &[0, 3],
            ),
            (
                0,
                Tensor::from_vec(vec![2, 1], vec![1i64, -2]).unwrap(),
                &[2, 2],
                &[2, 3, 0, 1],
            ),
            (
                1,
                Tensor::from_vec(vec![2, 1], vec![1i64, 0]).unwrap(),
                &[2],
                &[1, 2],
            ),
        ];
        for (b, i, shape, want) in cases {
            let y = GatherND { batch_dims: *b }
                .eval(&Inputs::new("GatherND", &[Some(&x), Some(i)]))
                .unwrap();
            assert_eq!(y[0].shape(), *shape);
            assert_eq!(y[0].as_slice::<i32>().unwrap(), *want);
        }
        let bad = Tensor::from_vec(vec![1, 3], vec![0i64, 0, 0]).unwrap();
        assert!(GatherND { batch_dims: 0 }
            .eval(&Inputs::new("GatherND", &[Some(&x), Some(&bad)]))
            .is_err());
    }
}
