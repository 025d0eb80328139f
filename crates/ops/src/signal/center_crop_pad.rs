//! CenterCropPad (ONNX opset 18): crops or zero-pads the given axes (all by default)
//! around the center to `shape`; when the difference is odd the extra element is taken
//! from (crop) or added at (pad) the end.
use super::common::{checked_numel, to_dims};
use crate::util::{ints_of, normalize_axes};
use millrace_core::{with_data, Dim, Elem, Tensor, TensorData};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "CenterCropPad";

#[derive(Clone, Debug, PartialEq)]
pub struct CenterCropPad {
    pub axes: Option<Vec<i64>>,
}

impl CenterCropPad {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(CenterCropPad {
            axes: attrs.ints("axes")?,
        }))
    }

    fn axes(&self, rank: usize) -> Result<Vec<usize>, OpError> {
        match &self.axes {
            Some(a) => normalize_axes(NAME, a, rank),
            None => Ok((0..rank).collect()),
        }
    }
}

/// Gathers by optional flat index; `None` reads the dtype's zero.
pub(crate) fn gather_or_zero<T: Elem + Default>(v: &[T], idx: &[Option<usize>]) -> Vec<T> {
    idx.iter()
        .map(|i| i.and_then(|i| v.get(i).cloned()).unwrap_or_default())
        .collect()
}

impl Op for CenterCropPad {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let shape = (|| {
            let xs = x.shape.as_ref()?;
            let target = ints_of(NAME, ctx.constant(1)?).ok()?;
            let axes = self.axes(xs.len()).ok()?;
            if axes.len() != target.len() {
                return None;
            }
            let mut s = xs.clone();
            for (&a, &t) in axes.iter().zip(&target) {
                s[a] = Dim::Known(usize::try_from(t).ok()?);
            }
            Some(s)
        })();
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let target = to_dims(NAME, "shape", &ints_of(NAME, inputs.req(1)?)?)?;
        let xs = x.shape();
        let rank = xs.len();
        let axes = self.axes(rank)?;
        if axes.len() != target.len() {
            return Err(OpError::invalid(
                NAME,
                format!("shape has {} values for {} axes", target.len(), axes.len()),
            ));
        }
        let mut out_shape = xs.to_vec();
        // Per axis: output index o reads input index o + shift (if in range).
        let mut shift = vec![0i64; rank];
        for (&a, &t) in axes.iter().zip(&target) {
            let d = xs[a];
            out_shape[a] = t;
            if t < d {
                shift[a] = ((d - t) / 2) as i64;
            } else if t > d {
                shift[a] = -(((t - d) / 2) as i64);
            }
        }
        let total = checked_numel(NAME, &out_shape)?;
        let mut idx = Vec::with_capacity(total);
        let mut o = vec![0usize; rank];
        for _ in 0..total {
            let mut flat = 0usize;
            let mut inside = true;
            for ax in 0..rank {
                let i = o[ax] as i64 + shift[ax];
                if i < 0 || i as usize >= xs[ax] {
                    inside = false;
                    break;
                }
                flat = flat * xs[ax] + i as usize;
            }
            idx.push(inside.then_some(flat));
            for ax in (0..rank).rev() {
                o[ax] += 1;
                if o[ax] < out_shape[ax] {
                    break;
                }
                o[ax] = 0;
            }
        }
        let data: TensorData = with_data!(x.data(), v => Elem::wrap(gather_or_zero(v, &idx)));
        Ok(vec![
            Tensor::new(out_shape, data).map_err(|e| OpError::tensor(NAME, e))?
        ])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_and_pads_around_the_center() {
        let x = Tensor::from_vec(vec![2, 5], (0..10).collect::<Vec<i64>>()).unwrap();
        let shape = Tensor::from_vec(vec![2], vec![3i64, 2]).unwrap();
        let op = CenterCropPad { axes: None };
        let y = op
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&shape)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[3, 2]);
        // Rows: pad 1 at the end; columns: crop 3 -> start at 1.
        assert_eq!(y[0].as_slice::<i64>().unwrap(), &[1, 2, 6, 7, 0, 0]);
    }
}
