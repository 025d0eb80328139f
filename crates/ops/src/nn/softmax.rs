//! Softmax (ONNX opsets 1, 11, 13): `exp(x - max) / sum` along `axis` (default -1 from
//! opset 13; before that the input is coerced to 2-D at `axis`, default 1). The same
//! struct serves LogSoftmax and Hardmax, which differ only in the final map.
//!
//! f32 Softmax/LogSoftmax over contiguous rows (the last axis at opset 13, or any axis in
//! the coerced-2-D form) take a fast path: per row a vectorized max, `exp(x - max)` with
//! its sum in one pass, then one scaling pass ([`millrace_kernels::vmath`]); rows are
//! split over threads for big tensors. Other cases use the generic strided loop.
use super::common::{float_out, prod, Float};
use crate::float_run;
use crate::util::normalize_axis;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, F32View, InferCtx, Inputs, Op, OpError, ValueType};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Softmax,
    LogSoftmax,
    Hardmax,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Softmax {
    pub kind: Kind,
    pub axis: i64,
    /// Opsets before 13: flatten to 2-D at `axis` and normalize the whole trailing block.
    pub coerce_2d: bool,
}

impl Softmax {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Softmax::parse(Kind::Softmax, attrs, opset)?))
    }

    pub fn parse(kind: Kind, attrs: &Attributes, opset: i64) -> Result<Softmax, OpError> {
        let coerce_2d = opset < 13;
        let axis = attrs.int_or("axis", if coerce_2d { 1 } else { -1 })?;
        Ok(Softmax {
            kind,
            axis,
            coerce_2d,
        })
    }

    fn op_name(&self) -> &'static str {
        match self.kind {
            Kind::Softmax => "Softmax",
            Kind::LogSoftmax => "LogSoftmax",
            Kind::Hardmax => "Hardmax",
        }
    }

    /// (outer, n, inner) for an input shape.
    fn split(&self, shape: &[usize]) -> Result<(usize, usize, usize), OpError> {
        let name = self.op_name();
        if shape.is_empty() {
            return Err(OpError::invalid(name, "input must have rank >= 1"));
        }
        let a = normalize_axis(name, self.axis, shape.len())?;
        if self.coerce_2d {
            Ok((prod(&shape[..a]), prod(&shape[a..]), 1))
        } else {
            Ok((prod(&shape[..a]), shape[a], prod(&shape[a + 1..])))
        }
    }
}

fn apply<F: Float>(kind: Kind, v: &mut [F], n: usize, inner: usize) {
    for j in 0..inner {
        let at = |i: usize| i * inner + j;
        let mut mx = F::NEG_INF;
        let mut arg = 0;
        let mut nan = false;
        for i in 0..n {
            let x = v[at(i)];
            nan |= x.is_nan();
            if x > mx || i == 0 {
                mx = x;
                arg = i;
            }
        }
        match kind {
            Kind::Hardmax => {
                for i in 0..n {
                    v[at(i)] = if i == arg { F::ONE } else { F::ZERO };
                }
            }
            Kind::Softmax | Kind::LogSoftmax => {
                if nan {
                    for i in 0..n {
                        v[at(i)] = F::from_f64(f64::NAN);
                    }
                    continue;
                }
                // An all -inf row: exp(x - max) is NaN, as in the spec's formula.
                let mut sum = F::ZERO;
                for i in 0..n {
                    let e = (v[at(i)] - mx).exp();
                    sum += e;
                    if kind == Kind::Softmax {
                        v[at(i)] = e;
                    }
                }
                if kind == Kind::Softmax {
                    let inv = F::ONE / sum;
                    for i in 0..n {
                        v[at(i)] *= inv;
                    }
                } else {
                    let ls = sum.ln() + mx;
                    for i in 0..n {
                        v[at(i)] = v[at(i)] - ls;
                    }
                }
            }
        }
    }
}

/// Elements below which the fast path stays on one thread.
const PAR_MIN: usize = 1 << 16;

/// Softmax / LogSoftmax of each contiguous row of `n` elements of `x`.
fn rows_f32(kind: Kind, x: &[f32], n: usize, y: &mut [f32]) {
    use millrace_kernels::vmath::{self, Func};
    if n == 0 || x.is_empty() {
        return;
    }
    let row = |xi: &[f32], yo: &mut [f32]| {
        let m = vmath::max(xi);
        let s = vmath::exp_shift_sum(xi, yo, m);
        if kind == Kind::Softmax {
            // A NaN in the row makes `s` NaN and so every output, as in the generic path.
            vmath::map_inplace(Func::Affine { a: 1.0 / s, b: 0.0 }, yo);
        } else {
            let ls = s.ln() + m;
            vmath::map(Func::Affine { a: 1.0, b: -ls }, xi, yo);
        }
    };
    if x.len() < PAR_MIN {
        y.chunks_mut(n)
            .zip(x.chunks(n))
            .for_each(|(yo, xi)| row(xi, yo));
    } else {
        let per_task = (8192 / n).max(1) * n;
        y.par_chunks_mut(per_task)
            .zip(x.par_chunks(per_task))
            .for_each(|(yb, xb)| {
                yb.chunks_mut(n)
                    .zip(xb.chunks(n))
                    .for_each(|(yo, xi)| row(xi, yo))
            });
    }
}

fn eval_as<F: Float>(s: &Softmax, x: &Tensor) -> Result<Vec<Tensor>, OpError> {
    let name = s.op_name();
    let (_, n, inner) = s.split(x.shape())?;
    let mut v = F::cow(name, x)?.into_owned();
    let block = n * inner;
    if block > 0 {
        v.par_chunks_mut(block)
            .for_each(|b| apply(s.kind, b, n, inner));
    }
    Ok(vec![float_out(name, x.dtype(), x.shape().to_vec(), v)?])
}

impl Op for Softmax {
    fn name(&self) -> &'static str {
        self.op_name()
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        if let Some(r) = x.rank() {
            if r == 0 {
                return Err(OpError::invalid(
                    self.op_name(),
                    "input must have rank >= 1",
                ));
            }
            normalize_axis(self.op_name(), self.axis, r)?;
        }
        Ok(vec![x.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 4)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        if let (Ok(xs), true) = (x.as_slice::<f32>(), self.kind != Kind::Hardmax) {
            let (_, _, inner) = self.split(x.shape())?;
            if inner == 1 && xs.len() == x.shape().iter().product::<usize>() {
                let views = crate::planned::views(self.op_name(), inputs)?;
                let shape = x.shape().to_vec();
                return Ok(vec![crate::planned::alloc_f32(
                    self.op_name(),
                    shape.clone(),
                    |y| self.eval_into(&views, y, &shape),
                )?]);
            }
        }
        float_run!(self.op_name(), x.dtype(), eval_as(self, x))
    }

    fn writes_into(&self, inputs: &[ValueType], outputs: &[ValueType]) -> bool {
        self.kind != Kind::Hardmax
            && crate::elementwise::unary::unary_writes_into(inputs, outputs)
            && crate::planned::f32_shape(&inputs[0])
                .is_some_and(|x| self.split(&x).is_ok_and(|(_, _, inner)| inner == 1))
    }

    fn eval_into(
        &self,
        inputs: &[Option<F32View<'_>>],
        out: &mut [f32],
        out_shape: &[usize],
    ) -> Result<(), OpError> {
        let name = self.op_name();
        if self.kind == Kind::Hardmax {
            return Err(OpError::unsupported(name, "eval_into"));
        }
        let x = crate::elementwise::unary::unary_input(name, inputs, out, out_shape)?;
        let (_, n, inner) = self.split(out_shape)?;
        if inner != 1 {
            return Err(OpError::unsupported(name, "eval_into over a strided axis"));
        }
        rows_f32(self.kind, x, n, out);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("axis={}", self.axis)
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
        use millrace_core::DType;
        let big = rand(&[40, 2000], 3);
        let small = rand(&[2, 3, 17], 4);
        for kind in [Kind::Softmax, Kind::LogSoftmax] {
            for (axis, coerce_2d) in [(-1, false), (1, true), (2, true)] {
                let s = Softmax {
                    kind,
                    axis,
                    coerce_2d,
                };
                check(&s, &[Some(&small)]);
                if axis < 2 {
                    check(&s, &[Some(&big)]);
                }
            }
            let s = Softmax {
                kind,
                axis: 1,
                coerce_2d: false,
            };
            let t = ValueType::concrete(DType::F32, small.shape());
            refuses(&s, std::slice::from_ref(&t), std::slice::from_ref(&t));
        }
        let h = Softmax {
            kind: Kind::Hardmax,
            axis: -1,
            coerce_2d: false,
        };
        let t = ValueType::concrete(DType::F32, small.shape());
        refuses(&h, std::slice::from_ref(&t), std::slice::from_ref(&t));
    }

    fn run(opset: i64, axis: Option<i64>, shape: Vec<usize>, x: Vec<f32>) -> Vec<f32> {
        let items = axis
            .map(|a| vec![("axis", Attr::Int(a))])
            .unwrap_or_default();
        let s = Softmax::parse(Kind::Softmax, &attrs("Softmax", items), opset).unwrap();
        let t = Tensor::from_vec(shape, x).unwrap();
        let y = s.eval(&Inputs::new("Softmax", &[Some(&t)])).unwrap();
        y[0].as_slice::<f32>().unwrap().to_vec()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn axis_semantics_by_opset() {
        let e = (1.0f32).exp();
        let (p, q) = (1.0 / (1.0 + e), e / (1.0 + e));
        // [2, 2]: opset 13 default axis -1 normalizes rows.
        close(
            &run(13, None, vec![2, 2], vec![0.0, 1.0, 1000.0, 1001.0]),
            &[p, q, p, q],
        );
        // axis 0 (columns) at opset 13, negative form.
        close(
            &run(13, Some(-2), vec![2, 2], vec![0.0, 5.0, 1.0, 5.0]),
            &[p, 0.5, q, 0.5],
        );
        // Opset 11, axis 0: the whole tensor is one row.
        let y = run(11, Some(0), vec![2, 2], vec![0.0, 0.0, 0.0, 0.0]);
        close(&y, &[0.25; 4]);
        // Opset 11 default axis 1 on [1, 2, 2]: normalizes the trailing 4 together.
        close(&run(11, None, vec![1, 2, 2], vec![1.0; 4]), &[0.25; 4]);
    }

    /// The generic path on f32 data (through f64 to bypass the fast path), rounded.
    fn generic(s: &Softmax, shape: &[usize], x: &[f32]) -> Vec<f32> {
        let t = Tensor::from_vec(shape.to_vec(), x.iter().map(|&v| v as f64).collect()).unwrap();
        let y = s.eval(&Inputs::new("Softmax", &[Some(&t)])).unwrap();
        y[0].as_slice::<f64>()
            .unwrap()
            .iter()
            .map(|&v| v as f32)
            .collect()
    }

    #[test]
    fn fast_path_matches_generic() {
        let mut seed = 7u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 20.0 - 10.0
        };
        let shapes: &[&[usize]] = &[
            &[2, 3],
            &[4, 17],
            &[12, 128, 128],
            &[3, 1000],
            &[0, 5],
            &[5, 0],
            &[1, 2, 3, 4],
        ];
        for kind in [Kind::Softmax, Kind::LogSoftmax] {
            for (opset, axis) in [(13, -1), (11, 1), (11, 0), (13, 1)] {
                for shape in shapes {
                    if axis as usize >= shape.len() && axis >= 0 {
                        continue;
                    }
                    let n: usize = shape.iter().product();
                    let mut x: Vec<f32> = (0..n).map(|_| rnd()).collect();
                    if n > 7 {
                        x[3] = f32::NAN;
                        x[n - 1] = f32::NEG_INFINITY;
                    }
                    let s = Softmax::parse(
                        kind,
                        &attrs("Softmax", vec![("axis", Attr::Int(axis))]),
                        opset,
                    )
                    .unwrap();
                    let t = Tensor::from_vec(shape.to_vec(), x.clone()).unwrap();
                    let got = s.eval(&Inputs::new("Softmax", &[Some(&t)])).unwrap();
                    assert_eq!(got[0].shape(), *shape);
                    let got = got[0].as_slice::<f32>().unwrap();
                    let want = generic(&s, shape, &x);
                    // LogSoftmax is judged on an absolute scale near 0 (log of ~1).
                    let floor = if kind == Kind::LogSoftmax { 1.0 } else { 1e-2 };
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (g.is_nan() && w.is_nan())
                                || g == w
                                || (g - w).abs() <= 2e-6 * w.abs().max(floor),
                            "{kind:?} {opset} {axis} {shape:?}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    /// `cargo test --release -p millrace-ops --lib softmax_bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn softmax_bench() {
        let x = Tensor::from_vec(
            vec![12, 128, 128],
            (0..12 * 128 * 128)
                .map(|i| (i % 97) as f32 * 0.1)
                .collect::<Vec<f32>>(),
        )
        .unwrap();
        let s = Softmax::parse(Kind::Softmax, &attrs("Softmax", vec![]), 13).unwrap();
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
            s.eval(&Inputs::new("Softmax", &[Some(&x)])).unwrap();
        });
        let generic = best(&|| {
            eval_as::<f32>(&s, &x).unwrap();
        });
        eprintln!("Softmax [12,128,128]: generic {generic:.0} us, fast {fast:.0} us");
    }

    #[test]
    fn bad_axis_is_an_error() {
        let s = Softmax::parse(
            Kind::Softmax,
            &attrs("Softmax", vec![("axis", Attr::Int(2))]),
            13,
        )
        .unwrap();
        let t = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
        assert!(s.eval(&Inputs::new("Softmax", &[Some(&t)])).is_err());
    }
}
