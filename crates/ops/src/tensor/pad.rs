//! Pad (ONNX opsets 1, 2, 11, 13, 18, 19, 21): pads (or, with negative pads, crops) each axis;
//! modes constant, reflect, edge, wrap.
use super::common::{const_ints, for_each_index, opt_ints, scalar_data, take_or};
use crate::util::{ints_of, normalize_axes};
use millrace_core::{strides_of, Dim, Tensor, TensorData};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pad {
    pub mode: PadMode,
    /// Opset < 11: pads and fill value from attributes.
    pub attrs: Option<(Vec<i64>, f32)>,
}

impl Pad {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let mode = match attrs.string_or("mode", "constant")?.as_str() {
            "constant" => PadMode::Constant,
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            "wrap" if opset >= 19 => PadMode::Wrap,
            m => {
                return Err(OpError::attribute(
                    "Pad",
                    "mode",
                    format!("unknown mode {m}"),
                ))
            }
        };
        let a = if opset < 11 {
            let name = if opset < 2 { "paddings" } else { "pads" };
            let pads = attrs
                .ints(name)?
                .ok_or_else(|| OpError::attribute("Pad", name, "required"))?;
            Some((pads, attrs.float_or("value", 0.0)?))
        } else {
            None
        };
        Ok(Arc::new(Pad { mode, attrs: a }))
    }

    /// Per-axis (begin, end) pads for rank `rank` from `pads` and optional `axes`.
    fn per_axis(
        &self,
        rank: usize,
        pads: &[i64],
        axes: Option<&[i64]>,
    ) -> Result<Vec<(i64, i64)>, OpError> {
        let op = self.name();
        let axes = match axes {
            Some(a) => normalize_axes(op, a, rank)?,
            None => (0..rank).collect(),
        };
        let n = axes.len();
        if pads.len() != 2 * n {
            return Err(OpError::invalid(
                op,
                format!("pads {pads:?} must hold {} values", 2 * n),
            ));
        }
        let mut out = vec![(0, 0); rank];
        for (k, &a) in axes.iter().enumerate() {
            out[a] = (pads[k], pads[k + n]);
        }
        Ok(out)
    }
}

/// The source coordinate for output coordinate `o` along an axis of length `d` with
/// `begin` padding, or `None` for the fill value.
fn source(mode: PadMode, o: i64, begin: i64, d: i64) -> Option<usize> {
    let i = o - begin;
    if (0..d).contains(&i) {
        return Some(i as usize);
    }
    if d == 0 {
        return None;
    }
    Some(match mode {
        PadMode::Constant => return None,
        PadMode::Edge => i.clamp(0, d - 1) as usize,
        PadMode::Wrap => i.rem_euclid(d) as usize,
        PadMode::Reflect => {
            if d == 1 {
                0
            } else {
                let period = 2 * (d - 1);
                let m = i.rem_euclid(period);
                (if m >= d { period - m } else { m }) as usize
            }
        }
    })
}

impl Op for Pad {
    fn name(&self) -> &'static str {
        "Pad"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let (pads, axes) = match &self.attrs {
            Some((p, _)) => (Some(p.clone()), None),
            None => {
                let axes = if ctx.opt_input(3).is_some() {
                    match const_ints(ctx, 3) {
                        Some(a) => Some(a),
                        None => {
                            return Ok(vec![ValueType {
                                dtype: x.dtype,
                                shape: None,
                            }])
                        }
                    }
                } else {
                    None
                };
                (const_ints(ctx, 1), axes)
            }
        };
        let shape = match (&x.shape, pads) {
            (Some(s), Some(p)) => {
                let pa = self.per_axis(s.len(), &p, axes.as_deref())?;
                let mut out = Vec::with_capacity(s.len());
                for (d, (b, e)) in s.iter().zip(pa) {
                    out.push(match d {
                        Dim::Known(n) => {
                            let v = *n as i64 + b + e;
                            if v < 0 {
                                return Err(OpError::invalid(self.name(), "pads crop below zero"));
                            }
                            Dim::Known(v as usize)
                        }
                        Dim::Sym(name) if b == 0 && e == 0 => Dim::Sym(name.clone()),
                        Dim::Sym(name) => Dim::Sym(format!("{name}+{}", b + e)),
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

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(&inputs[..inputs.len().min(1)], outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let (pads, axes, fill): (Vec<i64>, Option<Vec<i64>>, TensorData) = match &self.attrs {
            Some((p, v)) => (p.clone(), None, scalar_data(op, x.dtype(), *v as f64)?),
            None => {
                let fill = match inputs.opt(2) {
                    Some(c) if !c.is_empty() => {
                        if c.dtype() != x.dtype() {
                            return Err(OpError::invalid(
                                op,
                                "constant_value dtype differs from data",
                            ));
                        }
                        c.data().clone()
                    }
                    // E8M0 has no zero: ONNX pads with 0 cast to E8M0, which is NaN, while a
                    // zero-filled buffer would hold 2^-127. Refuse rather than guess.
                    _ if x.dtype() == millrace_core::DType::F8E8M0 => {
                        return Err(OpError::unsupported(
                            op,
                            "float8e8m0 padding without a constant_value",
                        ))
                    }
                    _ => TensorData::zeros(x.dtype(), 1),
                };
                (ints_of(op, inputs.req(1)?)?, opt_ints(op, inputs, 3)?, fill)
            }
        };
        let pa = self.per_axis(x.rank(), &pads, axes.as_deref())?;
        let s = x.shape();
        let mut out = Vec::with_capacity(s.len());
        for (&d, &(b, e)) in s.iter().zip(&pa) {
            let v = d as i64 + b + e;
            if v < 0 {
                return Err(OpError::invalid(op, "pads crop below zero"));
            }
            out.push(v as usize);
        }
        let n: usize = out.iter().product();
        if n > 0 && self.mode != PadMode::Constant && s.contains(&0) {
            return Err(OpError::invalid(
                op,
                "cannot pad an empty axis in this mode",
            ));
        }
        let st = strides_of(s);
        let mut idx = Vec::with_capacity(n);
        for_each_index(&out, |ix| {
            let mut p = Some(0usize);
            for (a, &o) in ix.iter().enumerate() {
                let src = source(self.mode, o as i64, pa[a].0, s[a] as i64);
                p = match (p, src) {
                    (Some(p), Some(i)) => Some(p + i * st[a]),
                    _ => None,
                };
            }
            idx.push(p);
        });
        Ok(vec![take_or(op, x.data(), &idx, &fill, out)?])
    }

    fn describe(&self) -> String {
        let m = match self.mode {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Edge => "edge",
            PadMode::Wrap => "wrap",
        };
        match &self.attrs {
            Some((p, v)) => format!("mode={m} pads={p:?} value={v}"),
            None => format!("mode={m}"),
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
    fn pads_in_every_mode() {
        let x = Tensor::from_vec(vec![1, 3], vec![1.0f32, 2., 3.]).unwrap();
        let pads = Tensor::from_vec(vec![4], vec![0i64, 2, 0, 1]).unwrap();
        let cases: &[(PadMode, &[f32])] = &[
            (PadMode::Constant, &[9., 9., 1., 2., 3., 9.]),
            (PadMode::Reflect, &[3., 2., 1., 2., 3., 2.]),
            (PadMode::Edge, &[1., 1., 1., 2., 3., 3.]),
            (PadMode::Wrap, &[2., 3., 1., 2., 3., 1.]),
        ];
        let v = Tensor::scalar(9.0f32);
        for (mode, want) in cases {
            let y = Pad {
                mode: *mode,
                attrs: None,
            }
            .eval(&Inputs::new("Pad", &[Some(&x), Some(&pads), Some(&v)]))
            .unwrap();
            assert_eq!(y[0].shape(), &[1, 6]);
            assert_eq!(y[0].as_slice::<f32>().unwrap(), *want, "{mode:?}");
        }
    }

    #[test]
    fn crops_with_negative_pads_and_axes() {
        let x = Tensor::from_vec(vec![2, 3], vec![1i32, 2, 3, 4, 5, 6]).unwrap();
        let pads = Tensor::from_vec(vec![2], vec![-1i64, 1]).unwrap();
        let axes = Tensor::from_vec(vec![1], vec![-1i64]).unwrap();
        let y = Pad {
            mode: PadMode::Constant,
            attrs: None,
        }
        .eval(&Inputs::new(
            "Pad",
            &[Some(&x), Some(&pads), None, Some(&axes)],
        ))
        .unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[2, 3, 0, 5, 6, 0]);
        let bad = Tensor::from_vec(vec![2], vec![0i64, 1]).unwrap();
        assert!(Pad {
            mode: PadMode::Constant,
            attrs: None
        }
        .eval(&Inputs::new("Pad", &[Some(&x), Some(&bad)]))
        .is_err());
    }
}
