//! ConvTranspose (ONNX opsets 1, 11, 22): N-d grouped transposed convolution (GEMM to
//! columns, then col2im), with output_padding, output_shape and auto_pad.
use super::common::{float_out, opt_usizes, prod, same_dtype, AutoPad, Float, Window};
use crate::float_run;
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use millrace_kernels::conv::{col2im_nd, GeomNd};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct ConvTranspose {
    pub window: Window,
    pub group: usize,
    pub output_padding: Option<Vec<usize>>,
    pub output_shape: Option<Vec<usize>>,
}

const NAME: &str = "ConvTranspose";

/// Resolved geometry: kernel, strides, dilations, begin pads, output spatial shape.
struct Geo {
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pads_begin: Vec<usize>,
    output: Vec<usize>,
}

impl ConvTranspose {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(ConvTranspose::parse(attrs)?))
    }

    pub fn parse(attrs: &Attributes) -> Result<ConvTranspose, OpError> {
        let window = Window::from_attrs(NAME, attrs)?;
        let group = attrs.int_or("group", 1)?;
        if group < 1 {
            return Err(OpError::attribute(NAME, "group", "must be positive"));
        }
        Ok(ConvTranspose {
            window,
            group: group as usize,
            output_padding: opt_usizes(NAME, attrs, "output_padding")?,
            output_shape: opt_usizes(NAME, attrs, "output_shape")?,
        })
    }

    fn geo(&self, input: &[usize], wk: &[usize]) -> Result<Geo, OpError> {
        let n = input.len();
        let kernel = match &self.window.kernel {
            Some(k) if k.as_slice() != wk => {
                return Err(OpError::invalid(
                    NAME,
                    "kernel_shape does not match the weights",
                ))
            }
            _ => wk.to_vec(),
        };
        let get = |v: &Option<Vec<usize>>, name: &str, def: usize| -> Result<Vec<usize>, OpError> {
            let v = v.clone().unwrap_or_else(|| vec![def; n]);
            if v.len() != n {
                return Err(OpError::attribute(
                    NAME,
                    name,
                    format!("expected {n} values"),
                ));
            }
            Ok(v)
        };
        let strides = get(&self.window.strides, "strides", 1)?;
        let dilations = get(&self.window.dilations, "dilations", 1)?;
        let out_pad = get(&self.output_padding, "output_padding", 0)?;
        let pads = self.window.pads.clone().unwrap_or_else(|| vec![0; 2 * n]);
        let explicit = match &self.output_shape {
            Some(s) if s.len() == n => Some(s.clone()),
            Some(s) if s.len() == n + 2 => Some(s[2..].to_vec()),
            Some(s) => {
                return Err(OpError::attribute(
                    NAME,
                    "output_shape",
                    format!("{} values for {n} spatial dims", s.len()),
                ))
            }
            None => None,
        };
        let mut g = Geo {
            kernel,
            strides,
            dilations,
            pads_begin: vec![0; n],
            output: vec![0; n],
        };
        for i in 0..n {
            if g.strides[i] == 0 || g.dilations[i] == 0 || g.kernel[i] == 0 {
                return Err(OpError::invalid(
                    NAME,
                    "strides, dilations, kernel must be positive",
                ));
            }
            let dk = (g.kernel[i] - 1) * g.dilations[i] + 1;
            let full = g.strides[i] * input[i].saturating_sub(1) + out_pad[i] + dk;
            let target = match (&explicit, self.window.auto_pad) {
                (Some(e), _) => Some(e[i]),
                (None, AutoPad::SameUpper | AutoPad::SameLower) => Some(input[i] * g.strides[i]),
                _ => None,
            };
            match target {
                Some(out) => {
                    if out > full {
                        return Err(OpError::unsupported(
                            NAME,
                            "output_shape larger than the full transposed output",
                        ));
                    }
                    let total = full - out;
                    g.pads_begin[i] = if self.window.auto_pad == AutoPad::SameUpper {
                        total / 2
                    } else {
                        total - total / 2
                    };
                    g.output[i] = out;
                }
                None => {
                    let (pb, pe) = if self.window.auto_pad == AutoPad::Valid {
                        (0, 0)
                    } else {
                        if pads.len() != 2 * n {
                            return Err(OpError::attribute(
                                NAME,
                                "pads",
                                format!("expected {} values", 2 * n),
                            ));
                        }
                        (pads[i], pads[i + n])
                    };
                    if pb + pe > full {
                        return Err(OpError::invalid(NAME, "pads exceed the output size"));
                    }
                    g.pads_begin[i] = pb;
                    g.output[i] = full - pb - pe;
                }
            }
        }
        Ok(g)
    }
}

fn eval_as<F: Float>(ct: &ConvTranspose, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
    let x = inputs.req(0)?;
    let w = inputs.req(1)?;
    let b = inputs.opt(2);
    let mut ts = vec![x, w];
    ts.extend(b);
    same_dtype(NAME, &ts)?;
    let (xs, wsh) = (x.shape(), w.shape());
    if xs.len() < 3 || wsh.len() != xs.len() {
        return Err(OpError::invalid(
            NAME,
            format!("bad input {xs:?} / weight {wsh:?} shapes"),
        ));
    }
    let (n, c, group) = (xs[0], xs[1], ct.group);
    if wsh[0] != c || c % group != 0 {
        return Err(OpError::invalid(
            NAME,
            format!("weights {wsh:?} do not match {c} input channels in {group} groups"),
        ));
    }
    let cog = wsh[1];
    let m = cog * group;
    if let Some(b) = b {
        if b.shape() != [m] {
            return Err(OpError::invalid(
                NAME,
                format!("bias must have shape [{m}]"),
            ));
        }
    }
    let g = ct.geo(&xs[2..], &wsh[2..])?;
    let cig = c / group;
    let kk = prod(&g.kernel);
    let in_plane = prod(&xs[2..]);
    let out_plane = prod(&g.output);
    let xv = F::cow(NAME, x)?;
    let wv = F::cow(NAME, w)?;
    let bv = b.map(|b| F::cow(NAME, b)).transpose()?;
    let mut y = vec![F::ZERO; n * m * out_plane];
    let geom = GeomNd {
        c: cog,
        input: g.output.clone(),
        kernel: g.kernel.clone(),
        strides: g.strides.clone(),
        dilations: g.dilations.clone(),
        pads_begin: g.pads_begin.clone(),
        output: xs[2..].to_vec(),
    };
    let rows = cog * kk;
    let mut col = vec![F::ZERO; rows * in_plane];
    if !y.is_empty() {
        for ni in 0..n {
            for gi in 0..group {
                let xg = &xv[(ni * c + gi * cig) * in_plane..(ni * c + (gi + 1) * cig) * in_plane];
                let wg = &wv[gi * cig * rows..(gi + 1) * cig * rows];
                // col (rows x in_plane) = W_g^T (rows x cig) * X_g (cig x in_plane)
                F::gemm(
                    rows,
                    cig,
                    in_plane,
                    F::ONE,
                    wg,
                    1,
                    rows as isize,
                    xg,
                    in_plane as isize,
                    1,
                    F::ZERO,
                    &mut col,
                    in_plane as isize,
                    1,
                );
                let yg =
                    &mut y[(ni * m + gi * cog) * out_plane..(ni * m + (gi + 1) * cog) * out_plane];
                if let Some(bv) = &bv {
                    for (r, row) in yg.chunks_mut(out_plane).enumerate() {
                        row.fill(bv[gi * cog + r]);
                    }
                }
                col2im_nd(&col, &geom, yg);
            }
        }
    }
    let mut shape = vec![n, m];
    shape.extend(&g.output);
    Ok(vec![float_out(NAME, x.dtype(), shape, y)?])
}

impl Op for ConvTranspose {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let w = ctx.input(1)?;
        let (Some(xs), Some(ws)) = (&x.shape, &w.shape) else {
            return Ok(vec![ValueType {
                dtype: x.dtype,
                shape: None,
            }]);
        };
        if xs.len() < 3 || ws.len() != xs.len() {
            return Err(OpError::invalid(NAME, "bad input or weight rank"));
        }
        let m = match &ws[1] {
            Dim::Known(v) => Dim::Known(v * self.group),
            d => Dim::Sym(format!("{d}*{}", self.group)),
        };
        let spatial: Option<Vec<usize>> = xs[2..].iter().map(Dim::known).collect();
        let wk: Option<Vec<usize>> = ws[2..].iter().map(Dim::known).collect();
        let out: Vec<Dim> = match (spatial, wk) {
            (Some(s), Some(k)) => self
                .geo(&s, &k)?
                .output
                .into_iter()
                .map(Dim::Known)
                .collect(),
            _ => (0..xs.len() - 2)
                .map(|i| Dim::Sym(format!("ConvTranspose_{i}")))
                .collect(),
        };
        let mut shape = vec![xs[0].clone(), m];
        shape.extend(out);
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape: Some(shape),
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let mut c = Cost::movement(inputs, outputs);
        let x = inputs.first().and_then(|t| t.numel());
        let w = inputs.get(1).and_then(|t| t.concrete_shape());
        if let (Some(x), Some(w)) = (x, w) {
            c.flops = 2 * x as u64 * prod(&w[1..]) as u64;
        }
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        float_run!(NAME, x.dtype(), eval_as(self, inputs))
    }

    fn describe(&self) -> String {
        let mut s = self.window.describe();
        if self.group != 1 {
            s = format!("{s} group={}", self.group);
        }
        s.trim().to_string()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::conv::tests::{attrs, rnd};
    use millrace_ir::Attr;

    /// Naive scatter reference for 2-D transposed convolution.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        x: &[f32],
        xs: [usize; 4],
        w: &[f32],
        ws: [usize; 4],
        group: usize,
        s: [usize; 2],
        d: [usize; 2],
        pb: [usize; 2],
        out: [usize; 2],
    ) -> Vec<f32> {
        let [n, c, h, wd] = xs;
        let [_, cog, kh, kw] = ws;
        let cig = c / group;
        let m = cog * group;
        let mut y = vec![0.0; n * m * out[0] * out[1]];
        for ni in 0..n {
            for ci in 0..c {
                let g = ci / cig;
                for iy in 0..h {
                    for ix in 0..wd {
                        for co in 0..cog {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let oy = (iy * s[0] + ky * d[0]) as isize - pb[0] as isize;
                                    let ox = (ix * s[1] + kx * d[1]) as isize - pb[1] as isize;
                                    if oy < 0
                                        || ox < 0
                                        || oy >= out[0] as isize
                                        || ox >= out[1] as isize
                                    {
                                        continue;
                                    }
                                    let mo = g * cog + co;
                                    y[((ni * m + mo) * out[0] + oy as usize) * out[1]
                                        + ox as usize] += x[((ni * c + ci) * h + iy) * wd + ix]
                                        * w[((ci * cog + co) * kh + ky) * kw + kx];
                                }
                            }
                        }
                    }
                }
            }
        }
        y
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn matches_naive_reference() {
        let ints = |v: &[i64]| Attr::Ints(v.to_vec());
        // (x shape, w shape, group, extra attrs, expected spatial out)
        let cases: Vec<([usize; 4], [usize; 4], usize, Vec<(&str, Attr)>, [usize; 2])> = vec![
            ([1, 2, 3, 3], [2, 3, 3, 3], 1, vec![], [5, 5]),
            (
                [2, 2, 3, 4],
                [2, 2, 3, 2],
                1,
                vec![("strides", ints(&[2, 3])), ("pads", ints(&[1, 0, 0, 1]))],
                [6, 10],
            ),
            (
                [1, 4, 3, 3],
                [4, 1, 2, 2],
                2,
                vec![
                    ("strides", ints(&[2, 2])),
                    ("output_padding", ints(&[1, 0])),
                    ("dilations", ints(&[2, 1])),
                ],
                [8, 6],
            ),
            (
                [1, 1, 3, 3],
                [1, 2, 3, 3],
                1,
                vec![
                    ("strides", ints(&[2, 2])),
                    ("auto_pad", Attr::String(b"SAME_UPPER".to_vec())),
                ],
                [6, 6],
            ),
            (
                [1, 1, 3, 3],
                [1, 1, 3, 3],
                1,
                vec![("strides", ints(&[2, 2])), ("output_shape", ints(&[6, 5]))],
                [6, 5],
            ),
        ];
        for (i, (xs, wsh, group, items, want_out)) in cases.into_iter().enumerate() {
            let mut items = items;
            items.push(("group", Attr::Int(group as i64)));
            let ct = ConvTranspose::parse(&attrs(NAME, items)).unwrap();
            let g = ct.geo(&xs[2..], &wsh[2..]).unwrap();
            assert_eq!(g.output, want_out.to_vec(), "case {i}");
            let x = rnd(xs.iter().product(), i as u64);
            let w = rnd(wsh.iter().product(), 50 + i as u64);
            let want = naive(
                &x,
                xs,
                &w,
                wsh,
                group,
                [g.strides[0], g.strides[1]],
                [g.dilations[0], g.dilations[1]],
                [g.pads_begin[0], g.pads_begin[1]],
                want_out,
            );
            let xt = Tensor::from_vec(xs.to_vec(), x).unwrap();
            let wt = Tensor::from_vec(wsh.to_vec(), w).unwrap();
            let y = ct
                .eval(&Inputs::new(NAME, &[Some(&xt), Some(&wt)]))
                .unwrap();
            let got = y[0].as_slice::<f32>().unwrap();
            assert_eq!(got.len(), want.len());
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "case {i}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn bias_1d_and_errors() {
        let ct = ConvTranspose::parse(&attrs(NAME, vec![])).unwrap();
        let x = Tensor::from_vec(vec![1, 1, 2], vec![1.0f64, 2.0]).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 2], vec![1.0f64, 10.0]).unwrap();
        let b = Tensor::from_vec(vec![1], vec![0.5f64]).unwrap();
        let y = ct
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&w), Some(&b)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<f64>().unwrap(), &[1.5, 12.5, 20.5]);
        let bad = Tensor::from_vec(vec![2, 1, 2], vec![1.0f64; 4]).unwrap();
        assert!(ct
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&bad)]))
            .is_err());
    }
}
