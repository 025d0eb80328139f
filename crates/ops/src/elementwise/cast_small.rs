//! Cast to and from the narrow dtypes (float8, float4, E8M0, 4-bit and 2-bit integers),
//! following ONNX's reference implementation (`onnx/reference/ops/op_cast.py`, which uses
//! ml_dtypes and `onnx.numpy_helper.saturate_cast` / `to_float8e8m0`):
//!
//! * to float8 and float4: the value is first rounded to f32 (as the reference does for
//!   doubles), then rounded to nearest even; float8 saturates per the `saturate` attribute,
//!   float4 always saturates;
//! * to float8 E8M0: `round_mode` and `saturate` as `to_float8e8m0`; inputs where the spec's
//!   table and the reference disagree (infinities when saturating, zero without saturation,
//!   f32 subnormals) are refused;
//! * to 4-bit and 2-bit integers: floats truncate toward zero through a 32-bit integer (NaN
//!   and values outside i32 give 0), integers keep their low bits;
//! * from the narrow types: their exact value, then the ordinary casts; float sources going
//!   to integers are refused when infinite or outside the i32 range (where the reference's
//!   result depends on the platform). Strings are refused both ways.
use super::{convert, CastOpts};
use millrace_core::{
    DType, Elem, Tensor, TensorData, F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F8E8M0, I2,
    I4, U2, U4,
};
use millrace_ir::OpError;

/// Source values, exactly.
enum Vals {
    Float(Vec<f64>),
    Int(Vec<i128>),
}

fn source(op: &str, x: &Tensor) -> Result<Vals, OpError> {
    fn f<T: Copy>(v: &[T], g: impl Fn(T) -> f64) -> Vals {
        Vals::Float(v.iter().map(|&x| g(x)).collect())
    }
    fn i<T: Copy>(v: &[T], g: impl Fn(T) -> i128) -> Vals {
        Vals::Int(v.iter().map(|&x| g(x)).collect())
    }
    Ok(match x.data() {
        TensorData::F32(v) => f(v, f64::from),
        TensorData::F64(v) => f(v, |x| x),
        TensorData::F16(v) => f(v, f64::from),
        TensorData::BF16(v) => f(v, f64::from),
        TensorData::F8E4M3FN(v) => f(v, F8E4M3FN::to_f64),
        TensorData::F8E4M3FNUZ(v) => f(v, F8E4M3FNUZ::to_f64),
        TensorData::F8E5M2(v) => f(v, F8E5M2::to_f64),
        TensorData::F8E5M2FNUZ(v) => f(v, F8E5M2FNUZ::to_f64),
        TensorData::F8E8M0(v) => f(v, F8E8M0::to_f64),
        TensorData::F4E2M1(v) => f(v, F4E2M1::to_f64),
        TensorData::I8(v) => i(v, i128::from),
        TensorData::I16(v) => i(v, i128::from),
        TensorData::I32(v) => i(v, i128::from),
        TensorData::I64(v) => i(v, i128::from),
        TensorData::U8(v) => i(v, i128::from),
        TensorData::U16(v) => i(v, i128::from),
        TensorData::U32(v) => i(v, i128::from),
        TensorData::U64(v) => i(v, i128::from),
        TensorData::Bool(v) => i(v, i128::from),
        TensorData::U4(v) => i(v, |x| x.to_i64() as i128),
        TensorData::I4(v) => i(v, |x| x.to_i64() as i128),
        TensorData::U2(v) => i(v, |x| x.to_i64() as i128),
        TensorData::I2(v) => i(v, |x| x.to_i64() as i128),
        TensorData::String(_) => {
            return Err(OpError::unsupported(
                op,
                format!("cast from string to {}", x.dtype()),
            ))
        }
    })
}

impl Vals {
    /// The values rounded to f32, as the reference does before narrowing to a float type.
    fn f32s(&self) -> Vec<f32> {
        match self {
            Vals::Float(v) => v.iter().map(|&x| x as f32).collect(),
            Vals::Int(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
}

fn to_e8m0(op: &str, vals: &Vals, opts: CastOpts) -> Result<TensorData, OpError> {
    let mut out = Vec::new();
    for x in vals.f32s() {
        let subnormal = x != 0.0 && !x.is_nan() && x.abs() < f32::MIN_POSITIVE;
        if subnormal || (x.is_infinite() && opts.saturate) || (x == 0.0 && !opts.saturate) {
            return Err(OpError::unsupported(
                op,
                format!(
                    "casting {x:e} to float8e8m0 with saturate={}",
                    opts.saturate as u8
                ),
            ));
        }
        out.push(F8E8M0::from_f32(x, opts.saturate, opts.round));
    }
    Ok(TensorData::F8E8M0(out))
}

fn narrow_ints<T: Elem>(vals: &Vals, wrap: fn(i64) -> T, trunc: fn(f64) -> T) -> TensorData {
    T::wrap(match vals {
        Vals::Float(v) => v.iter().map(|&x| trunc(x)).collect(),
        Vals::Int(v) => v.iter().map(|&x| wrap(x as i64)).collect(),
    })
}

/// Casts to a narrow dtype.
fn to_narrow(op: &str, vals: &Vals, to: DType, opts: CastOpts) -> Result<TensorData, OpError> {
    let s = opts.saturate;
    Ok(match to {
        DType::F8E4M3FN => TensorData::F8E4M3FN(
            vals.f32s()
                .into_iter()
                .map(|x| F8E4M3FN::from_f32(x, s))
                .collect(),
        ),
        DType::F8E4M3FNUZ => TensorData::F8E4M3FNUZ(
            vals.f32s()
                .into_iter()
                .map(|x| F8E4M3FNUZ::from_f32(x, s))
                .collect(),
        ),
        DType::F8E5M2 => TensorData::F8E5M2(
            vals.f32s()
                .into_iter()
                .map(|x| F8E5M2::from_f32(x, s))
                .collect(),
        ),
        DType::F8E5M2FNUZ => TensorData::F8E5M2FNUZ(
            vals.f32s()
                .into_iter()
                .map(|x| F8E5M2FNUZ::from_f32(x, s))
                .collect(),
        ),
        DType::F4E2M1 => TensorData::F4E2M1(
            vals.f32s()
                .into_iter()
                .map(|x| F4E2M1::from_f32(x, true))
                .collect(),
        ),
        DType::F8E8M0 => to_e8m0(op, vals, opts)?,
        DType::U4 => narrow_ints(vals, U4::wrapping, U4::wrapping_from_f64),
        DType::I4 => narrow_ints(vals, I4::wrapping, I4::wrapping_from_f64),
        DType::U2 => narrow_ints(vals, U2::wrapping, U2::wrapping_from_f64),
        DType::I2 => narrow_ints(vals, I2::wrapping, I2::wrapping_from_f64),
        other => {
            return Err(OpError::invalid(
                op,
                format!("{other} is not a narrow dtype"),
            ))
        }
    })
}

/// Casts `x` to `to` where either is a narrow dtype.
pub(super) fn cast_narrow(
    op: &str,
    x: &Tensor,
    to: DType,
    opts: CastOpts,
) -> Result<TensorData, OpError> {
    if to == DType::String {
        return Err(OpError::unsupported(
            op,
            format!("cast from {} to string", x.dtype()),
        ));
    }
    let vals = source(op, x)?;
    if to.is_narrow() {
        return to_narrow(op, &vals, to, opts);
    }
    // From a narrow dtype to an ordinary one: through exact f32 (floats) or i64 values.
    Ok(match vals {
        Vals::Float(v) => {
            if to.is_int() {
                if let Some(bad) = v
                    .iter()
                    .find(|x| x.is_infinite() || x.trunc().abs() >= 2147483648.0)
                {
                    return Err(OpError::unsupported(
                        op,
                        format!("casting {bad} from {} to {to}", x.dtype()),
                    ));
                }
            }
            let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            convert(&v, to)
        }
        Vals::Int(v) => {
            let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
            convert(&v, to)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::{cast_tensor, CastOpts};
    use super::*;
    use millrace_core::E8M0Round;

    fn opts(saturate: bool, round: E8M0Round) -> CastOpts {
        CastOpts { saturate, round }
    }
    const SAT: CastOpts = CastOpts {
        saturate: true,
        round: E8M0Round::Up,
    };

    fn cast(x: &Tensor, to: DType, o: CastOpts) -> Result<Tensor, OpError> {
        cast_tensor("Cast", x, to, o)
    }

    #[test]
    fn float_to_float8() {
        let x = Tensor::from_vec(
            vec![6],
            vec![0.47892547f32, 1e6, -1e6, f32::NAN, f32::INFINITY, -1e-7],
        )
        .unwrap();
        let y = cast(&x, DType::F8E4M3FN, SAT).unwrap();
        let bits: Vec<u8> = y
            .as_slice::<F8E4M3FN>()
            .unwrap()
            .iter()
            .map(|b| b.0)
            .collect();
        assert_eq!(bits, [0x2f, 0x7e, 0xfe, 0x7f, 0x7e, 0x80]);
        let y = cast(&x, DType::F8E5M2, opts(false, E8M0Round::Up)).unwrap();
        let bits: Vec<u8> = y
            .as_slice::<F8E5M2>()
            .unwrap()
            .iter()
            .map(|b| b.0)
            .collect();
        assert_eq!(bits, [0x38, 0x7c, 0xfc, 0x7e, 0x7c, 0x80]);
        let y = cast(&x, DType::F8E4M3FNUZ, opts(false, E8M0Round::Up)).unwrap();
        let bits: Vec<u8> = y
            .as_slice::<F8E4M3FNUZ>()
            .unwrap()
            .iter()
            .map(|b| b.0)
            .collect();
        assert_eq!(bits, [0x37, 0x80, 0x80, 0x80, 0x80, 0x00]);
        // And back.
        let z = cast(&y, DType::F32, SAT).unwrap();
        assert_eq!(z.as_slice::<f32>().unwrap()[0], 0.46875);
        assert!(z.as_slice::<f32>().unwrap()[1].is_nan());
    }

    #[test]
    fn int4_and_int2() {
        let x = Tensor::from_vec(vec![5], vec![-9.0f32, -8.5, 7.9, 15.0, f32::NAN]).unwrap();
        let y = cast(&x, DType::I4, SAT).unwrap();
        assert_eq!(
            y.as_slice::<I4>().unwrap(),
            &[I4(7), I4(-8), I4(7), I4(-1), I4(0)]
        );
        let y = cast(&x, DType::U2, SAT).unwrap();
        assert_eq!(
            y.as_slice::<U2>().unwrap(),
            &[U2(3), U2(0), U2(3), U2(3), U2(0)]
        );
        let i = Tensor::from_vec(vec![3], vec![I4(-8), I4(7), I4(-1)]).unwrap();
        let y = cast(&i, DType::I8, SAT).unwrap();
        assert_eq!(y.as_slice::<i8>().unwrap(), &[-8, 7, -1]);
        let y = cast(&i, DType::U4, SAT).unwrap();
        assert_eq!(y.as_slice::<U4>().unwrap(), &[U4(8), U4(7), U4(15)]);
        let y = cast(&i, DType::F16, SAT).unwrap();
        assert_eq!(y.to_f32_vec().unwrap(), [-8.0, 7.0, -1.0]);
    }

    #[test]
    fn float4_and_e8m0() {
        let x = Tensor::from_vec(vec![4], vec![0.48f32, -8.0, f32::NAN, 1.05]).unwrap();
        let y = cast(&x, DType::F4E2M1, opts(false, E8M0Round::Up)).unwrap();
        let bits: Vec<u8> = y
            .as_slice::<F4E2M1>()
            .unwrap()
            .iter()
            .map(|b| b.0)
            .collect();
        assert_eq!(bits, [0x1, 0xf, 0x8, 0x2]);
        let x = Tensor::from_vec(vec![4], vec![0.0f32, 0.124, 1.1, 8.0]).unwrap();
        let y = cast(&x, DType::F8E8M0, SAT).unwrap();
        let bits: Vec<u8> = y
            .as_slice::<F8E8M0>()
            .unwrap()
            .iter()
            .map(|b| b.0)
            .collect();
        assert_eq!(bits, [0, 124, 128, 130]);
        let z = cast(&y, DType::F32, SAT).unwrap();
        assert_eq!(z.as_slice::<f32>().unwrap()[1..], [0.125, 2.0, 8.0]);
        // Where the spec and the reference disagree: refused.
        assert!(cast(&x, DType::F8E8M0, opts(false, E8M0Round::Nearest)).is_err());
        let inf = Tensor::from_vec(vec![1], vec![f32::INFINITY]).unwrap();
        assert!(cast(&inf, DType::F8E8M0, SAT).is_err());
    }

    #[test]
    fn refusals() {
        let big = Tensor::from_vec(vec![1], vec![F8E5M2(0x7c)]).unwrap();
        assert!(cast(&big, DType::I32, SAT).unwrap_err().is_unsupported());
        let s = Tensor::from_vec(vec![1], vec!["1".to_string()]).unwrap();
        assert!(cast(&s, DType::F8E4M3FN, SAT).unwrap_err().is_unsupported());
        let f = Tensor::from_vec(vec![1], vec![F8E4M3FN(0x38)]).unwrap();
        assert!(cast(&f, DType::String, SAT).unwrap_err().is_unsupported());
        // Same dtype: unchanged.
        assert_eq!(cast(&f, DType::F8E4M3FN, SAT).unwrap(), f);
        let y = cast(&f, DType::I8, SAT).unwrap();
        assert_eq!(y.as_slice::<i8>().unwrap(), &[1]);
    }
}
