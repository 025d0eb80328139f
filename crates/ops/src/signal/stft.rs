//! STFT (ONNX opset 17): windowed DFTs of frames of `signal` [B, L, 1|2] taken every
//! `frame_step` samples; output [B, frames, bins, 2] with `bins = frame_length/2+1` when
//! `onesided` (the default, real signals only) else `frame_length`.
use super::common::{checked_numel, floats_f64, from_f64, scalar_i64};
use super::dft::{transform_line, Kind, Twiddles};
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "STFT";

#[derive(Clone, Debug, PartialEq)]
pub struct Stft {
    pub onesided: bool,
}

impl Stft {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Stft {
            onesided: attrs.int_or("onesided", 1)? != 0,
        }))
    }
}

impl Op for Stft {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let shape = (|| {
            let xs = x.concrete_shape()?;
            let &[b, l, _] = xs.as_slice() else {
                return None;
            };
            let step = scalar_i64(NAME, ctx.constant(1)?, "frame_step").ok()?;
            let fl = match (ctx.opt_input(3), ctx.opt_input(2)) {
                (Some(_), _) => scalar_i64(NAME, ctx.constant(3)?, "frame_length").ok()?,
                (None, Some(w)) => w.concrete_shape()?.first().copied()? as i64,
                (None, None) => l as i64,
            };
            if step <= 0 || fl <= 0 || fl > l as i64 {
                return None;
            }
            let frames = 1 + (l as i64 - fl) / step;
            let fl = fl as usize;
            let bins = if self.onesided { fl / 2 + 1 } else { fl };
            Some(vec![
                Dim::Known(b),
                Dim::Known(frames as usize),
                Dim::Known(bins),
                Dim::Known(2),
            ])
        })();
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 8)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let &[b, l, c] = x.shape() else {
            return Err(OpError::invalid(NAME, "signal must have rank 3"));
        };
        if c != 1 && c != 2 {
            return Err(OpError::invalid(
                NAME,
                format!("signal's last dimension must be 1 or 2, got {c}"),
            ));
        }
        if c == 2 && self.onesided {
            return Err(OpError::unsupported(
                NAME,
                "onesided output of a complex signal",
            ));
        }
        let step = scalar_i64(NAME, inputs.req(1)?, "frame_step")?;
        if step <= 0 {
            return Err(OpError::invalid(NAME, "frame_step must be positive"));
        }
        let window = match inputs.opt(2) {
            Some(w) => {
                if w.rank() != 1 {
                    return Err(OpError::invalid(NAME, "window must have rank 1"));
                }
                if w.dtype() != x.dtype() {
                    return Err(OpError::invalid(NAME, "window and signal dtypes differ"));
                }
                Some(floats_f64(NAME, w)?)
            }
            None => None,
        };
        let fl = match (inputs.opt(3), &window) {
            (Some(t), _) => scalar_i64(NAME, t, "frame_length")?,
            (None, Some(w)) => w.len() as i64,
            (None, None) => l as i64,
        };
        if fl <= 0 {
            return Err(OpError::invalid(NAME, "frame_length must be positive"));
        }
        if fl > l as i64 {
            return Err(OpError::invalid(
                NAME,
                format!("frame_length {fl} exceeds the signal length {l}"),
            ));
        }
        let n = fl as usize;
        let window = window.unwrap_or_else(|| vec![1.0; n]);
        let wlen = window.len();
        let frames = (1 + (l as i64 - fl) / step) as usize;
        let step = step as usize;
        let bins = if self.onesided { n / 2 + 1 } else { n };
        let out_shape = vec![b, frames, bins, 2];
        let total = checked_numel(NAME, &out_shape)?;
        let v = floats_f64(NAME, x)?;
        let mut y = Vec::with_capacity(total);
        let tw = Twiddles::new(n);
        let mut frame = Vec::with_capacity(wlen);
        let mut res = Vec::with_capacity(bins);
        for bi in 0..b {
            for f in 0..frames {
                frame.clear();
                for (k, &w) in window.iter().enumerate() {
                    let t = f * step + k;
                    let (re, im) = if t < l {
                        let base = (bi * l + t) * c;
                        let re = v.get(base).copied().unwrap_or(0.0);
                        let im = if c == 2 {
                            v.get(base + 1).copied().unwrap_or(0.0)
                        } else {
                            0.0
                        };
                        (re, im)
                    } else {
                        (0.0, 0.0)
                    };
                    frame.push((re * w, im * w));
                }
                transform_line(&frame, n, Kind::Forward { bins }, &tw, &mut res);
                for &(re, im) in &res {
                    y.push(re);
                    y.push(im);
                }
            }
        }
        Ok(vec![from_f64(NAME, x.dtype(), out_shape, y)?])
    }

    fn describe(&self) -> String {
        format!("onesided={}", self.onesided as i32)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_of_a_constant_signal_have_only_dc() {
        let x = Tensor::from_vec(vec![1, 6, 1], vec![1.0f32; 6]).unwrap();
        let step = Tensor::scalar(2i64);
        let fl = Tensor::scalar(4i64);
        let y = Stft { onesided: true }
            .eval(&Inputs::new(
                NAME,
                &[Some(&x), Some(&step), None, Some(&fl)],
            ))
            .unwrap();
        assert_eq!(y[0].shape(), &[1, 2, 3, 2]);
        let v = y[0].as_slice::<f32>().unwrap();
        assert_eq!(v[0], 4.0);
        assert!(v[2..6].iter().all(|x| x.abs() < 1e-6));
        assert_eq!(v[6], 4.0);
    }
}
