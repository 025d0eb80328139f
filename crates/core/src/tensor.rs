//! Dense row-major tensors.
use crate::dtype::{DType, Elem};
use crate::shape::numel;
use crate::small_floats::{
    F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F8E8M0, I2, I4, U2, U4,
};
use half::{bf16, f16};

/// The typed buffer behind a [`Tensor`].
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
    String(Vec<String>),
    F8E4M3FN(Vec<F8E4M3FN>),
    F8E4M3FNUZ(Vec<F8E4M3FNUZ>),
    F8E5M2(Vec<F8E5M2>),
    F8E5M2FNUZ(Vec<F8E5M2FNUZ>),
    U4(Vec<U4>),
    I4(Vec<I4>),
    F4E2M1(Vec<F4E2M1>),
    F8E8M0(Vec<F8E8M0>),
    U2(Vec<U2>),
    I2(Vec<I2>),
}

/// Runs `$body` with `$v` bound to the typed `Vec` inside a [`TensorData`], whatever its dtype.
#[macro_export]
macro_rules! with_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::TensorData::F32($v) => $body,
            $crate::TensorData::F64($v) => $body,
            $crate::TensorData::F16($v) => $body,
            $crate::TensorData::BF16($v) => $body,
            $crate::TensorData::I8($v) => $body,
            $crate::TensorData::I16($v) => $body,
            $crate::TensorData::I32($v) => $body,
            $crate::TensorData::I64($v) => $body,
            $crate::TensorData::U8($v) => $body,
            $crate::TensorData::U16($v) => $body,
            $crate::TensorData::U32($v) => $body,
            $crate::TensorData::U64($v) => $body,
            $crate::TensorData::Bool($v) => $body,
            $crate::TensorData::String($v) => $body,
            $crate::TensorData::F8E4M3FN($v) => $body,
            $crate::TensorData::F8E4M3FNUZ($v) => $body,
            $crate::TensorData::F8E5M2($v) => $body,
            $crate::TensorData::F8E5M2FNUZ($v) => $body,
            $crate::TensorData::U4($v) => $body,
            $crate::TensorData::I4($v) => $body,
            $crate::TensorData::F4E2M1($v) => $body,
            $crate::TensorData::F8E8M0($v) => $body,
            $crate::TensorData::U2($v) => $body,
            $crate::TensorData::I2($v) => $body,
        }
    };
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::F16(_) => DType::F16,
            TensorData::BF16(_) => DType::BF16,
            TensorData::I8(_) => DType::I8,
            TensorData::I16(_) => DType::I16,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::U8(_) => DType::U8,
            TensorData::U16(_) => DType::U16,
            TensorData::U32(_) => DType::U32,
            TensorData::U64(_) => DType::U64,
            TensorData::Bool(_) => DType::Bool,
            TensorData::String(_) => DType::String,
            TensorData::F8E4M3FN(_) => DType::F8E4M3FN,
            TensorData::F8E4M3FNUZ(_) => DType::F8E4M3FNUZ,
            TensorData::F8E5M2(_) => DType::F8E5M2,
            TensorData::F8E5M2FNUZ(_) => DType::F8E5M2FNUZ,
            TensorData::U4(_) => DType::U4,
            TensorData::I4(_) => DType::I4,
            TensorData::F4E2M1(_) => DType::F4E2M1,
            TensorData::F8E8M0(_) => DType::F8E8M0,
            TensorData::U2(_) => DType::U2,
            TensorData::I2(_) => DType::I2,
        }
    }

    pub fn len(&self) -> usize {
        with_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A buffer of `n` zeros (false, empty strings) of `dtype`; all-zero bits for the narrow
    /// types (for float8 E8M0, which has no zero, that is its smallest value 2^-127).
    pub fn zeros(dtype: DType, n: usize) -> TensorData {
        match dtype {
            DType::F32 => TensorData::F32(vec![0.0; n]),
            DType::F64 => TensorData::F64(vec![0.0; n]),
            DType::F16 => TensorData::F16(vec![f16::ZERO; n]),
            DType::BF16 => TensorData::BF16(vec![bf16::ZERO; n]),
            DType::I8 => TensorData::I8(vec![0; n]),
            DType::I16 => TensorData::I16(vec![0; n]),
            DType::I32 => TensorData::I32(vec![0; n]),
            DType::I64 => TensorData::I64(vec![0; n]),
            DType::U8 => TensorData::U8(vec![0; n]),
            DType::U16 => TensorData::U16(vec![0; n]),
            DType::U32 => TensorData::U32(vec![0; n]),
            DType::U64 => TensorData::U64(vec![0; n]),
            DType::Bool => TensorData::Bool(vec![false; n]),
            DType::String => TensorData::String(vec![String::new(); n]),
            DType::F8E4M3FN => TensorData::F8E4M3FN(vec![F8E4M3FN::default(); n]),
            DType::F8E4M3FNUZ => TensorData::F8E4M3FNUZ(vec![F8E4M3FNUZ::default(); n]),
            DType::F8E5M2 => TensorData::F8E5M2(vec![F8E5M2::default(); n]),
            DType::F8E5M2FNUZ => TensorData::F8E5M2FNUZ(vec![F8E5M2FNUZ::default(); n]),
            DType::U4 => TensorData::U4(vec![U4::default(); n]),
            DType::I4 => TensorData::I4(vec![I4::default(); n]),
            DType::F4E2M1 => TensorData::F4E2M1(vec![F4E2M1::default(); n]),
            DType::F8E8M0 => TensorData::F8E8M0(vec![F8E8M0::default(); n]),
            DType::U2 => TensorData::U2(vec![U2::default(); n]),
            DType::I2 => TensorData::I2(vec![I2::default(); n]),
        }
    }

    /// Gathers elements by flat index into a new buffer of the same dtype; `None` if an
    /// index is out of range.
    pub fn gather(&self, indices: impl Iterator<Item = usize>) -> Option<TensorData> {
        with_data!(self, v => {
            let out: Option<Vec<_>> = indices.map(|i| v.get(i).cloned()).collect();
            out.map(Elem::wrap)
        })
    }
}

/// What can go wrong building or reading a tensor.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    #[error("shape {shape:?} holds {expected} elements but the data has {got}")]
    ShapeMismatch {
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    #[error("expected a {expected} tensor, got {got}")]
    DTypeMismatch { expected: DType, got: DType },
    #[error("cannot convert {from} to {to}")]
    Conversion { from: DType, to: DType },
}

/// An owned, dense, row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that the data fills the shape exactly.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor, TensorError> {
        let expected = numel(&shape);
        if expected != data.len() {
            return Err(TensorError::ShapeMismatch {
                shape,
                expected,
                got: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// Builds a tensor from a typed vector.
    pub fn from_vec<T: Elem>(shape: Vec<usize>, v: Vec<T>) -> Result<Tensor, TensorError> {
        Tensor::new(shape, T::wrap(v))
    }

    /// A rank-0 tensor.
    pub fn scalar<T: Elem>(v: T) -> Tensor {
        Tensor {
            shape: vec![],
            data: T::wrap(vec![v]),
        }
    }

    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Tensor {
        let n = numel(&shape);
        Tensor {
            shape,
            data: TensorData::zeros(dtype, n),
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut TensorData {
        &mut self.data
    }

    pub fn into_data(self) -> TensorData {
        self.data
    }

    pub fn into_parts(self) -> (Vec<usize>, TensorData) {
        (self.shape, self.data)
    }

    /// Size of the buffer in bytes.
    pub fn size_bytes(&self) -> usize {
        self.len() * self.dtype().size_bytes()
    }

    /// The elements as a typed slice; an error if the dtype differs.
    pub fn as_slice<T: Elem>(&self) -> Result<&[T], TensorError> {
        T::slice(&self.data).ok_or(TensorError::DTypeMismatch {
            expected: T::DTYPE,
            got: self.dtype(),
        })
    }

    pub fn as_slice_mut<T: Elem>(&mut self) -> Result<&mut [T], TensorError> {
        let got = self.dtype();
        T::slice_mut(&mut self.data).ok_or(TensorError::DTypeMismatch {
            expected: T::DTYPE,
            got,
        })
    }

    pub fn into_vec<T: Elem>(self) -> Result<Vec<T>, TensorError> {
        let got = self.dtype();
        T::into_vec(self.data).ok_or(TensorError::DTypeMismatch {
            expected: T::DTYPE,
            got,
        })
    }

    /// Same data, new shape with the same element count.
    pub fn reshape(self, shape: Vec<usize>) -> Result<Tensor, TensorError> {
        Tensor::new(shape, self.data)
    }

    /// Integer elements (any integer or bool dtype) widened to i64: for shapes, axes, indices.
    pub fn to_i64_vec(&self) -> Result<Vec<i64>, TensorError> {
        let conv = |to| TensorError::Conversion {
            from: self.dtype(),
            to,
        };
        Ok(match &self.data {
            TensorData::I64(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I16(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U16(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U64(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as i64).collect(),
            _ => return Err(conv(DType::I64)),
        })
    }

    /// Numeric elements converted to f64 (exact for every dtype but u64/i64 beyond 2^53).
    pub fn to_f64_vec(&self) -> Result<Vec<f64>, TensorError> {
        Ok(match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::String(_) => {
                return Err(TensorError::Conversion {
                    from: DType::String,
                    to: DType::F64,
                })
            }
            _ => self.to_i64_vec()?.into_iter().map(|x| x as f64).collect(),
        })
    }

    /// Numeric elements converted to f32.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>, TensorError> {
        Ok(match &self.data {
            TensorData::F32(v) => v.clone(),
            _ => self.to_f64_vec()?.into_iter().map(|x| x as f32).collect(),
        })
    }

    /// A single element as f64 (for scalar-like inputs such as Clip's min).
    pub fn scalar_f64(&self) -> Result<Option<f64>, TensorError> {
        Ok(self.to_f64_vec()?.first().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_data_that_does_not_fill_the_shape() {
        let err = Tensor::from_vec(vec![2, 3], vec![1.0f32; 5]).unwrap_err();
        assert!(matches!(
            err,
            TensorError::ShapeMismatch {
                expected: 6,
                got: 5,
                ..
            }
        ));
    }

    #[test]
    fn typed_access_checks_dtype() {
        let t = Tensor::from_vec(vec![2], vec![1i64, 2]).unwrap();
        assert_eq!(t.as_slice::<i64>().unwrap(), &[1, 2]);
        assert!(t.as_slice::<f32>().is_err());
        assert_eq!(t.to_f32_vec().unwrap(), vec![1.0, 2.0]);
    }
}
