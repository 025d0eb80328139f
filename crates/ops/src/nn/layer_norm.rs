//! LayerNormalization (ONNX opset 17): normalizes over dims `axis..` then applies Scale and
//! optional B (broadcast to those dims); optional Mean and InvStdDev outputs.
//!
//! f32 input with f32 Scale (and B) of the normalized block's full size takes a fast path:
//! per row a vectorized sum, sum of squared deviations, and one fused
//! `(x - mean) * inv * scale + b` pass ([`millrace_kernels::vmath`]), rows split over
//! threads for big tensors. Everything else uses the generic loop.
use super::common::{float_out, mean_var, param, prod, Float};
use crate::float_run;
use crate::util::{broadcast_index, dims, normalize_axis, output};
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, F32View, InferCtx, Inputs, Op, OpError, ValueType};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormalization {
    pub axis: i64,
    pub epsilon: f32,
}

const NAME: &str = "LayerNormalization";

/// An absent optional input, as the planner types it.
fn is_absent(t: &ValueType) -> bool {
    t.dtype.is_none() && t.shape.is_none()
}

impl LayerNormalization {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(LayerNormalization::parse(attrs)?))
    }

    pub fn parse(attrs: &Attributes) -> Result<LayerNormalization, OpError> {
        let axis = attrs.int_or("axis", -1)?;
        let epsilon = attrs.float_or("epsilon", 1e-5)?;
        // Statistics are computed in f32 (f64 for f64 inputs) whatever stash_type says;
        // only float is defined.
        let stash = attrs.int_or("stash_type", 1)?;
        if stash != 1 {
            return Err(OpError::unsupported(NAME, format!("stash_type {stash}")));
        }
        Ok(LayerNormalization { axis, epsilon })
    }
}

/// Broadcast index of a parameter into the normalized block `inner`.
fn param_index(p: &[usize], inner: &[usize], what: &str) -> Result<Vec<usize>, OpError> {
    let mut p = p;
    while p.len() > inner.len() && p.first() == Some(&1) {
        p = &p[1..];
    }
    let ok = p.len() <= inner.len()
        && p.iter()
            .rev()
            .zip(inner.iter().rev())
            .all(|(&a, &b)| a == b || a == 1);
    if !ok {
        return Err(OpError::invalid(
            NAME,
            format!("{what} shape {p:?} does not broadcast to {inner:?}"),
        ));
    }
    Ok(broadcast_index(inner, p))
}

/// Elements below which the fast path stays on one thread.
const PAR_MIN: usize = 1 << 16;

/// Whether a parameter of shape `p` broadcasts to the normalized block `inner`.
fn param_ok(p: &[usize], inner: &[usize]) -> bool {
    let mut p = p;
    while p.len() > inner.len() && p.first() == Some(&1) {
        p = &p[1..];
    }
    p.len() <= inner.len()
        && p.iter()
            .rev()
            .zip(inner.iter().rev())
            .all(|(&a, &b)| a == b || a == 1)
}

/// The f32 fast path over `rows` rows of `n`: `y`, and the per-row mean and inverse
/// standard deviation when `stats` is given. `scale` (and `bias`, unless empty) hold `n`
/// values. Shared by `eval` and `eval_into`.
fn rows_f32(
    eps: f32,
    xs: &[f32],
    n: usize,
    scale: &[f32],
    bias: &[f32],
    y: &mut [f32],
    stats: Option<(&mut [f32], &mut [f32])>,
) {
    use millrace_kernels::vmath;
    if n == 0 {
        return;
    }
    let row = |xi: &[f32], yo: &mut [f32]| {
        let nf = n as f32;
        let mean = vmath::sum(xi) / nf;
        let var = vmath::sum_sq_dev(xi, mean) / nf;
        let inv = 1.0 / (var + eps).sqrt();
        vmath::normalize_row(xi, yo, mean, inv, scale, bias);
        (mean, inv)
    };
    match stats {
        Some((means, invs)) => {
            if xs.len() < PAR_MIN {
                for (((yo, xi), m), iv) in y
                    .chunks_mut(n)
                    .zip(xs.chunks(n))
                    .zip(means.iter_mut())
                    .zip(invs.iter_mut())
                {
                    (*m, *iv) = row(xi, yo);
                }
            } else {
                y.par_chunks_mut(n)
                    .zip(xs.par_chunks(n))
                    .zip(means.par_iter_mut().zip(invs.par_iter_mut()))
                    .with_min_len((8192 / n).max(1))
                    .for_each(|((yo, xi), (m, iv))| (*m, *iv) = row(xi, yo));
            }
        }
        None => {
            if xs.len() < PAR_MIN {
                for (yo, xi) in y.chunks_mut(n).zip(xs.chunks(n)) {
                    row(xi, yo);
                }
            } else {
                y.par_chunks_mut(n)
                    .zip(xs.par_chunks(n))
                    .with_min_len((8192 / n).max(1))
                    .for_each(|(yo, xi)| {
                        row(xi, yo);
                    });
            }
        }
    }
}

/// The checked operands of the f32 fast path: `(x, n, rows, scale, bias)`; `None` when
/// the operands are not all f32 of the block's full size.
#[allow(clippy::type_complexity)]
fn f32_operands<'a>(
    ln: &LayerNormalization,
    inputs: &[Option<F32View<'a>>],
) -> Result<Option<(&'a [f32], usize, usize, &'a [f32], &'a [f32])>, OpError> {
    let x = F32View::req(inputs, NAME, 0)?;
    let shape = x.shape;
    let a = normalize_axis(NAME, ln.axis, shape.len())?;
    let inner = &shape[a..];
    let n = prod(inner);
    let scale = F32View::req(inputs, NAME, 1)?;
    let bias = inputs.get(2).copied().flatten();
    if scale.data.len() != n || bias.is_some_and(|b| b.data.len() != n) {
        return Ok(None);
    }
    if x.data.len() != prod(shape) {
        return Err(OpError::invalid(
            NAME,
            "input data does not match its shape",
        ));
    }
    for (t, what) in [(Some(scale), "Scale"), (bias, "B")] {
        if let Some(t) = t {
            if !param_ok(t.shape, inner) {
                return Err(OpError::invalid(
                    NAME,
                    format!("{what} shape {:?} does not broadcast to {inner:?}", t.shape),
                ));
            }
        }
    }
    Ok(Some((
        x.data,
        n,
        prod(&shape[..a]),
        scale.data,
        bias.map_or(&[][..], |b| b.data),
    )))
}

/// The fast path; `None` when the operands are not all f32 of the block's full size.
fn eval_f32(ln: &LayerNormalization, inputs: &Inputs<'_>) -> Result<Option<Vec<Tensor>>, OpError> {
    let x = inputs.req(0)?;
    if (0..inputs.len().min(3)).any(|i| inputs.opt(i).is_some_and(|t| F32View::of(t).is_none())) {
        return Ok(None);
    }
    let views = crate::planned::views(NAME, inputs)?;
    let Some((xs, n, rows, scale, bias)) = f32_operands(ln, &views)? else {
        return Ok(None);
    };
    let shape = x.shape().to_vec();
    let a = normalize_axis(NAME, ln.axis, shape.len())?;
    let mut y = vec![0f32; xs.len()];
    let mut means = vec![0f32; rows];
    let mut invs = vec![0f32; rows];
    rows_f32(
        ln.epsilon,
        xs,
        n,
        scale,
        bias,
        &mut y,
        Some((&mut means, &mut invs)),
    );
    let mut stat_shape = shape[..a].to_vec();
    stat_shape.resize(shape.len(), 1);
    Ok(Some(vec![
        output(NAME, shape, y)?,
        output(NAME, stat_shape.clone(), means)?,
        output(NAME, stat_shape, invs)?,
    ]))
}

fn eval_as<F: Float>(ln: &LayerNormalization, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
    let x = inputs.req(0)?;
    let shape = x.shape().to_vec();
    let a = normalize_axis(NAME, ln.axis, shape.len())?;
    let inner = &shape[a..];
    let n = prod(inner);
    let scale_t = inputs.req(1)?;
    let si = param_index(scale_t.shape(), inner, "Scale")?;
    let scale = param::<F>(NAME, scale_t, "Scale")?;
    let (bi, bias) = match inputs.opt(2) {
        Some(b) => (
            param_index(b.shape(), inner, "B")?,
            param::<F>(NAME, b, "B")?,
        ),
        None => (vec![], vec![]),
    };
    let xs = F::cow(NAME, x)?;
    let rows = prod(&shape[..a]);
    let mut y = vec![F::ZERO; xs.len()];
    let mut means = vec![F::ZERO; rows];
    let mut invs = vec![F::ZERO; rows];
    let eps = F::from_f32(ln.epsilon);
    if n > 0 {
        y.par_chunks_mut(n)
            .zip(xs.par_chunks(n))
            .zip(means.par_iter_mut().zip(invs.par_iter_mut()))
            .for_each(|((yo, xi), (m, iv))| {
                let (mean, var) = mean_var(xi);
                let inv = F::ONE / (var + eps).sqrt();
                *m = mean;
                *iv = inv;
                for (j, (o, &v)) in yo.iter_mut().zip(xi).enumerate() {
                    let mut r = (v - mean) * inv * scale[si[j]];
                    if !bi.is_empty() {
                        r += bias[bi[j]];
                    }
                    *o = r;
                }
            });
    }
    let mut stat_shape = shape[..a].to_vec();
    stat_shape.resize(shape.len(), 1);
    let to32 = |v: Vec<F>| v.into_iter().map(|x| x.to_f32()).collect::<Vec<f32>>();
    Ok(vec![
        float_out(NAME, x.dtype(), shape.clone(), y)?,
        output(NAME, stat_shape.clone(), to32(means))?,
        output(NAME, stat_shape, to32(invs))?,
    ])
}

impl Op for LayerNormalization {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let stat = match &x.shape {
            Some(s) => {
                let a = normalize_axis(NAME, self.axis, s.len())?;
                let mut d: Vec<Dim> = s[..a].to_vec();
                d.extend(dims(&vec![1; s.len() - a]));
                ValueType::new(DType::F32, d)
            }
            None => ValueType::of_dtype(DType::F32),
        };
        Ok(vec![x.clone(), stat.clone(), stat])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, &outputs[..outputs.len().min(1)], 8)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        if let Some(y) = eval_f32(self, inputs)? {
            return Ok(y);
        }
        float_run!(NAME, x.dtype(), eval_as(self, inputs))
    }

    fn writes_into(&self, inputs: &[ValueType], outputs: &[ValueType]) -> bool {
        use crate::planned::{f32_io, f32_shape, is_f32};
        if !f32_io(inputs, outputs, 2)
            || (inputs.len() > 2 && !is_absent(&inputs[2]) && !is_f32(inputs.get(2)))
        {
            return false;
        }
        let (Some(x), Some(y)) = (f32_shape(&inputs[0]), f32_shape(&outputs[0])) else {
            return false;
        };
        let Ok(a) = normalize_axis(NAME, self.axis, x.len()) else {
            return false;
        };
        let inner = &x[a..];
        let n = prod(inner);
        let full =
            |t: &ValueType| f32_shape(t).is_some_and(|s| prod(&s) == n && param_ok(&s, inner));
        x == y && full(&inputs[1]) && inputs.get(2).is_none_or(|b| is_absent(b) || full(b))
    }

    fn eval_into(
        &self,
        inputs: &[Option<F32View<'_>>],
        out: &mut [f32],
        out_shape: &[usize],
    ) -> Result<(), OpError> {
        let x = F32View::req(inputs, NAME, 0)?;
        crate::planned::check_shape(NAME, "output", out_shape, x.shape)?;
        crate::planned::check_out(NAME, out, out_shape)?;
        let (xs, n, _, scale, bias) = f32_operands(self, inputs)?.ok_or_else(|| {
            OpError::unsupported(NAME, "eval_into with parameters smaller than the block")
        })?;
        rows_f32(self.epsilon, xs, n, scale, bias, out, None);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("axis={} epsilon={}", self.axis, self.epsilon)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::conv::tests::attrs;
    use millrace_ir::Attr;

    #[test]
    fn planned_paths_match_eval() {
        use crate::into_check::{check, rand, refuses};
        for (shape, axis) in [(&[2, 5, 64][..], -1i64), (&[3, 4, 5], 1), (&[40, 2048], -1)] {
            let ln = LayerNormalization {
                axis,
                epsilon: 1e-5,
            };
            let x = rand(shape, 1);
            let a = normalize_axis(NAME, axis, shape.len()).unwrap();
            let inner = &shape[a..];
            let (s, b) = (rand(inner, 2), rand(inner, 3));
            check(&ln, &[Some(&x), Some(&s), Some(&b)]);
            check(&ln, &[Some(&x), Some(&s)]);
            let t = |s: &[usize]| ValueType::concrete(DType::F32, s);
            // A Scale smaller than the block takes the generic path only.
            refuses(&ln, &[t(shape), t(&[1])], &[t(shape)]);
            // Mean / InvStdDev requested.
            refuses(&ln, &[t(shape), t(inner)], &[t(shape), t(&[1]), t(&[1])]);
        }
    }

    #[test]
    fn normalizes_trailing_dims() {
        let ln = LayerNormalization::parse(&attrs(
            NAME,
            vec![("axis", Attr::Int(-1)), ("epsilon", Attr::Float(0.0))],
        ))
        .unwrap();
        let x = Tensor::from_vec(vec![2, 2], vec![1.0f32, 3.0, 5.0, 5.0]).unwrap();
        let s = Tensor::from_vec(vec![2], vec![2.0f32, 1.0]).unwrap();
        let b = Tensor::from_vec(vec![1], vec![0.5f32]).unwrap();
        let y = ln
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&s), Some(&b)]))
            .unwrap();
        let got = y[0].as_slice::<f32>().unwrap();
        assert_eq!(&got[..2], &[-1.5, 1.5]);
        assert!(got[2].is_nan()); // zero variance with epsilon 0
        assert_eq!(y[1].shape(), &[2, 1]);
        assert_eq!(y[1].as_slice::<f32>().unwrap(), &[2.0, 5.0]);
        assert_eq!(y[2].as_slice::<f32>().unwrap()[0], 1.0);
    }

    #[test]
    fn fast_path_matches_generic() {
        let mut seed = 3u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 6.0 - 3.0
        };
        let cases: &[(&[usize], i64)] = &[
            (&[2, 5], -1),
            (&[1, 128, 768], -1),
            (&[3, 4, 17], 1),
            (&[2, 3], 0),
            (&[0, 8], -1),
            (&[4, 0], -1),
        ];
        for &(shape, axis) in cases {
            let ln =
                LayerNormalization::parse(&attrs(NAME, vec![("axis", Attr::Int(axis))])).unwrap();
            let a = normalize_axis(NAME, axis, shape.len()).unwrap();
            let inner = shape[a..].to_vec();
            let n: usize = inner.iter().product();
            let total: usize = shape.iter().product();
            let mut xv: Vec<f32> = (0..total).map(|_| rnd()).collect();
            if total > 3 {
                xv[2] = f32::NAN;
            }
            let x = Tensor::from_vec(shape.to_vec(), xv).unwrap();
            let s = Tensor::from_vec(inner.clone(), (0..n).map(|_| rnd()).collect()).unwrap();
            let b = Tensor::from_vec(inner.clone(), (0..n).map(|_| rnd()).collect()).unwrap();
            for with_b in [true, false] {
                let items = if with_b {
                    vec![Some(&x), Some(&s), Some(&b)]
                } else {
                    vec![Some(&x), Some(&s)]
                };
                let inputs = Inputs::new(NAME, &items);
                let fast = ln.eval(&inputs).unwrap();
                let slow = eval_as::<f32>(&ln, &inputs).unwrap();
                for (f, g) in fast.iter().zip(&slow) {
                    assert_eq!(f.shape(), g.shape());
                    let (f, g) = (f.as_slice::<f32>().unwrap(), g.as_slice::<f32>().unwrap());
                    for (p, q) in f.iter().zip(g) {
                        assert!(
                            (p.is_nan() && q.is_nan()) || (p - q).abs() <= 1e-4 * q.abs().max(1.0),
                            "{shape:?} {axis}: {p} vs {q}"
                        );
                    }
                }
            }
        }
    }

    /// `cargo test --release -p millrace-ops --lib layer_norm_bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn layer_norm_bench() {
        let ln = LayerNormalization::parse(&attrs(NAME, vec![])).unwrap();
        let x = Tensor::from_vec(
            vec![1, 128, 768],
            (0..128 * 768)
                .map(|i| (i % 89) as f32 * 0.1)
                .collect::<Vec<f32>>(),
        )
        .unwrap();
        let s = Tensor::from_vec(vec![768], vec![1.5f32; 768]).unwrap();
        let b = Tensor::from_vec(vec![768], vec![0.5f32; 768]).unwrap();
        let items = [Some(&x), Some(&s), Some(&b)];
        let inputs = Inputs::new(NAME, &items);
        let best = |f: &dyn Fn()| {
            (0..30)
                .map(|_| {
                    let t = std::time::Instant::now();
                    f();
                    t.elapsed().as_secs_f64() * 1e6
                })
                .fold(f64::INFINITY, f64::min)
        };
        let fast = best(&|| {
            ln.eval(&inputs).unwrap();
        });
        let generic = best(&|| {
            eval_as::<f32>(&ln, &inputs).unwrap();
        });
        eprintln!("LayerNorm [1,128,768]: generic {generic:.0} us, fast {fast:.0} us");
    }

    #[test]
    fn axis_zero_and_bad_scale() {
        let ln = LayerNormalization::parse(&attrs(NAME, vec![("axis", Attr::Int(0))])).unwrap();
        let x = Tensor::from_vec(vec![2, 1], vec![1.0f64, -1.0]).unwrap();
        let s = Tensor::from_vec(vec![2, 1], vec![1.0f64, 1.0]).unwrap();
        let y = ln.eval(&Inputs::new(NAME, &[Some(&x), Some(&s)])).unwrap();
        let got = y[0].as_slice::<f64>().unwrap();
        assert!((got[0] - 1.0).abs() < 1e-4 && (got[1] + 1.0).abs() < 1e-4);
        let bad = Tensor::from_vec(vec![3], vec![1.0f64; 3]).unwrap();
        assert!(ln
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&bad)]))
            .is_err());
    }
}
