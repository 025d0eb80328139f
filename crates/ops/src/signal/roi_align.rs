//! RoiAlign (ONNX opsets 10, 16, 22): bilinear-sampled average or max pooling of each
//! region of interest of `X` [N, C, H, W] to [R, C, output_height, output_width].
//! Opset 10 behaves as `coordinate_transformation_mode=output_half_pixel`; from opset 16
//! the default is `half_pixel`. Max mode follows the ONNX reference (and onnxruntime):
//! the maximum over samples of the largest weighted corner value.
use super::common::{checked_numel, floats_f64, from_f64};
use crate::util::ints_of;
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "RoiAlign";

#[derive(Clone, Debug, PartialEq)]
pub struct RoiAlign {
    pub max_mode: bool,
    pub half_pixel: bool,
    pub output_height: usize,
    pub output_width: usize,
    pub sampling_ratio: usize,
    pub spatial_scale: f32,
}

impl RoiAlign {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let max_mode = match attrs.string_or("mode", "avg")?.as_str() {
            "avg" => false,
            "max" => true,
            m => {
                return Err(OpError::attribute(
                    NAME,
                    "mode",
                    format!("unknown mode {m:?}"),
                ))
            }
        };
        let half_pixel = if opset >= 16 {
            match attrs
                .string_or("coordinate_transformation_mode", "half_pixel")?
                .as_str()
            {
                "half_pixel" => true,
                "output_half_pixel" => false,
                m => {
                    return Err(OpError::attribute(
                        NAME,
                        "coordinate_transformation_mode",
                        format!("unknown mode {m:?}"),
                    ))
                }
            }
        } else {
            false
        };
        let pos = |name: &str, v: i64| {
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| OpError::attribute(NAME, name, "must be positive"))
        };
        let output_height = pos("output_height", attrs.int_or("output_height", 1)?)?;
        let output_width = pos("output_width", attrs.int_or("output_width", 1)?)?;
        let sr = attrs.int_or("sampling_ratio", 0)?;
        let sampling_ratio = usize::try_from(sr)
            .map_err(|_| OpError::attribute(NAME, "sampling_ratio", "must not be negative"))?;
        let spatial_scale = attrs.float_or("spatial_scale", 1.0)?;
        Ok(Arc::new(RoiAlign {
            max_mode,
            half_pixel,
            output_height,
            output_width,
            sampling_ratio,
            spatial_scale,
        }))
    }
}

/// Bilinear sample point: four flat positions and weights (all zero when outside).
#[derive(Clone, Copy, Default)]
struct Sample {
    pos: [usize; 4],
    w: [f64; 4],
}

/// `q` rounds to the input's working precision (f32 arithmetic for f32 inputs).
fn sample_at(y: f64, x: f64, h: usize, w: usize, q: impl Fn(f64) -> f64) -> Sample {
    let (hf, wf) = (h as f64, w as f64);
    if y < -1.0 || y > hf || x < -1.0 || x > wf {
        return Sample::default();
    }
    let mut y = y.max(0.0);
    let mut x = x.max(0.0);
    let mut y_low = y as usize;
    let mut x_low = x as usize;
    let y_high;
    let x_high;
    if y_low >= h - 1 {
        y_low = h - 1;
        y_high = h - 1;
        y = y_low as f64;
    } else {
        y_high = y_low + 1;
    }
    if x_low >= w - 1 {
        x_low = w - 1;
        x_high = w - 1;
        x = x_low as f64;
    } else {
        x_high = x_low + 1;
    }
    let ly = q(y - y_low as f64);
    let lx = q(x - x_low as f64);
    let hy = q(1.0 - ly);
    let hx = q(1.0 - lx);
    Sample {
        pos: [
            y_low * w + x_low,
            y_low * w + x_high,
            y_high * w + x_low,
            y_high * w + x_high,
        ],
        w: [q(hy * hx), q(hy * lx), q(ly * hx), q(ly * lx)],
    }
}

impl Op for RoiAlign {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let rois = ctx.input(1)?;
        let r = rois
            .shape
            .as_ref()
            .and_then(|s| s.first().cloned())
            .or_else(|| ctx.input(2).ok()?.shape.as_ref()?.first().cloned());
        let c = x.shape.as_ref().and_then(|s| s.get(1).cloned());
        let shape = match (r, c) {
            (Some(r), Some(c)) => Some(vec![
                r,
                c,
                Dim::Known(self.output_height),
                Dim::Known(self.output_width),
            ]),
            _ => None,
        };
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 16)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let rois = inputs.req(1)?;
        let bidx = ints_of(NAME, inputs.req(2)?)?;
        let &[n, c, h, w] = x.shape() else {
            return Err(OpError::invalid(NAME, "X must have rank 4"));
        };
        let nr = bidx.len();
        if rois.shape() != [nr, 4] {
            return Err(OpError::invalid(
                NAME,
                format!("rois shape {:?} must be [{nr}, 4]", rois.shape()),
            ));
        }
        let (ph_n, pw_n) = (self.output_height, self.output_width);
        let out_shape = vec![nr, c, ph_n, pw_n];
        let total = checked_numel(NAME, &out_shape)?;
        let xv = floats_f64(NAME, x)?;
        let rv = floats_f64(NAME, rois)?;
        let mut y = vec![0.0f64; total];
        if total == 0 {
            return Ok(vec![from_f64(NAME, x.dtype(), out_shape, y)?]);
        }
        if h == 0 || w == 0 {
            return Err(OpError::invalid(NAME, "X has an empty spatial dimension"));
        }
        let scale = self.spatial_scale as f64;
        let offset = if self.half_pixel { 0.5 } else { 0.0 };
        // The reference computes the sampling geometry in the input's precision; doing
        // the same keeps adaptive grid sizes (ceil) identical.
        let f32_math = x.dtype() != DType::F64;
        let q = |v: f64| if f32_math { v as f32 as f64 } else { v };
        for (ri, &b) in bidx.iter().enumerate() {
            let b = usize::try_from(b).ok().filter(|&b| b < n).ok_or_else(|| {
                OpError::invalid(NAME, format!("batch index {b} is out of range"))
            })?;
            let roi = &rv[ri * 4..ri * 4 + 4];
            let start_w = q(q(roi[0] * scale) - offset);
            let start_h = q(q(roi[1] * scale) - offset);
            let end_w = q(q(roi[2] * scale) - offset);
            let end_h = q(q(roi[3] * scale) - offset);
            let mut roi_w = q(end_w - start_w);
            let mut roi_h = q(end_h - start_h);
            if !self.half_pixel {
                roi_w = roi_w.max(1.0);
                roi_h = roi_h.max(1.0);
            }
            if !(roi_w.is_finite()
                && roi_h.is_finite()
                && start_w.is_finite()
                && start_h.is_finite())
            {
                return Err(OpError::unsupported(NAME, "non-finite region of interest"));
            }
            let bin_h = q(roi_h / ph_n as f64);
            let bin_w = q(roi_w / pw_n as f64);
            let grid = |bin: f64| -> Result<usize, OpError> {
                if self.sampling_ratio > 0 {
                    Ok(self.sampling_ratio)
                } else {
                    let g = bin.ceil();
                    if g > 1e6 {
                        return Err(OpError::unsupported(NAME, "a huge adaptive sampling grid"));
                    }
                    Ok(g.max(0.0) as usize)
                }
            };
            let gh = grid(bin_h)?;
            let gw = grid(bin_w)?;
            let count = (gh * gw).max(1) as f64;
            // Sample points per output cell, shared by all channels.
            let mut samples = Vec::with_capacity(ph_n * pw_n * gh * gw);
            for ph in 0..ph_n {
                for pw in 0..pw_n {
                    for iy in 0..gh {
                        let yy = q(q(start_h + q(ph as f64 * bin_h))
                            + q(q((iy as f64 + 0.5) * bin_h) / gh as f64));
                        for ix in 0..gw {
                            let xx = q(q(start_w + q(pw as f64 * bin_w))
                                + q(q((ix as f64 + 0.5) * bin_w) / gw as f64));
                            samples.push(sample_at(yy, xx, h, w, q));
                        }
                    }
                }
            }
            let per_cell = gh * gw;
            for ch in 0..c {
                let plane = &xv[(b * c + ch) * h * w..(b * c + ch + 1) * h * w];
                for cell in 0..ph_n * pw_n {
                    let ss = &samples[cell * per_cell..(cell + 1) * per_cell];
                    let v = if self.max_mode {
                        let mut best: Option<f64> = None;
                        for s in ss {
                            let mut m = s.w[0] * plane[s.pos[0]];
                            for k in 1..4 {
                                let t = s.w[k] * plane[s.pos[k]];
                                if t > m {
                                    m = t;
                                }
                            }
                            best = Some(match best {
                                Some(b) if b >= m => b,
                                _ => m,
                            });
                        }
                        best.unwrap_or(0.0)
                    } else {
                        let mut acc = 0.0;
                        for s in ss {
                            for k in 0..4 {
                                acc += s.w[k] * plane[s.pos[k]];
                            }
                        }
                        acc / count
                    };
                    y[(ri * c + ch) * ph_n * pw_n + cell] = v;
                }
            }
        }
        Ok(vec![from_f64(NAME, x.dtype(), out_shape, y)?])
    }

    fn describe(&self) -> String {
        format!(
            "mode={} half_pixel={} out=[{},{}] sampling_ratio={} spatial_scale={}",
            if self.max_mode { "max" } else { "avg" },
            self.half_pixel as i32,
            self.output_height,
            self.output_width,
            self.sampling_ratio,
            self.spatial_scale
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_a_constant_image() {
        let op = RoiAlign {
            max_mode: false,
            half_pixel: true,
            output_height: 2,
            output_width: 2,
            sampling_ratio: 2,
            spatial_scale: 1.0,
        };
        let x = Tensor::from_vec(vec![1, 1, 4, 4], vec![3.0f32; 16]).unwrap();
        let rois = Tensor::from_vec(vec![1, 4], vec![0.5f32, 0.5, 3.5, 3.5]).unwrap();
        let bi = Tensor::from_vec(vec![1], vec![0i64]).unwrap();
        let y = op
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&rois), Some(&bi)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[1, 1, 2, 2]);
        assert!(y[0]
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .all(|&v| (v - 3.0).abs() < 1e-6));
    }

    #[test]
    fn bad_batch_index_is_an_error() {
        let op = RoiAlign {
            max_mode: false,
            half_pixel: false,
            output_height: 1,
            output_width: 1,
            sampling_ratio: 0,
            spatial_scale: 1.0,
        };
        let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![1.0f32; 4]).unwrap();
        let rois = Tensor::from_vec(vec![1, 4], vec![0.0f32, 0.0, 1.0, 1.0]).unwrap();
        let bi = Tensor::from_vec(vec![1], vec![3i64]).unwrap();
        assert!(op
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&rois), Some(&bi)]))
            .is_err());
    }
}
