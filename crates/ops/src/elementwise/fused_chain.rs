//! FusedElementwise (millrace, built only by the `fuse-elementwise` pass, never from ONNX):
//! a chain of f32 elementwise steps evaluated in one pass over the data.
//!
//! Input 0 is the chain's main operand and has the output's shape; every other input is a
//! side operand of a binary step and broadcasts (unidirectionally) to that shape. The
//! output is produced block by block: a block of [`CHUNK`] elements of the main operand is
//! loaded once, every step is applied to it while it sits in L1, and it is stored once.
//! Large tensors are split over the rayon pool. The per-step arithmetic is the unfused
//! ops' own (the same `vmath` kernels for Relu, Sigmoid, Tanh, Exp, Erf, Gelu and Sqrt, the
//! same scalar formulas for the others), so the fused node gives the same numbers.
use crate::util::broadcast_index;
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Cost, F32View, InferCtx, Inputs, Op, OpError, ValueType};
use millrace_kernels::vmath::{self, Func};
use rayon::prelude::*;
use std::any::Any;
use std::fmt;

/// Elements per cache block (8 KiB of f32).
pub const CHUNK: usize = 2048;
/// Elements below which the work stays on one thread.
const PAR_MIN: usize = 1 << 16;
/// Elements per parallel task (a multiple of [`CHUNK`]).
const TASK: usize = 1 << 14;

const NAME: &str = "FusedElementwise";

/// A one-operand step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// ONNX `Relu`: `x > 0 ? x : 0` (NaN and -0 give +0).
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Log,
    Sqrt,
    Neg,
    Abs,
    Erf,
    Reciprocal,
    /// ONNX `Clip`: NaN kept.
    Clip {
        lo: f32,
        hi: f32,
    },
    LeakyRelu {
        alpha: f32,
    },
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
    Gelu,
    GeluTanh,
    /// `Pow` with a constant scalar exponent.
    Pow {
        exponent: f64,
    },
}

impl Unary {
    fn flops(self) -> u64 {
        match self {
            Unary::Relu | Unary::Neg | Unary::Abs | Unary::Log | Unary::Sqrt => 1,
            Unary::Reciprocal | Unary::Exp => 1,
            Unary::Clip { .. } | Unary::LeakyRelu { .. } => 2,
            Unary::HardSigmoid { .. } => 3,
            Unary::Sigmoid | Unary::Tanh | Unary::HardSwish => 4,
            Unary::Pow { .. } => 8,
            Unary::Erf => 10,
            Unary::Gelu | Unary::GeluTanh => 12,
        }
    }

    /// The `vmath` kernel with exactly the unfused op's semantics, where the op uses one.
    fn vfunc(self) -> Option<Func> {
        Some(match self {
            Unary::Relu => Func::ReluZeroNan,
            Unary::Sigmoid => Func::Sigmoid,
            Unary::Tanh => Func::Tanh,
            Unary::Exp => Func::Exp,
            Unary::Sqrt => Func::Sqrt,
            Unary::Erf => Func::Erf,
            Unary::Gelu => Func::Gelu,
            Unary::GeluTanh => Func::GeluTanh,
            _ => return None,
        })
    }

    /// Applies the step to every element of `xs` in place.
    fn apply(self, xs: &mut [f32]) {
        if let Some(f) = self.vfunc() {
            vmath::map_inplace(f, xs);
            return;
        }
        match self {
            Unary::Neg => xs.iter_mut().for_each(|v| *v = -*v),
            Unary::Abs => xs.iter_mut().for_each(|v| *v = v.abs()),
            Unary::Log => xs.iter_mut().for_each(|v| *v = v.ln()),
            Unary::Reciprocal => xs.iter_mut().for_each(|v| *v = 1.0 / *v),
            Unary::Clip { lo, hi } => xs.iter_mut().for_each(|v| {
                let a = if *v < lo { lo } else { *v };
                *v = if a > hi { hi } else { a };
            }),
            Unary::LeakyRelu { alpha } => xs
                .iter_mut()
                .for_each(|v| *v = if *v >= 0.0 { *v } else { alpha * *v }),
            Unary::HardSigmoid { alpha, beta } => xs.iter_mut().for_each(|v| {
                // As the op: NaN stays NaN.
                *v = (alpha * *v + beta).clamp(0.0, 1.0);
            }),
            Unary::HardSwish => {
                let sixth = (1.0f64 / 6.0) as f32;
                xs.iter_mut().for_each(|x| {
                    let v = *x * sixth + 0.5;
                    *x = if v < 0.0 {
                        0.0 * *x
                    } else if v > 1.0 {
                        *x
                    } else {
                        *x * v
                    };
                })
            }
            Unary::Pow { exponent } => {
                if exponent == 2.0 {
                    xs.iter_mut().for_each(|v| *v *= *v)
                } else {
                    xs.iter_mut()
                        .for_each(|v| *v = (*v as f64).powf(exponent) as f32)
                }
            }
            // Handled by `vfunc` above.
            Unary::Relu
            | Unary::Sigmoid
            | Unary::Tanh
            | Unary::Exp
            | Unary::Sqrt
            | Unary::Erf
            | Unary::Gelu
            | Unary::GeluTanh => {}
        }
    }

    fn describe(self) -> String {
        match self {
            Unary::Clip { lo, hi } => format!("Clip({lo},{hi})"),
            Unary::LeakyRelu { alpha } => format!("LeakyRelu({alpha})"),
            Unary::HardSigmoid { alpha, beta } => format!("HardSigmoid({alpha},{beta})"),
            Unary::GeluTanh => "Gelu(tanh)".into(),
            Unary::Pow { exponent } => format!("Pow({exponent})"),
            other => format!("{other:?}"),
        }
    }
}

/// A two-operand arithmetic step (ONNX semantics: IEEE arithmetic, Max/Min propagate NaN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

/// The other operand of a binary step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Operand {
    /// A constant scalar folded into the step.
    Scalar(f32),
    /// The fused node's input at this index (0 is the main operand itself).
    Input(usize),
}

/// One step of the chain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    Unary(Unary),
    /// `cur op other`, or `other op cur` when `swapped`.
    Binary {
        op: Binary,
        other: Operand,
        swapped: bool,
    },
}

impl Step {
    fn flops(&self) -> u64 {
        match self {
            Step::Unary(u) => u.flops(),
            Step::Binary { .. } => 1,
        }
    }

    fn describe(&self) -> String {
        match self {
            Step::Unary(u) => u.describe(),
            Step::Binary { op, other, swapped } => {
                let o = match other {
                    Operand::Scalar(c) => format!("{c}"),
                    Operand::Input(0) => "x".into(),
                    Operand::Input(i) => format!("in{i}"),
                };
                if *swapped {
                    format!("{op:?}({o}, .)")
                } else {
                    format!("{op:?}({o})")
                }
            }
        }
    }
}

/// A chain of elementwise steps applied to input 0.
#[derive(Clone, PartialEq)]
pub struct FusedElementwise {
    pub steps: Vec<Step>,
    /// How many inputs the node has (input 0 plus the side operands).
    pub num_inputs: usize,
}

impl fmt::Debug for FusedElementwise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FusedElementwise[{}]", self.describe())
    }
}

/// How a side operand maps onto the output, in flat output indices `i`.
enum Layout<'a> {
    /// One value for all.
    Scalar(f32),
    /// `b[i]`.
    Same(&'a [f32]),
    /// `b[(i / inner) % b.len()]`: the operand covers a contiguous block of the output's
    /// axes (`[C, 1, 1]` against `[N, C, H, W]`, `[H]` against `[.., H]`).
    Block { b: &'a [f32], inner: usize },
    /// Anything else: per-element broadcast index, `b[idx[i]]`.
    General { b: &'a [f32], idx: Vec<usize> },
}

impl<'a> Layout<'a> {
    fn of(b: &'a [f32], bshape: &[usize], out: &[usize]) -> Layout<'a> {
        let n: usize = out.iter().product();
        if b.len() == 1 {
            return Layout::Scalar(b[0]);
        }
        if b.len() == n {
            return Layout::Same(b);
        }
        let off = out.len() - bshape.len();
        let dim = |i: usize| if i < off { 1 } else { bshape[i - off] };
        let used: Vec<usize> = (0..out.len()).filter(|&i| dim(i) != 1).collect();
        if let (Some(&lo), Some(&hi)) = (used.first(), used.last()) {
            if (lo..=hi).all(|i| dim(i) == out[i]) {
                let inner = out[hi + 1..].iter().product();
                return Layout::Block { b, inner };
            }
        }
        Layout::General {
            b,
            idx: broadcast_index(out, bshape),
        }
    }

    /// Fills `tmp` with the operand's values at flat output indices `start..start+len`.
    /// Returns `None` when the operand is a scalar (nothing filled).
    fn gather<'t>(&self, start: usize, tmp: &'t mut [f32]) -> Option<&'t [f32]> {
        match self {
            Layout::Scalar(_) | Layout::Same(_) => None,
            Layout::Block { b, inner } => {
                let (inner, mid) = (*inner, b.len());
                let end = start + tmp.len();
                if inner == 1 {
                    let mut pos = start;
                    while pos < end {
                        let r = pos % mid;
                        let take = (mid - r).min(end - pos);
                        tmp[pos - start..pos - start + take].copy_from_slice(&b[r..r + take]);
                        pos += take;
                    }
                } else {
                    let mut pos = start;
                    while pos < end {
                        let row = pos / inner;
                        let stop = ((row + 1) * inner).min(end);
                        tmp[pos - start..stop - start].fill(b[row % mid]);
                        pos = stop;
                    }
                }
                Some(tmp)
            }
            Layout::General { b, idx } => {
                for (t, &j) in tmp.iter_mut().zip(&idx[start..]) {
                    *t = b[j];
                }
                Some(tmp)
            }
        }
    }
}

#[inline]
fn max_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if b > a {
        b
    } else {
        a
    }
}

#[inline]
fn min_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if b < a {
        b
    } else {
        a
    }
}

/// `x[i] = f(x[i], b[i])` (or with a scalar `b`), monomorphized per op so it vectorizes.
fn zip_with(x: &mut [f32], b: Either<'_>, f: impl Fn(f32, f32) -> f32) {
    match b {
        Either::Scalar(c) => x.iter_mut().for_each(|v| *v = f(*v, c)),
        Either::Slice(s) => x.iter_mut().zip(s).for_each(|(v, &c)| *v = f(*v, c)),
    }
}

#[derive(Clone, Copy)]
enum Either<'a> {
    Scalar(f32),
    Slice(&'a [f32]),
}

fn apply_binary(op: Binary, swapped: bool, x: &mut [f32], b: Either<'_>) {
    macro_rules! go {
        ($f:expr) => {
            if swapped {
                zip_with(x, b, |a, c| $f(c, a))
            } else {
                zip_with(x, b, |a, c| $f(a, c))
            }
        };
    }
    match op {
        Binary::Add => go!(|a: f32, c: f32| a + c),
        Binary::Sub => go!(|a: f32, c: f32| a - c),
        Binary::Mul => go!(|a: f32, c: f32| a * c),
        Binary::Div => go!(|a: f32, c: f32| a / c),
        Binary::Max => go!(max_nan),
        Binary::Min => go!(min_nan),
    }
}

impl FusedElementwise {
    pub fn new(steps: Vec<Step>, num_inputs: usize) -> FusedElementwise {
        FusedElementwise { steps, num_inputs }
    }

    /// Checks the operands and builds their layouts: `layouts[i]` for input `i >= 1`.
    fn layouts<'a>(
        &self,
        out: &[usize],
        inputs: &[Option<F32View<'a>>],
    ) -> Result<Vec<Option<Layout<'a>>>, OpError> {
        let mut layouts: Vec<Option<Layout<'a>>> = Vec::with_capacity(self.num_inputs);
        layouts.push(None);
        for i in 1..self.num_inputs {
            let v = F32View::req(inputs, NAME, i)?;
            super::broadcast::unidirectional(NAME, out, v.shape)?;
            let n: usize = v.shape.iter().product();
            if n != v.data.len() {
                return Err(OpError::invalid(
                    NAME,
                    format!("input {i}: bad data length"),
                ));
            }
            layouts.push(Some(Layout::of(v.data, v.shape, out)));
        }
        for s in &self.steps {
            if let Step::Binary {
                other: Operand::Input(i),
                ..
            } = s
            {
                if *i >= self.num_inputs {
                    return Err(OpError::invalid(NAME, format!("step reads input {i}")));
                }
            }
        }
        Ok(layouts)
    }

    /// Applies every step to `x`, which holds output elements `start..start + x.len()`
    /// (at most [`CHUNK`]). `main` is input 0 when it is still readable.
    fn run_chunk(
        &self,
        start: usize,
        x: &mut [f32],
        main: Option<&[f32]>,
        layouts: &[Option<Layout<'_>>],
    ) -> Result<(), OpError> {
        let mut tmp = [0f32; CHUNK];
        let len = x.len();
        for s in &self.steps {
            match *s {
                Step::Unary(u) => u.apply(x),
                Step::Binary { op, other, swapped } => {
                    let b = match other {
                        Operand::Scalar(c) => Either::Scalar(c),
                        Operand::Input(0) => match main {
                            Some(m) => Either::Slice(&m[start..start + len]),
                            None => return Err(OpError::invalid(NAME, "input 0 read in place")),
                        },
                        Operand::Input(i) => match layouts.get(i).and_then(|l| l.as_ref()) {
                            Some(Layout::Scalar(c)) => Either::Scalar(*c),
                            Some(Layout::Same(b)) => Either::Slice(&b[start..start + len]),
                            Some(l) => match l.gather(start, &mut tmp[..len]) {
                                Some(t) => Either::Slice(t),
                                None => return Err(OpError::invalid(NAME, "operand layout")),
                            },
                            None => return Err(OpError::invalid(NAME, "missing operand")),
                        },
                    };
                    apply_binary(op, swapped, x, b);
                }
            }
        }
        Ok(())
    }

    /// Runs the chain over `out`, which on entry holds the main operand's values.
    fn run_all(
        &self,
        out: &mut [f32],
        main: Option<&[f32]>,
        layouts: &[Option<Layout<'_>>],
    ) -> Result<(), OpError> {
        let task = |base: usize, part: &mut [f32]| -> Result<(), OpError> {
            for (k, c) in part.chunks_mut(CHUNK).enumerate() {
                self.run_chunk(base + k * CHUNK, c, main, layouts)?;
            }
            Ok(())
        };
        if out.len() < PAR_MIN {
            task(0, out)
        } else {
            out.par_chunks_mut(TASK)
                .enumerate()
                .try_for_each(|(t, part)| task(t * TASK, part))
        }
    }

    /// Copies the main operand into `out` chunk by chunk together with the steps, so the
    /// data is loaded once: each block is copied and processed while in cache.
    fn run_from(
        &self,
        main: &[f32],
        out: &mut [f32],
        layouts: &[Option<Layout<'_>>],
    ) -> Result<(), OpError> {
        let task = |base: usize, part: &mut [f32]| -> Result<(), OpError> {
            for (k, c) in part.chunks_mut(CHUNK).enumerate() {
                let s = base + k * CHUNK;
                c.copy_from_slice(&main[s..s + c.len()]);
                self.run_chunk(s, c, Some(main), layouts)?;
            }
            Ok(())
        };
        if out.len() < PAR_MIN {
            task(0, out)
        } else {
            out.par_chunks_mut(TASK)
                .enumerate()
                .try_for_each(|(t, part)| task(t * TASK, part))
        }
    }

    fn reads_main_as_operand(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s,
                Step::Binary {
                    other: Operand::Input(0),
                    ..
                }
            )
        })
    }
}

fn f32_concrete(t: &ValueType) -> bool {
    t.dtype == Some(DType::F32) && t.concrete_shape().is_some()
}

impl Op for FusedElementwise {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        if let Some(d) = x.dtype.filter(|d| *d != DType::F32) {
            return Err(OpError::unsupported(NAME, format!("dtype {d}")));
        }
        for i in 1..self.num_inputs {
            let t = ctx.input(i)?;
            if let Some(d) = t.dtype.filter(|d| *d != DType::F32) {
                return Err(OpError::unsupported(NAME, format!("input {i} dtype {d}")));
            }
            if let (Some(xs), Some(ts)) = (&x.shape, &t.shape) {
                if ts.len() > xs.len() {
                    return Err(OpError::invalid(
                        NAME,
                        format!("input {i} has a higher rank than input 0"),
                    ));
                }
                let off = xs.len() - ts.len();
                for (k, d) in ts.iter().enumerate() {
                    let ok = match (d, &xs[k + off]) {
                        (Dim::Known(1), _) => true,
                        (Dim::Known(a), Dim::Known(b)) => a == b,
                        _ => true,
                    };
                    if !ok {
                        return Err(OpError::invalid(
                            NAME,
                            format!("input {i} does not broadcast to input 0"),
                        ));
                    }
                }
            }
        }
        Ok(vec![ValueType {
            dtype: Some(DType::F32),
            shape: x.shape.clone(),
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let per: u64 = self.steps.iter().map(Step::flops).sum();
        Cost::elementwise(inputs, outputs, per)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let mut views = Vec::with_capacity(self.num_inputs);
        for i in 0..self.num_inputs {
            let t = inputs.req(i)?;
            let v = F32View::of(t).ok_or_else(|| {
                OpError::unsupported(NAME, format!("input {i} dtype {}", t.dtype()))
            })?;
            views.push(Some(v));
        }
        let main = F32View::req(&views, NAME, 0)?;
        let mut out = vec![0f32; main.data.len()];
        self.eval_into(&views, &mut out, main.shape)?;
        let y = Tensor::from_vec(main.shape.to_vec(), out).map_err(|e| OpError::tensor(NAME, e))?;
        Ok(vec![y])
    }

    fn writes_into(&self, inputs: &[ValueType], outputs: &[ValueType]) -> bool {
        inputs.len() == self.num_inputs
            && outputs.len() == 1
            && inputs.iter().chain(outputs).all(f32_concrete)
    }

    fn eval_into(
        &self,
        inputs: &[Option<F32View<'_>>],
        out: &mut [f32],
        out_shape: &[usize],
    ) -> Result<(), OpError> {
        let main = F32View::req(inputs, NAME, 0)?;
        if main.shape != out_shape || main.data.len() != out.len() {
            return Err(OpError::invalid(
                NAME,
                format!(
                    "input 0 shape {:?} differs from the output's {:?}",
                    main.shape, out_shape
                ),
            ));
        }
        let layouts = self.layouts(out_shape, inputs)?;
        self.run_from(main.data, out, &layouts)
    }

    fn inplace_input(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Option<usize> {
        let same = inputs.first()?.concrete_shape()? == outputs.first()?.concrete_shape()?;
        (same && !self.reads_main_as_operand()).then_some(0)
    }

    fn eval_inplace(
        &self,
        index: usize,
        inputs: &[Option<F32View<'_>>],
        io: &mut [f32],
        out_shape: &[usize],
    ) -> Result<(), OpError> {
        if index != 0 || self.reads_main_as_operand() {
            return Err(OpError::invalid(NAME, "in place only over input 0"));
        }
        let n: usize = out_shape.iter().product();
        if io.len() != n {
            return Err(OpError::invalid(NAME, "in-place buffer size"));
        }
        let layouts = self.layouts(out_shape, inputs)?;
        self.run_all(io, None, &layouts)
    }

    fn describe(&self) -> String {
        self.steps
            .iter()
            .map(Step::describe)
            .collect::<Vec<_>>()
            .join(" -> ")
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use millrace_ir::{Attr, Attributes};
    use std::sync::Arc;

    fn op(name: &str, attrs: Vec<(&str, Attr)>) -> Arc<dyn Op> {
        let a = Attributes::new(
            name,
            attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        );
        (Registry::global().get(name).unwrap())(&a, 17).unwrap()
    }

    fn rnd(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32 ^ seed).wrapping_mul(2654435761).rotate_left(13) ^ seed;
                (h % 2000) as f32 / 500.0 - 2.0
            })
            .collect()
    }

    fn tensor(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v).unwrap()
    }

    fn run1(op: &dyn Op, ins: &[&Tensor]) -> Tensor {
        let items: Vec<Option<&Tensor>> = ins.iter().map(|t| Some(*t)).collect();
        op.eval(&Inputs::new(op.name(), &items)).unwrap().remove(0)
    }

    /// What the unfused ops compute, step by step through the registry's ops.
    fn reference(steps: &[Step], ins: &[&Tensor]) -> Tensor {
        let mut cur = ins[0].clone();
        for s in steps {
            cur = match *s {
                Step::Unary(u) => {
                    let (o, extra): (Arc<dyn Op>, Vec<Tensor>) = match u {
                        Unary::Relu => (op("Relu", vec![]), vec![]),
                        Unary::Sigmoid => (op("Sigmoid", vec![]), vec![]),
                        Unary::Tanh => (op("Tanh", vec![]), vec![]),
                        Unary::Exp => (op("Exp", vec![]), vec![]),
                        Unary::Log => (op("Log", vec![]), vec![]),
                        Unary::Sqrt => (op("Sqrt", vec![]), vec![]),
                        Unary::Neg => (op("Neg", vec![]), vec![]),
                        Unary::Abs => (op("Abs", vec![]), vec![]),
                        Unary::Erf => (op("Erf", vec![]), vec![]),
                        Unary::Reciprocal => (op("Reciprocal", vec![]), vec![]),
                        Unary::HardSwish => (op("HardSwish", vec![]), vec![]),
                        Unary::Clip { lo, hi } => (
                            op("Clip", vec![]),
                            vec![tensor(&[], vec![lo]), tensor(&[], vec![hi])],
                        ),
                        Unary::LeakyRelu { alpha } => {
                            (op("LeakyRelu", vec![("alpha", Attr::Float(alpha))]), vec![])
                        }
                        Unary::HardSigmoid { alpha, beta } => (
                            op(
                                "HardSigmoid",
                                vec![("alpha", Attr::Float(alpha)), ("beta", Attr::Float(beta))],
                            ),
                            vec![],
                        ),
                        Unary::Gelu => (op("Gelu", vec![]), vec![]),
                        Unary::GeluTanh => (
                            op("Gelu", vec![("approximate", Attr::String("tanh".into()))]),
                            vec![],
                        ),
                        Unary::Pow { exponent } => {
                            (op("Pow", vec![]), vec![tensor(&[], vec![exponent as f32])])
                        }
                    };
                    let mut args = vec![&cur];
                    args.extend(extra.iter());
                    run1(o.as_ref(), &args)
                }
                Step::Binary {
                    op: b,
                    other,
                    swapped,
                } => {
                    let o = op(&format!("{b:?}"), vec![]);
                    let t = match other {
                        Operand::Scalar(c) => tensor(&[], vec![c]),
                        Operand::Input(i) => ins[i].clone(),
                    };
                    if swapped {
                        run1(o.as_ref(), &[&t, &cur])
                    } else {
                        run1(o.as_ref(), &[&cur, &t])
                    }
                }
            };
        }
        cur
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let ok = g.to_bits() == w.to_bits()
                || (g.is_nan() && w.is_nan())
                || (g - w).abs() <= 2e-6 * w.abs().max(1.0);
            assert!(ok, "{what}: element {i}: {g} vs {w}");
        }
    }

    /// Fused eval vs reference, and eval == eval_into == eval_inplace bit for bit.
    fn check(steps: Vec<Step>, ins: &[&Tensor]) {
        let f = FusedElementwise::new(steps.clone(), ins.len());
        let want = reference(&steps, ins);
        let got = run1(&f, ins);
        assert_eq!(got.shape(), want.shape());
        let what = f.describe();
        assert_close(
            got.as_slice::<f32>().unwrap(),
            want.as_slice().unwrap(),
            &what,
        );

        let views: Vec<Option<F32View<'_>>> = ins.iter().map(|t| F32View::of(t)).collect();
        let types: Vec<ValueType> = ins
            .iter()
            .map(|t| ValueType::concrete(DType::F32, t.shape()))
            .collect();
        let out_ty = [ValueType::concrete(DType::F32, ins[0].shape())];
        assert!(f.writes_into(&types, &out_ty));
        let mut buf = vec![f32::NAN; ins[0].len()];
        f.eval_into(&views, &mut buf, ins[0].shape()).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&buf),
            bits(got.as_slice().unwrap()),
            "{what}: eval_into"
        );
        match f.inplace_input(&types, &out_ty) {
            Some(0) => {
                let mut io = ins[0].as_slice::<f32>().unwrap().to_vec();
                let mut v2 = views.clone();
                v2[0] = None;
                f.eval_inplace(0, &v2, &mut io, ins[0].shape()).unwrap();
                assert_eq!(bits(&io), bits(got.as_slice().unwrap()), "{what}: in place");
            }
            other => assert!(f.reads_main_as_operand(), "{what}: {other:?}"),
        }
    }

    fn special(mut v: Vec<f32>) -> Vec<f32> {
        let sp = [
            f32::NAN,
            -0.0,
            0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -1e-30,
        ];
        for (k, s) in sp.iter().enumerate() {
            if let Some(x) = v.get_mut(k * 7 + 3) {
                *x = *s;
            }
        }
        v
    }

    fn bin(op: Binary, i: usize) -> Step {
        Step::Binary {
            op,
            other: Operand::Input(i),
            swapped: false,
        }
    }

    #[test]
    fn every_unary_step_matches_the_op() {
        let x = tensor(&[3, 37], special(rnd(111, 1)));
        let pos = tensor(
            &[3, 37],
            rnd(111, 2).iter().map(|v| v.abs() + 0.1).collect(),
        );
        let all = [
            Unary::Relu,
            Unary::Sigmoid,
            Unary::Tanh,
            Unary::Exp,
            Unary::Neg,
            Unary::Abs,
            Unary::Erf,
            Unary::Reciprocal,
            Unary::HardSwish,
            Unary::Clip { lo: -0.5, hi: 0.75 },
            Unary::LeakyRelu { alpha: 0.1 },
            Unary::HardSigmoid {
                alpha: 0.3,
                beta: 0.4,
            },
            Unary::Gelu,
            Unary::GeluTanh,
            Unary::Pow { exponent: 2.0 },
            Unary::Pow { exponent: 3.0 },
        ];
        for u in all {
            check(vec![Step::Unary(u), Step::Unary(Unary::Neg)], &[&x]);
        }
        for u in [Unary::Log, Unary::Sqrt, Unary::Pow { exponent: 0.5 }] {
            check(vec![Step::Unary(u), Step::Unary(Unary::Relu)], &[&pos]);
        }
    }

    #[test]
    fn relu_gives_plus_zero_for_nan_and_minus_zero() {
        let x = tensor(&[4], vec![f32::NAN, -0.0, -1.0, 2.0]);
        let f = FusedElementwise::new(
            vec![
                Step::Unary(Unary::Relu),
                Step::Binary {
                    op: Binary::Mul,
                    other: Operand::Scalar(1.0),
                    swapped: false,
                },
            ],
            1,
        );
        let y = run1(&f, &[&x]);
        let bits: Vec<u32> = y
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(bits, [0, 0, 0, 2f32.to_bits()]);
    }

    #[test]
    fn binary_steps_with_broadcasting() {
        let shape = [2, 3, 5, 7];
        let x = tensor(&shape, special(rnd(210, 3)));
        let same = tensor(&shape, rnd(210, 4));
        let chan = tensor(&[3, 1, 1], rnd(3, 5));
        let last = tensor(&[7], rnd(7, 6));
        let mid = tensor(&[3, 5, 1], rnd(15, 7));
        let general = tensor(&[2, 1, 5, 1], rnd(10, 8));
        let scalar = tensor(&[1, 1], vec![0.75]);
        let ins = [&x, &same, &chan, &last, &mid, &general, &scalar];
        for op in [
            Binary::Add,
            Binary::Sub,
            Binary::Mul,
            Binary::Div,
            Binary::Max,
            Binary::Min,
        ] {
            for swapped in [false, true] {
                let mut steps = vec![];
                for i in 1..ins.len() {
                    steps.push(Step::Binary {
                        op,
                        other: Operand::Input(i),
                        swapped,
                    });
                    steps.push(Step::Unary(Unary::Tanh));
                }
                steps.push(Step::Binary {
                    op,
                    other: Operand::Scalar(-1.5),
                    swapped,
                });
                check(steps, &ins);
            }
        }
        // x * sigmoid(x): the main operand read again as a side operand.
        check(
            vec![Step::Unary(Unary::Sigmoid), bin(Binary::Mul, 0)],
            &[&x],
        );
    }

    #[test]
    fn large_tensors_split_over_threads() {
        let shape = [3, 128, 257];
        let n = 3 * 128 * 257;
        let x = tensor(&shape, special(rnd(n, 9)));
        let b = tensor(&[257], rnd(257, 10));
        let c = tensor(&[3, 1, 1], rnd(3, 11));
        let g = tensor(&[128, 1], rnd(128, 12));
        check(
            vec![
                bin(Binary::Mul, 1),
                bin(Binary::Add, 2),
                Step::Unary(Unary::Gelu),
                bin(Binary::Sub, 3),
                Step::Unary(Unary::Relu),
            ],
            &[&x, &b, &c, &g],
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let f = FusedElementwise::new(vec![bin(Binary::Add, 1), Step::Unary(Unary::Relu)], 2);
        let x = tensor(&[2, 3], rnd(6, 1));
        let big = tensor(&[4, 2, 3], rnd(24, 2));
        let items = [Some(&x), Some(&big)];
        assert!(f.eval(&Inputs::new(NAME, &items)).is_err());
        let i = Tensor::from_vec(vec![2, 3], vec![1i64; 6]).unwrap();
        let items = [Some(&x), Some(&i)];
        assert!(f.eval(&Inputs::new(NAME, &items)).is_err());
        assert!(f.eval(&Inputs::new(NAME, &[Some(&x)])).is_err());
        let mut out = vec![0f32; 5];
        let v = [F32View::of(&x), F32View::of(&x)];
        assert!(f.eval_into(&v, &mut out, &[5]).is_err());
    }

    #[test]
    fn describes_the_chain_and_costs_one_pass() {
        let f = FusedElementwise::new(
            vec![
                Step::Binary {
                    op: Binary::Mul,
                    other: Operand::Scalar(0.5),
                    swapped: false,
                },
                bin(Binary::Add, 1),
                Step::Unary(Unary::Relu),
            ],
            2,
        );
        assert_eq!(f.describe(), "Mul(0.5) -> Add(in1) -> Relu");
        let t = ValueType::concrete(DType::F32, &[10, 10]);
        let c = f.cost(&[t.clone(), t.clone()], &[t]);
        assert_eq!(c.flops, 300);
        assert_eq!(c.bytes_read, 800);
        assert_eq!(c.bytes_written, 400);
    }
}
