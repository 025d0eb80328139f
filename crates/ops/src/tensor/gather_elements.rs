//! GatherElements (ONNX opsets 11, 13): `out[i][j][k] = data[index[i][j][k]][j][k]` along `axis`.
use super::common::{for_each_index, gather_cost, take};
use super::gather::fix_index;
use crate::util::{ints_of, normalize_axis};
use millrace_core::{strides_of, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct GatherElements {
    pub axis: i64,
}

impl GatherElements {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(GatherElements {
            axis: attrs.int_or("axis", 0)?,
        }))
    }
}

/// Flat data positions for elementwise indexing along `axis` (shared with ScatterElements).
pub(crate) fn element_positions(
    op: &str,
    data_shape: &[usize],
    idx_shape: &[usize],
    idx: &[i64],
    axis: usize,
) -> Result<Vec<usize>, OpError> {
    if data_shape.len() != idx_shape.len() {
        return Err(OpError::invalid(op, "data and indices differ in rank"));
    }
    for (i, (&d, &n)) in data_shape.iter().zip(idx_shape).enumerate() {
        if i != axis && n > d {
            return Err(OpError::invalid(
                op,
                format!("indices shape {idx_shape:?} exceeds data shape {data_shape:?}"),
            ));
        }
    }
    let st = strides_of(data_shape);
    let mut out = Vec::with_capacity(idx.len());
    let mut k = 0usize;
    let mut err = None;
    for_each_index(idx_shape, |ix| {
        if err.is_some() {
            return;
        }
        let mut p = 0usize;
        for (a, (&c, &s)) in ix.iter().zip(&st).enumerate() {
            if a == axis {
                match idx.get(k).map(|&v| fix_index(op, v, data_shape[axis])) {
                    Some(Ok(j)) => p += j * s,
                    Some(Err(e)) => err = Some(e),
                    None => err = Some(OpError::invalid(op, "indices too short")),
                }
            } else {
                p += c * s;
            }
        }
        out.push(p);
        k += 1;
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

impl Op for GatherElements {
    fn name(&self) -> &'static str {
        "GatherElements"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let i = ctx.input(1)?;
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape: i.shape.clone(),
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        gather_cost(inputs, outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let ind = inputs.req(1)?;
        if x.rank() == 0 {
            return Err(OpError::invalid(op, "data must have rank >= 1"));
        }
        let a = normalize_axis(op, self.axis, x.rank())?;
        let idx = ints_of(op, ind)?;
        let pos = element_positions(op, x.shape(), ind.shape(), &idx, a)?;
        Ok(vec![take(op, x.data(), &pos, ind.shape().to_vec())?])
    }

    fn describe(&self) -> String {
        format!("axis={}", self.axis)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_elements() {
        let x = Tensor::from_vec(vec![2, 2], vec![1i32, 2, 3, 4]).unwrap();
        let i = Tensor::from_vec(vec![2, 2], vec![0i64, 0, 1, 0]).unwrap();
        let y = GatherElements { axis: 1 }
            .eval(&Inputs::new("GatherElements", &[Some(&x), Some(&i)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[1, 1, 4, 3]);
        let i = Tensor::from_vec(vec![1, 2], vec![-1i64, 0]).unwrap();
        let y = GatherElements { axis: -2 }
            .eval(&Inputs::new("GatherElements", &[Some(&x), Some(&i)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[3, 2]);
        let bad = Tensor::from_vec(vec![1, 1], vec![2i64]).unwrap();
        assert!(GatherElements { axis: 0 }
            .eval(&Inputs::new("GatherElements", &[Some(&x), Some(&bad)]))
            .is_err());
    }
}
