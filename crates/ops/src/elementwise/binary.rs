//! Shared machinery of the binary and variadic elementwise ops: per-dtype arithmetic,
//! legacy (opset < 7) broadcast attributes, dtype dispatch, evaluation and inference.
use super::broadcast::map2;
use crate::util::{broadcast_types, output, typed, Num};
use millrace_core::{bf16, f16, DType, Tensor};
use millrace_ir::{Attributes, InferCtx, Inputs, OpError, ValueType};

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
    if let (Some(bin), Ok(x), Ok(y)) = (k.vbin(), a.as_slice::<f32>(), b.as_slice::<f32>()) {
        if let Some((shape, v)) = super::fast::binary(op, bin, x, a.shape(), y, b.shape())? {
            return Ok(vec![output(op, shape, v)?]);
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
