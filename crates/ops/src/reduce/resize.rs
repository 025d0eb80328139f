//! Resize (ONNX opsets 10, 11, 13, 18, 19): nearest / N-d linear / cubic resampling of the
//! input by `scales` or to `sizes`, with ONNX coordinate transformation modes.
use crate::util::{output, Num};
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
    TfCropAndResize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
    /// Resize-10 / Upsample: truncate when upsampling, ceil when downsampling.
    Simple,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Stretch,
    NotLarger,
    NotSmaller,
}

/// Where the op finds its inputs and which ONNX version's rules apply.
#[derive(Clone, Debug, PartialEq)]
pub enum Layout {
    /// Resize-11+: X, roi, scales, sizes.
    Resize11,
    /// Resize-10 and Upsample-9: X, scales.
    ScalesInput,
    /// Upsample-7: scales attribute.
    ScalesAttr(Vec<f32>),
}

/// Per output coordinate of one axis: (input index, weight) taps, `None` = extrapolate.
type AxisTaps = Vec<Option<Vec<(usize, f64)>>>;

/// roi, scales, sizes values (each `None` when absent or empty).
type ResizeArgs = (Option<Vec<f32>>, Option<Vec<f32>>, Option<Vec<i64>>);

#[derive(Clone, Debug, PartialEq)]
pub struct Resize {
    pub name: &'static str,
    pub layout: Layout,
    pub mode: Mode,
    pub coord: Coord,
    pub nearest: Nearest,
    pub cubic_a: f32,
    pub exclude_outside: bool,
    pub extrapolation: f32,
    pub axes: Option<Vec<i64>>,
    pub policy: Policy,
    pub antialias: bool,
}

fn mode_of(name: &str, s: &str) -> Result<Mode, OpError> {
    Ok(match s {
        "nearest" => Mode::Nearest,
        "linear" => Mode::Linear,
        "cubic" if name == "Resize" => Mode::Cubic,
        _ => {
            return Err(OpError::attribute(
                name,
                "mode",
                format!("unknown mode `{s}`"),
            ))
        }
    })
}

/// Keys' cubic convolution kernel with coefficient `a` at distance `d`.
fn cubic_weight(a: f64, d: f64) -> f64 {
    let d = d.abs();
    if d <= 1.0 {
        ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
    } else if d < 2.0 {
        ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
    } else {
        0.0
    }
}

impl Resize {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Resize::parse(attrs, opset)?))
    }

    pub fn parse(attrs: &Attributes, opset: i64) -> Result<Resize, OpError> {
        let n = "Resize";
        let mode = mode_of(n, &attrs.string_or("mode", "nearest")?)?;
        let ctm = attrs.string_or("coordinate_transformation_mode", "half_pixel")?;
        let nm = attrs.string_or("nearest_mode", "round_prefer_floor")?;
        let cubic_a = attrs.float_or("cubic_coeff_a", -0.75)?;
        let exclude_outside = attrs.int_or("exclude_outside", 0)? != 0;
        let extrapolation = attrs.float_or("extrapolation_value", 0.0)?;
        let axes = attrs.ints("axes")?;
        let pol = attrs.string_or("keep_aspect_ratio_policy", "stretch")?;
        let antialias = attrs.int_or("antialias", 0)? != 0;
        if opset < 11 {
            return Ok(Resize {
                name: n,
                layout: Layout::ScalesInput,
                mode,
                coord: Coord::Asymmetric,
                nearest: Nearest::Simple,
                cubic_a,
                exclude_outside,
                extrapolation,
                axes: None,
                policy: Policy::Stretch,
                antialias: false,
            });
        }
        let coord = match ctm.as_str() {
            "half_pixel" => Coord::HalfPixel,
            "half_pixel_symmetric" if opset >= 19 => Coord::HalfPixelSymmetric,
            "pytorch_half_pixel" => Coord::PytorchHalfPixel,
            "align_corners" => Coord::AlignCorners,
            "asymmetric" => Coord::Asymmetric,
            "tf_half_pixel_for_nn" if opset < 13 => Coord::TfHalfPixelForNn,
            "tf_crop_and_resize" => Coord::TfCropAndResize,
            _ => {
                return Err(OpError::attribute(
                    n,
                    "coordinate_transformation_mode",
                    format!("unknown mode `{ctm}` at opset {opset}"),
                ))
            }
        };
        let nearest = match nm.as_str() {
            "round_prefer_floor" => Nearest::RoundPreferFloor,
            "round_prefer_ceil" => Nearest::RoundPreferCeil,
            "floor" => Nearest::Floor,
            "ceil" => Nearest::Ceil,
            _ => {
                return Err(OpError::attribute(
                    n,
                    "nearest_mode",
                    format!("unknown mode `{nm}`"),
                ))
            }
        };
        let policy = match pol.as_str() {
            "stretch" => Policy::Stretch,
            "not_larger" => Policy::NotLarger,
            "not_smaller" => Policy::NotSmaller,
            _ => {
                return Err(OpError::attribute(
                    n,
                    "keep_aspect_ratio_policy",
                    format!("unknown policy `{pol}`"),
                ))
            }
        };
        Ok(Resize {
            name: n,
            layout: Layout::Resize11,
            mode,
            coord,
            nearest,
            cubic_a,
            exclude_outside,
            extrapolation,
            axes,
            policy,
            antialias,
        })
    }

    /// An Upsample op (opset 7: scales attribute; 9: scales input): asymmetric coordinates.
    pub fn upsample(attrs: &Attributes, opset: i64) -> Result<Resize, OpError> {
        let n = "Upsample";
        let mode = mode_of(n, &attrs.string_or("mode", "nearest")?)?;
        let scales = attrs.floats("scales")?;
        let layout = if opset < 9 {
            Layout::ScalesAttr(
                scales.ok_or_else(|| OpError::attribute(n, "scales", "required but absent"))?,
            )
        } else if scales.is_some() {
            return Err(OpError::attribute(
                n,
                "scales",
                "is an input, not an attribute, from opset 9",
            ));
        } else {
            Layout::ScalesInput
        };
        Ok(Resize {
            name: n,
            layout,
            mode,
            coord: Coord::Asymmetric,
            nearest: Nearest::Simple,
            cubic_a: -0.75,
            exclude_outside: false,
            extrapolation: 0.0,
            axes: None,
            policy: Policy::Stretch,
            antialias: false,
        })
    }

    fn nonempty(t: Option<&Tensor>) -> Option<&Tensor> {
        t.filter(|t| !t.is_empty())
    }

    /// Per-axis (scale, output size) and per-axis roi (start, end), from concrete input
    /// dims and the scales / sizes / roi values (`None` = absent).
    #[allow(clippy::type_complexity)]
    fn plan(
        &self,
        in_shape: &[usize],
        roi: Option<Vec<f32>>,
        scales: Option<Vec<f32>>,
        sizes: Option<Vec<i64>>,
    ) -> Result<(Vec<f64>, Vec<usize>, Vec<(f32, f32)>), OpError> {
        let n = self.name;
        let rank = in_shape.len();
        let axes: Vec<usize> = match &self.axes {
            Some(a) => crate::util::normalize_axes(n, a, rank)?,
            None => (0..rank).collect(),
        };
        let k = axes.len();
        let mut scale = vec![1f64; rank];
        let mut out: Vec<usize> = in_shape.to_vec();
        let mut roi_v = vec![(0f32, 1f32); rank];
        if self.coord == Coord::TfCropAndResize {
            let r = roi.ok_or_else(|| {
                OpError::invalid(n, "tf_crop_and_resize needs a non-empty roi input")
            })?;
            if r.len() != 2 * k {
                return Err(OpError::invalid(
                    n,
                    format!("roi has {} values, expected {}", r.len(), 2 * k),
                ));
            }
            for (i, &ax) in axes.iter().enumerate() {
                roi_v[ax] = (r[i], r[k + i]);
            }
        }
        match (scales, sizes) {
            (Some(s), None) => {
                if s.len() != k {
                    return Err(OpError::invalid(
                        n,
                        format!("scales has {} values, expected {k}", s.len()),
                    ));
                }
                for (i, &ax) in axes.iter().enumerate() {
                    let sc = s[i];
                    if sc.is_nan() || sc <= 0.0 || sc.is_infinite() {
                        return Err(OpError::invalid(n, format!("scale {sc} must be > 0")));
                    }
                    if self.name == "Upsample" && sc < 1.0 {
                        return Err(OpError::invalid(n, format!("scale {sc} must be >= 1")));
                    }
                    scale[ax] = sc as f64;
                    let (a, b) = roi_v[ax];
                    let len = in_shape[ax] as f64 * (b as f64 - a as f64) * sc as f64;
                    if !(0.0..=1e12).contains(&len) {
                        return Err(OpError::invalid(n, format!("bad output size {len}")));
                    }
                    out[ax] = len.floor() as usize;
                }
            }
            (None, Some(z)) => {
                if z.len() != k {
                    return Err(OpError::invalid(
                        n,
                        format!("sizes has {} values, expected {k}", z.len()),
                    ));
                }
                if z.iter().any(|&v| v < 0) {
                    return Err(OpError::invalid(n, "sizes must be >= 0"));
                }
                let ratio = |i: usize, ax: usize| z[i] as f64 / in_shape[ax] as f64;
                match self.policy {
                    Policy::Stretch => {
                        for (i, &ax) in axes.iter().enumerate() {
                            out[ax] = z[i] as usize;
                            scale[ax] = ratio(i, ax);
                        }
                    }
                    p => {
                        let mut common: Option<f64> = None;
                        for (i, &ax) in axes.iter().enumerate() {
                            let r = ratio(i, ax);
                            common = Some(match common {
                                None => r,
                                Some(c) if p == Policy::NotLarger => c.min(r),
                                Some(c) => c.max(r),
                            });
                        }
                        let c = common.unwrap_or(1.0);
                        for &ax in &axes {
                            scale[ax] = c;
                            let v = (c * in_shape[ax] as f64 + 0.5).floor();
                            if !(0.0..=1e12).contains(&v) {
                                return Err(OpError::invalid(n, "bad output size"));
                            }
                            out[ax] = v as usize;
                        }
                    }
                }
            }
            (Some(_), Some(_)) => {
                return Err(OpError::invalid(
                    n,
                    "only one of scales and sizes may be given",
                ))
            }
            (None, None) => return Err(OpError::invalid(n, "one of scales or sizes is required")),
        }
        Ok((scale, out, roi_v))
    }

    /// Input coordinate of output coordinate `x` on one axis, computed as ONNX's reference
    /// does: in f64, with `output_width = scale * len_in` (fractional when `scales` gives a
    /// non-integral size) for align_corners, pytorch_half_pixel, half_pixel_symmetric and
    /// tf_crop_and_resize.
    fn transform(
        &self,
        x: usize,
        scale: f64,
        len_out: usize,
        len_in: usize,
        roi: (f32, f32),
    ) -> f64 {
        let x = x as f64;
        let li = len_in as f64;
        let ow = scale * li;
        match self.coord {
            Coord::HalfPixel => (x + 0.5) / scale - 0.5,
            Coord::HalfPixelSymmetric => {
                let adj = len_out as f64 / ow;
                let center = li / 2.0;
                let off = center * (1.0 - adj);
                off + (x + 0.5) / scale - 0.5
            }
            Coord::PytorchHalfPixel => {
                // The reference uses -0.5 where the spec says 0 for a length-1 output;
                // `pytorch_ambiguous` rejects the cases where the two differ.
                if ow == 1.0 {
                    0.0
                } else {
                    (x + 0.5) / scale - 0.5
                }
            }
            Coord::AlignCorners => {
                if ow == 1.0 {
                    0.0
                } else {
                    x * (li - 1.0) / (ow - 1.0)
                }
            }
            Coord::Asymmetric => x / scale,
            Coord::TfHalfPixelForNn => (x + 0.5) / scale,
            Coord::TfCropAndResize => {
                let (a, b) = (roi.0 as f64, roi.1 as f64);
                if ow == 1.0 {
                    0.5 * (a + b) * (li - 1.0)
                } else {
                    a * (li - 1.0) + x * (b - a) * (li - 1.0) / (ow - 1.0)
                }
            }
        }
    }

    /// True where pytorch_half_pixel's length-1 rule is ambiguous (reference: x = -0.5,
    /// spec: x = 0) and the choice changes the result (cubic, antialias), or where the
    /// output length is 1 but `scale * len_in` is not.
    fn pytorch_ambiguous(&self, scale: f64, len_out: usize, len_in: usize) -> bool {
        if self.coord != Coord::PytorchHalfPixel {
            return false;
        }
        let ow = scale * len_in as f64;
        let one = ow == 1.0;
        if len_out == 1 && !one {
            return true;
        }
        one && (self.mode == Mode::Cubic
            || (self.antialias && self.mode != Mode::Nearest && scale < 1.0))
    }

    /// Filter weights for an even-length kernel at fractional offset `r` in (0, 1]: the
    /// taps sit at `base + start + k` where `base = x - r` is the pixel left of `x`.
    fn kernel(&self, r: f64, scale: f64) -> (i64, Vec<f64>) {
        let aa = self.antialias && scale < 1.0;
        let s = scale.min(1.0);
        match self.mode {
            Mode::Linear if aa => {
                let start = (-1.0 / s).floor() as i64 + 1;
                let n = 2 - 2 * start;
                let mut w: Vec<f64> = (0..n)
                    .map(|k| (1.0 - (((start + k) as f64 - r) * s).abs()).clamp(0.0, 1.0))
                    .collect();
                let sum: f64 = w.iter().sum();
                w.iter_mut().for_each(|c| *c /= sum);
                (start, w)
            }
            Mode::Cubic if aa => {
                let a = self.cubic_a as f64;
                let start = (-2.0 / s).floor() as i64 + 1;
                let n = 2 - 2 * start;
                let mut w: Vec<f64> = (0..n)
                    .map(|k| cubic_weight(a, s * ((start + k) as f64 - r)))
                    .collect();
                let sum: f64 = w.iter().sum();
                w.iter_mut().for_each(|c| *c /= sum);
                (start, w)
            }
            Mode::Cubic => {
                let a = self.cubic_a as f64;
                let w = [r + 1.0, r, 1.0 - r, 2.0 - r]
                    .iter()
                    .map(|&d| cubic_weight(a, d))
                    .collect();
                (-1, w)
            }
            _ => (0, vec![1.0 - r, r]),
        }
    }

    /// Taps (input index, weight) for each output coordinate of one axis; `None` means the
    /// coordinate lies outside the input (tf_crop_and_resize extrapolation).
    fn taps(&self, scale: f64, len_out: usize, len_in: usize, roi: (f32, f32)) -> AxisTaps {
        let last = len_in.saturating_sub(1);
        let clampi = |i: i64| i.clamp(0, last as i64) as usize;
        let mut v = Vec::with_capacity(len_out);
        for x in 0..len_out {
            let xo = self.transform(x, scale, len_out, len_in, roi);
            if self.coord == Coord::TfCropAndResize && (xo < 0.0 || xo > last as f64) {
                v.push(None);
                continue;
            }
            if len_in == 0 || !xo.is_finite() {
                v.push(None);
                continue;
            }
            let t = match self.mode {
                Mode::Nearest => {
                    let r = match self.nearest {
                        Nearest::RoundPreferFloor => {
                            if xo == xo.trunc() + 0.5 {
                                xo.floor()
                            } else {
                                xo.round()
                            }
                        }
                        Nearest::RoundPreferCeil => xo.round(),
                        Nearest::Floor => xo.floor(),
                        Nearest::Ceil => xo.ceil(),
                        Nearest::Simple => {
                            if scale < 1.0 {
                                xo.ceil()
                            } else {
                                xo.trunc()
                            }
                        }
                    };
                    vec![(clampi(r as i64), 1.0)]
                }
                Mode::Linear | Mode::Cubic => {
                    // As the reference: r in (0, 1], 1 when x is integral.
                    let fl = xo.floor();
                    let r = if xo == fl { 1.0 } else { xo - fl };
                    let base = (xo - r).round() as i64;
                    let (start, mut w) = self.kernel(r, scale);
                    let idx: Vec<i64> = (0..w.len() as i64).map(|k| base + start + k).collect();
                    if self.exclude_outside {
                        for (c, &i) in w.iter_mut().zip(&idx) {
                            if i < 0 || i > last as i64 {
                                *c = 0.0;
                            }
                        }
                        let sum: f64 = w.iter().sum();
                        let sum = if sum == 0.0 { 1.0 } else { sum };
                        w.iter_mut().for_each(|c| *c /= sum);
                    }
                    idx.into_iter()
                        .zip(w)
                        .filter(|&(_, c)| c != 0.0)
                        .map(|(i, c)| (clampi(i), c))
                        .collect()
                }
            };
            v.push(Some(t));
        }
        v
    }

    fn inputs_of<'a>(
        &self,
        get: impl Fn(usize) -> Option<&'a Tensor>,
    ) -> Result<ResizeArgs, OpError> {
        let n = self.name;
        let f = |t: &Tensor| t.to_f32_vec().map_err(|e| OpError::tensor(n, e));
        match &self.layout {
            Layout::ScalesAttr(s) => Ok((None, Some(s.clone()), None)),
            Layout::ScalesInput => {
                let s = Self::nonempty(get(1)).ok_or(OpError::MissingInput {
                    op: n.to_string(),
                    index: 1,
                })?;
                Ok((None, Some(f(s)?), None))
            }
            Layout::Resize11 => {
                let roi = Self::nonempty(get(1)).map(f).transpose()?;
                let sc = Self::nonempty(get(2)).map(f).transpose()?;
                let sz = Self::nonempty(get(3))
                    .map(|t| crate::util::ints_of(n, t))
                    .transpose()?;
                Ok((roi, sc, sz))
            }
        }
    }

    fn resize_num<T: Num>(
        &self,
        x: &[T],
        in_shape: &[usize],
        out_shape: &[usize],
        taps: &[AxisTaps],
    ) -> Vec<T> {
        let rank = in_shape.len();
        let strides = millrace_core::strides_of(in_shape);
        let n: usize = out_shape.iter().product();
        let mut out = Vec::with_capacity(n);
        let extra = T::from_f64(self.extrapolation as f64);
        let mut coord = vec![0usize; rank];
        let mut sel: Vec<&[(usize, f64)]> = vec![&[]; rank];
        let mut tc = vec![0usize; rank];
        for _ in 0..n {
            let mut outside = false;
            for ax in 0..rank {
                match &taps[ax][coord[ax]] {
                    Some(t) => sel[ax] = t,
                    None => outside = true,
                }
            }
            if outside {
                out.push(extra);
            } else {
                // Sum over the Cartesian product of the per-axis taps.
                let mut acc = 0f64;
                tc.iter_mut().for_each(|c| *c = 0);
                loop {
                    let mut w = 1f64;
                    let mut off = 0usize;
                    for ax in 0..rank {
                        let (i, wt) = sel[ax][tc[ax]];
                        w *= wt;
                        off += i * strides[ax];
                    }
                    acc += w * x[off].to_f64();
                    let mut ax = rank;
                    loop {
                        if ax == 0 {
                            break;
                        }
                        ax -= 1;
                        tc[ax] += 1;
                        if tc[ax] < sel[ax].len() {
                            break;
                        }
                        tc[ax] = 0;
                        if ax == 0 {
                            ax = usize::MAX;
                            break;
                        }
                    }
                    if ax == usize::MAX || rank == 0 {
                        break;
                    }
                }
                out.push(T::from_f64(acc));
            }
            for ax in (0..rank).rev() {
                coord[ax] += 1;
                if coord[ax] < out_shape[ax] {
                    break;
                }
                coord[ax] = 0;
            }
        }
        out
    }

    fn out_type(
        &self,
        x: &ValueType,
        consts: [Option<&Tensor>; 4],
        present: [bool; 4],
    ) -> Option<Vec<Dim>> {
        let shape = x.shape.as_ref()?;
        let get = |i: usize| consts.get(i).copied().flatten();
        // A present but non-constant scales/sizes/roi input leaves the shape unknown.
        let idx: &[usize] = match self.layout {
            Layout::Resize11 => &[1, 2, 3],
            Layout::ScalesInput => &[1],
            Layout::ScalesAttr(_) => &[],
        };
        if idx.iter().any(|&i| present[i] && get(i).is_none()) {
            return None;
        }
        let (roi, sc, sz) = self.inputs_of(get).ok()?;
        let rank = shape.len();
        // Symbolic dims survive only where the axis is not resized.
        let axes: Vec<usize> = match &self.axes {
            Some(a) => crate::util::normalize_axes(self.name, a, rank).ok()?,
            None => (0..rank).collect(),
        };
        let concrete: Vec<usize> = shape.iter().map(|d| d.known().unwrap_or(1)).collect();
        let (scale, out, _) = self.plan(&concrete, roi, sc.clone(), sz.clone()).ok()?;
        let mut dims = Vec::with_capacity(rank);
        for (ax, d) in shape.iter().enumerate() {
            let resized = axes.contains(&ax);
            match d {
                Dim::Known(_) => dims.push(Dim::Known(out[ax])),
                Dim::Sym(_)
                    if !resized
                        || (sc.is_some()
                            && scale[ax] == 1.0
                            && self.coord != Coord::TfCropAndResize) =>
                {
                    dims.push(d.clone())
                }
                Dim::Sym(_) if sz.is_some() && self.policy == Policy::Stretch => {
                    dims.push(Dim::Known(out[ax]))
                }
                _ => return None,
            }
        }
        Some(dims)
    }
}

impl Op for Resize {
    fn name(&self) -> &'static str {
        self.name
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let consts = [
            ctx.constant(0),
            ctx.constant(1),
            ctx.constant(2),
            ctx.constant(3),
        ];
        let present = [
            true,
            ctx.opt_input(1).is_some(),
            ctx.opt_input(2).is_some(),
            ctx.opt_input(3).is_some(),
        ];
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape: self.out_type(x, consts, present),
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let taps = match self.mode {
            Mode::Nearest => 0,
            Mode::Linear => 8,
            Mode::Cubic => 32,
        };
        Cost::elementwise(inputs, outputs, taps)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let n = self.name;
        let x = inputs.req(0)?;
        let (roi, sc, sz) = self.inputs_of(|i| inputs.opt(i))?;
        let in_shape = x.shape();
        let (scale, out_shape, roi_v) = self.plan(in_shape, roi, sc, sz)?;
        if (0..in_shape.len())
            .any(|ax| self.pytorch_ambiguous(scale[ax], out_shape[ax], in_shape[ax]))
        {
            return Err(OpError::unsupported(
                n,
                "pytorch_half_pixel with a length-1 output (spec and reference differ)",
            ));
        }
        let n_out: usize = out_shape.iter().product();
        let n_in = x.len();
        if n_out > 0 && n_in == 0 {
            return Err(OpError::invalid(
                n,
                "cannot resize an empty input to a non-empty output",
            ));
        }
        let taps: Vec<_> = (0..in_shape.len())
            .map(|ax| self.taps(scale[ax], out_shape[ax], in_shape[ax], roi_v[ax]))
            .collect();
        let y = if self.mode == Mode::Nearest || !x.dtype().is_float() {
            if self.mode != Mode::Nearest {
                return Err(OpError::unsupported(
                    n,
                    format!("{:?} interpolation of dtype {}", self.mode, x.dtype()),
                ));
            }
            let any_outside = taps.iter().any(|t| t.iter().any(|o| o.is_none()));
            if any_outside || n_out == 0 {
                if matches!(x.dtype(), DType::Bool | DType::String) && n_out > 0 {
                    return Err(OpError::unsupported(n, "extrapolation of bool/string"));
                }
                if n_out == 0 {
                    Tensor::zeros(x.dtype(), out_shape)
                } else {
                    crate::dispatch_num!(n, x, |v: T| output(
                        n,
                        out_shape.clone(),
                        self.resize_num::<T>(v, in_shape, &out_shape, &taps)
                    )?)
                }
            } else {
                // Pure gather: works for every dtype.
                let strides = millrace_core::strides_of(in_shape);
                let rank = in_shape.len();
                let mut idx = Vec::with_capacity(n_out);
                let mut coord = vec![0usize; rank];
                for _ in 0..n_out {
                    let mut off = 0;
                    for ax in 0..rank {
                        if let Some(Some(t)) = taps[ax].get(coord[ax]) {
                            off += t.first().map(|p| p.0).unwrap_or(0) * strides[ax];
                        }
                    }
                    idx.push(off);
                    for ax in (0..rank).rev() {
                        coord[ax] += 1;
                        if coord[ax] < out_shape[ax] {
                            break;
                        }
                        coord[ax] = 0;
                    }
                }
                let data = x
                    .data()
                    .gather(idx.into_iter())
                    .ok_or_else(|| OpError::invalid(n, "source index out of range"))?;
                Tensor::new(out_shape, data).map_err(|e| OpError::tensor(n, e))?
            }
        } else {
            crate::dispatch_float!(n, x, |v: T| output(
                n,
                out_shape.clone(),
                self.resize_num::<T>(v, in_shape, &out_shape, &taps)
            )?)
        };
        Ok(vec![y])
    }

    fn describe(&self) -> String {
        let mut s = format!("mode={:?} coord={:?}", self.mode, self.coord);
        if self.mode == Mode::Nearest {
            s.push_str(&format!(" nearest={:?}", self.nearest));
        }
        if let Layout::ScalesAttr(sc) = &self.layout {
            s.push_str(&format!(" scales={sc:?}"));
        }
        s
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_ir::Attr;

    fn op(opset: i64, attrs: Vec<(&str, Attr)>) -> Resize {
        let a = Attributes::new(
            "Resize",
            attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        );
        Resize::parse(&a, opset).unwrap()
    }

    fn s(v: &str) -> Attr {
        Attr::String(v.as_bytes().to_vec())
    }

    fn f(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec()).unwrap()
    }

    fn run(
        op: &Resize,
        x: &Tensor,
        roi: Option<&Tensor>,
        sc: Option<&Tensor>,
        sz: Option<&Tensor>,
    ) -> Result<Tensor, OpError> {
        let items = [Some(x), roi, sc, sz];
        Ok(op.eval(&Inputs::new("Resize", &items))?.remove(0))
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-4, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn nearest_cases() {
        // ONNX test resize_upsample_scales_nearest: 1x1x2x2, scales [1,1,2,3].
        let x = f(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let sc = f(&[4], &[1., 1., 2., 3.]);
        let y = run(&op(13, vec![]), &x, None, Some(&sc), None).unwrap();
        assert_eq!(y.shape(), &[1, 1, 4, 6]);
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[
                1., 1., 1., 2., 2., 2., 1., 1., 1., 2., 2., 2., 3., 3., 3., 4., 4., 4., 3., 3., 3.,
                4., 4., 4.
            ]
        );
        // ONNX test resize_downsample_scales_nearest (opset 10): scales 0.6.
        let x = f(&[1, 1, 2, 4], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let sc = f(&[4], &[1., 1., 0.6, 0.6]);
        let items = [Some(&x), Some(&sc)];
        let y = op(10, vec![]).eval(&Inputs::new("Resize", &items)).unwrap();
        assert_eq!(y[0].shape(), &[1, 1, 1, 2]);
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[1., 3.]);
        // Sizes with ints (gather path), asymmetric + floor: 1x4 -> 1x2.
        let xi = Tensor::from_vec(vec![1, 4], vec![1i64, 2, 3, 4]).unwrap();
        let sz = Tensor::from_vec(vec![2], vec![1i64, 2]).unwrap();
        let o = op(
            13,
            vec![
                ("coordinate_transformation_mode", s("asymmetric")),
                ("nearest_mode", s("floor")),
            ],
        );
        let y = run(&o, &xi, None, None, Some(&sz)).unwrap();
        assert_eq!(y.as_slice::<i64>().unwrap(), &[1, 3]);
    }

    #[test]
    fn linear_cases() {
        // ONNX test resize_upsample_scales_linear (half_pixel): 2x2 -> 4x4.
        let x = f(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let sc = f(&[4], &[1., 1., 2., 2.]);
        let o = op(13, vec![("mode", s("linear"))]);
        let y = run(&o, &x, None, Some(&sc), None).unwrap();
        close(
            y.as_slice::<f32>().unwrap(),
            &[
                1., 1.25, 1.75, 2., 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3., 3.25, 3.75, 4.,
            ],
        );
        // align_corners.
        let o = op(
            13,
            vec![
                ("mode", s("linear")),
                ("coordinate_transformation_mode", s("align_corners")),
            ],
        );
        let y = run(&o, &x, None, Some(&sc), None).unwrap();
        let a = 1. / 3.;
        close(
            &y.as_slice::<f32>().unwrap()[..4],
            &[1., 1. + a, 1. + 2. * a, 2.],
        );
        // axes attribute (opset 18) with negative axis, sizes for the last axis only.
        let o = op(
            18,
            vec![
                ("mode", s("linear")),
                ("axes", Attr::Ints(vec![-1])),
                ("coordinate_transformation_mode", s("align_corners")),
            ],
        );
        let sz = Tensor::from_vec(vec![1], vec![3i64]).unwrap();
        let y = run(&o, &x, None, None, Some(&sz)).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 3]);
        close(y.as_slice::<f32>().unwrap(), &[1., 1.5, 2., 3., 3.5, 4.]);
    }

    #[test]
    fn crop_and_cubic() {
        // tf_crop_and_resize with extrapolation: 1x4 row [0,1,2,3], roi [0,0.5]..[1,1.5] on last axis.
        let x = f(&[1, 4], &[0., 1., 2., 3.]);
        let o = op(
            13,
            vec![
                ("mode", s("linear")),
                ("coordinate_transformation_mode", s("tf_crop_and_resize")),
                ("extrapolation_value", Attr::Float(-1.0)),
            ],
        );
        let roi = f(&[4], &[0., 0.5, 1., 1.5]);
        let sz = Tensor::from_vec(vec![2], vec![1i64, 3]).unwrap();
        let y = run(&o, &x, Some(&roi), None, Some(&sz)).unwrap();
        // x_orig = 1.5, 3.0, 4.5 -> 1.5, 3, extrapolated.
        close(y.as_slice::<f32>().unwrap(), &[1.5, 3., -1.]);
        // Cubic at scale 1 is the identity.
        let o = op(13, vec![("mode", s("cubic"))]);
        let sc = f(&[2], &[1., 1.]);
        let y = run(&o, &x, None, Some(&sc), None).unwrap();
        close(y.as_slice::<f32>().unwrap(), &[0., 1., 2., 3.]);
        // Cubic with A=-0.75 on a ramp (hand-checked weights at x_orig=1.75), and with
        // A=-0.5 (Catmull-Rom) which reproduces linear functions exactly.
        let x = f(&[8], &[0., 1., 2., 3., 4., 5., 6., 7.]);
        let sc = f(&[1], &[2.]);
        let y = run(&o, &x, None, Some(&sc), None).unwrap();
        close(&y.as_slice::<f32>().unwrap()[4..5], &[1.703125]);
        let o = op(
            13,
            vec![("mode", s("cubic")), ("cubic_coeff_a", Attr::Float(-0.5))],
        );
        let y = run(&o, &x, None, Some(&sc), None).unwrap();
        close(
            &y.as_slice::<f32>().unwrap()[4..8],
            &[1.75, 2.25, 2.75, 3.25],
        );
    }

    #[test]
    fn errors_and_infer() {
        let x = f(&[2, 2], &[1., 2., 3., 4.]);
        let o = op(13, vec![]);
        assert!(run(&o, &x, None, None, None).is_err());
        assert!(run(&o, &x, None, Some(&f(&[1], &[2.])), None).is_err());
        assert!(run(&o, &x, None, Some(&f(&[2], &[0., 1.])), None).is_err());
        // Antialiased linear downscaling (values from ONNX's reference implementation).
        let o = op(18, vec![("mode", s("linear")), ("antialias", Attr::Int(1))]);
        let y = run(&o, &x, None, Some(&f(&[2], &[0.5, 0.5])), None).unwrap();
        close(y.as_slice::<f32>().unwrap(), &[2.5]);
        let r = f(&[1, 8], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let y = run(&o, &r, None, Some(&f(&[2], &[1., 0.5])), None).unwrap();
        close(y.as_slice::<f32>().unwrap(), &[1.625, 3.5, 5.5, 7.375]);
        // pytorch_half_pixel to length 1 with cubic: spec and reference disagree.
        let o = op(
            18,
            vec![
                ("mode", s("cubic")),
                ("coordinate_transformation_mode", s("pytorch_half_pixel")),
            ],
        );
        let sz = Tensor::from_vec(vec![2], vec![2i64, 1]).unwrap();
        assert!(run(&o, &x, None, None, Some(&sz))
            .unwrap_err()
            .is_unsupported());
        let a = Attributes::new("Resize", vec![("mode".into(), s("bogus"))]);
        assert!(Resize::parse(&a, 13).is_err());
        let sc = f(&[3], &[1., 2., 2.]);
        let types = [
            Some(ValueType::new(
                DType::F32,
                vec![Dim::Sym("n".into()), Dim::Known(3), Dim::Known(5)],
            )),
            None,
            Some(ValueType::concrete(DType::F32, &[3])),
        ];
        let t = op(13, vec![])
            .infer(&InferCtx::new("Resize", &types, &[None, None, Some(&sc)]))
            .unwrap();
        assert_eq!(
            t[0].shape.as_ref().unwrap(),
            &vec![Dim::Sym("n".into()), Dim::Known(6), Dim::Known(10)]
        );
    }
}
