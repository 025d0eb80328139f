//! Slice (ONNX opsets 1, 10, 11, 13): numpy-style strided slicing along chosen axes.
use super::common::{const_ints, istrides, opt_ints, strided_indices, take};
use crate::util::{ints_of, normalize_axes};
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Slice {
    /// Opset < 10: `(starts, ends, axes)` attributes; otherwise they are inputs.
    pub attrs: Option<AttrParams>,
}

/// Opset < 10 attributes: starts, ends, optional axes.
pub type AttrParams = (Vec<i64>, Vec<i64>, Option<Vec<i64>>);

/// Resolved (start, end, step) per axis; `None` for axes left whole.
type PerAxis = Vec<Option<(i64, i64, i64)>>;

impl Slice {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let a = if opset < 10 {
            let starts = attrs
                .ints("starts")?
                .ok_or_else(|| OpError::attribute("Slice", "starts", "required"))?;
            let ends = attrs
                .ints("ends")?
                .ok_or_else(|| OpError::attribute("Slice", "ends", "required"))?;
            Some((starts, ends, attrs.ints("axes")?))
        } else {
            None
        };
        Ok(Arc::new(Slice { attrs: a }))
    }
}

/// Resolved slice of one axis: first index, step, and output length.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct AxisSlice {
    pub start: i64,
    pub step: i64,
    pub len: usize,
}

/// Clamps `start`/`end` for an axis of length `dim` per the ONNX spec.
pub(crate) fn slice_axis(
    op: &str,
    dim: usize,
    start: i64,
    end: i64,
    step: i64,
) -> Result<AxisSlice, OpError> {
    if step == 0 {
        return Err(OpError::invalid(op, "step cannot be 0"));
    }
    let d = dim as i64;
    let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = if step > 0 {
        (fix(start).clamp(0, d), fix(end).clamp(0, d))
    } else {
        (fix(start).clamp(0, d - 1), fix(end).clamp(-1, d - 1))
    };
    let len = if step > 0 {
        if e > s {
            (e - s + step - 1) / step
        } else {
            0
        }
    } else if s > e {
        (s - e + (-step) - 1) / (-step)
    } else {
        0
    };
    Ok(AxisSlice {
        start: s.max(0),
        step,
        len: len as usize,
    })
}

/// Parameters of the slice: (starts, ends, axes, steps).
type Params = (Vec<i64>, Vec<i64>, Option<Vec<i64>>, Option<Vec<i64>>);

/// Per-axis (start, end, step) for a tensor of rank `rank`; axes not named are whole.
fn per_axis(op: &str, rank: usize, p: &Params) -> Result<PerAxis, OpError> {
    let (starts, ends, axes, steps) = p;
    let n = starts.len();
    if ends.len() != n {
        return Err(OpError::invalid(op, "starts and ends differ in length"));
    }
    let axes = match axes {
        Some(a) => a.clone(),
        None => (0..n as i64).collect(),
    };
    let steps = match steps {
        Some(s) => s.clone(),
        None => vec![1; n],
    };
    if axes.len() != n || steps.len() != n {
        return Err(OpError::invalid(
            op,
            "axes or steps differ in length from starts",
        ));
    }
    let axes = normalize_axes(op, &axes, rank)?;
    let mut out = vec![None; rank];
    for (k, &a) in axes.iter().enumerate() {
        out[a] = Some((starts[k], ends[k], steps[k]));
    }
    Ok(out)
}

impl Slice {
    fn params_eval(&self, inputs: &Inputs<'_>) -> Result<Params, OpError> {
        if let Some((s, e, a)) = &self.attrs {
            return Ok((s.clone(), e.clone(), a.clone(), None));
        }
        let op = self.name();
        Ok((
            ints_of(op, inputs.req(1)?)?,
            ints_of(op, inputs.req(2)?)?,
            opt_ints(op, inputs, 3)?,
            opt_ints(op, inputs, 4)?,
        ))
    }

    fn params_infer(&self, ctx: &InferCtx<'_>) -> Option<Params> {
        if let Some((s, e, a)) = &self.attrs {
            return Some((s.clone(), e.clone(), a.clone(), None));
        }
        let opt = |i: usize| -> Option<Option<Vec<i64>>> {
            if ctx.opt_input(i).is_none() {
                Some(None)
            } else {
                const_ints(ctx, i).map(Some)
            }
        };
        Some((const_ints(ctx, 1)?, const_ints(ctx, 2)?, opt(3)?, opt(4)?))
    }
}

impl Op for Slice {
    fn name(&self) -> &'static str {
        "Slice"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let op = self.name();
        let shape = match (&x.shape, self.params_infer(ctx)) {
            (Some(s), Some(p)) => {
                let ax = per_axis(op, s.len(), &p)?;
                let mut out = Vec::with_capacity(s.len());
                for (d, a) in s.iter().zip(ax) {
                    out.push(match (d, a) {
                        (d, None) => d.clone(),
                        (Dim::Known(n), Some((st, en, sp))) => {
                            Dim::Known(slice_axis(op, *n, st, en, sp)?.len)
                        }
                        (Dim::Sym(name), Some((st, en, sp))) => {
                            if sp == 0 {
                                return Err(OpError::invalid(op, "step cannot be 0"));
                            }
                            if (st == 0 && sp == 1 && en >= i32::MAX as i64)
                                || (st == -1 && sp == -1 && en <= i32::MIN as i64)
                            {
                                d.clone()
                            } else {
                                Dim::Sym(format!("{name}[{st}:{en}:{sp}]"))
                            }
                        }
                    });
                }
                Some(out)
            }
            _ => None,
        };
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape,
        }])
    }

    fn cost(&self, _inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        // Reads only the selected elements.
        Cost::movement(outputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let p = self.params_eval(inputs)?;
        let ax = per_axis(op, x.rank(), &p)?;
        let st = istrides(x.shape());
        let mut out_shape = Vec::with_capacity(x.rank());
        let mut strides = Vec::with_capacity(x.rank());
        let mut offset = 0isize;
        for (i, (&d, a)) in x.shape().iter().zip(ax).enumerate() {
            match a {
                None => {
                    out_shape.push(d);
                    strides.push(st[i]);
                }
                Some((s, e, step)) => {
                    let r = slice_axis(op, d, s, e, step)?;
                    out_shape.push(r.len);
                    strides.push(st[i] * r.step as isize);
                    if r.len > 0 {
                        offset += r.start as isize * st[i];
                    }
                }
            }
        }
        if out_shape == x.shape() && strides == st {
            return Ok(vec![x.clone()]);
        }
        let idx = strided_indices(&out_shape, &strides, offset);
        Ok(vec![take(op, x.data(), &idx, out_shape)?])
    }

    fn describe(&self) -> String {
        match &self.attrs {
            Some((s, e, a)) => format!("starts={s:?} ends={e:?} axes={a:?}"),
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

    fn run(
        x: &Tensor,
        s: &[i64],
        e: &[i64],
        a: Option<&[i64]>,
        st: Option<&[i64]>,
    ) -> Result<Tensor, OpError> {
        let t = |v: &[i64]| Tensor::from_vec(vec![v.len()], v.to_vec()).unwrap();
        let (s, e) = (t(s), t(e));
        let a = a.map(t);
        let st = st.map(t);
        Slice { attrs: None }
            .eval(&Inputs::new(
                "Slice",
                &[Some(x), Some(&s), Some(&e), a.as_ref(), st.as_ref()],
            ))
            .map(|mut v| v.remove(0))
    }

    #[test]
    fn slices_like_numpy() {
        let x = Tensor::from_vec(vec![2, 4], (0..8).collect::<Vec<i32>>()).unwrap();
        let cases: &[(
            &[i64],
            &[i64],
            Option<&[i64]>,
            Option<&[i64]>,
            &[usize],
            &[i32],
        )] = &[
            (&[0, 1], &[2, 3], None, None, &[2, 2], &[1, 2, 5, 6]),
            (
                &[1],
                &[i64::MAX],
                Some(&[-1]),
                None,
                &[2, 3],
                &[1, 2, 3, 5, 6, 7],
            ),
            (
                &[-1],
                &[i64::MIN],
                Some(&[1]),
                Some(&[-1]),
                &[2, 4],
                &[3, 2, 1, 0, 7, 6, 5, 4],
            ),
            (&[0], &[10], Some(&[1]), Some(&[3]), &[2, 2], &[0, 3, 4, 7]),
            (&[3], &[1], Some(&[1]), None, &[2, 0], &[]),
            (
                &[-1],
                &[-3],
                Some(&[1]),
                Some(&[-1]),
                &[2, 2],
                &[3, 2, 7, 6],
            ),
        ];
        for (s, e, a, st, shape, want) in cases {
            let y = run(&x, s, e, *a, *st).unwrap();
            assert_eq!(y.shape(), *shape, "{s:?} {e:?} {a:?} {st:?}");
            assert_eq!(y.as_slice::<i32>().unwrap(), *want);
        }
        assert!(run(&x, &[0], &[1], Some(&[0]), Some(&[0])).is_err());
        assert!(run(&x, &[0], &[1], Some(&[2]), None).is_err());
    }
}
