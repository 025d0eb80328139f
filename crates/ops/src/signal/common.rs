//! Helpers shared by the signal family: float inputs as f64, outputs back in any numeric
//! dtype, scalar inputs.
use crate::util::{output, Num};
use millrace_core::{bf16, f16, DType, Tensor, TensorData};
use millrace_ir::OpError;

/// A float tensor's elements widened to f64; any other dtype is unsupported.
pub fn floats_f64(op: &str, t: &Tensor) -> Result<Vec<f64>, OpError> {
    Ok(match t.data() {
        TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::F64(v) => v.clone(),
        TensorData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
        d => {
            return Err(OpError::unsupported(
                op,
                format!("dtype {} (float input expected)", d.dtype()),
            ))
        }
    })
}

/// Any numeric tensor's elements as f64.
pub fn numbers_f64(op: &str, t: &Tensor) -> Result<Vec<f64>, OpError> {
    Ok(crate::dispatch_num!(op, t, |v: T| v
        .iter()
        .map(|&x| <T as Num>::to_f64(x))
        .collect::<Vec<f64>>()))
}

/// Builds a tensor of numeric `dtype` from f64 values (`as` conversion for integers).
pub fn from_f64(op: &str, dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> Result<Tensor, OpError> {
    fn conv<T: Num>(op: &str, shape: Vec<usize>, v: Vec<f64>) -> Result<Tensor, OpError> {
        output(
            op,
            shape,
            v.into_iter().map(T::from_f64).collect::<Vec<T>>(),
        )
    }
    match dtype {
        DType::F32 => conv::<f32>(op, shape, v),
        DType::F64 => output(op, shape, v),
        DType::F16 => conv::<f16>(op, shape, v),
        DType::BF16 => conv::<bf16>(op, shape, v),
        DType::I8 => conv::<i8>(op, shape, v),
        DType::I16 => conv::<i16>(op, shape, v),
        DType::I32 => conv::<i32>(op, shape, v),
        DType::I64 => conv::<i64>(op, shape, v),
        DType::U8 => conv::<u8>(op, shape, v),
        DType::U16 => conv::<u16>(op, shape, v),
        DType::U32 => conv::<u32>(op, shape, v),
        DType::U64 => conv::<u64>(op, shape, v),
        d => Err(OpError::unsupported(op, format!("output dtype {d}"))),
    }
}

/// The single value of a scalar (or one-element) integer input.
pub fn scalar_i64(op: &str, t: &Tensor, what: &str) -> Result<i64, OpError> {
    let v = crate::util::ints_of(op, t)?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(OpError::invalid(
            op,
            format!("{what} must hold one value, got {}", v.len()),
        )),
    }
}

/// The single value of a scalar (or one-element) numeric input, as f64.
pub fn scalar_f64(op: &str, t: &Tensor, what: &str) -> Result<f64, OpError> {
    let v = numbers_f64(op, t)?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(OpError::invalid(
            op,
            format!("{what} must hold one value, got {}", v.len()),
        )),
    }
}

/// Output dtype from an `output_datatype` attribute code.
pub fn dtype_from_code(op: &str, code: i64) -> Result<DType, OpError> {
    let d = i32::try_from(code)
        .ok()
        .and_then(DType::from_onnx_code)
        .ok_or_else(|| OpError::unsupported(op, format!("output_datatype {code}")))?;
    if d == DType::Bool || d == DType::String {
        return Err(OpError::unsupported(op, format!("output_datatype {d}")));
    }
    Ok(d)
}

/// Product of dims, failing on overflow.
pub fn checked_numel(op: &str, shape: &[usize]) -> Result<usize, OpError> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| OpError::invalid(op, format!("shape {shape:?} is too large")))
}

/// Dims from i64 values, rejecting negatives.
pub fn to_dims(op: &str, what: &str, v: &[i64]) -> Result<Vec<usize>, OpError> {
    v.iter()
        .map(|&x| {
            usize::try_from(x)
                .map_err(|_| OpError::invalid(op, format!("{what} has a negative value {x}")))
        })
        .collect()
}
