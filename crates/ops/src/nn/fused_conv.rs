//! FusedConv (millrace): a 2-D f32 convolution with its weights prepacked at compile time
//! and an epilogue fused in: `Y = act(conv(X, W) + bias + residual)`.
//!
//! Built by the `fuse-conv` pass from `Conv` (+ `BatchNormalization` / constant `Add` /
//! `Mul` folded into `W` and `bias`) (+ a residual `Add`) (+ an activation). Inputs:
//! `X` and, when a residual was fused, the tensor added to the convolution (same shape
//! as `Y`). The weights are not graph inputs any more: the op owns them, packed for the
//! GEMM microkernel this CPU runs, so every run and every thread reads the same copy.
//!
//! Kernel choice per layer (made once, at construction, from the planned input shape):
//! depthwise layers run a direct depthwise kernel; on AVX-512 and on AVX2, windows larger
//! than 1x1 with one group and stride 1 or 2 run the direct kernel of
//! [`millrace_kernels::direct`] (input rows broadcast in place, weights prepacked per block
//! of output channels, no im2col packing), except on AVX-512 where a layer has few weights
//! per output channel and more than 32 channels ([`direct::preferred`]); so do 1x1,
//! stride-1 layers with many channels on 7x7 and 14x14 planes on AVX-512
//! ([`direct::preferred_pointwise`]); on AVX-512, Winograd `F(4x4)` takes 3x3 stride-1
//! layers from 28x28 up with at least 64 channels on each side (and a few shapes with
//! fewer input channels) before the direct kernel
//! ([`winograd::preferred_over_direct`]), and in a batch also 14x14 planes with 128+
//! channels, the tiles of several images side by side in each of its products
//! ([`winograd::preferred_for_batch`]); on CPUs with neither direct kernel it serves
//! the 3x3 stride-1 layers it suits; everything else is a GEMM
//! `W[Cout x Cin*kh*kw] x im2col(X)` whose right operand is packed straight from the
//! image (implicit im2col: no im2col buffer), written as NCHW with the epilogue applied
//! per register tile.
use super::common::Window;
use super::conv::Conv;
use crate::planned::{alloc_f32, check_out, check_shape, fused_writes_into, views};
use millrace_core::{DType, Dim, Tensor, TensorData};
use millrace_ir::{Cost, F32View, InferCtx, Inputs, Op, OpError, ValueType};
use millrace_kernels::activation::Activation;
use millrace_kernels::conv::Geom2d;
use millrace_kernels::depthwise::depthwise2d;
use millrace_kernels::direct::{self, conv_direct, DirectWeights};
use millrace_kernels::gemm::{
    conv_shifted, gemm_ex, shifted_applies, Bias, Epilogue, Im2col, Lhs, Out, Packed, Rhs,
    ShiftedWeights, Strided, View,
};
use millrace_kernels::shallow::{self, conv_shallow, ShallowWeights};
use millrace_kernels::subsample;
use millrace_kernels::winograd::{
    self, prefer_winograd, winograd3x3, winograd3x3_batch, WinogradWeights,
};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Mutex;

const NAME: &str = "FusedConv";

/// How the layer runs.
#[derive(Debug)]
enum Path {
    /// One packed `A` (the group's `Cout/g x Cin/g*kh*kw` weights) per group.
    Gemm(Vec<Packed>),
    /// Depth multiplier 1, one channel per group: a direct loop per channel.
    Depthwise,
    /// 3x3, stride 1, one group, on an image large enough for transformed tiles to pay.
    Winograd(WinogradWeights),
    /// One group, a window larger than 1x1, stride 1 or 2, on AVX-512 or AVX2.
    Direct(DirectWeights),
    /// One group of at most four input channels (a first layer on RGB): the GEMM reading
    /// shifted copies of the input rows in place.
    Shifted(ShiftedWeights),
    /// One group of at most four input channels, on AVX-512: tiles along output pixels
    /// over a phase-split copy of the input rows.
    Shallow(ShallowWeights),
}

#[derive(Debug)]
pub struct FusedConv {
    window: Window,
    group: usize,
    /// `[Cout, Cin/group, kh, kw]`.
    w_shape: [usize; 4],
    /// Folded weights, kept only for the paths that read them directly (depthwise).
    weights: Vec<f32>,
    n_weights: usize,
    bias: Option<Vec<f32>>,
    act: Activation,
    residual: bool,
    /// Names of the nodes folded in, for plans and profiles.
    fused: Vec<String>,
    path: Path,
    /// Images per Winograd call in a batch: 1 runs the images side by side, each alone;
    /// more puts that many images' tiles side by side in each product
    /// ([`winograd::preferred_for_batch`]).
    winograd_images: usize,
    /// The last input shape's resolved geometry: resolving the window allocates, and the
    /// planned path must not, so steady-state runs (one shape) read it from here.
    geom_cache: Mutex<Option<([usize; 4], Geom2d)>>,
}

impl FusedConv {
    /// Builds the op from a `Conv`'s attributes and folded f32 weights. `planned` is the
    /// input shape the model was compiled for, when known: it picks the kernel.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        conv: &Conv,
        planned: Option<&[usize]>,
        w_shape: &[usize],
        weights: &[f32],
        bias: Option<Vec<f32>>,
        act: Activation,
        residual: bool,
        fused: Vec<String>,
    ) -> Result<FusedConv, OpError> {
        let &[m, cg, kh, kw] = w_shape else {
            return Err(OpError::invalid(
                NAME,
                format!("weights {w_shape:?} are not 4-D"),
            ));
        };
        let group = conv.group;
        if group == 0 || m % group != 0 {
            return Err(OpError::invalid(
                NAME,
                "output channels must divide into groups",
            ));
        }
        // Checked: the shape comes from the model file.
        let k = cg.checked_mul(kh).and_then(|x| x.checked_mul(kw));
        let Some(k) = k.filter(|&k| k.checked_mul(m) == Some(weights.len())) else {
            return Err(OpError::invalid(NAME, "weights do not match their shape"));
        };
        if bias.as_ref().is_some_and(|b| b.len() != m) {
            return Err(OpError::invalid(
                NAME,
                "bias length differs from output channels",
            ));
        }
        let mg = m / group;
        let unit = |v: &Option<Vec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|&x| x == 1));
        // The planned image of a 3x3, stride-1, dilation-1 layer with one group: Winograd
        // can run it.
        let winograd_image = match planned {
            Some(&[_, _, h, w])
                if group == 1
                    && kh == 3
                    && kw == 3
                    && unit(&conv.window.strides)
                    && unit(&conv.window.dilations) =>
            {
                Some((h, w))
            }
            _ => None,
        };
        let winograd = winograd_image.and_then(|(h, w)| prefer_winograd(cg, m, h, w));
        let strides = conv.window.strides.as_deref().unwrap_or(&[1, 1]);
        let use_direct = group == 1
            && (kh.saturating_mul(kw) > 1
                // A 1x1, stride-2 layer with many input channels reads its input in place
                // rather than gathered for the GEMM (`direct::preferred_strided_pointwise`).
                || (strides == [2, 2] && direct::preferred_strided_pointwise(k)))
            // Before the portable rule's Winograd: on AVX2 (Zen 3) the direct kernel took
            // 0.75-0.93x Winograd's time on ResNet-50's 128@28 and GoogLeNet's 3b, and 0.62-0.94x the implicit-im2col
            // GEMM's on every k x k layer of the bench. Winograd serves CPUs with neither.
            && matches!(strides, &[s, t] if direct::supported(s, t, kh, kw))
            // Few weights per channel (a first layer on RGB) over several channel blocks:
            // the GEMM, on AVX-512 (`direct::preferred`).
            && direct::preferred(mg, k);
        // The window over the planned input, where there is one: whether a 1x1 layer takes
        // the direct kernel, and the direct kernel's tile.
        let resolved = match planned {
            Some(&[_, _, h, w]) => conv
                .window
                .resolve(NAME, &[h, w], Some(&[kh, kw]))
                .ok()
                .map(|r| (h, w, r)),
            _ => None,
        };
        // A 1x1, stride-1, unpadded layer over a small plane with many channels: the
        // direct kernel too, where it beats the GEMM (`direct::preferred_pointwise`, which
        // holds only where the direct kernel runs).
        let pointwise_direct = group == 1
            && kh == 1
            && kw == 1
            && resolved.as_ref().is_some_and(|(h, w, r)| {
                r.strides.iter().all(|&s| s == 1)
                    && r.pads_begin.iter().all(|&p| p == 0)
                    && r.output[..] == [*h, *w]
                    && direct::preferred_pointwise(mg, k, *h, *w)
            });
        let dilations = conv.window.dilations.as_deref().unwrap_or(&[1, 1]);
        // Few input channels: the GEMM over shifted rows, before the direct kernel and the
        // implicit-im2col GEMM. On Zen 4 (`examples/direct_bench.rs`, 1 and 2 threads) it
        // took 0.82-0.87x the better of the two on ResNet-50's 7x7 stem, 0.81-0.86x on
        // MobileNetV2's first layer and 0.86-0.9x on SqueezeNet 1.1's.
        let shifted = group == 1
            && matches!((strides, dilations), (&[sh, sw], &[dh, _])
                if shifted_applies(m, cg, kh, kw, sh, sw, dh));
        // On AVX-512, before the shifted rows: tiles of 8 channels by 48 pixels over one
        // phase-split copy of the input rows. `examples/direct_bench.rs` on Zen 5, its time
        // against the shifted rows' (1 and 2 threads): SqueezeNet 1.1's first layer
        // 0.87-0.91x, MobileNetV2's 0.81-0.84x, ResNet-50's 7x7 stem 0.90x.
        let shallow = group == 1
            && matches!((strides, dilations), (&[sh, sw], &[dh, dw])
                if shallow::applies(cg, kh, kw, sh, sw, dh, dw));
        // On AVX-512, F(4x4) before the direct kernel where its vectorized transforms win
        // (`winograd::preferred_over_direct`).
        let winograd_first =
            winograd_image.and_then(|(h, w)| winograd::preferred_over_direct(cg, m, h, w));
        // A batch of small planes: F(4x4) over several images at a time.
        let winograd_batch = match (planned, winograd_image) {
            (Some(&[n, ..]), Some((h, w))) if winograd_first.is_none() => {
                winograd::preferred_for_batch(cg, m, h, w, n)
            }
            _ => None,
        };
        let winograd_first = winograd_first.or(winograd_batch.map(|(v, _)| v));
        let path = if cg == 1 && mg == 1 {
            Path::Depthwise
        } else if let Some(variant) = winograd_first {
            Path::Winograd(
                WinogradWeights::new(weights, m, cg, variant)
                    .map_err(|e| OpError::invalid(NAME, e.to_string()))?,
            )
        } else if shallow {
            Path::Shallow(
                ShallowWeights::new(weights, m, cg, kh, kw)
                    .map_err(|e| OpError::invalid(NAME, e.to_string()))?,
            )
        } else if shifted {
            Path::Shifted(
                ShiftedWeights::new(weights, m, cg, kh, kw)
                    .map_err(|e| OpError::invalid(NAME, e.to_string()))?,
            )
        } else if use_direct || pointwise_direct {
            // The planned output width picks the tile; without a plan, the wide tile.
            let ow = match planned {
                Some(&[_, _, _, w]) => resolved
                    .as_ref()
                    .and_then(|(_, _, r)| r.output.get(1).copied())
                    .unwrap_or(w),
                _ => usize::MAX,
            };
            Path::Direct(
                DirectWeights::new(weights, m, cg, kh, kw, ow)
                    .map_err(|e| OpError::invalid(NAME, e.to_string()))?,
            )
        } else if let Some(variant) = winograd {
            Path::Winograd(
                WinogradWeights::new(weights, m, cg, variant)
                    .map_err(|e| OpError::invalid(NAME, e.to_string()))?,
            )
        } else {
            let packs = (0..group)
                .map(|g| {
                    let wg = &weights[g * mg * k..(g + 1) * mg * k];
                    let src = Strided::rows(wg, mg, k)
                        .ok_or_else(|| OpError::invalid(NAME, "weights too short"))?;
                    Ok(Packed::lhs(&src))
                })
                .collect::<Result<Vec<_>, OpError>>()?;
            Path::Gemm(packs)
        };
        let n_weights = weights.len();
        let weights = if matches!(path, Path::Depthwise) {
            weights.to_vec()
        } else {
            Vec::new()
        };
        Ok(FusedConv {
            window: conv.window.clone(),
            group,
            w_shape: [m, cg, kh, kw],
            weights,
            n_weights,
            bias,
            act,
            residual,
            fused,
            path,
            winograd_images: winograd_batch.map_or(1, |(_, k)| k),
            geom_cache: Mutex::new(None),
        })
    }

    /// The folded weights' shape, `[Cout, Cin/group, kh, kw]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        self.w_shape
    }

    /// Convolution groups.
    pub fn group(&self) -> usize {
        self.group
    }

    /// Whether a per-channel bias is added (a conv bias or a folded BatchNorm / `Add`).
    pub fn has_bias(&self) -> bool {
        self.bias.is_some()
    }

    /// Whether a residual input (`X`'s second input, shaped as `Y`) is added.
    pub fn has_residual(&self) -> bool {
        self.residual
    }

    /// The fused activation ([`Activation::None`] when there is none).
    pub fn activation(&self) -> Activation {
        self.act
    }

    /// Bytes of prepacked weights this op holds.
    pub fn weight_bytes(&self) -> usize {
        let packed = match &self.path {
            Path::Gemm(p) => p.iter().map(Packed::bytes).sum(),
            Path::Depthwise => 0,
            Path::Winograd(w) => w.bytes(),
            Path::Direct(w) => w.bytes(),
            Path::Shifted(w) => w.bytes(),
            Path::Shallow(w) => w.bytes(),
        };
        packed + self.weights.len() * 4
    }

    fn out_shape(&self, x: &[usize]) -> Result<Vec<usize>, OpError> {
        let (_, oh, ow) = self.geom(x)?;
        Ok(vec![x[0], self.w_shape[0], oh, ow])
    }

    fn geom(&self, x: &[usize]) -> Result<(Geom2d, usize, usize), OpError> {
        let key: Option<[usize; 4]> = x.try_into().ok();
        if let (Some(key), Ok(cache)) = (key, self.geom_cache.lock()) {
            if let Some((k, g)) = *cache {
                if k == key {
                    return Ok((g, g.oh, g.ow));
                }
            }
        }
        let r = self.resolve_geom(x)?;
        if let (Some(key), Ok(mut cache)) = (key, self.geom_cache.lock()) {
            *cache = Some((key, r.0));
        }
        Ok(r)
    }

    fn resolve_geom(&self, x: &[usize]) -> Result<(Geom2d, usize, usize), OpError> {
        let &[_, c, h, w] = x else {
            return Err(OpError::invalid(NAME, format!("input {x:?} is not 4-D")));
        };
        let [_, cg, kh, kw] = self.w_shape;
        if c != cg * self.group {
            return Err(OpError::invalid(
                NAME,
                format!(
                    "input has {c} channels, weights expect {cg} x group {}",
                    self.group
                ),
            ));
        }
        let r = self.window.resolve(NAME, &[h, w], Some(&[kh, kw]))?;
        let g = Geom2d {
            c: cg,
            h,
            w,
            kh,
            kw,
            sh: r.strides[0],
            sw: r.strides[1],
            dh: r.dilations[0],
            dw: r.dilations[1],
            pt: r.pads_begin[0],
            pl: r.pads_begin[1],
            oh: r.output[0],
            ow: r.output[1],
        };
        Ok((g, r.output[0], r.output[1]))
    }
}

fn f32s<'a>(t: &'a Tensor, what: &str) -> Result<&'a [f32], OpError> {
    match t.data() {
        TensorData::F32(v) => Ok(v),
        d => Err(OpError::invalid(
            NAME,
            format!("{what} must be float32, got {}", d.dtype()),
        )),
    }
}

impl Op for FusedConv {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let Some(xs) = &x.shape else {
            return Ok(vec![ValueType {
                dtype: Some(DType::F32),
                shape: None,
            }]);
        };
        if xs.len() != 4 {
            return Err(OpError::invalid(NAME, "input must be N x C x H x W"));
        }
        let [m, _, kh, kw] = self.w_shape;
        let mut shape = vec![xs[0].clone(), Dim::Known(m)];
        shape.extend(self.window.infer(NAME, &xs[2..], Some(vec![kh, kw])));
        Ok(vec![ValueType {
            dtype: Some(DType::F32),
            shape: Some(shape),
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let mut c = Cost::movement(inputs, outputs);
        c.bytes_read += self.n_weights as u64 * 4;
        if let Some(ys) = outputs.first().and_then(|t| t.numel()) {
            let [_, cg, kh, kw] = self.w_shape;
            let ys = ys as u64;
            c.flops = 2 * ys * (cg * kh * kw) as u64;
            c.flops += ys * (self.bias.is_some() as u64 + self.residual as u64);
            c.flops += ys * (!self.act.is_none()) as u64;
        }
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let xt = inputs.req(0)?;
        f32s(xt, "input")?;
        let out_shape = self.out_shape(xt.shape())?;
        let views = views(NAME, inputs)?;
        Ok(vec![alloc_f32(NAME, out_shape.clone(), |y| {
            self.eval_into(&views, y, &out_shape)
        })?])
    }

    fn writes_into(&self, inputs: &[ValueType], outputs: &[ValueType]) -> bool {
        fused_writes_into(inputs, outputs, self.residual, |x| self.out_shape(x))
    }

    fn eval_into(
        &self,
        inputs: &[Option<F32View<'_>>],
        y: &mut [f32],
        out_shape: &[usize],
    ) -> Result<(), OpError> {
        let xv = F32View::req(inputs, NAME, 0)?;
        let x = xv.data;
        let (g, oh, ow) = self.geom(xv.shape)?;
        let (n, m) = (xv.shape[0], self.w_shape[0]);
        check_shape(NAME, "output", out_shape, &[n, m, oh, ow])?;
        check_out(NAME, y, out_shape)?;
        if x.len() != xv.shape.iter().product::<usize>() {
            return Err(OpError::invalid(
                NAME,
                "input data does not match its shape",
            ));
        }
        let res = if self.residual {
            let r = F32View::req(inputs, NAME, 1)?;
            check_shape(NAME, "residual", r.shape, out_shape)?;
            if r.data.len() != y.len() {
                return Err(OpError::invalid(
                    NAME,
                    "residual data does not match its shape",
                ));
            }
            Some(r.data)
        } else {
            None
        };
        let plane = oh * ow;
        let in_img = g.c * self.group * g.h * g.w;
        let out_img = m * plane;
        if y.is_empty() {
            return Ok(());
        }
        let mg = m / self.group;
        let in_grp = g.c * g.h * g.w;
        // One image into its slice `yi` of the output.
        let image = |img: usize, yi: &mut [f32]| -> Result<(), OpError> {
            let xi = &x[img * in_img..(img + 1) * in_img];
            let ri = res.map(|r| &r[img * out_img..(img + 1) * out_img]);
            match &self.path {
                Path::Gemm(packs) => {
                    for (gi, pa) in packs.iter().enumerate() {
                        let xg = &xi[gi * in_grp..][..in_grp];
                        let src = Im2col::new(xg, g)
                            .ok_or_else(|| OpError::invalid(NAME, "input too short"))?;
                        // A 1x1, stride-1, unpadded convolution reads its input in place.
                        let pointwise = g.kh == 1
                            && g.kw == 1
                            && g.sh == 1
                            && g.sw == 1
                            && g.pt == 0
                            && g.pl == 0
                            && oh == g.h
                            && ow == g.w;
                        let yo = gi * mg * plane;
                        let epi = Epilogue {
                            bias: match &self.bias {
                                Some(b) => Bias::Row(&b[gi * mg..(gi + 1) * mg]),
                                None => Bias::None,
                            },
                            residual: ri.map(|r| View {
                                data: &r[yo..yo + mg * plane],
                                rs: plane,
                                cs: 1,
                            }),
                            act: self.act,
                            ..Epilogue::default()
                        };
                        let out = &mut yi[yo..yo + mg * plane];
                        let run = |rhs: Rhs<'_>, out: &mut [f32]| {
                            gemm_ex(
                                pa.kernel(),
                                Lhs::Packed(pa),
                                rhs,
                                Out {
                                    data: out,
                                    rs: plane,
                                    cs: 1,
                                },
                                &epi,
                            )
                            .map_err(|e| OpError::invalid(NAME, e.to_string()))
                        };
                        let direct = |data: &[f32], out: &mut [f32]| {
                            let rhs = Rhs::Direct {
                                data,
                                k: g.c,
                                n: plane,
                                ld: plane,
                            };
                            run(rhs, out)
                        };
                        if pointwise {
                            direct(xg, out)?;
                        } else if let Some(r) =
                            subsample::with_subsampled(xg, &g, |xs| direct(xs, &mut *out))
                        {
                            // A strided 1x1 convolution: its input gathered at the output
                            // pixels, then read in place as a pointwise one.
                            r?;
                        } else {
                            run(Rhs::Source(&src), out)?;
                        }
                    }
                }
                Path::Winograd(ww) => {
                    winograd3x3(xi, &g, ww, self.bias.as_deref(), ri, self.act, yi)
                        .map_err(|e| OpError::invalid(NAME, e.to_string()))?;
                }
                Path::Direct(dw) => {
                    conv_direct(xi, &g, dw, self.bias.as_deref(), ri, self.act, yi)
                        .map_err(|e| OpError::invalid(NAME, e.to_string()))?;
                }
                Path::Shifted(sw) => {
                    conv_shifted(xi, &g, sw, self.bias.as_deref(), ri, self.act, yi)
                        .map_err(|e| OpError::invalid(NAME, e.to_string()))?;
                }
                Path::Shallow(sw) => {
                    conv_shallow(xi, &g, sw, self.bias.as_deref(), ri, self.act, yi)
                        .map_err(|e| OpError::invalid(NAME, e.to_string()))?;
                }
                Path::Depthwise => {
                    let gd = Geom2d { c: m, ..g };
                    // A residual is added before the activation: fuse only what the
                    // kernel can, then finish here.
                    let act = if ri.is_some() {
                        Activation::None
                    } else {
                        self.act
                    };
                    depthwise2d(xi, &self.weights, self.bias.as_deref(), &gd, act, yi)
                        .map_err(|e| OpError::invalid(NAME, e.to_string()))?;
                    if let Some(r) = ri {
                        yi.iter_mut().zip(r).for_each(|(o, r)| *o += r);
                        self.act.apply_slice(yi);
                    }
                }
            }
            Ok(())
        };
        if let (Path::Winograd(ww), true) = (&self.path, n > 1 && self.winograd_images > 1) {
            // A batch of small planes: several images' tiles in each product.
            let k = self.winograd_images;
            for (ci, yc) in y.chunks_mut(k * out_img).enumerate() {
                let imgs = yc.len() / out_img;
                let x0 = ci * k * in_img;
                let xc = &x[x0..x0 + imgs * in_img];
                let rc = res.map(|r| &r[ci * k * out_img..][..imgs * out_img]);
                winograd3x3_batch(xc, imgs, &g, ww, self.bias.as_deref(), rc, self.act, yc)
                    .map_err(|e| OpError::invalid(NAME, e.to_string()))?;
            }
        } else if n > 1 {
            // Images side by side: each thread works through whole images (the kernels
            // inside still share out their work when a thread is free), so a batch does
            // not pay one fork/join per image and layer.
            y.par_chunks_mut(out_img)
                .enumerate()
                .try_for_each(|(img, yi)| image(img, yi))?;
        } else {
            image(0, y)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let mut parts = vec![format!(
            "W={}x{}x{}x{}",
            self.w_shape[0], self.w_shape[1], self.w_shape[2], self.w_shape[3]
        )];
        let win = self.window.describe();
        if !win.is_empty() {
            parts.push(win);
        }
        if self.group != 1 {
            parts.push(format!("group={}", self.group));
        }
        if self.bias.is_some() {
            parts.push("+bias".into());
        }
        if self.residual {
            parts.push("+residual".into());
        }
        if !self.act.is_none() {
            parts.push(format!("+{}", self.act.describe()));
        }
        parts.push(match &self.path {
            Path::Gemm(_) => "impl=gemm".into(),
            Path::Depthwise => "impl=depthwise".into(),
            Path::Winograd(w) => format!("impl=winograd-{:?}", w.variant()),
            Path::Direct(w) => format!("impl=direct-{}px", w.tile_pixels()),
            Path::Shifted(_) => "impl=shifted-rows".into(),
            Path::Shallow(_) => "impl=shallow".into(),
        });
        if !self.fused.is_empty() {
            parts.push(format!("fused=[{}]", self.fused.join(",")));
        }
        parts.join(" ")
    }

    fn own_weight_bytes(&self) -> u64 {
        self.weight_bytes() as u64
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

    fn conv_ref(conv: &Conv, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
        let mut items = vec![Some(x), Some(w)];
        items.push(b);
        conv.eval(&Inputs::new("Conv", &items)).unwrap().remove(0)
    }

    #[test]
    fn matches_conv_with_bias_residual_and_activation() {
        for (c, m, h, k, s, p, group) in [
            (8, 16, 9, 3, 1, 1, 1),
            (3, 40, 12, 7, 2, 3, 1),
            (16, 16, 7, 1, 1, 0, 1),
            (8, 12, 10, 3, 2, 1, 4),
            (6, 6, 9, 3, 1, 1, 6),
            (6, 6, 9, 3, 2, 1, 6),
            (32, 32, 24, 3, 1, 1, 1),
            (32, 24, 12, 3, 1, 1, 1),
            (128, 32, 12, 3, 1, 1, 1),
            (128, 16, 20, 3, 1, 1, 1),
            // A batch of 14x14 planes with many channels: on AVX-512, F(4x4) over both
            // images at once (`winograd::preferred_for_batch`).
            (128, 128, 14, 3, 1, 1, 1),
            // Strided 1x1: the input gathered at the output pixels, then a pointwise
            // GEMM (odd and even sizes; stride 3).
            (24, 20, 13, 1, 2, 0, 1),
            (16, 32, 14, 1, 2, 0, 1),
            (8, 10, 11, 1, 3, 0, 1),
            // Strided 1x1 with padding: reads the border, so the implicit im2col.
            (8, 10, 11, 1, 2, 1, 1),
            // 1x1 with many channels on a 7x7 plane: the direct kernel on AVX-512.
            (512, 272, 7, 1, 1, 0, 1),
            // Strided 1x1 with many input channels: the direct kernel on AVX-512 (odd and
            // even sizes, padded or not).
            (512, 40, 14, 1, 2, 0, 1),
            (512, 24, 9, 1, 2, 0, 1),
            (512, 24, 9, 1, 2, 1, 1),
        ] {
            let a = attrs(
                "Conv",
                vec![
                    ("kernel_shape", Attr::Ints(vec![k as i64, k as i64])),
                    ("strides", Attr::Ints(vec![s as i64, s as i64])),
                    ("pads", Attr::Ints(vec![p as i64; 4])),
                    ("group", Attr::Int(group as i64)),
                ],
            );
            let conv = Conv::parse(&a).unwrap();
            let x = Tensor::from_vec(vec![2, c, h, h], rnd(2 * c * h * h, 1)).unwrap();
            let ws = vec![m, c / group, k, k];
            let wv = rnd(ws.iter().product(), 2);
            let w = Tensor::from_vec(ws.clone(), wv.clone()).unwrap();
            let bv = rnd(m, 3);
            let b = Tensor::from_vec(vec![m], bv.clone()).unwrap();
            let want = conv_ref(&conv, &x, &w, Some(&b));
            let res = Tensor::from_vec(want.shape().to_vec(), rnd(want.len(), 4)).unwrap();
            for (act, with_res) in [
                (Activation::None, false),
                (Activation::Relu, true),
                (Activation::Clip { lo: 0.0, hi: 6.0 }, false),
                (Activation::Sigmoid, true),
            ] {
                let f = FusedConv::new(
                    &conv,
                    Some(x.shape()),
                    &ws,
                    &wv,
                    Some(bv.clone()),
                    act,
                    with_res,
                    vec![],
                )
                .unwrap();
                if c == 128 && h >= 20 && !millrace_kernels::direct::available() {
                    assert!(f.describe().contains("impl=winograd"), "{}", f.describe());
                }
                let items = [Some(&x), with_res.then_some(&res)];
                let got = f.eval(&Inputs::new(NAME, &items)).unwrap().remove(0);
                assert_eq!(got.shape(), want.shape());
                let (TensorData::F32(g), TensorData::F32(wv), TensorData::F32(r)) =
                    (got.data(), want.data(), res.data())
                else {
                    panic!()
                };
                // Winograd's error scales with the output's magnitude, not each element's
                // (F(4x4) is within about 3e-6 of it, measured): near-zero outputs of a
                // large-valued layer get that absolute bound. Every other path is held to
                // 1e-4 of each element.
                let scale = wv.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                let winograd = f.describe().contains("impl=winograd");
                for i in 0..g.len() {
                    let e = act.apply(wv[i] + if with_res { r[i] } else { 0.0 });
                    let tol = if winograd {
                        2e-5 * scale + 1e-5 * e.abs()
                    } else {
                        1e-4 * (1.0 + e.abs())
                    };
                    assert!((g[i] - e).abs() < tol, "{i}: {} vs {e}", g[i]);
                }
            }
        }
    }

    /// Every path's planned-buffer run gives `eval`'s bits, and a residual that is not
    /// f32 or a second output refuses the planned path.
    #[test]
    fn planned_paths_match_eval() {
        use crate::into_check::{check, rand, refuses};
        // (c, m, h, k, s, p, group, expected impl)
        let direct = |other| {
            if millrace_kernels::direct::available() {
                "impl=direct"
            } else {
                other
            }
        };
        // On AVX-512, F(4x4) before the direct kernel; elsewhere the direct kernel, or
        // the GEMM (the portable rule keeps 64 input channels off Winograd).
        let winograd_first = if winograd::preferred_over_direct(64, 64, 28, 28).is_some() {
            "impl=winograd-F4x4"
        } else {
            direct("impl=gemm")
        };
        // Batch 2 of 14x14 planes: on AVX-512, F(4x4) over both images at once.
        let winograd_batch = if winograd::preferred_for_batch(128, 128, 14, 14, 2).is_some() {
            "impl=winograd-F4x4"
        } else {
            direct("impl=winograd")
        };
        let pointwise = if millrace_kernels::direct::preferred_pointwise(256, 512, 7, 7) {
            "impl=direct"
        } else {
            "impl=gemm"
        };
        // Few input channels: the shallow kernel on AVX-512 (stride 1 or 2), else the
        // shifted rows.
        let shallow = if millrace_kernels::shallow::available() {
            "impl=shallow"
        } else {
            "impl=shifted-rows"
        };
        for (c, m, h, k, s, p, group, want) in [
            (16, 24, 9, 1, 1, 0, 1, "impl=gemm"),         // 1x1 direct
            (8, 16, 9, 3, 1, 1, 1, direct("impl=gemm")),  // kxk
            (3, 40, 12, 7, 2, 3, 1, shallow),             // few input channels
            (8, 40, 12, 7, 2, 3, 1, direct("impl=gemm")), // stride 2
            (2, 9, 11, 3, 1, 0, 1, shallow),              // stride 1, no padding
            (3, 20, 13, 3, 3, 1, 1, "impl=shifted-rows"), // few channels, stride 3
            (8, 16, 9, 3, 3, 1, 1, "impl=gemm"),          // kxk stride 3: im2col
            (16, 16, 7, 1, 2, 0, 1, "impl=gemm"),         // 1x1 stride 2
            (512, 256, 7, 1, 1, 0, 1, pointwise),         // 1x1, many channels, 7x7
            (1024, 256, 14, 1, 1, 0, 1, pointwise),       // 1x1, more channels, 14x14
            (512, 296, 14, 1, 1, 0, 1, "impl=gemm"),      // 1x1, 14x14, part blocks
            (384, 64, 14, 1, 1, 0, 1, pointwise),         // 1x1 reduction, 14x14
            (8, 70, 5, 3, 1, 1, 1, direct("impl=gemm")),  // 7-pixel tiles
            (128, 32, 12, 3, 1, 1, 1, direct("impl=winograd")),
            (128, 32, 20, 3, 1, 1, 1, direct("impl=winograd-F4x4")),
            (64, 64, 28, 3, 1, 1, 1, winograd_first),
            (128, 128, 14, 3, 1, 1, 1, winograd_batch),
            (6, 6, 9, 3, 1, 1, 6, "impl=depthwise"),
            (6, 6, 9, 3, 2, 1, 6, "impl=depthwise"),
            (8, 12, 10, 3, 2, 1, 4, "impl=gemm"), // grouped
        ] {
            let a = attrs(
                "Conv",
                vec![
                    ("kernel_shape", Attr::Ints(vec![k as i64, k as i64])),
                    ("strides", Attr::Ints(vec![s as i64, s as i64])),
                    ("pads", Attr::Ints(vec![p as i64; 4])),
                    ("group", Attr::Int(group as i64)),
                ],
            );
            let conv = Conv::parse(&a).unwrap();
            let x = rand(&[2, c, h, h], 1);
            let ws = vec![m, c / group, k, k];
            let wv = rnd(ws.iter().product(), 2);
            for (act, with_res, bias) in [
                (Activation::None, false, false),
                (Activation::Relu, true, true),
                (Activation::Clip { lo: 0.0, hi: 6.0 }, false, true),
                (Activation::Sigmoid, true, false),
            ] {
                let f = FusedConv::new(
                    &conv,
                    Some(x.shape()),
                    &ws,
                    &wv,
                    bias.then(|| rnd(m, 3)),
                    act,
                    with_res,
                    vec![],
                )
                .unwrap();
                assert!(f.describe().contains(want), "{}", f.describe());
                let y = f.out_shape(x.shape()).unwrap();
                let res = rand(&y, 4);
                check(&f, &[Some(&x), with_res.then_some(&res)]);
                let t = |s: &[usize]| ValueType::concrete(DType::F32, s);
                if with_res {
                    let r64 = ValueType::concrete(DType::F64, &y);
                    refuses(&f, &[t(x.shape()), r64], &[t(&y)]);
                    refuses(&f, &[t(x.shape())], &[t(&y)]);
                }
                refuses(&f, &[t(x.shape()), t(&y)], &[t(&y), t(&y)]);
                refuses(&f, &[ValueType::of_dtype(DType::F32), t(&y)], &[t(&y)]);
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let a = attrs("Conv", vec![("kernel_shape", Attr::Ints(vec![3, 3]))]);
        let conv = Conv::parse(&a).unwrap();
        assert!(FusedConv::new(
            &conv,
            None,
            &[4, 2, 3, 3],
            &[0.0; 5],
            None,
            Activation::None,
            false,
            vec![]
        )
        .is_err());
        // A shape whose product overflows is an error, not a wrapped size.
        let huge = usize::MAX / 2;
        assert!(FusedConv::new(
            &conv,
            None,
            &[0, 2, huge, huge],
            &[],
            None,
            Activation::None,
            false,
            vec![]
        )
        .is_err());
        let f = FusedConv::new(
            &conv,
            None,
            &[4, 2, 3, 3],
            &[0.0; 72],
            None,
            Activation::None,
            true,
            vec![],
        )
        .unwrap();
        let x = Tensor::from_vec(vec![1, 3, 5, 5], vec![0.0; 75]).unwrap();
        assert!(f.eval(&Inputs::new(NAME, &[Some(&x)])).is_err());
        let x = Tensor::from_vec(vec![1, 2, 5, 5], vec![0.0; 50]).unwrap();
        assert!(
            f.eval(&Inputs::new(NAME, &[Some(&x)])).is_err(),
            "missing residual"
        );
    }
}
