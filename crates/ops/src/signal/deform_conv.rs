//! DeformConv (ONNX opsets 19, 22): 2-D deformable convolution. Each kernel tap of each
//! output position reads `X` bilinearly (zero outside the image) at its regular position
//! plus a learned `offset` [N, offset_group*kH*kW*2, oH, oW] (pairs of (dy, dx)), scaled by
//! an optional `mask` [N, offset_group*kH*kW, oH, oW]; plus an optional bias `B`.
//! Only 2-D inputs are supported.
use super::common::{checked_numel, floats_f64, from_f64};
use crate::nn::common::opt_usizes;
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "DeformConv";

#[derive(Clone, Debug, PartialEq)]
pub struct DeformConv {
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Option<Vec<usize>>,
    pub dilations: Option<Vec<usize>>,
    pub pads: Option<Vec<usize>>,
    pub group: usize,
    pub offset_group: usize,
}

impl DeformConv {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let pos = |name: &str, v: i64| {
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| OpError::attribute(NAME, name, "must be positive"))
        };
        let op = DeformConv {
            kernel_shape: opt_usizes(NAME, attrs, "kernel_shape")?,
            strides: opt_usizes(NAME, attrs, "strides")?,
            dilations: opt_usizes(NAME, attrs, "dilations")?,
            pads: opt_usizes(NAME, attrs, "pads")?,
            group: pos("group", attrs.int_or("group", 1)?)?,
            offset_group: pos("offset_group", attrs.int_or("offset_group", 1)?)?,
        };
        if op.strides.as_ref().is_some_and(|s| s.contains(&0)) {
            return Err(OpError::attribute(NAME, "strides", "must be positive"));
        }
        if op.dilations.as_ref().is_some_and(|s| s.contains(&0)) {
            return Err(OpError::attribute(NAME, "dilations", "must be positive"));
        }
        Ok(Arc::new(op))
    }

    /// (kernel, strides, dilations, pads) for 2-D, checked against the weights.
    #[allow(clippy::type_complexity)]
    fn geometry(
        &self,
        wk: &[usize],
    ) -> Result<([usize; 2], [usize; 2], [usize; 2], [usize; 4]), OpError> {
        let two = |name: &str, v: &Option<Vec<usize>>, d: usize| -> Result<[usize; 2], OpError> {
            match v.as_deref() {
                None => Ok([d, d]),
                Some(&[a, b]) => Ok([a, b]),
                Some(_) => Err(OpError::attribute(NAME, name, "must hold 2 values")),
            }
        };
        let k = match self.kernel_shape.as_deref() {
            None => [wk[0], wk[1]],
            Some(&[a, b]) if [a, b] == [wk[0], wk[1]] => [a, b],
            Some(_) => {
                return Err(OpError::invalid(
                    NAME,
                    "kernel_shape does not match the weights",
                ))
            }
        };
        let s = two("strides", &self.strides, 1)?;
        let d = two("dilations", &self.dilations, 1)?;
        let p = match self.pads.as_deref() {
            None => [0; 4],
            Some(&[a, b, c, e]) => [a, b, c, e],
            Some(_) => return Err(OpError::attribute(NAME, "pads", "must hold 4 values")),
        };
        Ok((k, s, d, p))
    }
}

/// Bilinear read of a plane at (y, x), zero outside.
fn bilinear(plane: &[f64], h: usize, w: usize, y: f64, x: f64) -> f64 {
    if !(y > -1.0 && y < h as f64 && x > -1.0 && x < w as f64) {
        return 0.0;
    }
    let y0 = y.floor();
    let x0 = x.floor();
    let (ly, lx) = (y - y0, x - x0);
    let (y0, x0) = (y0 as i64, x0 as i64);
    let at = |yy: i64, xx: i64| -> f64 {
        if yy >= 0 && (yy as usize) < h && xx >= 0 && (xx as usize) < w {
            plane[yy as usize * w + xx as usize]
        } else {
            0.0
        }
    };
    (1.0 - ly) * (1.0 - lx) * at(y0, x0)
        + (1.0 - ly) * lx * at(y0, x0 + 1)
        + ly * (1.0 - lx) * at(y0 + 1, x0)
        + ly * lx * at(y0 + 1, x0 + 1)
}

impl Op for DeformConv {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let w = ctx.input(1)?;
        let off = ctx.input(2)?;
        let shape = match (&x.shape, &w.shape, &off.shape) {
            (Some(xs), Some(ws), Some(os))
                if xs.len() >= 3 && ws.len() == xs.len() && os.len() == xs.len() =>
            {
                let mut s: Vec<Dim> = vec![xs[0].clone(), ws[0].clone()];
                s.extend(os[2..].iter().cloned());
                Some(s)
            }
            _ => None,
        };
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let k = inputs
            .get(1)
            .and_then(|w| w.numel())
            .zip(
                inputs
                    .get(1)
                    .and_then(|w| w.concrete_shape())
                    .and_then(|s| s.first().copied()),
            )
            .map(|(n, oc)| (n / oc.max(1)) as u64)
            .unwrap_or(1);
        Cost::elementwise(inputs, outputs, 10 * k)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let wt = inputs.req(1)?;
        let off = inputs.req(2)?;
        let bias = inputs.opt(3);
        let mask = inputs.opt(4);
        let &[n, ic, ih, iw] = x.shape() else {
            return Err(OpError::unsupported(
                NAME,
                format!("rank-{} input (only 2-D is supported)", x.rank()),
            ));
        };
        let &[oc, icg, kh0, kw0] = wt.shape() else {
            return Err(OpError::invalid(NAME, "W must have rank 4"));
        };
        let (k, s, d, p) = self.geometry(&[kh0, kw0])?;
        let [kh, kw] = k;
        if kh == 0 || kw == 0 {
            return Err(OpError::invalid(NAME, "the kernel is empty"));
        }
        let g = self.group;
        let og = self.offset_group;
        if icg * g != ic || oc % g != 0 || ic % og != 0 {
            return Err(OpError::invalid(
                NAME,
                format!("channels do not fit group={g} offset_group={og}"),
            ));
        }
        let ocg = oc / g;
        let icog = ic / og;
        let span = |i: usize, k: usize, d: usize, p0: usize, p1: usize, s: usize| {
            let eff = (k - 1) * d + 1;
            (i + p0 + p1).checked_sub(eff).map(|v| v / s + 1)
        };
        let (Some(oh), Some(ow)) = (
            span(ih, kh, d[0], p[0], p[2], s[0]),
            span(iw, kw, d[1], p[1], p[3], s[1]),
        ) else {
            return Err(OpError::invalid(
                NAME,
                "the kernel is larger than the padded input",
            ));
        };
        let kk = kh * kw;
        if off.shape() != [n, og * kk * 2, oh, ow] {
            return Err(OpError::invalid(
                NAME,
                format!(
                    "offset shape {:?} must be [{n}, {}, {oh}, {ow}]",
                    off.shape(),
                    og * kk * 2
                ),
            ));
        }
        if let Some(m) = mask {
            if m.shape() != [n, og * kk, oh, ow] {
                return Err(OpError::invalid(
                    NAME,
                    format!(
                        "mask shape {:?} must be [{n}, {}, {oh}, {ow}]",
                        m.shape(),
                        og * kk
                    ),
                ));
            }
        }
        if let Some(b) = bias {
            if b.shape() != [oc] {
                return Err(OpError::invalid(NAME, "B must have shape [M]"));
            }
        }
        let out_shape = vec![n, oc, oh, ow];
        let total = checked_numel(NAME, &out_shape)?;
        let xv = floats_f64(NAME, x)?;
        let wv = floats_f64(NAME, wt)?;
        let ov = floats_f64(NAME, off)?;
        let mv = match mask {
            Some(m) => Some(floats_f64(NAME, m)?),
            None => None,
        };
        let bv = match bias {
            Some(b) => Some(floats_f64(NAME, b)?),
            None => None,
        };
        let mut y = vec![0.0f64; total];
        let osp = oh * ow;
        // Sampled columns for one batch: [ic, kk, osp].
        let mut cols = vec![0.0f64; ic * kk * osp];
        for b in 0..n {
            for c in 0..ic {
                let gi = c / icog;
                let plane = &xv[(b * ic + c) * ih * iw..(b * ic + c + 1) * ih * iw];
                for ki in 0..kh {
                    for kj in 0..kw {
                        let kidx = ki * kw + kj;
                        let och = ((b * og + gi) * kk + kidx) * 2;
                        for i in 0..oh {
                            for j in 0..ow {
                                let sp = i * ow + j;
                                let dy = ov[och * osp + sp];
                                let dx = ov[(och + 1) * osp + sp];
                                let yy = (i * s[0] + ki * d[0]) as f64 - p[0] as f64 + dy;
                                let xx = (j * s[1] + kj * d[1]) as f64 - p[1] as f64 + dx;
                                let mut v = bilinear(plane, ih, iw, yy, xx);
                                if let Some(m) = &mv {
                                    v *= m[((b * og + gi) * kk + kidx) * osp + sp];
                                }
                                cols[(c * kk + kidx) * osp + sp] = v;
                            }
                        }
                    }
                }
            }
            for o in 0..oc {
                let grp = o / ocg;
                let out = &mut y[(b * oc + o) * osp..(b * oc + o + 1) * osp];
                if let Some(bv) = &bv {
                    out.iter_mut().for_each(|v| *v = bv[o]);
                }
                for cl in 0..icg {
                    let c = grp * icg + cl;
                    for kidx in 0..kk {
                        let wgt = wv[(o * icg + cl) * kk + kidx];
                        let col = &cols[(c * kk + kidx) * osp..(c * kk + kidx + 1) * osp];
                        for (a, &v) in out.iter_mut().zip(col) {
                            *a += wgt * v;
                        }
                    }
                }
            }
        }
        Ok(vec![from_f64(NAME, x.dtype(), out_shape, y)?])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_offsets_are_a_plain_convolution() {
        let op = DeformConv {
            kernel_shape: None,
            strides: None,
            dilations: None,
            pads: None,
            group: 1,
            offset_group: 1,
        };
        let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 2, 2], vec![1.0f32, 1.0, 1.0, 1.0]).unwrap();
        let off = Tensor::zeros(millrace_core::DType::F32, vec![1, 8, 1, 1]);
        let y = op
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&w), Some(&off)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[10.0]);
        // Shift every tap half a pixel right: the right column reads zeros half-way.
        let mut o = vec![0.0f32; 8];
        for k in 0..4 {
            o[k * 2 + 1] = 0.5;
        }
        let off = Tensor::from_vec(vec![1, 8, 1, 1], o).unwrap();
        let y = op
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&w), Some(&off)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[1.5 + 1.0 + 3.5 + 2.0]);
    }
}
