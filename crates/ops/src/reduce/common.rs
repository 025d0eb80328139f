//! Shared machinery of the reduce family: axes resolution, output shapes, the generic
//! `Reduce*` op, and an odometer over input elements mapping each to its output slot.
use crate::util::{ints_of, normalize_axes, output, Num};
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

/// Which `Reduce*` op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

impl ReduceKind {
    pub fn op_name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "ReduceSum",
            ReduceKind::Mean => "ReduceMean",
            ReduceKind::Max => "ReduceMax",
            ReduceKind::Min => "ReduceMin",
            ReduceKind::Prod => "ReduceProd",
            ReduceKind::L1 => "ReduceL1",
            ReduceKind::L2 => "ReduceL2",
            ReduceKind::LogSum => "ReduceLogSum",
            ReduceKind::LogSumExp => "ReduceLogSumExp",
            ReduceKind::SumSquare => "ReduceSumSquare",
        }
    }

    /// First opset where `axes` moved from an attribute to an optional input.
    fn axes_input_opset(self) -> i64 {
        match self {
            ReduceKind::Sum => 13,
            _ => 18,
        }
    }

    /// Operations per input element (for cost).
    fn flops_per_elem(self) -> u64 {
        match self {
            ReduceKind::Sum | ReduceKind::Mean | ReduceKind::Max | ReduceKind::Min => 1,
            ReduceKind::Prod | ReduceKind::L1 | ReduceKind::LogSum => 1,
            ReduceKind::L2 | ReduceKind::SumSquare => 2,
            ReduceKind::LogSumExp => 4,
        }
    }
}

/// A `Reduce*` op: the kind plus its parsed attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct Reduce {
    pub kind: ReduceKind,
    pub keepdims: bool,
    /// Axes from the attribute (older opsets); `None` when absent or taken from input 1.
    pub axes: Option<Vec<i64>>,
    /// True when axes come from optional input 1 (ReduceSum >= 13, others >= 18).
    pub axes_from_input: bool,
    pub noop_with_empty_axes: bool,
}

impl Reduce {
    pub fn from_onnx(
        kind: ReduceKind,
        attrs: &Attributes,
        opset: i64,
    ) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Reduce::parse(kind, attrs, opset)?))
    }

    pub fn parse(kind: ReduceKind, attrs: &Attributes, opset: i64) -> Result<Reduce, OpError> {
        let name = kind.op_name();
        let keepdims = attrs.int_or("keepdims", 1)? != 0;
        let noop = attrs.int_or("noop_with_empty_axes", 0)? != 0;
        let axes_attr = attrs.ints("axes")?;
        let axes_from_input = opset >= kind.axes_input_opset();
        if axes_from_input && axes_attr.is_some() {
            return Err(OpError::attribute(
                name,
                "axes",
                format!(
                    "is an input, not an attribute, from opset {}",
                    kind.axes_input_opset()
                ),
            ));
        }
        Ok(Reduce {
            kind,
            keepdims,
            axes: axes_attr,
            axes_from_input,
            noop_with_empty_axes: noop,
        })
    }

    /// Requested axes (raw), `None` meaning "not given" (empty list counts as not given).
    fn raw_axes_eval(&self, inputs: &Inputs<'_>) -> Result<Option<Vec<i64>>, OpError> {
        if self.axes_from_input {
            match inputs.opt(1) {
                Some(t) => {
                    let a = ints_of(self.kind.op_name(), t)?;
                    Ok(if a.is_empty() { None } else { Some(a) })
                }
                None => Ok(None),
            }
        } else {
            Ok(self.axes.clone().filter(|a| !a.is_empty()))
        }
    }
}

/// Resolved reduction plan: which axes are reduced (mask over the input rank), or identity.
pub enum Plan {
    Identity,
    Reduce(Vec<bool>),
}

/// Resolves requested axes against a rank; `None` reduces all unless `noop` holds.
pub fn plan(op: &str, axes: Option<&[i64]>, noop: bool, rank: usize) -> Result<Plan, OpError> {
    match axes {
        None if noop => Ok(Plan::Identity),
        None => Ok(Plan::Reduce(vec![true; rank])),
        Some(a) => {
            let mut mask = vec![false; rank];
            for ax in normalize_axes(op, a, rank)? {
                if let Some(m) = mask.get_mut(ax) {
                    *m = true;
                }
            }
            Ok(Plan::Reduce(mask))
        }
    }
}

/// Output dims of a reduction over `mask` (generic over concrete and symbolic dims).
pub fn reduced_shape<D: Clone>(shape: &[D], mask: &[bool], keepdims: bool, one: D) -> Vec<D> {
    let mut out = Vec::with_capacity(shape.len());
    for (d, &m) in shape.iter().zip(mask) {
        if !m {
            out.push(d.clone());
        } else if keepdims {
            out.push(one.clone());
        }
    }
    out
}

/// Calls `f(input_flat, output_flat)` for every input element in row-major order, where
/// the output index drops (or collapses) the masked axes.
pub fn for_each_reduced(shape: &[usize], mask: &[bool], mut f: impl FnMut(usize, usize)) {
    let n: usize = shape.iter().product();
    if n == 0 {
        return;
    }
    let rank = shape.len();
    // Output strides per input axis (0 for reduced axes).
    let mut ostr = vec![0usize; rank];
    let mut s = 1usize;
    for i in (0..rank).rev() {
        if !mask[i] {
            ostr[i] = s;
            s *= shape[i];
        }
    }
    let mut counter = vec![0usize; rank];
    let mut o = 0usize;
    for i in 0..n {
        f(i, o);
        for ax in (0..rank).rev() {
            counter[ax] += 1;
            o += ostr[ax];
            if counter[ax] < shape[ax] {
                break;
            }
            o -= ostr[ax] * counter[ax];
            counter[ax] = 0;
        }
    }
}

/// Integer element types with exact wide arithmetic.
pub trait IntElem: Num {
    const LOWEST: Self;
    const HIGHEST: Self;
    fn to_i128(self) -> i128;
    /// Wrapping conversion (two's complement truncation), as C++ casts do.
    fn wrap_i128(v: i128) -> Self;
}

macro_rules! int_elem {
    ($($t:ty),*) => {$(
        impl IntElem for $t {
            const LOWEST: Self = <$t>::MIN;
            const HIGHEST: Self = <$t>::MAX;
            fn to_i128(self) -> i128 { self as i128 }
            fn wrap_i128(v: i128) -> Self { v as $t }
        }
    )*};
}
int_elem!(i8, i16, i32, i64, u8, u16, u32, u64);

fn reduce_float<T: Num>(
    kind: ReduceKind,
    x: &[T],
    shape: &[usize],
    mask: &[bool],
    n_out: usize,
) -> Vec<T> {
    let count: usize = shape
        .iter()
        .zip(mask)
        .filter(|(_, &m)| m)
        .map(|(d, _)| *d)
        .product();
    let init = match kind {
        ReduceKind::Max => f64::NEG_INFINITY,
        ReduceKind::Min => f64::INFINITY,
        ReduceKind::Prod => 1.0,
        _ => 0.0,
    };
    let mut acc = vec![init; n_out];
    match kind {
        ReduceKind::LogSumExp => {
            let mut mx = vec![f64::NEG_INFINITY; n_out];
            for_each_reduced(shape, mask, |i, o| {
                let v = x[i].to_f64();
                if v > mx[o] || v.is_nan() {
                    mx[o] = v;
                }
            });
            for_each_reduced(shape, mask, |i, o| {
                let m = mx[o];
                if m.is_finite() {
                    acc[o] += (x[i].to_f64() - m).exp();
                }
            });
            for (a, m) in acc.iter_mut().zip(&mx) {
                *a = if m.is_finite() { m + a.ln() } else { *m };
            }
        }
        _ => match trailing_block(shape, mask) {
            // The reduced axes are the last ones (a global average over H and W, a mean
            // over the hidden size): each output reduces one contiguous run, without the
            // odometer's per-element bookkeeping (sums: see `sum_run` for the order).
            Some(inner) if inner > 0 && x.len() == inner * n_out => {
                for (a, run) in acc.iter_mut().zip(x.chunks_exact(inner)) {
                    *a = match kind {
                        ReduceKind::L1 => sum_run(run, f64::abs),
                        ReduceKind::L2 | ReduceKind::SumSquare => sum_run(run, |v| v * v),
                        ReduceKind::Sum | ReduceKind::Mean | ReduceKind::LogSum => {
                            sum_run(run, |v| v)
                        }
                        _ => run.iter().fold(*a, |a, v| step(kind, a, v.to_f64())),
                    };
                }
                finish(kind, &mut acc, count);
            }
            _ if leading_block(mask) && !acc.is_empty() && x.len().is_multiple_of(acc.len()) => {
                // The reduced axes are the first ones (a sum over the batch or the
                // sequence): whole rows are added into the outputs, in the odometer's order.
                for row in x.chunks_exact(acc.len()) {
                    for (a, v) in acc.iter_mut().zip(row) {
                        *a = step(kind, *a, v.to_f64());
                    }
                }
                finish(kind, &mut acc, count);
            }
            _ => {
                for_each_reduced(shape, mask, |i, o| {
                    acc[o] = step(kind, acc[o], x[i].to_f64())
                });
                finish(kind, &mut acc, count);
            }
        },
    }
    acc.into_iter().map(T::from_f64).collect()
}

/// One element `v` into the accumulator `a` (Max and Min keep the first NaN; LogSum and
/// Mean add, their `finish` comes after).
#[inline]
fn step(kind: ReduceKind, a: f64, v: f64) -> f64 {
    match kind {
        ReduceKind::Max if v > a || v.is_nan() => v,
        ReduceKind::Min if v < a || v.is_nan() => v,
        ReduceKind::Max | ReduceKind::Min => a,
        ReduceKind::Prod => a * v,
        ReduceKind::L1 => a + v.abs(),
        ReduceKind::L2 | ReduceKind::SumSquare => a + v * v,
        _ => a + v,
    }
}

/// The mean's division, L2's square root, LogSum's logarithm, on the accumulated values.
fn finish(kind: ReduceKind, acc: &mut [f64], count: usize) {
    for a in acc.iter_mut() {
        match kind {
            ReduceKind::Mean => *a /= count as f64,
            ReduceKind::L2 => *a = a.sqrt(),
            ReduceKind::LogSum => *a = a.ln(),
            _ => {}
        }
    }
}

/// If the reduced axes are exactly the trailing ones (at least one), the number of
/// elements each output reduces; else `None`.
fn trailing_block(shape: &[usize], mask: &[bool]) -> Option<usize> {
    let first = mask.iter().position(|&m| m)?;
    mask[first..]
        .iter()
        .all(|&m| m)
        .then(|| shape[first..].iter().product())
}

/// Whether the reduced axes are exactly the leading ones (at least one, not all).
fn leading_block(mask: &[bool]) -> bool {
    let kept = mask.iter().position(|&m| !m);
    kept.is_some_and(|k| k > 0 && mask[k..].iter().all(|&m| !m))
}

/// `sum(f(v))` over a contiguous run in f64. Narrower elements (f32, f16, bf16) are
/// summed with four partial sums in flight (the odometer's single chain waits on each
/// addition; the f64 sums differ from its order only far below their precision); f64
/// elements keep the odometer's single chain, so their results (overflow to infinity
/// included) are the same bits.
fn sum_run<T: Num>(run: &[T], f: impl Fn(f64) -> f64) -> f64 {
    if std::mem::size_of::<T>() >= std::mem::size_of::<f64>() {
        return run.iter().fold(0.0, |t, v| t + f(v.to_f64()));
    }
    let mut s = [0f64; 4];
    let mut it = run.chunks_exact(4);
    for c in &mut it {
        for (sk, v) in s.iter_mut().zip(c) {
            *sk += f(v.to_f64());
        }
    }
    let mut t = (s[0] + s[1]) + (s[2] + s[3]);
    for v in it.remainder() {
        t += f(v.to_f64());
    }
    t
}

fn reduce_int<T: IntElem>(
    kind: ReduceKind,
    x: &[T],
    shape: &[usize],
    mask: &[bool],
    n_out: usize,
) -> Vec<T> {
    let count: usize = shape
        .iter()
        .zip(mask)
        .filter(|(_, &m)| m)
        .map(|(d, _)| *d)
        .product();
    match kind {
        ReduceKind::Max | ReduceKind::Min => {
            let max = kind == ReduceKind::Max;
            let mut acc = vec![if max { T::LOWEST } else { T::HIGHEST }; n_out];
            for_each_reduced(shape, mask, |i, o| {
                let v = x[i];
                if (max && v > acc[o]) || (!max && v < acc[o]) {
                    acc[o] = v;
                }
            });
            acc
        }
        ReduceKind::LogSumExp | ReduceKind::LogSum | ReduceKind::L2 => {
            // Through f64, truncated back to the integer type.
            let mut acc = vec![0f64; n_out];
            for_each_reduced(shape, mask, |i, o| {
                let v = x[i].to_i128() as f64;
                acc[o] += match kind {
                    ReduceKind::LogSumExp => v.exp(),
                    ReduceKind::L2 => v * v,
                    _ => v,
                };
            });
            acc.into_iter()
                .map(|a| {
                    let r = if kind == ReduceKind::L2 {
                        a.sqrt()
                    } else {
                        a.ln()
                    };
                    T::from_f64(r)
                })
                .collect()
        }
        _ => {
            let init: i128 = if kind == ReduceKind::Prod { 1 } else { 0 };
            let mut acc = vec![init; n_out];
            for_each_reduced(shape, mask, |i, o| {
                let v = x[i].to_i128();
                let a = &mut acc[o];
                *a = match kind {
                    ReduceKind::Prod => T::wrap_i128(a.wrapping_mul(v)).to_i128(),
                    ReduceKind::L1 => a.wrapping_add(v.abs()),
                    ReduceKind::SumSquare => a.wrapping_add(v.wrapping_mul(v)),
                    _ => a.wrapping_add(v),
                };
            });
            acc.into_iter()
                .map(|a| {
                    if kind == ReduceKind::Mean {
                        if count == 0 {
                            T::default()
                        } else {
                            T::wrap_i128(a / count as i128)
                        }
                    } else {
                        T::wrap_i128(a)
                    }
                })
                .collect()
        }
    }
}

fn reduce_tensor(
    kind: ReduceKind,
    x: &Tensor,
    mask: &[bool],
    keepdims: bool,
) -> Result<Tensor, OpError> {
    use millrace_core::TensorData as TD;
    let op = kind.op_name();
    let shape = x.shape();
    let out_shape = reduced_shape(shape, mask, keepdims, 1usize);
    let n_out: usize = out_shape.iter().product();
    macro_rules! fl {
        ($v:expr) => {
            output(op, out_shape, reduce_float(kind, $v, shape, mask, n_out))?
        };
    }
    macro_rules! int {
        ($v:expr) => {
            output(op, out_shape, reduce_int(kind, $v, shape, mask, n_out))?
        };
    }
    Ok(match x.data() {
        TD::F32(v) => fl!(v),
        TD::F64(v) => fl!(v),
        TD::F16(v) => fl!(v),
        TD::BF16(v) => fl!(v),
        TD::I8(v) => int!(v),
        TD::I16(v) => int!(v),
        TD::I32(v) => int!(v),
        TD::I64(v) => int!(v),
        TD::U8(v) => int!(v),
        TD::U16(v) => int!(v),
        TD::U32(v) => int!(v),
        TD::U64(v) => int!(v),
        TD::Bool(v) if matches!(kind, ReduceKind::Max | ReduceKind::Min) => {
            // ReduceMax/ReduceMin-20 on bool: any / all.
            let max = kind == ReduceKind::Max;
            let mut acc = vec![!max; n_out];
            for_each_reduced(shape, mask, |i, o| {
                if max {
                    acc[o] |= v[i];
                } else {
                    acc[o] &= v[i];
                }
            });
            output(op, out_shape, acc)?
        }
        other => return Err(OpError::unsupported(op, format!("dtype {}", other.dtype()))),
    })
}

impl Op for Reduce {
    fn name(&self) -> &'static str {
        self.kind.op_name()
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let axes: Option<Vec<i64>> = if self.axes_from_input {
            match ctx.opt_input(1) {
                None => None,
                Some(_) => match ctx.constant(1) {
                    Some(t) => Some(ints_of(self.name(), t)?).filter(|a| !a.is_empty()),
                    None => {
                        return Ok(vec![ValueType {
                            dtype: x.dtype,
                            shape: None,
                        }])
                    }
                },
            }
        } else {
            self.axes.clone().filter(|a| !a.is_empty())
        };
        let Some(shape) = &x.shape else {
            if axes.is_none() && self.noop_with_empty_axes {
                return Ok(vec![x.clone()]);
            }
            return Ok(vec![ValueType {
                dtype: x.dtype,
                shape: None,
            }]);
        };
        match plan(
            self.name(),
            axes.as_deref(),
            self.noop_with_empty_axes,
            shape.len(),
        )? {
            Plan::Identity => Ok(vec![x.clone()]),
            Plan::Reduce(mask) => Ok(vec![ValueType {
                dtype: x.dtype,
                shape: Some(reduced_shape(shape, &mask, self.keepdims, Dim::Known(1))),
            }]),
        }
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let mut c = Cost::elementwise(inputs, outputs, 0);
        let n = inputs.first().and_then(|t| t.numel()).unwrap_or(0) as u64;
        c.flops = n * self.kind.flops_per_elem();
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let axes = self.raw_axes_eval(inputs)?;
        match plan(
            self.name(),
            axes.as_deref(),
            self.noop_with_empty_axes,
            x.rank(),
        )? {
            Plan::Identity => Ok(vec![x.clone()]),
            Plan::Reduce(mask) => Ok(vec![reduce_tensor(self.kind, x, &mask, self.keepdims)?]),
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("keepdims={}", self.keepdims as i64);
        if let Some(a) = &self.axes {
            s.push_str(&format!(" axes={a:?}"));
        }
        if self.noop_with_empty_axes {
            s.push_str(" noop_with_empty_axes=1");
        }
        s
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Test helpers shared by the reduce op files.
#[cfg(test)]
pub mod testing {
    use super::*;
    use millrace_ir::Attr;

    pub fn build(kind: ReduceKind, opset: i64, attrs: Vec<(&str, Attr)>) -> Reduce {
        let a = Attributes::new(
            kind.op_name(),
            attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        );
        Reduce::parse(kind, &a, opset).unwrap()
    }

    pub fn run(op: &Reduce, x: &Tensor, axes: Option<&Tensor>) -> Result<Tensor, OpError> {
        let items = [Some(x), axes];
        let mut out = op.eval(&Inputs::new(op.name(), &items))?;
        Ok(out.remove(0))
    }

    pub fn shape_of(op: &Reduce, x: ValueType, axes: Option<&Tensor>) -> ValueType {
        let types = [
            Some(x),
            axes.map(|t| ValueType::concrete(t.dtype(), t.shape())),
        ];
        let consts = [None, axes];
        op.infer(&InferCtx::new(op.name(), &types, &consts))
            .unwrap()
            .remove(0)
    }

    pub fn dims_of(v: &[usize]) -> Vec<Dim> {
        crate::util::dims(v)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use millrace_core::DType;
    use millrace_ir::Attr;

    /// The trailing-axes path (a contiguous run per output) against the odometer on the
    /// same data: every float kind, reductions over the last 1, 2 and 3 axes, NaN and
    /// ragged run lengths (not a multiple of the four partial sums).
    #[test]
    fn trailing_runs_match_the_odometer() {
        fn close(got: &[f32], want: &[f32], what: &str) {
            assert_eq!(got.len(), want.len(), "{what}");
            for (o, (g, w)) in got.iter().zip(want).enumerate() {
                assert!(
                    g == w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                    "{what}: output {o}: {g} vs {w}"
                );
            }
        }
        let shape = [2usize, 3, 5, 7];
        let n: usize = shape.iter().product();
        let mut x: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.25)
            .collect();
        x[40] = f32::NAN;
        let kinds = [
            ReduceKind::Sum,
            ReduceKind::Mean,
            ReduceKind::Max,
            ReduceKind::Min,
            ReduceKind::Prod,
            ReduceKind::L1,
            ReduceKind::L2,
            ReduceKind::LogSum,
            ReduceKind::SumSquare,
        ];
        for first in 1..4 {
            let mask: Vec<bool> = (0..4).map(|a| a >= first).collect();
            let n_out: usize = shape[..first].iter().product();
            assert_eq!(trailing_block(&shape, &mask), Some(n / n_out));
            for kind in kinds {
                let got = reduce_float(kind, &x, &shape, &mask, n_out);
                // The odometer alone: the same reduction with a leading axis of 1 marked
                // reduced, which is not a trailing block.
                let mut shape1 = vec![1usize];
                shape1.extend_from_slice(&shape);
                let mut mask1 = vec![true];
                mask1.extend_from_slice(&mask);
                assert_eq!(trailing_block(&shape1, &mask1), None);
                let want = reduce_float(kind, &x, &shape1, &mask1, n_out);
                close(&got, &want, &format!("{kind:?} over axes {first}.."));
            }
        }
        // Leading axes (rows added into the outputs), against the odometer likewise.
        for kept in 1..4 {
            let mask: Vec<bool> = (0..4).map(|a| a < kept).collect();
            assert!(leading_block(&mask));
            let n_out: usize = shape[kept..].iter().product();
            for kind in kinds {
                let got = reduce_float(kind, &x, &shape, &mask, n_out);
                // The odometer: a trailing kept axis of 1 breaks the leading block.
                let mut shape1 = shape.to_vec();
                shape1.extend([1, 1]);
                let mut mask1 = mask.clone();
                mask1.extend([false, true]);
                assert!(!leading_block(&mask1));
                let want = reduce_float(kind, &x, &shape1, &mask1, n_out);
                close(&got, &want, &format!("{kind:?} over axes ..{kept}"));
            }
        }
        // f64 keeps the odometer's single chain: 1e308 + 1e308 overflows to inf and stays
        // there (pairwise partial sums would give inf - inf = NaN).
        let big = [1e308f64, 1e308, -1e308, -1e308];
        let got = reduce_float(ReduceKind::Sum, &big, &[1, 4], &[false, true], 1);
        assert_eq!(got, vec![f64::INFINITY]);
        assert!(!leading_block(&[false, true, true, true]));
        assert!(!leading_block(&[true; 4]));
        assert_eq!(trailing_block(&shape, &[false, true, false, true]), None);
        assert_eq!(trailing_block(&shape, &[false; 4]), None);
    }

    #[test]
    fn odometer_maps_to_output() {
        let mut got = vec![];
        for_each_reduced(&[2, 3], &[false, true], |i, o| got.push((i, o)));
        assert_eq!(got, vec![(0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1)]);
        got.clear();
        for_each_reduced(&[2, 3], &[true, false], |i, o| got.push((i, o)));
        assert_eq!(got, vec![(0, 0), (1, 1), (2, 2), (3, 0), (4, 1), (5, 2)]);
    }

    #[test]
    fn symbolic_dims_pass_through() {
        let op = build(ReduceKind::Mean, 13, vec![("axes", Attr::Ints(vec![-1]))]);
        let x = ValueType::new(
            DType::F32,
            vec![Dim::Sym("batch".into()), Dim::Known(4), Dim::Known(768)],
        );
        let y = shape_of(&op, x, None);
        assert_eq!(
            y.shape.unwrap(),
            vec![Dim::Sym("batch".into()), Dim::Known(4), Dim::Known(1)]
        );
    }

    #[test]
    fn non_constant_axes_give_dtype_only() {
        let op = build(ReduceKind::Mean, 18, vec![]);
        let types = [
            Some(ValueType::concrete(DType::F32, &[2, 3])),
            Some(ValueType::concrete(DType::I64, &[1])),
        ];
        let consts = [None, None];
        let y = op
            .infer(&InferCtx::new("ReduceMean", &types, &consts))
            .unwrap();
        assert_eq!(y[0], ValueType::of_dtype(DType::F32));
    }

    #[test]
    fn long_f32_sum_is_accurate() {
        let n = 768 * 64;
        let x = Tensor::from_vec(vec![n], vec![0.1f32; n]).unwrap();
        let op = build(ReduceKind::Sum, 11, vec![("keepdims", Attr::Int(0))]);
        let y = run(&op, &x, None).unwrap();
        let want = (0.1f32 as f64 * n as f64) as f32;
        assert_eq!(y.as_slice::<f32>().unwrap(), &[want]);
    }
}

/// Splits a shape around `axis` into (outer, len, inner) element counts.
pub fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape.iter().take(axis).product();
    let len = shape.get(axis).copied().unwrap_or(1);
    let inner = shape.iter().skip(axis + 1).product();
    (outer, len, inner)
}

/// Total order for sorting numeric values: NaN compares above everything (and equal to NaN).
pub fn total_cmp<T: PartialOrd>(a: &T, b: &T) -> std::cmp::Ordering {
    match a.partial_cmp(b) {
        Some(o) => o,
        None => {
            let an = a.partial_cmp(a).is_none();
            let bn = b.partial_cmp(b).is_none();
            an.cmp(&bn)
        }
    }
}

/// ArgMax / ArgMin shared op: index of the extreme value along `axis`.
#[derive(Clone, Debug, PartialEq)]
pub struct ArgReduce {
    pub max: bool,
    pub axis: i64,
    pub keepdims: bool,
    pub select_last_index: bool,
}

impl ArgReduce {
    pub fn parse(max: bool, attrs: &Attributes) -> Result<ArgReduce, OpError> {
        Ok(ArgReduce {
            max,
            axis: attrs.int_or("axis", 0)?,
            keepdims: attrs.int_or("keepdims", 1)? != 0,
            select_last_index: attrs.int_or("select_last_index", 0)? != 0,
        })
    }

    fn arg<T: PartialOrd + Copy>(&self, x: &[T], shape: &[usize], axis: usize) -> Vec<i64> {
        let (outer, len, inner) = split_at_axis(shape, axis);
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let base = o * len * inner + i;
                let mut best = 0usize;
                let mut bv = x[base];
                for j in 1..len {
                    let v = x[base + j * inner];
                    let better = if self.max {
                        v > bv || (self.select_last_index && v == bv)
                    } else {
                        v < bv || (self.select_last_index && v == bv)
                    };
                    if better {
                        best = j;
                        bv = v;
                    }
                }
                out.push(best as i64);
            }
        }
        out
    }
}

impl Op for ArgReduce {
    fn name(&self) -> &'static str {
        if self.max {
            "ArgMax"
        } else {
            "ArgMin"
        }
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let shape = match &x.shape {
            Some(s) => {
                let ax = crate::util::normalize_axis(self.name(), self.axis, s.len())?;
                let mut mask = vec![false; s.len()];
                if let Some(m) = mask.get_mut(ax) {
                    *m = true;
                }
                Some(reduced_shape(s, &mask, self.keepdims, Dim::Known(1)))
            }
            None => None,
        };
        Ok(vec![ValueType {
            dtype: Some(millrace_core::DType::I64),
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let mut c = Cost::elementwise(inputs, outputs, 0);
        c.flops = inputs.first().and_then(|t| t.numel()).unwrap_or(0) as u64;
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let name = self.name();
        if x.rank() == 0 {
            return Err(OpError::invalid(name, "input must have rank >= 1"));
        }
        let axis = crate::util::normalize_axis(name, self.axis, x.rank())?;
        let shape = x.shape();
        let mut mask = vec![false; shape.len()];
        mask[axis] = true;
        let out_shape = reduced_shape(shape, &mask, self.keepdims, 1usize);
        let n_out: usize = out_shape.iter().product();
        if shape[axis] == 0 && n_out > 0 {
            return Err(OpError::invalid(
                name,
                format!("cannot take {name} over the empty axis {axis}"),
            ));
        }
        let idx = if n_out == 0 {
            vec![]
        } else {
            crate::dispatch_num!(name, x, |v: T| self.arg::<T>(v, shape, axis))
        };
        Ok(vec![output(name, out_shape, idx)?])
    }

    fn describe(&self) -> String {
        format!(
            "axis={} keepdims={}{}",
            self.axis,
            self.keepdims as i64,
            if self.select_last_index {
                " select_last_index=1"
            } else {
                ""
            }
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
