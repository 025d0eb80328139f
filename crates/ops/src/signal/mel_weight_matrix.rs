//! MelWeightMatrix (ONNX opset 17): triangular mel filterbank of shape
//! [dft_length/2 + 1, num_mel_bins] with peaks of 1, following the ONNX reference: the
//! `num_mel_bins + 2` band edges are evenly spaced on the mel scale (step = range /
//! (num_mel_bins + 2)) and mapped to spectrogram bins by `floor((dft_length + 1) * f /
//! sample_rate)`. The mel edges of float32 inputs are computed in float32, as there.
use super::common::{checked_numel, dtype_from_code, from_f64, scalar_f64, scalar_i64};
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "MelWeightMatrix";

#[derive(Clone, Debug, PartialEq)]
pub struct MelWeightMatrix {
    pub dtype: DType,
}

impl MelWeightMatrix {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(MelWeightMatrix {
            dtype: dtype_from_code(NAME, attrs.int_or("output_datatype", 1)?)?,
        }))
    }
}

/// Python's float floor division `a // b`.
fn py_floordiv(a: f64, b: f64) -> f64 {
    let mut m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        m += b;
        div -= 1.0;
    }
    let _ = m;
    if div != 0.0 {
        let mut f = div.floor();
        if div - f > 0.5 {
            f += 1.0;
        }
        f
    } else {
        (0.0f64).copysign(a / b)
    }
}

/// Band edges in spectrogram bins.
fn edges(
    mel_bins: usize,
    dft_length: i64,
    sample_rate: i64,
    lower: f64,
    upper: f64,
    f32_math: bool,
) -> Vec<f64> {
    let count = mel_bins + 2;
    let (low_mel, step) = if f32_math {
        let mel = |f: f32| 2595.0f32 * (1.0f32 + f / 700.0f32).log10();
        let lo = mel(lower as f32);
        let hi = mel(upper as f32);
        (lo as f64, ((hi - lo) / count as f32) as f64)
    } else {
        let mel = |f: f64| 2595.0 * (1.0 + f / 700.0).log10();
        let lo = mel(lower);
        (lo, (mel(upper) - lo) / count as f64)
    };
    (0..count)
        .map(|i| {
            let m = i as f64 * step + low_mel;
            let hz = 700.0 * (10f64.powf(m / 2595.0) - 1.0);
            py_floordiv((dft_length + 1) as f64 * hz, sample_rate as f64).trunc()
        })
        .collect()
}

impl Op for MelWeightMatrix {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let dim = |i: usize, f: fn(i64) -> i64| {
            ctx.constant(i)
                .and_then(|t| scalar_i64(NAME, t, "size").ok())
                .and_then(|v| usize::try_from(f(v)).ok())
                .map(Dim::Known)
                .unwrap_or_else(|| Dim::Sym(format!("{NAME}_{i}")))
        };
        Ok(vec![ValueType::new(
            self.dtype,
            vec![dim(1, |d| d / 2 + 1), dim(0, |m| m)],
        )])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let mel_bins = scalar_i64(NAME, inputs.req(0)?, "num_mel_bins")?;
        let dft_length = scalar_i64(NAME, inputs.req(1)?, "dft_length")?;
        let sample_rate = scalar_i64(NAME, inputs.req(2)?, "sample_rate")?;
        let lo_t = inputs.req(3)?;
        let lower = scalar_f64(NAME, lo_t, "lower_edge_hertz")?;
        let upper = scalar_f64(NAME, inputs.req(4)?, "upper_edge_hertz")?;
        if mel_bins < 0 || dft_length < 0 || sample_rate <= 0 {
            return Err(OpError::invalid(
                NAME,
                "num_mel_bins and dft_length must be non-negative, sample_rate positive",
            ));
        }
        if !(lower.is_finite() && upper.is_finite() && lower > -700.0 && upper > -700.0) {
            return Err(OpError::invalid(NAME, "invalid edge frequencies"));
        }
        let mel_bins = mel_bins as usize;
        let spec_bins = (dft_length / 2 + 1) as usize;
        let total = checked_numel(NAME, &[spec_bins, mel_bins])?;
        let f32_math = lo_t.dtype() != DType::F64;
        let e = edges(mel_bins, dft_length, sample_rate, lower, upper, f32_math);
        let mut y = vec![0.0f64; total];
        let idx = |v: f64| -> Result<usize, OpError> {
            if v >= 0.0 && v < spec_bins as f64 {
                Ok(v as usize)
            } else {
                Err(OpError::invalid(
                    NAME,
                    format!(
                        "a band edge falls on bin {v}, outside the {spec_bins} spectrogram bins"
                    ),
                ))
            }
        };
        for i in 0..mel_bins {
            let (lo, ce, hi) = (e[i], e[i + 1], e[i + 2]);
            let l2c = ce - lo;
            if l2c == 0.0 {
                y[idx(ce)? * mel_bins + i] = 1.0;
            } else {
                let (a, b) = (lo as i64, ce as i64);
                for j in a..=b {
                    y[idx(j as f64)? * mel_bins + i] = (j as f64 - lo) / l2c;
                }
            }
            let c2h = hi - ce;
            if c2h > 0.0 {
                let (a, b) = (ce as i64, hi as i64);
                for j in a..b {
                    y[idx(j as f64)? * mel_bins + i] = (hi - j as f64) / c2h;
                }
            }
        }
        Ok(vec![from_f64(
            NAME,
            self.dtype,
            vec![spec_bins, mel_bins],
            y,
        )?])
    }

    fn describe(&self) -> String {
        format!("dtype={}", self.dtype)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floordiv_matches_python() {
        assert_eq!(py_floordiv(7.0, 2.0), 3.0);
        assert_eq!(py_floordiv(-7.0, 2.0), -4.0);
        assert_eq!(py_floordiv(8.0, 2.0), 4.0);
    }

    #[test]
    fn the_onnx_example() {
        // num_mel_bins=8, dft_length=16, sample_rate=8192, 0..4096 Hz.
        let op = MelWeightMatrix { dtype: DType::F32 };
        let t = |v: i32| Tensor::scalar(v);
        let (a, b, c) = (t(8), t(16), t(8192));
        let (lo, hi) = (Tensor::scalar(0.0f32), Tensor::scalar(4096.0f32));
        let y = op
            .eval(&Inputs::new(
                NAME,
                &[Some(&a), Some(&b), Some(&c), Some(&lo), Some(&hi)],
            ))
            .unwrap();
        assert_eq!(y[0].shape(), &[9, 8]);
        let v = y[0].as_slice::<f32>().unwrap();
        let ones: Vec<(usize, usize)> = (0..72)
            .filter(|&k| v[k] == 1.0)
            .map(|k| (k / 8, k % 8))
            .collect();
        assert_eq!(
            ones,
            vec![
                (0, 0),
                (0, 1),
                (1, 2),
                (1, 3),
                (2, 4),
                (3, 5),
                (4, 6),
                (5, 7)
            ]
        );
        assert_eq!(v.iter().filter(|&&x| x != 0.0).count(), 8);
    }
}
