//! Unsqueeze (ONNX opsets 1, 11, 13, 21): inserts size-1 dims at `axes` of the output.
use super::common::{const_ints, with_shape};
use crate::util::{ints_of, normalize_axes};
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Unsqueeze {
    /// Opset < 13: the axes attribute; opset >= 13: `None`, axes are input 1.
    pub axes_attr: Option<Vec<i64>>,
}

impl Unsqueeze {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let axes_attr = if opset < 13 {
            Some(
                attrs
                    .ints("axes")?
                    .ok_or_else(|| OpError::attribute("Unsqueeze", "axes", "required"))?,
            )
        } else {
            None
        };
        Ok(Arc::new(Unsqueeze { axes_attr }))
    }
}

/// Output dims: `shape` with 1s inserted at `axes` (normalized against the output rank).
pub(crate) fn unsqueeze_dims<D: Clone>(
    op: &str,
    shape: &[D],
    axes: &[i64],
    one: D,
) -> Result<Vec<D>, OpError> {
    let rank = shape.len() + axes.len();
    let axes = normalize_axes(op, axes, rank)?;
    let mut out = Vec::with_capacity(rank);
    let mut it = shape.iter();
    for i in 0..rank {
        if axes.contains(&i) {
            out.push(one.clone());
        } else {
            out.push(
                it.next()
                    .cloned()
                    .ok_or_else(|| OpError::invalid(op, "bad axes"))?,
            );
        }
    }
    Ok(out)
}

impl Op for Unsqueeze {
    fn name(&self) -> &'static str {
        "Unsqueeze"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let axes = match &self.axes_attr {
            Some(a) => Some(a.clone()),
            None => const_ints(ctx, 1),
        };
        let shape = match (&x.shape, axes) {
            (Some(s), Some(a)) => Some(unsqueeze_dims(self.name(), s, &a, Dim::Known(1))?),
            _ => None,
        };
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape,
        }])
    }

    fn cost(&self, _inputs: &[ValueType], _outputs: &[ValueType]) -> Cost {
        Cost::default()
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let axes = match &self.axes_attr {
            Some(a) => a.clone(),
            None => ints_of(self.name(), inputs.req(1)?)?,
        };
        let shape = unsqueeze_dims(self.name(), x.shape(), &axes, 1)?;
        Ok(vec![with_shape(self.name(), x, shape)?])
    }

    fn describe(&self) -> String {
        match &self.axes_attr {
            Some(a) => format!("axes={a:?}"),
            None => String::new(),
        }
    }

    /// Output 0 is input 0's data under a new shape: the executor may alias it.
    fn is_alias(&self) -> bool {
        true
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;
    use millrace_core::DType;

    #[test]
    fn inserts_ones() {
        let x = Tensor::zeros(DType::I64, vec![3, 4]);
        let cases: &[(&[i64], Option<&[usize]>)] = &[
            (&[0], Some(&[1, 3, 4])),
            (&[-1], Some(&[3, 4, 1])),
            (&[0, 3], Some(&[1, 3, 4, 1])),
            (&[1, -2], Some(&[3, 1, 1, 4])),
            (&[4], None),
            (&[0, 0], None),
        ];
        for (axes, want) in cases {
            let op = Unsqueeze {
                axes_attr: Some(axes.to_vec()),
            };
            let got = op.eval(&Inputs::new("Unsqueeze", &[Some(&x)]));
            assert_eq!(got.ok().map(|t| t[0].shape().to_vec()).as_deref(), *want);
        }
        let s = Tensor::scalar(5i64);
        let a = Tensor::from_vec(vec![1], vec![0i64]).unwrap();
        let y = Unsqueeze { axes_attr: None }
            .eval(&Inputs::new("Unsqueeze", &[Some(&s), Some(&a)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[1]);
    }
}
