//! Shared machinery of the binary and variadic elementwise ops: per-dtype arithmetic,
//! legacy (opset < 7) broadcast attributes, dtype dispatch, evaluation and inference.
use super::broadcast::map2;
use crate::planned::{alloc_f32, check_out, f32_io, f32_shape};
use crate::util::{broadcast_all, broadcast_types, output, typed, Num};
use millrace_core::{bf16, f16, DType, Tensor};
use millrace_ir::{Attributes, F32View, InferCtx, Inputs, OpError, ValueType};

/// Per-dtype arithmetic with ONNX Runtime / numpy semantics: integers wrap, integer
/// division truncates toward zero (callers reject zero divisors first), floats follow IEEE.
pub trait Arith: Num {
    const INT: bool;
    fn add(a: Self, b: Self) -> Self;
    fn sub(a: Self, b: Self) -> Self;
    fn mul(a: Self, b: Self) -> Self;
    /// Integer division requires `b != 0`.
    fn div(a: Self, b: Self) -> Self;
    fn is_zero(self) -> bool;
    /// Remainder with the sign of the dividend (C `fmod`, truncated division).
    fn fmod(a: Self, b: Self) -> Self;
    /// Remainder with the sign of the divisor (Python `%`); integers only are reached.
    fn pymod(a: Self, b: Self) -> Self;
    /// Minimum, propagating NaN like numpy.
    fn min(a: Self, b: Self) -> Self;
    /// Maximum, propagating NaN like numpy.
    fn max(a: Self, b: Self) -> Self;
    /// `self ** e` for an integer exponent.
    fn pow_int(self, e: i64) -> Self;
    /// `self ** e` for a float exponent.
    fn pow_float(self, e: f64) -> Self;
}

macro_rules! arith_float {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            const INT: bool = false;
            fn add(a: Self, b: Self) -> Self { a + b }
            fn sub(a: Self, b: Self) -> Self { a - b }
            fn mul(a: Self, b: Self) -> Self { a * b }
            fn div(a: Self, b: Self) -> Self { a / b }
            fn is_zero(self) -> bool { self == 0.0 }
            fn fmod(a: Self, b: Self) -> Self { a % b }
            fn pymod(a: Self, b: Self) -> Self {
                let r = a % b;
                if r != 0.0 && ((r < 0.0) != (b < 0.0)) { r + b } else { r }
            }
            fn min(a: Self, b: Self) -> Self {
                if a.is_nan() || b.is_nan() { <$t>::NAN } else if b < a { b } else { a }
            }
            fn max(a: Self, b: Self) -> Self {
                if a.is_nan() || b.is_nan() { <$t>::NAN } else if b > a { b } else { a }
            }
            fn pow_int(self, e: i64) -> Self { (self as f64).powf(e as f64) as $t }
            fn pow_float(self, e: f64) -> Self { (self as f64).powf(e) as $t }
        }
    )*};
}
arith_float!(f32, f64);

macro_rules! arith_half {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            const INT: bool = false;
            fn add(a: Self, b: Self) -> Self { <$t>::from_f32(a.to_f32() + b.to_f32()) }
            fn sub(a: Self, b: Self) -> Self { <$t>::from_f32(a.to_f32() - b.to_f32()) }
            fn mul(a: Self, b: Self) -> Self { <$t>::from_f32(a.to_f32() * b.to_f32()) }
            fn div(a: Self, b: Self) -> Self { <$t>::from_f32(a.to_f32() / b.to_f32()) }
            fn is_zero(self) -> bool { self.to_f32() == 0.0 }
            fn fmod(a: Self, b: Self) -> Self { <$t>::from_f32(a.to_f32() % b.to_f32()) }
            fn pymod(a: Self, b: Self) -> Self {
                <$t>::from_f32(<f32 as Arith>::pymod(a.to_f32(), b.to_f32()))
            }
            fn min(a: Self, b: Self) -> Self {
                <$t>::from_f32(<f32 as Arith>::min(a.to_f32(), b.to_f32()))
            }
            fn max(a: Self, b: Self) -> Self {
                <$t>::from_f32(<f32 as Arith>::max(a.to_f32(), b.to_f32()))
            }
            fn pow_int(self, e: i64) -> Self { <$t>::from_f64(self.to_f64().powf(e as f64)) }
            fn pow_float(self, e: f64) -> Self { <$t>::from_f64(self.to_f64().powf(e)) }
        }
    )*};
}
arith_half!(f16, bf16);

macro_rules! arith_int {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            const INT: bool = true;
            fn add(a: Self, b: Self) -> Self { a.wrapping_add(b) }
            fn sub(a: Self, b: Self) -> Self { a.wrapping_sub(b) }
            fn mul(a: Self, b: Self) -> Self { a.wrapping_mul(b) }
            fn div(a: Self, b: Self) -> Self { if b == 0 { 0 } else { a.wrapping_div(b) } }
            fn is_zero(self) -> bool { self == 0 }
            fn fmod(a: Self, b: Self) -> Self { if b == 0 { 0 } else { a.wrapping_rem(b) } }
            #[allow(unused_comparisons)]
            fn pymod(a: Self, b: Self) -> Self {
                if b == 0 {
                    return 0;
                }
                let r = a.wrapping_rem(b);
                if r != 0 && ((r < 0) != (b < 0)) { r.wrapping_add(b) } else { r }
            }
            fn min(a: Self, b: Self) -> Self { Ord::min(a, b) }
            fn max(a: Self, b: Self) -> Self { Ord::max(a, b) }
            fn pow_int(self, e: i64) -> Self {
                if e < 0 {
                    // C++ `static_cast<T>(std::pow(x, e))`: 1, +-1 for -1, 0 otherwise.
                    return (self as f64).powf(e as f64) as $t;
                }
                let (mut base, mut e, mut acc) = (self, e as u64, 1 as $t);
                while e > 0 {
                    if e & 1 == 1 {
                        acc = acc.wrapping_mul(base);
                    }
                    base = base.wrapping_mul(base);
                    e >>= 1;
                }
                acc
            }
            fn pow_float(self, e: f64) -> Self { (self as f64).powf(e) as $t }
        }
    )*};
}
arith_int!(i8, i16, i32, i64, u8, u16, u32, u64);

/// The pre-opset-7 `broadcast` / `axis` attributes of the arithmetic and comparison ops.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Legacy {
    /// `Some(flag)` for opset < 7 models, where broadcasting had to be enabled.
    pub broadcast: Option<bool>,
    pub axis: Option<i64>,
}

impl Legacy {
    /// Reads `broadcast`, `axis` (and `consumed_inputs` of opset 1) when present.
    pub fn read(attrs: &Attributes, opset: i64) -> Result<Legacy, OpError> {
        let broadcast = attrs.int("broadcast")?;
        let axis = attrs.int("axis")?;
        let _ = attrs.ints("consumed_inputs")?;
        if opset >= 7 {
            // Not defined any more; tolerated with the same meaning when present.
            return Ok(Legacy {
                broadcast: broadcast.map(|b| b != 0),
                axis,
            });
        }
        Ok(Legacy {
            broadcast: Some(broadcast.unwrap_or(0) != 0),
            axis,
        })
    }

    /// Checks that numpy broadcasting gives the legacy semantics for these shapes.
    pub fn check(&self, op: &str, a: &[usize], b: &[usize]) -> Result<(), OpError> {
        match self.broadcast {
            None => Ok(()),
            Some(false) if a != b => Err(OpError::invalid(
                op,
                format!("shapes {a:?} and {b:?} differ and broadcast=0"),
            )),
            Some(false) => Ok(()),
            Some(true) => {
                let bn: usize = b.iter().product();
                if let Some(axis) = self.axis {
                    let r = a.len() as i64;
                    let ax = if axis < 0 { axis + r } else { axis };
                    if bn != 1 && ax + b.len() as i64 != r {
                        return Err(OpError::unsupported(
                            op,
                            format!("legacy broadcast of {b:?} to {a:?} at axis {axis}"),
                        ));
                    }
                }
                super::broadcast::unidirectional(op, a, b)
            }
        }
    }

    pub fn describe(&self) -> String {
        match (self.broadcast, self.axis) {
            (Some(true), Some(a)) => format!("broadcast=1 axis={a}"),
            (Some(true), None) => "broadcast=1".into(),
            _ => String::new(),
        }
    }
}

/// Calls `$body` with `$v` bound to the typed slice of any dtype (numeric, bool, string);
/// returns an unsupported error from the enclosing function for the narrow dtypes.
macro_rules! dispatch_any {
    ($op:expr, $t:expr, |$v:ident : $T:ident| $body:expr) => {{
        use millrace_core::TensorData as TD;
        match $t.data() {
            TD::F32($v) => {
                type $T = f32;
                $body
            }
            TD::F64($v) => {
                type $T = f64;
                $body
            }
            TD::F16($v) => {
                type $T = millrace_core::f16;
                $body
            }
            TD::BF16($v) => {
                type $T = millrace_core::bf16;
                $body
            }
            TD::I8($v) => {
                type $T = i8;
                $body
            }
            TD::I16($v) => {
                type $T = i16;
                $body
            }
            TD::I32($v) => {
                type $T = i32;
                $body
            }
            TD::I64($v) => {
                type $T = i64;
                $body
            }
            TD::U8($v) => {
                type $T = u8;
                $body
            }
            TD::U16($v) => {
                type $T = u16;
                $body
            }
            TD::U32($v) => {
                type $T = u32;
                $body
            }
            TD::U64($v) => {
                type $T = u64;
                $body
            }
            TD::Bool($v) => {
                type $T = bool;
                $body
            }
            TD::String($v) => {
                type $T = String;
                $body
            }
            other => {
                return Err(millrace_ir::OpError::unsupported(
                    $op,
                    format!("dtype {}", other.dtype()),
                ))
            }
        }
    }};
}
pub(crate) use dispatch_any;

/// Like `dispatch_num!` for the integer dtypes only.
macro_rules! dispatch_int {
    ($op:expr, $t:expr, |$v:ident : $T:ident| $body:expr) => {{
        use millrace_core::TensorData as TD;
        match $t.data() {
            TD::I8($v) => {
                type $T = i8;
                $body
            }
            TD::I16($v) => {
                type $T = i16;
                $body
            }
            TD::I32($v) => {
                type $T = i32;
                $body
            }
            TD::I64($v) => {
                type $T = i64;
                $body
            }
            TD::U8($v) => {
                type $T = u8;
                $body
            }
            TD::U16($v) => {
                type $T = u16;
                $body
            }
            TD::U32($v) => {
                type $T = u32;
                $body
            }
            TD::U64($v) => {
                type $T = u64;
                $body
            }
            other => {
                return Err(millrace_ir::OpError::unsupported(
                    $op,
                    format!("dtype {}", other.dtype()),
                ))
            }
        }
    }};
}
pub(crate) use dispatch_int;

/// A same-dtype binary arithmetic kernel.
pub trait ArithKernel {
    fn apply<T: Arith>(&self, a: T, b: T) -> T;
    /// The vectorized f32 operation, when the kernel has one.
    fn vbin(&self) -> Option<millrace_kernels::vmath::Bin> {
        None
    }
    /// Rejects right-hand operands the kernel cannot take (integer zero divisors).
    fn check<T: Arith>(&self, _op: &str, _b: &[T]) -> Result<(), OpError> {
        Ok(())
    }
}

/// Rejects a zero integer divisor.
pub fn no_int_zero<T: Arith>(op: &str, b: &[T]) -> Result<(), OpError> {
    if T::INT && b.iter().any(|v| v.is_zero()) {
        return Err(OpError::invalid(op, "integer division by zero"));
    }
    Ok(())
}

/// Checks two input dtypes agree.
pub fn same_dtype(op: &str, a: &Tensor, b: &Tensor) -> Result<(), OpError> {
    if a.dtype() != b.dtype() {
        return Err(OpError::invalid(
            op,
            format!("input dtypes differ: {} and {}", a.dtype(), b.dtype()),
        ));
    }
    Ok(())
}

/// Evaluates a two-input arithmetic op over every numeric dtype.
pub fn eval_arith<K: ArithKernel>(
    op: &'static str,
    k: &K,
    legacy: &Legacy,
    inputs: &Inputs<'_>,
) -> Result<Vec<Tensor>, OpError> {
    let a = inputs.req(0)?;
    let b = inputs.req(1)?;
    same_dtype(op, a, b)?;
    legacy.check(op, a.shape(), b.shape())?;
    if let (Some(_), Some(x), Some(y)) = (k.vbin(), F32View::of(a), F32View::of(b)) {
        let shape = broadcast_all(op, &[a.shape(), b.shape()])?;
        if shape.len() <= MAX_RANK {
            let views = [Some(x), Some(y)];
            return Ok(vec![alloc_f32(op, shape.clone(), |out| {
                arith_into(op, k, legacy, &views, out, &shape)
            })?]);
        }
    }
    let y = crate::dispatch_num!(op, a, |x: T| {
        let y = typed::<T>(op, b)?;
        k.check(op, y)?;
        let (shape, v) = map2(op, x, a.shape(), y, b.shape(), |&p, &q| k.apply(p, q))?;
        output(op, shape, v)?
    });
    Ok(vec![y])
}

/// Highest rank the planned-buffer path of the arithmetic ops takes.
pub const MAX_RANK: usize = 8;

/// Whether `out` is the numpy broadcast of `a` and `b`.
fn broadcasts_to(a: &[usize], b: &[usize], out: &[usize]) -> bool {
    if a.len() > out.len() || b.len() > out.len() {
        return false;
    }
    let dim = |s: &[usize], i: usize| {
        let off = out.len() - s.len();
        if i < off {
            1
        } else {
            s[i - off]
        }
    };
    (0..out.len()).all(|i| {
        let (x, y) = (dim(a, i), dim(b, i));
        out[i] == if x == 1 { y } else { x } && (y == 1 || y == x || x == 1)
    })
}

/// Element strides of `s` against `out` (0 on broadcast axes), right-aligned.
fn strides(s: &[usize], out: &[usize]) -> [usize; MAX_RANK] {
    let mut st = [0usize; MAX_RANK];
    let off = out.len() - s.len();
    let mut acc = 1;
    for i in (0..s.len()).rev() {
        if s[i] != 1 {
            st[off + i] = acc;
        }
        acc *= s[i];
    }
    st
}

/// Calls `f(out index, a index, b index)` over every element of `out`, in order (the
/// general broadcast, for layouts the vectorized path does not cover). No allocation.
fn for_each_broadcast(
    ash: &[usize],
    bsh: &[usize],
    out: &[usize],
    mut f: impl FnMut(usize, usize, usize),
) {
    let (sa, sb) = (strides(ash, out), strides(bsh, out));
    let r = out.len();
    let n: usize = out.iter().product();
    let mut ctr = [0usize; MAX_RANK];
    let (mut ia, mut ib) = (0usize, 0usize);
    for i in 0..n {
        f(i, ia, ib);
        for ax in (0..r).rev() {
            ctr[ax] += 1;
            ia += sa[ax];
            ib += sb[ax];
            if ctr[ax] < out[ax] {
                break;
            }
            ia -= sa[ax] * ctr[ax];
            ib -= sb[ax] * ctr[ax];
            ctr[ax] = 0;
        }
    }
}

/// `writes_into` of a two-input arithmetic op: a vectorized f32 kernel, f32 operands,
/// and an output of their broadcast shape, rank at most [`MAX_RANK`].
pub fn arith_writes_into<K: ArithKernel>(
    k: &K,
    legacy: &Legacy,
    inputs: &[ValueType],
    outputs: &[ValueType],
) -> bool {
    if k.vbin().is_none() || !f32_io(inputs, outputs, 2) {
        return false;
    }
    match (
        f32_shape(&inputs[0]),
        f32_shape(&inputs[1]),
        f32_shape(&outputs[0]),
    ) {
        (Some(a), Some(b), Some(y)) => {
            y.len() <= MAX_RANK && broadcasts_to(&a, &b, &y) && legacy.check("", &a, &b).is_ok()
        }
        _ => false,
    }
}

/// `inplace_input` of a two-input arithmetic op: an operand with the output's shape.
pub fn arith_inplace_input<K: ArithKernel>(
    k: &K,
    legacy: &Legacy,
    inputs: &[ValueType],
    outputs: &[ValueType],
) -> Option<usize> {
    if !arith_writes_into(k, legacy, inputs, outputs) {
        return None;
    }
    let y = f32_shape(&outputs[0])?;
    (0..2).find(|&i| f32_shape(&inputs[i]).as_ref() == Some(&y))
}

/// Checks a view holds its shape's element count.
fn sized(op: &str, v: &F32View<'_>) -> Result<(), OpError> {
    if v.data.len() != v.shape.iter().product::<usize>() {
        return Err(OpError::invalid(op, "input data does not match its shape"));
    }
    Ok(())
}

/// `eval_into` of a two-input arithmetic op (and the f32 path of its `eval`).
pub fn arith_into<K: ArithKernel>(
    op: &str,
    k: &K,
    legacy: &Legacy,
    inputs: &[Option<F32View<'_>>],
    out: &mut [f32],
    out_shape: &[usize],
) -> Result<(), OpError> {
    let bin = k
        .vbin()
        .ok_or_else(|| OpError::unsupported(op, "eval_into"))?;
    let a = F32View::req(inputs, op, 0)?;
    let b = F32View::req(inputs, op, 1)?;
    sized(op, &a)?;
    sized(op, &b)?;
    legacy.check(op, a.shape, b.shape)?;
    if out_shape.len() > MAX_RANK || !broadcasts_to(a.shape, b.shape, out_shape) {
        return Err(OpError::invalid(
            op,
            format!(
                "output {out_shape:?} is not the broadcast of {:?} and {:?}",
                a.shape, b.shape
            ),
        ));
    }
    check_out(op, out, out_shape)?;
    if !super::fast::binary_into(bin, a.data, a.shape, b.data, b.shape, out_shape, out) {
        for_each_broadcast(a.shape, b.shape, out_shape, |i, ia, ib| {
            out[i] = bin.scalar(a.data[ia], b.data[ib])
        });
    }
    Ok(())
}

/// `eval_inplace` of a two-input arithmetic op: `io` holds operand `index` on entry.
pub fn arith_inplace<K: ArithKernel>(
    op: &str,
    k: &K,
    legacy: &Legacy,
    index: usize,
    inputs: &[Option<F32View<'_>>],
    io: &mut [f32],
    out_shape: &[usize],
) -> Result<(), OpError> {
    let bin = k
        .vbin()
        .ok_or_else(|| OpError::unsupported(op, "eval_inplace"))?;
    if index > 1 {
        return Err(OpError::invalid(
            op,
            format!("no input {index} to overwrite"),
        ));
    }
    let o = F32View::req(inputs, op, 1 - index)?;
    sized(op, &o)?;
    let (ash, bsh) = if index == 0 {
        (out_shape, o.shape)
    } else {
        (o.shape, out_shape)
    };
    legacy.check(op, ash, bsh)?;
    if out_shape.len() > MAX_RANK || !broadcasts_to(ash, bsh, out_shape) {
        return Err(OpError::invalid(
            op,
            format!("output {out_shape:?} is not the broadcast of {ash:?} and {bsh:?}"),
        ));
    }
    check_out(op, io, out_shape)?;
    if !super::fast::binary_inplace(bin, io, index == 0, o.data, o.shape, out_shape) {
        for_each_broadcast(out_shape, o.shape, out_shape, |i, _, io_| {
            io[i] = if index == 0 {
                bin.scalar(io[i], o.data[io_])
            } else {
                bin.scalar(o.data[io_], io[i])
            }
        });
    }
    Ok(())
}

/// Implements the planned-buffer hooks of a two-input arithmetic op with a `legacy`
/// field, inside its `impl Op`.
#[macro_export]
#[doc(hidden)]
macro_rules! arith_into_hooks {
    () => {
        fn writes_into(
            &self,
            inputs: &[millrace_ir::ValueType],
            outputs: &[millrace_ir::ValueType],
        ) -> bool {
            $crate::elementwise::binary::arith_writes_into(self, &self.legacy, inputs, outputs)
        }

        fn eval_into(
            &self,
            inputs: &[Option<millrace_ir::F32View<'_>>],
            out: &mut [f32],
            out_shape: &[usize],
        ) -> Result<(), millrace_ir::OpError> {
            $crate::elementwise::binary::arith_into(
                self.name(),
                self,
                &self.legacy,
                inputs,
                out,
                out_shape,
            )
        }

        fn inplace_input(
            &self,
            inputs: &[millrace_ir::ValueType],
            outputs: &[millrace_ir::ValueType],
        ) -> Option<usize> {
            $crate::elementwise::binary::arith_inplace_input(self, &self.legacy, inputs, outputs)
        }

        fn eval_inplace(
            &self,
            index: usize,
            inputs: &[Option<millrace_ir::F32View<'_>>],
            io: &mut [f32],
            out_shape: &[usize],
        ) -> Result<(), millrace_ir::OpError> {
            $crate::elementwise::binary::arith_inplace(
                self.name(),
                self,
                &self.legacy,
                index,
                inputs,
                io,
                out_shape,
            )
        }
    };
}

/// Folds a variadic op (Sum, Min, Max) over its present inputs with broadcasting.
pub fn eval_variadic<K: ArithKernel>(
    op: &'static str,
    k: &K,
    inputs: &Inputs<'_>,
    floats_only: bool,
) -> Result<Tensor, OpError> {
    let mut it = inputs.present();
    let first = it.next().ok_or(OpError::MissingInput {
        op: op.to_string(),
        index: 0,
    })?;
    if floats_only && !first.dtype().is_float() {
        return Err(OpError::unsupported(op, format!("dtype {}", first.dtype())));
    }
    let rest: Vec<&Tensor> = it.collect();
    for t in &rest {
        same_dtype(op, first, t)?;
    }
    let y = crate::dispatch_num!(op, first, |x: T| {
        let mut shape = first.shape().to_vec();
        let mut acc: Vec<T> = x.to_vec();
        for t in &rest {
            let y = typed::<T>(op, t)?;
            let (s, v) = map2(op, &acc, &shape, y, t.shape(), |&p, &q| k.apply(p, q))?;
            shape = s;
            acc = v;
        }
        output(op, shape, acc)?
    });
    Ok(y)
}

/// Output type of a broadcasting op: `dtype` (or the inputs' common dtype) and the
/// broadcast shape of all present inputs.
pub fn infer_broadcast(
    op: &str,
    ctx: &InferCtx<'_>,
    dtype: Option<DType>,
) -> Result<ValueType, OpError> {
    let tys: Vec<&ValueType> = (0..ctx.len()).filter_map(|i| ctx.opt_input(i)).collect();
    if tys.is_empty() {
        return Err(OpError::MissingInput {
            op: op.to_string(),
            index: 0,
        });
    }
    let known: Vec<DType> = tys.iter().filter_map(|t| t.dtype).collect();
    if let Some(d) = known.iter().find(|d| **d != known[0]) {
        return Err(OpError::invalid(
            op,
            format!("input dtypes differ: {} and {d}", known[0]),
        ));
    }
    let mut vt = broadcast_types(op, &tys)?;
    vt.dtype = dtype.or_else(|| known.first().copied());
    Ok(vt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_paths_match_eval() {
        use super::super::{add::Add, div::Div, mul::Mul, sub::Sub};
        use crate::into_check::{check, rand, refuses};
        let ops: Vec<Box<dyn millrace_ir::Op>> = vec![
            Box::new(Add::default()),
            Box::new(Sub::default()),
            Box::new(Mul::default()),
            Box::new(Div::default()),
        ];
        let cases: &[(&[usize], &[usize], bool)] = &[
            (&[2, 3, 4, 5], &[2, 3, 4, 5], true),
            (&[2, 3, 4, 5], &[1, 3, 1, 1], true),
            (&[1, 3, 1, 1], &[2, 3, 4, 5], true),
            (&[2, 3, 4, 5], &[5], true),
            (&[2, 3, 4, 5], &[], true),
            (&[], &[2, 3, 4, 5], true),
            (&[2, 3, 4], &[2, 3, 1], true),
            // The general broadcast (no vectorized layout), in place on either side.
            (&[2, 1, 4], &[3, 1], false),
            (&[2, 3, 4], &[2, 1, 4], true),
            (&[2, 1, 4], &[2, 3, 4], true),
            (&[4, 70_000], &[70_000], true),
            (&[4, 1, 30_000], &[1, 3, 1], false),
            (&[0, 3], &[3], true),
        ];
        for op in &ops {
            for &(ash, bsh, inplace) in cases {
                let (a, b) = (rand(ash, 1), rand(bsh, 2));
                assert_eq!(
                    check(op.as_ref(), &[Some(&a), Some(&b)]),
                    inplace,
                    "{} {ash:?} {bsh:?}",
                    op.name()
                );
            }
            let t = |s: &[usize]| ValueType::concrete(DType::F32, s);
            refuses(op.as_ref(), &[t(&[2, 3]), t(&[3])], &[t(&[2, 4])]);
            let i = ValueType::concrete(DType::I64, &[3]);
            refuses(op.as_ref(), &[i.clone(), i.clone()], &[i]);
        }
    }

    #[test]
    fn integer_semantics() {
        assert_eq!(<i32 as Arith>::div(-7, 2), -3);
        assert_eq!(<i32 as Arith>::fmod(-7, 2), -1);
        assert_eq!(<i32 as Arith>::pymod(-7, 2), 1);
        assert_eq!(<i32 as Arith>::pymod(7, -2), -1);
        assert_eq!(<i8 as Arith>::add(127, 1), -128);
        assert_eq!(<i8 as Arith>::div(-128, -1), -128);
        assert_eq!(<i64 as Arith>::pow_int(3, 4), 81);
        assert_eq!(<i64 as Arith>::pow_int(2, -1), 0);
        assert_eq!(<i64 as Arith>::pow_int(-1, -3), -1);
        assert_eq!(<u8 as Arith>::pymod(7, 3), 1);
    }

    #[test]
    fn float_semantics() {
        assert_eq!(<f32 as Arith>::pymod(-7.0, 2.0), 1.0);
        assert_eq!(<f32 as Arith>::fmod(-7.5, 2.0), -1.5);
        assert!(<f32 as Arith>::max(1.0, f32::NAN).is_nan());
        assert!(<f64 as Arith>::min(f64::NAN, 1.0).is_nan());
    }

    #[test]
    fn legacy_axis_checks() {
        let l = Legacy {
            broadcast: Some(true),
            axis: Some(1),
        };
        assert!(l.check("Add", &[2, 3, 4], &[3, 4]).is_ok());
        assert!(l
            .check("Add", &[2, 3, 4, 5], &[3, 4])
            .unwrap_err()
            .is_unsupported());
        let l0 = Legacy {
            broadcast: Some(false),
            axis: None,
        };
        assert!(l0.check("Add", &[2, 3], &[3]).is_err());
    }
}
