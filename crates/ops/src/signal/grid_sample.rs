//! GridSample (ONNX opsets 16, 20, 22): samples `X` [N, C, D1..Dr] at the normalized
//! coordinates of `grid` [N, O1..Or, r] (last axis in reverse spatial order: x, y, z),
//! with nearest, (bi/tri)linear or (bi)cubic interpolation and zeros, border or
//! reflection padding. N-d for every opset (opset 16 only defines 2-D).
use super::common::{checked_numel, floats_f64, from_f64};
use millrace_core::{with_data, DType, Dim, Elem, Tensor, TensorData};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "GridSample";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    Zeros,
    Border,
    Reflection,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GridSample {
    pub mode: Mode,
    pub padding: Padding,
    pub align_corners: bool,
}

impl GridSample {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let default_mode = if opset < 20 { "bilinear" } else { "linear" };
        let mode = match attrs.string_or("mode", default_mode)?.as_str() {
            "bilinear" | "linear" => Mode::Linear,
            "nearest" => Mode::Nearest,
            "bicubic" | "cubic" => Mode::Cubic,
            m => {
                return Err(OpError::attribute(
                    NAME,
                    "mode",
                    format!("unknown mode {m:?}"),
                ))
            }
        };
        let padding = match attrs.string_or("padding_mode", "zeros")?.as_str() {
            "zeros" => Padding::Zeros,
            "border" => Padding::Border,
            "reflection" => Padding::Reflection,
            m => {
                return Err(OpError::attribute(
                    NAME,
                    "padding_mode",
                    format!("unknown padding mode {m:?}"),
                ))
            }
        };
        let align_corners = attrs.int_or("align_corners", 0)? != 0;
        Ok(Arc::new(GridSample {
            mode,
            padding,
            align_corners,
        }))
    }
}

/// Reflects `x` into `[lo, hi]` by bouncing off the nearer border.
pub(crate) fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let rng = hi - lo;
    if rng <= 0.0 {
        return lo;
    }
    if x < lo {
        let dx = lo - x;
        let n = (dx / rng).trunc();
        let r = dx - n * rng;
        if n % 2.0 == 0.0 {
            lo + r
        } else {
            hi - r
        }
    } else if x > hi {
        let dx = x - hi;
        let n = (dx / rng).trunc();
        let r = dx - n * rng;
        if n % 2.0 == 0.0 {
            hi - r
        } else {
            lo + r
        }
    } else {
        x
    }
}

/// Keys cubic convolution coefficients (alpha = -0.75) for fractional offset `t`.
fn cubic_coeffs(t: f64) -> [f64; 4] {
    let a = -0.75;
    let x = t.abs();
    let x1 = x + 1.0;
    let y = 1.0 - x;
    let y1 = 2.0 - x;
    [
        ((a * x1 - 5.0 * a) * x1 + 8.0 * a) * x1 - 4.0 * a,
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
        ((a + 2.0) * y - (a + 3.0)) * y * y + 1.0,
        ((a * y1 - 5.0 * a) * y1 + 8.0 * a) * y1 - 4.0 * a,
    ]
}

impl GridSample {
    /// The in-range index for tap `i` of a dimension of size `d`, or `None` for a zero.
    fn tap_index(&self, i: i64, d: usize, lo: f64, hi: f64) -> Option<usize> {
        let di = d as i64;
        let j = match self.padding {
            Padding::Zeros => i,
            Padding::Border => i.clamp(0, di - 1),
            Padding::Reflection => reflect(i as f64, lo, hi).trunc() as i64,
        };
        if j >= 0 && j < di {
            Some(j as usize)
        } else {
            None
        }
    }

    /// For one sampling point (coordinates per spatial dim, in X's order), the flat
    /// spatial offsets and weights to combine. `None` offsets read as zero (skipped).
    fn taps(&self, coords: &[f64], dims: &[usize]) -> Result<Vec<(usize, f64)>, OpError> {
        let mut combo: Vec<(usize, f64)> = vec![(0, 1.0)];
        let mut ok: Vec<bool> = vec![true];
        for (i, (&x, &d)) in coords.iter().zip(dims).enumerate() {
            let (lo, hi) = if self.align_corners {
                (0.0, d as f64 - 1.0)
            } else {
                (-0.5, d as f64 - 0.5)
            };
            let mut x = x;
            if self.mode == Mode::Nearest {
                x = x.round_ties_even();
            }
            if x < lo || x > hi {
                match self.padding {
                    Padding::Border => x = x.clamp(0.0, (d as f64 - 1.0).max(0.0)),
                    Padding::Reflection => x = reflect(x, lo, hi),
                    Padding::Zeros => {}
                }
            }
            if !x.is_finite() || x.abs() > 1e15 {
                if self.padding == Padding::Zeros && !x.is_nan() {
                    // Every tap lies outside: the value is zero.
                    return Ok(vec![]);
                }
                return Err(OpError::unsupported(
                    NAME,
                    format!("non-finite sampling coordinate on axis {i}"),
                ));
            }
            let dim_taps: Vec<(Option<usize>, f64)> = match self.mode {
                Mode::Nearest => vec![(self.tap_index(x.trunc() as i64, d, lo, hi), 1.0)],
                Mode::Linear => {
                    let x0 = x.floor();
                    let t = x - x0;
                    let x0 = x0 as i64;
                    vec![
                        (self.tap_index(x0, d, lo, hi), 1.0 - t),
                        (self.tap_index(x0 + 1, d, lo, hi), t),
                    ]
                }
                Mode::Cubic => {
                    let x0 = x.floor();
                    let c = cubic_coeffs(x - x0);
                    let x0 = x0 as i64;
                    (0..4)
                        .map(|k| (self.tap_index(x0 - 1 + k, d, lo, hi), c[k as usize]))
                        .collect()
                }
            };
            let mut next = Vec::with_capacity(combo.len() * dim_taps.len());
            let mut next_ok = Vec::with_capacity(combo.len() * dim_taps.len());
            for (&(off, w), &good) in combo.iter().zip(&ok) {
                for &(idx, tw) in &dim_taps {
                    match idx {
                        Some(j) => {
                            next.push((off * d + j, w * tw));
                            next_ok.push(good);
                        }
                        None => {
                            next.push((0, 0.0));
                            next_ok.push(false);
                        }
                    }
                }
            }
            combo = next;
            ok = next_ok;
        }
        Ok(combo
            .into_iter()
            .zip(ok)
            .filter(|(_, good)| *good)
            .map(|(c, _)| c)
            .collect())
    }

    /// Denormalized coordinates (X's spatial order) of every sampling point of batch `n`.
    fn coords(&self, grid: &[f64], grid_f32: bool, dims: &[usize]) -> Vec<f64> {
        let r = dims.len();
        let mut out = Vec::with_capacity(grid.len());
        for p in grid.chunks_exact(r) {
            for (i, &d) in dims.iter().enumerate() {
                let g = p[r - 1 - i];
                let x = if grid_f32 {
                    let (g, d) = (g as f32, d as f32);
                    (if self.align_corners {
                        (g + 1.0) / 2.0 * (d - 1.0)
                    } else {
                        ((g + 1.0) * d - 1.0) / 2.0
                    }) as f64
                } else {
                    let d = d as f64;
                    if self.align_corners {
                        (g + 1.0) / 2.0 * (d - 1.0)
                    } else {
                        ((g + 1.0) * d - 1.0) / 2.0
                    }
                };
                out.push(x);
            }
        }
        out
    }
}

fn gather_default<T: Elem + Default>(v: &[T], idx: &[Option<usize>]) -> Vec<T> {
    idx.iter()
        .map(|i| i.and_then(|i| v.get(i).cloned()).unwrap_or_default())
        .collect()
}

impl Op for GridSample {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let g = ctx.input(1)?;
        let shape = match (&x.shape, &g.shape) {
            (Some(xs), Some(gs)) if xs.len() >= 2 && gs.len() >= 2 => {
                let mut s: Vec<Dim> = vec![xs[0].clone(), xs[1].clone()];
                s.extend(gs[1..gs.len() - 1].iter().cloned());
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
        let taps = match self.mode {
            Mode::Nearest => 1,
            Mode::Linear => 8,
            Mode::Cubic => 32,
        };
        Cost::elementwise(inputs, outputs, taps)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let grid = inputs.req(1)?;
        let xs = x.shape();
        let gs = grid.shape();
        if xs.len() < 3 {
            return Err(OpError::invalid(NAME, "X must have rank 3 or more"));
        }
        let r = xs.len() - 2;
        if gs.len() != r + 2 || gs[r + 1] != r || gs[0] != xs[0] {
            return Err(OpError::invalid(
                NAME,
                format!("grid shape {gs:?} does not match X shape {xs:?}"),
            ));
        }
        let (n, c) = (xs[0], xs[1]);
        let dims = &xs[2..];
        let out_sp = &gs[1..r + 1];
        let mut out_shape = vec![n, c];
        out_shape.extend_from_slice(out_sp);
        let total = checked_numel(NAME, &out_shape)?;
        let x_dtype = x.dtype();
        if total == 0 {
            return Ok(vec![Tensor::zeros(x_dtype, out_shape)]);
        }
        if dims.contains(&0) {
            return Err(OpError::invalid(NAME, "X has an empty spatial dimension"));
        }
        let p_count = checked_numel(NAME, out_sp)?;
        let in_sp: usize = dims.iter().product();
        let grid_f32 = matches!(grid.dtype(), DType::F32 | DType::F16 | DType::BF16);
        let g = floats_f64(NAME, grid)?;
        let float_x = x_dtype.is_float();
        if !float_x && self.mode != Mode::Nearest {
            return Err(OpError::unsupported(
                NAME,
                format!("{:?} interpolation of {x_dtype} data", self.mode),
            ));
        }
        let xf = if float_x {
            floats_f64(NAME, x)?
        } else {
            vec![]
        };
        let mut yf: Vec<f64> = if float_x { vec![0.0; total] } else { vec![] };
        let mut gather_idx: Vec<Option<usize>> = if float_x { vec![] } else { vec![None; total] };
        for b in 0..n {
            let gb = g
                .get(b * p_count * r..(b + 1) * p_count * r)
                .ok_or_else(|| OpError::invalid(NAME, "grid is too short"))?;
            let coords = self.coords(gb, grid_f32, dims);
            for (p, pc) in coords.chunks_exact(r).enumerate() {
                let taps = self.taps(pc, dims)?;
                for ch in 0..c {
                    let base = (b * c + ch) * in_sp;
                    let o = (b * c + ch) * p_count + p;
                    if float_x {
                        let mut acc = 0.0;
                        for &(off, w) in &taps {
                            acc += w * xf.get(base + off).copied().unwrap_or(0.0);
                        }
                        if let Some(y) = yf.get_mut(o) {
                            *y = acc;
                        }
                    } else if let (Some(&(off, _)), Some(slot)) =
                        (taps.first(), gather_idx.get_mut(o))
                    {
                        *slot = Some(base + off);
                    }
                }
            }
        }
        let y = if float_x {
            from_f64(NAME, x_dtype, out_shape, yf)?
        } else {
            let data: TensorData =
                with_data!(x.data(), v => Elem::wrap(gather_default(v, &gather_idx)));
            Tensor::new(out_shape, data).map_err(|e| OpError::tensor(NAME, e))?
        };
        Ok(vec![y])
    }

    fn describe(&self) -> String {
        format!(
            "mode={:?} padding={:?} align_corners={}",
            self.mode, self.padding, self.align_corners as i32
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(gs: &GridSample, x: Tensor, g: Tensor) -> Vec<f32> {
        let y = gs.eval(&Inputs::new(NAME, &[Some(&x), Some(&g)])).unwrap();
        y[0].as_slice::<f32>().unwrap().to_vec()
    }

    #[test]
    fn bilinear_centers_reproduce_the_input() {
        let gs = GridSample {
            mode: Mode::Linear,
            padding: Padding::Zeros,
            align_corners: true,
        };
        let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        // Corners and the middle.
        let g =
            Tensor::from_vec(vec![1, 1, 3, 2], vec![-1.0f32, -1.0, 1.0, 1.0, 0.0, 0.0]).unwrap();
        assert_eq!(run(&gs, x, g), vec![1.0, 4.0, 2.5]);
    }

    #[test]
    fn zeros_padding_fades_out_and_border_clamps() {
        let x = Tensor::from_vec(vec![1, 1, 1, 2], vec![2.0f32, 4.0]).unwrap();
        // x = 1.0 with align_corners=0 maps to pixel 1.5 (half outside).
        let g = Tensor::from_vec(vec![1, 1, 1, 2], vec![1.0f32, 0.0]).unwrap();
        let zeros = GridSample {
            mode: Mode::Linear,
            padding: Padding::Zeros,
            align_corners: false,
        };
        assert_eq!(run(&zeros, x.clone(), g.clone()), vec![2.0]);
        let border = GridSample {
            padding: Padding::Border,
            ..zeros
        };
        assert_eq!(run(&border, x, g), vec![4.0]);
    }

    #[test]
    fn nearest_rounds_half_to_even() {
        let gs = GridSample {
            mode: Mode::Nearest,
            padding: Padding::Zeros,
            align_corners: true,
        };
        let x = Tensor::from_vec(vec![1, 1, 1, 3], vec![1i64, 2, 3]).unwrap();
        // x = -0.5 -> 0.5 px rounds to 0; x = 0.5 -> 1.5 px rounds to 2.
        let g = Tensor::from_vec(vec![1, 1, 2, 2], vec![-0.5f32, 0.0, 0.5, 0.0]).unwrap();
        let y = gs.eval(&Inputs::new(NAME, &[Some(&x), Some(&g)])).unwrap();
        assert_eq!(y[0].as_slice::<i64>().unwrap(), &[1, 3]);
    }

    #[test]
    fn reflect_bounces() {
        assert_eq!(reflect(-1.0, -0.5, 2.5), 0.0);
        assert_eq!(reflect(3.0, -0.5, 2.5), 2.0);
        assert_eq!(reflect(6.0, -0.5, 2.5), -0.5 + 0.5);
    }
}
