//! Conv (ONNX opsets 1, 11, 22): N-d grouped convolution with optional bias; 1-D/2-D run
//! through im2col + GEMM (direct GEMM for 1x1, a direct loop for depthwise), other ranks
//! through an N-d im2col.
use super::common::{prod, same_dtype, Float, Resolved, Window};
use crate::float_run;
use crate::nn::common::float_out;
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use millrace_kernels::conv::{depthwise_2d, im2col_2d, im2col_nd, Geom2d, GeomNd};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    pub window: Window,
    pub group: usize,
}

const NAME: &str = "Conv";

impl Conv {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Conv::parse(attrs)?))
    }

    pub fn parse(attrs: &Attributes) -> Result<Conv, OpError> {
        let window = Window::from_attrs(NAME, attrs)?;
        let group = attrs.int_or("group", 1)?;
        if group < 1 {
            return Err(OpError::attribute(NAME, "group", "must be positive"));
        }
        Ok(Conv {
            window,
            group: group as usize,
        })
    }
}

/// Validated shapes of one Conv evaluation.
struct Plan {
    n: usize,
    c: usize,
    m: usize,
    input: Vec<usize>,
    r: Resolved,
}

impl Conv {
    fn plan(&self, x: &[usize], w: &[usize], b: Option<&[usize]>) -> Result<Plan, OpError> {
        if x.len() < 3 {
            return Err(OpError::invalid(
                NAME,
                format!("input must be N x C x D1..., got shape {x:?}"),
            ));
        }
        if w.len() != x.len() {
            return Err(OpError::invalid(
                NAME,
                format!("weight shape {w:?} does not match input rank {}", x.len()),
            ));
        }
        let (n, c, m) = (x[0], x[1], w[0]);
        if w[1] * self.group != c {
            return Err(OpError::invalid(
                NAME,
                format!(
                    "input has {c} channels but weights expect {} x group {}",
                    w[1], self.group
                ),
            ));
        }
        if m % self.group != 0 {
            return Err(OpError::invalid(
                NAME,
                format!(
                    "{m} output channels do not divide into {} groups",
                    self.group
                ),
            ));
        }
        if let Some(b) = b {
            if b != [m] {
                return Err(OpError::invalid(
                    NAME,
                    format!("bias shape {b:?}, expected [{m}]"),
                ));
            }
        }
        let input = x[2..].to_vec();
        let r = self.window.resolve(NAME, &input, Some(&w[2..]))?;
        Ok(Plan { n, c, m, input, r })
    }
}

/// Runs the convolution in compute type F.
fn run<F: Float>(p: &Plan, group: usize, x: &[F], w: &[F], bias: Option<&[F]>) -> Vec<F> {
    let in_plane = prod(&p.input);
    let out_plane = prod(&p.r.output);
    let kk = prod(&p.r.kernel);
    let (cg, mg) = (p.c / group, p.m / group);
    let mut y = vec![F::ZERO; p.n * p.m * out_plane];
    if y.is_empty() {
        return y;
    }
    let spatial = p.input.len();
    let geom2d = if spatial <= 2 {
        // 1-D runs as 2-D with a height of one.
        let at = |v: &[usize], i: usize, one: usize| {
            if spatial == 2 {
                v[i]
            } else if i == 0 {
                one
            } else {
                v[0]
            }
        };
        Some(Geom2d {
            c: cg,
            h: at(&p.input, 0, 1),
            w: at(&p.input, 1, 1),
            kh: at(&p.r.kernel, 0, 1),
            kw: at(&p.r.kernel, 1, 1),
            sh: at(&p.r.strides, 0, 1),
            sw: at(&p.r.strides, 1, 1),
            dh: at(&p.r.dilations, 0, 1),
            dw: at(&p.r.dilations, 1, 1),
            pt: at(&p.r.pads_begin, 0, 0),
            pl: at(&p.r.pads_begin, 1, 0),
            oh: at(&p.r.output, 0, 1),
            ow: at(&p.r.output, 1, 1),
        })
    } else {
        None
    };
    let b_at = |ch: usize| bias.map_or(F::ZERO, |b| b[ch]);

    // Depthwise: one input and one output channel per group.
    if let Some(g) = &geom2d {
        if cg == 1 && mg == 1 {
            y.par_chunks_mut(out_plane)
                .enumerate()
                .for_each(|(i, out)| {
                    let ch = i % p.m;
                    let xi = &x[i * in_plane..(i + 1) * in_plane];
                    depthwise_2d(xi, &w[ch * kk..(ch + 1) * kk], b_at(ch), g, out);
                });
            return y;
        }
    }

    let pointwise = p.r.kernel.iter().all(|&k| k == 1)
        && p.r.strides.iter().all(|&s| s == 1)
        && p.r.pads_begin.iter().all(|&v| v == 0);
    let krows = cg * kk;
    let geom_nd = GeomNd {
        c: cg,
        input: p.input.clone(),
        kernel: p.r.kernel.clone(),
        strides: p.r.strides.clone(),
        dilations: p.r.dilations.clone(),
        pads_begin: p.r.pads_begin.clone(),
        output: p.r.output.clone(),
    };
    let one_group = |idx: usize, yg: &mut [F], col: &mut Vec<F>| {
        let (n, g) = (idx / group, idx % group);
        let xg = &x[(n * p.c + g * cg) * in_plane..(n * p.c + (g + 1) * cg) * in_plane];
        let wg = &w[g * mg * krows..(g + 1) * mg * krows];
        let bmat: &[F] = if pointwise {
            xg
        } else {
            col.resize(krows * out_plane, F::ZERO);
            match &geom2d {
                Some(g2) => im2col_2d(xg, g2, F::ZERO, col),
                None => im2col_nd(xg, &geom_nd, F::ZERO, col),
            }
            col
        };
        let beta = if bias.is_some() {
            for (r, row) in yg.chunks_mut(out_plane).enumerate() {
                row.fill(b_at(g * mg + r));
            }
            F::ONE
        } else {
            F::ZERO
        };
        F::gemm(
            mg,
            krows,
            out_plane,
            F::ONE,
            wg,
            krows as isize,
            1,
            bmat,
            out_plane as isize,
            1,
            beta,
            yg,
            out_plane as isize,
            1,
        );
    };
    if p.n * group == 1 {
        let mut col = Vec::new();
        one_group(0, &mut y, &mut col);
    } else {
        y.par_chunks_mut(mg * out_plane)
            .enumerate()
            .for_each_init(Vec::new, |col, (idx, yg)| one_group(idx, yg, col));
    }
    y
}

fn eval_as<F: Float>(conv: &Conv, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
    let x = inputs.req(0)?;
    let w = inputs.req(1)?;
    let b = inputs.opt(2);
    let mut ts = vec![x, w];
    ts.extend(b);
    same_dtype(NAME, &ts)?;
    let p = conv.plan(x.shape(), w.shape(), b.map(|b| b.shape()))?;
    let xs = F::cow(NAME, x)?;
    let ws = F::cow(NAME, w)?;
    let bs = b.map(|b| F::cow(NAME, b)).transpose()?;
    let y = run::<F>(&p, conv.group, &xs, &ws, bs.as_deref());
    let mut shape = vec![p.n, p.m];
    shape.extend(&p.r.output);
    Ok(vec![float_out(NAME, x.dtype(), shape, y)?])
}

impl Op for Conv {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let w = ctx.input(1)?;
        let Some(xs) = &x.shape else {
            return Ok(vec![ValueType {
                dtype: x.dtype,
                shape: None,
            }]);
        };
        if xs.len() < 3 {
            return Err(OpError::invalid(NAME, "input must be N x C x D1..."));
        }
        let m = match &w.shape {
            Some(ws) if ws.len() == xs.len() => ws[0].clone(),
            Some(ws) => {
                return Err(OpError::invalid(
                    NAME,
                    format!(
                        "weight rank {} does not match input rank {}",
                        ws.len(),
                        xs.len()
                    ),
                ))
            }
            None => Dim::Sym("Conv_M".to_string()),
        };
        let wk: Option<Vec<usize>> = w
            .shape
            .as_ref()
            .and_then(|s| s[2..].iter().map(Dim::known).collect());
        let mut shape = vec![xs[0].clone(), m];
        shape.extend(self.window.infer(NAME, &xs[2..], wk));
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape: Some(shape),
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let mut c = Cost::movement(inputs, outputs);
        let ws = inputs.get(1).and_then(|t| t.concrete_shape());
        let ys = outputs.first().and_then(|t| t.numel());
        if let (Some(ws), Some(ys)) = (ws, ys) {
            let per_out = prod(&ws[1..]) as u64;
            c.flops = 2 * ys as u64 * per_out;
            if inputs.get(2).is_some_and(|t| t.dtype.is_some()) {
                c.flops += ys as u64;
            }
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
            s = format!("{s} group={}", self.group).trim().to_string();
        }
        s
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use millrace_ir::Attr;

    pub fn attrs(op: &str, items: Vec<(&str, Attr)>) -> Attributes {
        Attributes::new(
            op,
            items.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        )
    }

    /// Deterministic pseudo-random values in [-1, 1).
    pub fn rnd(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Naive direct 2-D convolution with explicit pads.
    #[allow(clippy::too_many_arguments)]
    fn naive2d(
        x: &[f32],
        xs: [usize; 4],
        w: &[f32],
        ws: [usize; 4],
        b: Option<&[f32]>,
        group: usize,
        s: [usize; 2],
        d: [usize; 2],
        pb: [usize; 2],
        out: [usize; 2],
    ) -> Vec<f32> {
        let [n, c, h, wd] = xs;
        let [m, cg, kh, kw] = ws;
        let mg = m / group;
        let mut y = vec![0.0; n * m * out[0] * out[1]];
        for ni in 0..n {
            for mi in 0..m {
                let g = mi / mg;
                for oy in 0..out[0] {
                    for ox in 0..out[1] {
                        let mut acc = b.map_or(0.0, |b| b[mi]);
                        for ci in 0..cg {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * s[0] + ky * d[0]) as isize - pb[0] as isize;
                                    let ix = (ox * s[1] + kx * d[1]) as isize - pb[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                        continue;
                                    }
                                    let xi = ((ni * c + g * cg + ci) * h + iy as usize) * wd
                                        + ix as usize;
                                    let wi = ((mi * cg + ci) * kh + ky) * kw + kx;
                                    acc += x[xi] * w[wi];
                                }
                            }
                        }
                        y[((ni * m + mi) * out[0] + oy) * out[1] + ox] = acc;
                    }
                }
            }
        }
        y
    }

    fn ints(v: &[i64]) -> Attr {
        Attr::Ints(v.to_vec())
    }

    #[test]
    fn matches_naive_reference() {
        // (x shape, w shape, group, strides, dilations, pads(t,l,b,r), auto_pad, bias)
        type Case = (
            [usize; 4],
            [usize; 4],
            usize,
            [usize; 2],
            [usize; 2],
            [usize; 4],
            &'static str,
            bool,
        );
        let cases: Vec<Case> = vec![
            (
                [1, 3, 7, 6],
                [4, 3, 3, 3],
                1,
                [1, 1],
                [1, 1],
                [1, 1, 1, 1],
                "NOTSET",
                true,
            ),
            (
                [2, 4, 9, 8],
                [6, 2, 3, 2],
                2,
                [2, 1],
                [1, 2],
                [0, 1, 2, 0],
                "NOTSET",
                false,
            ),
            (
                [1, 5, 6, 6],
                [5, 1, 3, 3],
                5,
                [1, 1],
                [1, 1],
                [1, 1, 1, 1],
                "NOTSET",
                true,
            ),
            (
                [2, 4, 7, 5],
                [4, 1, 3, 3],
                4,
                [2, 2],
                [2, 1],
                [2, 0, 1, 3],
                "NOTSET",
                true,
            ),
            (
                [1, 6, 5, 5],
                [3, 6, 1, 1],
                1,
                [1, 1],
                [1, 1],
                [0, 0, 0, 0],
                "NOTSET",
                true,
            ),
            (
                [2, 6, 5, 5],
                [4, 3, 1, 1],
                2,
                [1, 1],
                [1, 1],
                [0, 0, 0, 0],
                "NOTSET",
                false,
            ),
            (
                [1, 3, 7, 7],
                [2, 3, 4, 3],
                1,
                [2, 2],
                [1, 1],
                [0; 4],
                "SAME_UPPER",
                true,
            ),
            (
                [1, 3, 7, 7],
                [2, 3, 4, 3],
                1,
                [2, 1],
                [1, 1],
                [0; 4],
                "SAME_LOWER",
                true,
            ),
            (
                [1, 3, 8, 7],
                [2, 3, 3, 3],
                1,
                [2, 2],
                [1, 1],
                [0; 4],
                "VALID",
                false,
            ),
            (
                [1, 4, 6, 6],
                [8, 1, 3, 3],
                4,
                [1, 1],
                [1, 1],
                [1, 1, 1, 1],
                "NOTSET",
                true,
            ),
        ];
        for (i, (xs, wsh, group, s, d, pads, ap, with_b)) in cases.into_iter().enumerate() {
            let x = rnd(xs.iter().product(), i as u64);
            let w = rnd(wsh.iter().product(), 100 + i as u64);
            let b = rnd(wsh[0], 200 + i as u64);
            let mut items = vec![
                ("strides", ints(&[s[0] as i64, s[1] as i64])),
                ("dilations", ints(&[d[0] as i64, d[1] as i64])),
                ("group", Attr::Int(group as i64)),
                ("auto_pad", Attr::String(ap.as_bytes().to_vec())),
            ];
            if ap == "NOTSET" {
                items.push(("pads", ints(&pads.map(|p| p as i64))));
            }
            let conv = Conv::parse(&attrs("Conv", items)).unwrap();
            let r = conv
                .window
                .resolve("Conv", &xs[2..], Some(&wsh[2..]))
                .unwrap();
            let want = naive2d(
                &x,
                xs,
                &w,
                wsh,
                with_b.then_some(&b[..]),
                group,
                s,
                d,
                [r.pads_begin[0], r.pads_begin[1]],
                [r.output[0], r.output[1]],
            );
            let xt = Tensor::from_vec(xs.to_vec(), x).unwrap();
            let wt = Tensor::from_vec(wsh.to_vec(), w).unwrap();
            let bt = Tensor::from_vec(vec![wsh[0]], b).unwrap();
            let bin = with_b.then_some(&bt);
            let y = conv
                .eval(&Inputs::new("Conv", &[Some(&xt), Some(&wt), bin]))
                .unwrap();
            assert_eq!(y[0].shape()[2..], r.output[..], "case {i}");
            let got = y[0].as_slice::<f32>().unwrap();
            assert_eq!(got.len(), want.len(), "case {i}");
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "case {i}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn same_upper_pads_the_end() {
        // 1x1x1x4 input, kernel 1x2, SAME_UPPER: total pad 1 goes at the end.
        let conv = Conv::parse(&attrs(
            "Conv",
            vec![("auto_pad", Attr::String(b"SAME_UPPER".to_vec()))],
        ))
        .unwrap();
        let x = Tensor::from_vec(vec![1, 1, 1, 4], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 1, 2], vec![1.0f32, 10.0]).unwrap();
        let y = conv
            .eval(&Inputs::new("Conv", &[Some(&x), Some(&w)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[21.0, 32.0, 43.0, 4.0]);
    }

    #[test]
    fn conv1d_and_3d_and_f64() {
        // 1-D: kernel [1, 1, 2] summing neighbours, stride 1, pad 1 each side.
        let conv = Conv::parse(&attrs("Conv", vec![("pads", ints(&[1, 1]))])).unwrap();
        let x = Tensor::from_vec(vec![1, 1, 3], vec![1.0f64, 2.0, 3.0]).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 2], vec![1.0f64, 1.0]).unwrap();
        let y = conv
            .eval(&Inputs::new("Conv", &[Some(&x), Some(&w)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<f64>().unwrap(), &[1.0, 3.0, 5.0, 3.0]);
        // 3-D 2x2x2 all-ones kernel over a 2x2x3 input of ones, pad 0: 2 outputs of 8.
        let conv = Conv::parse(&attrs("Conv", vec![])).unwrap();
        let x = Tensor::from_vec(vec![1, 1, 2, 2, 3], vec![1.0f32; 12]).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 2, 2, 2], vec![1.0f32; 8]).unwrap();
        let y = conv
            .eval(&Inputs::new("Conv", &[Some(&x), Some(&w)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[1, 1, 1, 1, 2]);
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[8.0, 8.0]);
    }

    #[test]
    fn f16_and_empty_batch() {
        use millrace_core::f16;
        let conv = Conv::parse(&attrs("Conv", vec![])).unwrap();
        let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![f16::from_f32(1.5); 4]).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 2, 2], vec![f16::from_f32(2.0); 4]).unwrap();
        let y = conv
            .eval(&Inputs::new("Conv", &[Some(&x), Some(&w)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<f16>().unwrap(), &[f16::from_f32(12.0)]);
        let x = Tensor::from_vec(vec![0, 1, 2, 2], Vec::<f32>::new()).unwrap();
        let w = Tensor::from_vec(vec![3, 1, 1, 1], vec![1.0f32; 3]).unwrap();
        let y = conv
            .eval(&Inputs::new("Conv", &[Some(&x), Some(&w)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[0, 3, 2, 2]);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let conv = Conv::parse(&attrs("Conv", vec![("group", Attr::Int(2))])).unwrap();
        let x = Tensor::from_vec(vec![1, 3, 2, 2], vec![0.0f32; 12]).unwrap();
        let w = Tensor::from_vec(vec![2, 1, 1, 1], vec![0.0f32; 2]).unwrap();
        assert!(conv
            .eval(&Inputs::new("Conv", &[Some(&x), Some(&w)]))
            .is_err());
        let conv = Conv::parse(&attrs("Conv", vec![])).unwrap();
        let w = Tensor::from_vec(vec![1, 3, 5, 5], vec![0.0f32; 75]).unwrap();
        assert!(conv
            .eval(&Inputs::new("Conv", &[Some(&x), Some(&w)]))
            .is_err());
    }

    #[test]
    fn infers_output_shape_and_cost() {
        let conv = Conv::parse(&attrs(
            "Conv",
            vec![("strides", ints(&[2, 2])), ("pads", ints(&[3, 3, 3, 3]))],
        ))
        .unwrap();
        let x = ValueType::new(
            millrace_core::DType::F32,
            vec![Dim::Sym("N".into()), 3.into(), 224.into(), 224.into()],
        );
        let w = ValueType::concrete(millrace_core::DType::F32, &[64, 3, 7, 7]);
        let types = [Some(x), Some(w.clone())];
        let out = conv.infer(&InferCtx::new("Conv", &types, &[])).unwrap();
        assert_eq!(
            out[0].shape.as_ref().unwrap(),
            &vec![Dim::Sym("N".into()), 64.into(), 112.into(), 112.into()]
        );
        let xc = ValueType::concrete(millrace_core::DType::F32, &[1, 3, 224, 224]);
        let yc = ValueType::concrete(millrace_core::DType::F32, &[1, 64, 112, 112]);
        let c = conv.cost(&[xc, w], &[yc]);
        assert_eq!(c.flops, 2 * 64 * 112 * 112 * 3 * 7 * 7);
    }
}
