//! The Open Inference Protocol's data model, independent of the wire (JSON or protobuf).
//!
//! Tensors travel as `millrace::Tensor`; [`decode_raw`] and [`encode_raw`] convert the raw
//! little-endian layout that both Triton's HTTP binary-data extension and gRPC's
//! `raw_input_contents` / `raw_output_contents` use (row-major; `BYTES` elements are each a
//! 4-byte little-endian length followed by the bytes).

use std::time::Duration;

use millrace::{DType, Tensor, TensorData};

use crate::error::ServeError;

/// A tensor element type as the protocol names it (`"FP32"`, `"INT64"`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datatype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    Bf16,
    Bytes,
}

impl Datatype {
    const ALL: [Datatype; 14] = [
        Datatype::Bool,
        Datatype::Uint8,
        Datatype::Uint16,
        Datatype::Uint32,
        Datatype::Uint64,
        Datatype::Int8,
        Datatype::Int16,
        Datatype::Int32,
        Datatype::Int64,
        Datatype::Fp16,
        Datatype::Fp32,
        Datatype::Fp64,
        Datatype::Bf16,
        Datatype::Bytes,
    ];

    /// The protocol's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Datatype::Bool => "BOOL",
            Datatype::Uint8 => "UINT8",
            Datatype::Uint16 => "UINT16",
            Datatype::Uint32 => "UINT32",
            Datatype::Uint64 => "UINT64",
            Datatype::Int8 => "INT8",
            Datatype::Int16 => "INT16",
            Datatype::Int32 => "INT32",
            Datatype::Int64 => "INT64",
            Datatype::Fp16 => "FP16",
            Datatype::Fp32 => "FP32",
            Datatype::Fp64 => "FP64",
            Datatype::Bf16 => "BF16",
            Datatype::Bytes => "BYTES",
        }
    }

    /// Parses a protocol name; the error lists the valid ones.
    pub fn parse(s: &str) -> Result<Datatype, ServeError> {
        Datatype::ALL
            .iter()
            .copied()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Datatype::ALL.iter().map(|d| d.as_str()).collect();
                ServeError::invalid(format!(
                    "unknown datatype `{s}`; expected one of {}",
                    names.join(", ")
                ))
            })
    }

    /// The millrace dtype of this datatype.
    pub fn dtype(self) -> DType {
        match self {
            Datatype::Bool => DType::Bool,
            Datatype::Uint8 => DType::U8,
            Datatype::Uint16 => DType::U16,
            Datatype::Uint32 => DType::U32,
            Datatype::Uint64 => DType::U64,
            Datatype::Int8 => DType::I8,
            Datatype::Int16 => DType::I16,
            Datatype::Int32 => DType::I32,
            Datatype::Int64 => DType::I64,
            Datatype::Fp16 => DType::F16,
            Datatype::Fp32 => DType::F32,
            Datatype::Fp64 => DType::F64,
            Datatype::Bf16 => DType::BF16,
            Datatype::Bytes => DType::String,
        }
    }

    /// The datatype of a millrace dtype, if the protocol has one.
    pub fn from_dtype(d: DType) -> Option<Datatype> {
        Datatype::ALL.iter().copied().find(|x| x.dtype() == d)
    }

    /// Bytes per element in the raw encoding (`None` for `BYTES`, which is variable).
    pub fn element_size(self) -> Option<usize> {
        Some(match self {
            Datatype::Bool | Datatype::Uint8 | Datatype::Int8 => 1,
            Datatype::Uint16 | Datatype::Int16 | Datatype::Fp16 | Datatype::Bf16 => 2,
            Datatype::Uint32 | Datatype::Int32 | Datatype::Fp32 => 4,
            Datatype::Uint64 | Datatype::Int64 | Datatype::Fp64 => 8,
            Datatype::Bytes => return None,
        })
    }
}

/// One input of a request, already decoded.
#[derive(Clone, Debug)]
pub struct InferInput {
    /// The graph input it feeds.
    pub name: String,
    /// Its value (the datatype and shape the client declared).
    pub tensor: Tensor,
}

/// An inference request.
#[derive(Clone, Debug)]
pub struct InferRequest {
    /// The model's name.
    pub model: String,
    /// The version asked for; `None` means the model's default (latest) version.
    pub version: Option<String>,
    /// The client's request id, echoed in the response.
    pub id: Option<String>,
    /// The inputs.
    pub inputs: Vec<InferInput>,
    /// Outputs wanted, by name; empty means all of them, in the model's order.
    pub outputs: Vec<String>,
    /// How long the request may wait in the queue and run before it fails with a timeout.
    pub timeout: Option<Duration>,
}

/// The answer to an [`InferRequest`].
#[derive(Clone, Debug)]
pub struct InferResponse {
    /// The model that ran.
    pub model_name: String,
    /// Its version.
    pub model_version: String,
    /// The request's id, if it had one.
    pub id: Option<String>,
    /// The outputs, in the order asked for (or the model's order).
    pub outputs: Vec<(String, Tensor)>,
}

/// The name, datatype and shape of a model input or output (`-1` for a variable dimension).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{m}` / `ModelMetadata`.
#[derive(Clone, Debug)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// `GET /v2` / `ServerMetadata`.
#[derive(Clone, Debug)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

/// Number of elements of `shape`, refusing negative dims and overflow.
pub fn element_count(shape: &[i64]) -> Result<usize, ServeError> {
    let mut n: usize = 1;
    for &d in shape {
        let d = usize::try_from(d).map_err(|_| {
            ServeError::invalid(format!("shape {shape:?} has a negative dimension"))
        })?;
        n = n
            .checked_mul(d)
            .ok_or_else(|| ServeError::invalid(format!("shape {shape:?} is too large")))?;
    }
    Ok(n)
}

fn to_usize_shape(shape: &[i64]) -> Result<Vec<usize>, ServeError> {
    element_count(shape)?;
    Ok(shape.iter().map(|&d| d as usize).collect())
}

macro_rules! decode_le {
    ($bytes:expr, $t:ty, $n:expr) => {
        $bytes
            .chunks_exact($n)
            .map(|c| {
                let mut a = [0u8; $n];
                a.copy_from_slice(c);
                <$t>::from_le_bytes(a)
            })
            .collect::<Vec<$t>>()
    };
}

/// Decodes a raw little-endian tensor of `datatype` and `shape` (`name` is for messages).
pub fn decode_raw(
    name: &str,
    datatype: Datatype,
    shape: &[i64],
    bytes: &[u8],
) -> Result<Tensor, ServeError> {
    let n = element_count(shape)?;
    let ushape = to_usize_shape(shape)?;
    if let Some(size) = datatype.element_size() {
        let want = n.checked_mul(size).ok_or_else(|| {
            ServeError::invalid(format!("input `{name}`: shape {shape:?} is too large"))
        })?;
        if bytes.len() != want {
            return Err(ServeError::invalid(format!(
                "input `{name}`: {} {} elements of shape {shape:?} need {want} bytes, got {}",
                n,
                datatype.as_str(),
                bytes.len()
            )));
        }
    }
    let data = match datatype {
        Datatype::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        Datatype::Uint8 => TensorData::U8(bytes.to_vec()),
        Datatype::Int8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
        Datatype::Uint16 => TensorData::U16(decode_le!(bytes, u16, 2)),
        Datatype::Int16 => TensorData::I16(decode_le!(bytes, i16, 2)),
        Datatype::Fp16 => TensorData::F16(
            decode_le!(bytes, u16, 2)
                .into_iter()
                .map(millrace::f16::from_bits)
                .collect(),
        ),
        Datatype::Bf16 => TensorData::BF16(
            decode_le!(bytes, u16, 2)
                .into_iter()
                .map(millrace::bf16::from_bits)
                .collect(),
        ),
        Datatype::Uint32 => TensorData::U32(decode_le!(bytes, u32, 4)),
        Datatype::Int32 => TensorData::I32(decode_le!(bytes, i32, 4)),
        Datatype::Fp32 => TensorData::F32(decode_le!(bytes, f32, 4)),
        Datatype::Uint64 => TensorData::U64(decode_le!(bytes, u64, 8)),
        Datatype::Int64 => TensorData::I64(decode_le!(bytes, i64, 8)),
        Datatype::Fp64 => TensorData::F64(decode_le!(bytes, f64, 8)),
        Datatype::Bytes => {
            let mut out = Vec::with_capacity(n.min(bytes.len() / 4 + 1));
            let mut rest = bytes;
            while !rest.is_empty() {
                let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                    return Err(ServeError::invalid(format!(
                        "input `{name}`: BYTES element {} has a truncated length prefix",
                        out.len()
                    )));
                };
                let len = u32::from_le_bytes(*len) as usize;
                if tail.len() < len {
                    return Err(ServeError::invalid(format!(
                        "input `{name}`: BYTES element {} says {len} bytes, {} left",
                        out.len(),
                        tail.len()
                    )));
                }
                let (s, tail) = tail.split_at(len);
                out.push(String::from_utf8(s.to_vec()).map_err(|_| {
                    ServeError::invalid(format!(
                        "input `{name}`: BYTES element {} is not UTF-8",
                        out.len()
                    ))
                })?);
                rest = tail;
            }
            if out.len() != n {
                return Err(ServeError::invalid(format!(
                    "input `{name}`: shape {shape:?} has {n} elements, the BYTES data has {}",
                    out.len()
                )));
            }
            TensorData::String(out)
        }
    };
    Tensor::new(ushape, data).map_err(|e| ServeError::invalid(format!("input `{name}`: {e}")))
}

/// Encodes a tensor in the raw little-endian layout, with its protocol datatype.
pub fn encode_raw(name: &str, t: &Tensor) -> Result<(Datatype, Vec<u8>), ServeError> {
    let dt = Datatype::from_dtype(t.dtype()).ok_or_else(|| {
        ServeError::internal(format!(
            "output `{name}` has dtype {}, which the protocol cannot carry",
            t.dtype()
        ))
    })?;
    let bytes = match t.data() {
        TensorData::Bool(v) => v.iter().map(|&b| b as u8).collect(),
        TensorData::U8(v) => v.clone(),
        TensorData::I8(v) => v.iter().map(|&b| b as u8).collect(),
        TensorData::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::F16(v) => v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
        TensorData::BF16(v) => v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
        TensorData::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::U64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::String(v) => {
            let mut out = Vec::new();
            for s in v {
                let len = u32::try_from(s.len()).map_err(|_| {
                    ServeError::internal(format!("output `{name}`: a string is over 4 GiB"))
                })?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            out
        }
        _ => {
            return Err(ServeError::internal(format!(
                "output `{name}` has dtype {}, which the protocol cannot carry",
                t.dtype()
            )))
        }
    };
    Ok((dt, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trip_every_datatype() {
        let cases = vec![
            Tensor::from_vec(vec![2, 2], vec![1.5f32, -2.0, 0.0, 3.25]).unwrap(),
            Tensor::from_vec(vec![3], vec![1i64, -7, i64::MAX]).unwrap(),
            Tensor::from_vec(vec![2], vec![true, false]).unwrap(),
            Tensor::from_vec(vec![2], vec!["ab".to_string(), String::new()]).unwrap(),
        ];
        for t in cases {
            let (dt, bytes) = encode_raw("x", &t).unwrap();
            let shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
            let back = decode_raw("x", dt, &shape, &bytes).unwrap();
            assert_eq!(back.shape(), t.shape());
            assert_eq!(back.data(), t.data());
        }
    }

    #[test]
    fn raw_size_mismatch_is_a_clear_error() {
        let e = decode_raw("input", Datatype::Fp32, &[1, 3], &[0u8; 8]).unwrap_err();
        assert!(e.message.contains("need 12 bytes, got 8"), "{}", e.message);
        let e = decode_raw("s", Datatype::Bytes, &[1], &[5, 0, 0, 0, b'a']).unwrap_err();
        assert!(e.message.contains("says 5 bytes"), "{}", e.message);
        let e = decode_raw("x", Datatype::Fp32, &[-1, 3], &[]).unwrap_err();
        assert!(e.message.contains("negative"), "{}", e.message);
    }

    #[test]
    fn datatype_names() {
        assert_eq!(Datatype::parse("FP32").unwrap(), Datatype::Fp32);
        assert!(Datatype::parse("FLOAT")
            .unwrap_err()
            .message
            .contains("FP32"));
    }
}
