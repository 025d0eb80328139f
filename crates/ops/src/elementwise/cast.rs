//! Cast (ONNX opsets 6, 9, 13, 19, 21, 23, 24, 25): converts a tensor to the dtype code `to`,
//! between every numeric dtype, bool and string, with ONNX Runtime's semantics (float to int
//! truncates toward zero, int to int wraps, x != 0 for bool, `%.8g` for float to string).
//! Casts involving the narrow dtypes (float8, float4, E8M0, int4/uint4, int2/uint2) live in
//! `cast_small.rs` and follow ONNX's reference, with `saturate` (19+) and `round_mode` (24+).
use millrace_core::{bf16, f16, DType, E8M0Round, Tensor, TensorData};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[path = "cast_small.rs"]
mod small;

/// The attributes that shape casts to float8 types.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CastOpts {
    /// Out-of-range values saturate to the largest finite float8 value (opset 19+; default).
    pub saturate: bool,
    /// Rounding toward float8 E8M0 (opset 24+; default `up`).
    pub round: E8M0Round,
}

impl Default for CastOpts {
    fn default() -> Self {
        CastOpts {
            saturate: true,
            round: E8M0Round::Up,
        }
    }
}

/// Reads `saturate` (opset 19+) and `round_mode` (opset 24+), shared with CastLike.
pub fn read_opts(op: &str, attrs: &Attributes) -> Result<CastOpts, OpError> {
    let saturate = attrs.int_or("saturate", 1)? != 0;
    let round = match attrs.string("round_mode")?.as_deref() {
        None | Some("up") => E8M0Round::Up,
        Some("down") => E8M0Round::Down,
        Some("nearest") => E8M0Round::Nearest,
        Some(other) => {
            return Err(OpError::attribute(
                op,
                "round_mode",
                format!("unknown rounding mode {other:?}"),
            ))
        }
    };
    Ok(CastOpts { saturate, round })
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cast {
    pub to: DType,
    pub opts: CastOpts,
}

impl Cast {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let code = attrs.req_int("to")?;
        let to = i32::try_from(code)
            .ok()
            .and_then(DType::from_onnx_code)
            .ok_or_else(|| OpError::unsupported("Cast", format!("target dtype code {code}")))?;
        let opts = read_opts("Cast", attrs)?;
        Ok(Arc::new(Cast { to, opts }))
    }
}

/// A source element type.
pub(super) trait Src: Copy {
    const FLOAT: bool;
    fn f64_(self) -> f64;
    fn f32_(self) -> f32;
    /// Integer value (wrapping for u64); unused for floats.
    fn i64_(self) -> i64;
    fn nz(self) -> bool;
    fn string(self) -> String;
}

macro_rules! src_int {
    ($($t:ty),*) => {$(
        impl Src for $t {
            const FLOAT: bool = false;
            fn f64_(self) -> f64 { self as f64 }
            fn f32_(self) -> f32 { self as f32 }
            fn i64_(self) -> i64 { self as i64 }
            fn nz(self) -> bool { self != 0 }
            fn string(self) -> String { self.to_string() }
        }
    )*};
}
src_int!(i8, i16, i32, i64, u8, u16, u32, u64);

impl Src for bool {
    const FLOAT: bool = false;
    fn f64_(self) -> f64 {
        self as u8 as f64
    }
    fn f32_(self) -> f32 {
        self as u8 as f32
    }
    fn i64_(self) -> i64 {
        self as i64
    }
    fn nz(self) -> bool {
        self
    }
    fn string(self) -> String {
        (self as u8).to_string()
    }
}

macro_rules! src_float {
    ($($t:ty),*) => {$(
        impl Src for $t {
            const FLOAT: bool = true;
            fn f64_(self) -> f64 { f64::from(self) }
            fn f32_(self) -> f32 { f64::from(self) as f32 }
            fn i64_(self) -> i64 { f64::from(self) as i64 }
            fn nz(self) -> bool { f64::from(self) != 0.0 }
            fn string(self) -> String { format_g8(f64::from(self)) }
        }
    )*};
}
src_float!(f32, f64, f16, bf16);

/// A destination element type.
trait Dst: Sized {
    fn from_src<S: Src>(s: S) -> Self;
}

impl Dst for f32 {
    fn from_src<S: Src>(s: S) -> Self {
        s.f32_()
    }
}
impl Dst for f64 {
    fn from_src<S: Src>(s: S) -> Self {
        s.f64_()
    }
}
impl Dst for f16 {
    fn from_src<S: Src>(s: S) -> Self {
        f16::from_f64(s.f64_())
    }
}
impl Dst for bf16 {
    fn from_src<S: Src>(s: S) -> Self {
        bf16::from_f64(s.f64_())
    }
}
impl Dst for bool {
    fn from_src<S: Src>(s: S) -> Self {
        s.nz()
    }
}

macro_rules! dst_int {
    ($($t:ty),*) => {$(
        impl Dst for $t {
            fn from_src<S: Src>(s: S) -> Self {
                if S::FLOAT {
                    // Truncate toward zero, then keep the low bits like C on x86.
                    let v = s.f64_().trunc();
                    if v >= 0.0 { (v as u64) as $t } else { (v as i64) as $t }
                } else {
                    s.i64_() as $t
                }
            }
        }
    )*};
}
dst_int!(i8, i16, i32, i64, u8, u16, u32, u64);

/// C's `%.8g`, with ONNX Runtime's spellings of NaN and infinities.
pub fn format_g8(v: f64) -> String {
    const P: i32 = 8;
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v < 0.0 { "-INF" } else { "INF" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{:.*e}", (P - 1) as usize, v);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let strip = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..P).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{}{:02}", strip(mant), sign, exp.abs())
    } else {
        strip(&format!("{:.*}", (P - 1 - exp) as usize, v))
    }
}

/// The leading integer of a string like C `strtoll`: optional sign, then digits.
fn int_prefix(op: &str, s: &str) -> Result<i128, OpError> {
    let t = s.trim_start();
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits: &str = &rest[..rest.bytes().take_while(|b| b.is_ascii_digit()).count()];
    let v: i128 = digits
        .parse()
        .map_err(|_| OpError::invalid(op, format!("cannot parse {s:?} as an integer")))?;
    Ok(if neg { -v } else { v })
}

fn parse_f64(op: &str, s: &str) -> Result<f64, OpError> {
    s.trim()
        .parse::<f64>()
        .map_err(|_| OpError::invalid(op, format!("cannot parse {s:?} as a number")))
}

fn from_strings(op: &str, v: &[String], to: DType) -> Result<TensorData, OpError> {
    macro_rules! ints {
        ($t:ty) => {
            TensorData::from_ints(v.iter().map(|s| int_prefix(op, s).map(|i| i as $t)))?
        };
    }
    Ok(match to {
        DType::F32 => TensorData::F32(
            v.iter()
                .map(|s| {
                    s.trim()
                        .parse::<f32>()
                        .map_err(|_| OpError::invalid(op, format!("cannot parse {s:?}")))
                })
                .collect::<Result<_, _>>()?,
        ),
        DType::F64 => TensorData::F64(
            v.iter()
                .map(|s| parse_f64(op, s))
                .collect::<Result<_, _>>()?,
        ),
        DType::F16 => TensorData::F16(
            v.iter()
                .map(|s| parse_f64(op, s).map(|x| f16::from_f32(x as f32)))
                .collect::<Result<_, _>>()?,
        ),
        DType::BF16 => TensorData::BF16(
            v.iter()
                .map(|s| parse_f64(op, s).map(|x| bf16::from_f32(x as f32)))
                .collect::<Result<_, _>>()?,
        ),
        DType::I8 => ints!(i8),
        DType::I16 => ints!(i16),
        DType::I32 => ints!(i32),
        DType::I64 => ints!(i64),
        DType::U8 => ints!(u8),
        DType::U16 => ints!(u16),
        DType::U32 => ints!(u32),
        DType::U64 => ints!(u64),
        DType::Bool => TensorData::Bool(
            v.iter()
                .map(|s| int_prefix(op, s).map(|i| i != 0))
                .collect::<Result<_, _>>()?,
        ),
        DType::String => TensorData::String(v.to_vec()),
        narrow => {
            return Err(OpError::unsupported(
                op,
                format!("cast from string to {narrow}"),
            ))
        }
    })
}

trait FromInts<T> {
    fn from_ints(it: impl Iterator<Item = Result<T, OpError>>) -> Result<TensorData, OpError>;
}

impl<T: millrace_core::Elem> FromInts<T> for TensorData {
    fn from_ints(it: impl Iterator<Item = Result<T, OpError>>) -> Result<TensorData, OpError> {
        Ok(T::wrap(it.collect::<Result<Vec<T>, _>>()?))
    }
}

/// Casts between the ordinary dtypes (not strings as source, not the narrow dtypes).
pub(super) fn convert<S: Src>(v: &[S], to: DType) -> TensorData {
    fn go<S: Src, D: Dst + millrace_core::Elem>(v: &[S]) -> TensorData {
        D::wrap(v.iter().map(|&s| D::from_src(s)).collect())
    }
    match to {
        DType::F32 => go::<S, f32>(v),
        DType::F64 => go::<S, f64>(v),
        DType::F16 => go::<S, f16>(v),
        DType::BF16 => go::<S, bf16>(v),
        DType::I8 => go::<S, i8>(v),
        DType::I16 => go::<S, i16>(v),
        DType::I32 => go::<S, i32>(v),
        DType::I64 => go::<S, i64>(v),
        DType::U8 => go::<S, u8>(v),
        DType::U16 => go::<S, u16>(v),
        DType::U32 => go::<S, u32>(v),
        DType::U64 => go::<S, u64>(v),
        DType::Bool => go::<S, bool>(v),
        DType::String => TensorData::String(v.iter().map(|&s| s.string()).collect()),
        // Narrow targets are handled by `small::cast_narrow` before this is reached.
        narrow => TensorData::zeros(narrow, 0),
    }
}

/// Casts a tensor to `to` (shared with CastLike).
pub fn cast_tensor(op: &str, x: &Tensor, to: DType, opts: CastOpts) -> Result<Tensor, OpError> {
    if x.dtype() == to {
        return Ok(x.clone());
    }
    let data = match x.data() {
        _ if x.dtype().is_narrow() || to.is_narrow() => small::cast_narrow(op, x, to, opts)?,
        TensorData::F32(v) => convert(v, to),
        TensorData::F64(v) => convert(v, to),
        TensorData::F16(v) => convert(v, to),
        TensorData::BF16(v) => convert(v, to),
        TensorData::I8(v) => convert(v, to),
        TensorData::I16(v) => convert(v, to),
        TensorData::I32(v) => convert(v, to),
        TensorData::I64(v) => convert(v, to),
        TensorData::U8(v) => convert(v, to),
        TensorData::U16(v) => convert(v, to),
        TensorData::U32(v) => convert(v, to),
        TensorData::U64(v) => convert(v, to),
        TensorData::Bool(v) => convert(v, to),
        TensorData::String(v) => from_strings(op, v, to)?,
        other => {
            return Err(OpError::unsupported(
                op,
                format!("cast from {}", other.dtype()),
            ))
        }
    };
    Tensor::new(x.shape().to_vec(), data).map_err(|e| OpError::tensor(op, e))
}

impl Op for Cast {
    fn name(&self) -> &'static str {
        "Cast"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let mut t = ctx.input(0)?.clone();
        t.dtype = Some(self.to);
        Ok(vec![t])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        Ok(vec![cast_tensor(
            self.name(),
            inputs.req(0)?,
            self.to,
            self.opts,
        )?])
    }

    fn describe(&self) -> String {
        format!("to={}", self.to)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{build, run, t, vals};
    use super::*;
    use millrace_ir::Attr;

    fn cast(to: DType) -> Cast {
        Cast {
            to,
            opts: CastOpts::default(),
        }
    }

    #[test]
    fn numeric_casts() {
        let x = t(&[5], vec![-1.7f32, -0.5, 0.0, 2.9, 300.0]);
        assert_eq!(vals::<i32>(&cast(DType::I32), &[&x]), [-1, 0, 0, 2, 300]);
        assert_eq!(vals::<u8>(&cast(DType::U8), &[&x]), [255, 0, 0, 2, 44]);
        assert_eq!(
            vals::<bool>(&cast(DType::Bool), &[&x]),
            [true, true, false, true, true]
        );
        let i = t(&[3], vec![200i16, -1, 7]);
        assert_eq!(vals::<i8>(&cast(DType::I8), &[&i]), [-56, -1, 7]);
        assert_eq!(vals::<f64>(&cast(DType::F64), &[&i]), [200.0, -1.0, 7.0]);
        let b = t(&[2], vec![true, false]);
        assert_eq!(vals::<f32>(&cast(DType::F32), &[&b]), [1.0, 0.0]);
        let h = vals::<f16>(&cast(DType::F16), &[&t(&[1], vec![0.1f64])]);
        assert_eq!(h, [f16::from_f64(0.1)]);
    }

    #[test]
    fn string_casts() {
        let x = t(
            &[6],
            vec![
                1.5f32,
                1.0 / 3.0,
                1e10,
                -2.5e-7,
                f32::NAN,
                f32::NEG_INFINITY,
            ],
        );
        assert_eq!(
            vals::<String>(&cast(DType::String), &[&x]),
            ["1.5", "0.33333334", "1e+10", "-2.5e-07", "NaN", "-INF"]
        );
        assert_eq!(
            vals::<String>(&cast(DType::String), &[&t(&[2], vec![-3i64, 40])]),
            ["-3", "40"]
        );
        let s = t(&[3], vec![" 1.25".to_string(), "-3".into(), "inf".into()]);
        assert_eq!(
            vals::<f32>(&cast(DType::F32), &[&s]),
            [1.25, -3.0, f32::INFINITY]
        );
        let si = t(&[2], vec!["42".to_string(), "-7".into()]);
        assert_eq!(vals::<i64>(&cast(DType::I64), &[&si]), [42, -7]);
        let bad = t(&[1], vec!["abc".to_string()]);
        assert!(run(&cast(DType::F32), &[&bad]).is_err());
        assert!(run(&cast(DType::I32), &[&bad]).is_err());
    }

    #[test]
    fn attributes() {
        let op = build(
            Cast::from_onnx,
            "Cast",
            vec![("to", Attr::Int(7)), ("saturate", Attr::Int(1))],
            19,
        )
        .unwrap();
        assert_eq!(op.describe(), "to=i64");
        assert!(build(Cast::from_onnx, "Cast", vec![("to", Attr::Int(99))], 19).is_err());
        let op = build(
            Cast::from_onnx,
            "Cast",
            vec![
                ("to", Attr::Int(24)),
                ("saturate", Attr::Int(0)),
                ("round_mode", Attr::String("nearest".into())),
            ],
            25,
        )
        .unwrap();
        let c = op.as_any().downcast_ref::<Cast>().unwrap();
        assert_eq!(c.to, DType::F8E8M0);
        assert_eq!(
            c.opts,
            CastOpts {
                saturate: false,
                round: E8M0Round::Nearest
            }
        );
        assert!(build(
            Cast::from_onnx,
            "Cast",
            vec![
                ("to", Attr::Int(24)),
                ("round_mode", Attr::String("odd".into()))
            ],
            25
        )
        .is_err());
        assert!(build(Cast::from_onnx, "Cast", vec![], 19).is_err());
    }
}
