//! `TensorProto` <-> [`Tensor`]: raw little-endian data, typed fields, external data files.
use crate::error::ImportError;
use crate::proto::{SparseTensorProto, TensorProto};
use millrace_core::{
    bf16, f16, DType, Tensor, TensorData, F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F8E8M0,
    I2, I4, U2, U4,
};
use rayon::prelude::*;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

/// Largest tensor we agree to materialise from a file (guards hostile dims): 16 GiB.
const MAX_TENSOR_BYTES: u128 = 16 << 30;

/// Raw data from this many bytes up is decoded in chunks of this size on all threads.
const PARALLEL_DECODE_BYTES: usize = 256 << 10;

fn terr(name: &str, msg: impl Into<String>) -> ImportError {
    ImportError::Tensor {
        name: name.to_string(),
        msg: msg.into(),
    }
}

/// Checked element count of `dims`.
pub(crate) fn checked_shape(
    name: &str,
    dims: &[i64],
    dtype: DType,
) -> Result<Vec<usize>, ImportError> {
    let mut shape = Vec::with_capacity(dims.len());
    let mut n: u128 = 1;
    for &d in dims {
        if d < 0 {
            return Err(terr(name, format!("negative dimension {d} in {dims:?}")));
        }
        n = n.saturating_mul(d as u128);
        shape.push(d as usize);
    }
    if n.saturating_mul(dtype.size_bytes() as u128) > MAX_TENSOR_BYTES {
        return Err(terr(
            name,
            format!("dims {dims:?} describe a tensor larger than 16 GiB"),
        ));
    }
    Ok(shape)
}

fn from_le<T: Copy + Default + Send, const N: usize>(
    name: &str,
    raw: &[u8],
    n: usize,
    // Generic, not a `fn` pointer: the conversion inlines into the copy loop instead of
    // being one indirect call per element.
    f: impl Fn([u8; N]) -> T + Sync,
) -> Result<Vec<T>, ImportError> {
    if raw.len() != n * N {
        return Err(terr(
            name,
            format!(
                "raw data has {} bytes, expected {} for {n} elements",
                raw.len(),
                n * N
            ),
        ));
    }
    let convert = |out: &mut [T], raw: &[u8]| {
        for (o, c) in out.iter_mut().zip(raw.chunks_exact(N)) {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            *o = f(b);
        }
    };
    // Zeroed memory comes untouched from the allocator (fresh pages), so its page faults
    // happen in the copy: on the current rayon pool's threads for a large tensor, where
    // the faults cost more than the copy itself (GoogLeNet: a third of load + compile).
    let mut out = vec![T::default(); n];
    if raw.len() >= PARALLEL_DECODE_BYTES {
        let per = PARALLEL_DECODE_BYTES / N;
        out.par_chunks_mut(per)
            .zip(raw.par_chunks(per * N))
            .for_each(|(o, r)| convert(o, r));
    } else {
        convert(&mut out, raw);
    }
    Ok(out)
}

fn decode_raw(name: &str, dtype: DType, raw: &[u8], n: usize) -> Result<TensorData, ImportError> {
    Ok(match dtype {
        DType::F32 => TensorData::F32(from_le(name, raw, n, f32::from_le_bytes)?),
        DType::F64 => TensorData::F64(from_le(name, raw, n, f64::from_le_bytes)?),
        DType::F16 => TensorData::F16(from_le(name, raw, n, |b| {
            f16::from_bits(u16::from_le_bytes(b))
        })?),
        DType::BF16 => TensorData::BF16(from_le(name, raw, n, |b| {
            bf16::from_bits(u16::from_le_bytes(b))
        })?),
        DType::I8 => TensorData::I8(from_le(name, raw, n, i8::from_le_bytes)?),
        DType::I16 => TensorData::I16(from_le(name, raw, n, i16::from_le_bytes)?),
        DType::I32 => TensorData::I32(from_le(name, raw, n, i32::from_le_bytes)?),
        DType::I64 => TensorData::I64(from_le(name, raw, n, i64::from_le_bytes)?),
        DType::U8 => TensorData::U8(from_le(name, raw, n, u8::from_le_bytes)?),
        DType::U16 => TensorData::U16(from_le(name, raw, n, u16::from_le_bytes)?),
        DType::U32 => TensorData::U32(from_le(name, raw, n, u32::from_le_bytes)?),
        DType::U64 => TensorData::U64(from_le(name, raw, n, u64::from_le_bytes)?),
        DType::Bool => TensorData::Bool(from_le(name, raw, n, |b: [u8; 1]| b[0] != 0)?),
        DType::String => return Err(terr(name, "string tensors cannot use raw_data")),
        _ => unpack_narrow(name, dtype, raw, n)?,
    })
}

/// Elements per byte of a narrow dtype in a `TensorProto` (8-bit types: 1).
fn per_byte(dtype: DType) -> usize {
    match dtype {
        DType::U4 | DType::I4 | DType::F4E2M1 => 2,
        DType::U2 | DType::I2 => 4,
        _ => 1,
    }
}

/// Unpacks the bytes of a narrow dtype (float8: one per byte; 4-bit types: two per byte,
/// low nibble first; 2-bit types: four per byte from the low bits up).
fn unpack_narrow(
    name: &str,
    dtype: DType,
    bytes: &[u8],
    n: usize,
) -> Result<TensorData, ImportError> {
    let k = per_byte(dtype);
    let want = n.div_ceil(k);
    if bytes.len() != want {
        return Err(terr(
            name,
            format!(
                "{dtype} data has {} bytes, expected {want} for {n} elements",
                bytes.len()
            ),
        ));
    }
    let width = 8 / k;
    let mask = ((1u16 << width) - 1) as u8;
    let elems = (0..n).map(|i| (bytes[i / k] >> ((i % k) * width)) & mask);
    Ok(match dtype {
        DType::F8E4M3FN => TensorData::F8E4M3FN(elems.map(F8E4M3FN).collect()),
        DType::F8E4M3FNUZ => TensorData::F8E4M3FNUZ(elems.map(F8E4M3FNUZ).collect()),
        DType::F8E5M2 => TensorData::F8E5M2(elems.map(F8E5M2).collect()),
        DType::F8E5M2FNUZ => TensorData::F8E5M2FNUZ(elems.map(F8E5M2FNUZ).collect()),
        DType::F8E8M0 => TensorData::F8E8M0(elems.map(F8E8M0).collect()),
        DType::F4E2M1 => TensorData::F4E2M1(elems.map(F4E2M1).collect()),
        DType::U4 => TensorData::U4(elems.map(U4::from_bits).collect()),
        DType::I4 => TensorData::I4(elems.map(I4::from_bits).collect()),
        DType::U2 => TensorData::U2(elems.map(U2::from_bits).collect()),
        DType::I2 => TensorData::I2(elems.map(I2::from_bits).collect()),
        _ => return Err(terr(name, format!("{dtype} is not a narrow dtype"))),
    })
}

/// Packs the elements of a narrow dtype as [`unpack_narrow`] reads them; `None` for others.
fn pack_narrow(data: &TensorData) -> Option<Vec<u8>> {
    let bits: Vec<u8> = match data {
        TensorData::F8E4M3FN(v) => v.iter().map(|x| x.0).collect(),
        TensorData::F8E4M3FNUZ(v) => v.iter().map(|x| x.0).collect(),
        TensorData::F8E5M2(v) => v.iter().map(|x| x.0).collect(),
        TensorData::F8E5M2FNUZ(v) => v.iter().map(|x| x.0).collect(),
        TensorData::F8E8M0(v) => v.iter().map(|x| x.0).collect(),
        TensorData::F4E2M1(v) => v.iter().map(|x| x.0 & 0xf).collect(),
        TensorData::U4(v) => v.iter().map(|x| x.to_bits()).collect(),
        TensorData::I4(v) => v.iter().map(|x| x.to_bits()).collect(),
        TensorData::U2(v) => v.iter().map(|x| x.to_bits()).collect(),
        TensorData::I2(v) => v.iter().map(|x| x.to_bits()).collect(),
        _ => return None,
    };
    let k = per_byte(data.dtype());
    let width = 8 / k;
    Some(
        bits.chunks(k)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |acc, (j, &b)| acc | (b << (j * width)))
            })
            .collect(),
    )
}

fn check_len<T>(name: &str, v: Vec<T>, n: usize) -> Result<Vec<T>, ImportError> {
    if v.len() != n {
        return Err(terr(
            name,
            format!("has {} values, its dims need {n}", v.len()),
        ));
    }
    Ok(v)
}

fn decode_typed(
    name: &str,
    dtype: DType,
    t: &TensorProto,
    n: usize,
) -> Result<TensorData, ImportError> {
    let i32s = || t.int32_data.iter().copied();
    Ok(match dtype {
        DType::F32 => TensorData::F32(check_len(name, t.float_data.clone(), n)?),
        DType::F64 => TensorData::F64(check_len(name, t.double_data.clone(), n)?),
        DType::I64 => TensorData::I64(check_len(name, t.int64_data.clone(), n)?),
        DType::I32 => TensorData::I32(check_len(name, t.int32_data.clone(), n)?),
        DType::I16 => TensorData::I16(check_len(name, i32s().map(|x| x as i16).collect(), n)?),
        DType::I8 => TensorData::I8(check_len(name, i32s().map(|x| x as i8).collect(), n)?),
        DType::U16 => TensorData::U16(check_len(name, i32s().map(|x| x as u16).collect(), n)?),
        DType::U8 => TensorData::U8(check_len(name, i32s().map(|x| x as u8).collect(), n)?),
        DType::Bool => TensorData::Bool(check_len(name, i32s().map(|x| x != 0).collect(), n)?),
        DType::F16 => TensorData::F16(check_len(
            name,
            i32s().map(|x| f16::from_bits(x as u16)).collect(),
            n,
        )?),
        DType::BF16 => TensorData::BF16(check_len(
            name,
            i32s().map(|x| bf16::from_bits(x as u16)).collect(),
            n,
        )?),
        DType::U32 => TensorData::U32(check_len(
            name,
            t.uint64_data.iter().map(|&x| x as u32).collect(),
            n,
        )?),
        DType::U64 => TensorData::U64(check_len(name, t.uint64_data.clone(), n)?),
        DType::String => TensorData::String(check_len(
            name,
            t.string_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
            n,
        )?),
        // One int32 per byte of the packed representation.
        _ => {
            let bytes: Vec<u8> = i32s().map(|x| x as u8).collect();
            unpack_narrow(name, dtype, &bytes, n)?
        }
    })
}

/// Reads an external-data tensor's bytes from a file beside the model.
fn read_external(
    name: &str,
    t: &TensorProto,
    base_dir: Option<&Path>,
) -> Result<Vec<u8>, ImportError> {
    let (mut location, mut offset, mut length) = (None, 0u64, None);
    for kv in &t.external_data {
        match kv.key.as_str() {
            "location" => location = Some(kv.value.clone()),
            "offset" => {
                offset = kv
                    .value
                    .parse()
                    .map_err(|_| terr(name, format!("bad offset `{}`", kv.value)))?
            }
            "length" => {
                length = Some(
                    kv.value
                        .parse::<u64>()
                        .map_err(|_| terr(name, format!("bad length `{}`", kv.value)))?,
                )
            }
            _ => {}
        }
    }
    let location = location.ok_or_else(|| terr(name, "external data without a `location`"))?;
    let rel = Path::new(&location);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(terr(name, format!("external data location `{location}` must be a relative path inside the model's folder")));
    }
    let base = base_dir.ok_or_else(|| {
        terr(
            name,
            "uses external data, but the model was loaded from bytes: load it from its path",
        )
    })?;
    let path = base.join(rel);
    let io = |e: std::io::Error| ImportError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let mut f = std::fs::File::open(&path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    let length = length.unwrap_or(file_len.saturating_sub(offset));
    if offset.checked_add(length).is_none_or(|end| end > file_len) {
        return Err(terr(name, format!("external data range {offset}+{length} runs past the end of `{location}` ({file_len} bytes)")));
    }
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = vec![0u8; length as usize];
    f.read_exact(&mut buf).map_err(io)?;
    Ok(buf)
}

/// Decodes a `TensorProto` into a [`Tensor`]. `base_dir` locates external data files.
pub fn tensor_from_proto(t: &TensorProto, base_dir: Option<&Path>) -> Result<Tensor, ImportError> {
    let name = if t.name.is_empty() {
        "<unnamed>"
    } else {
        t.name.as_str()
    };
    let dtype = DType::from_onnx_code(t.data_type).ok_or_else(|| {
        terr(
            name,
            format!("element type code {} is not supported", t.data_type),
        )
    })?;
    if t.segment.is_some() {
        return Err(terr(name, "segmented tensors are not supported"));
    }
    let shape = checked_shape(name, &t.dims, dtype)?;
    let n: usize = shape.iter().product();
    let data = if t.data_location == 1 {
        let raw = read_external(name, t, base_dir)?;
        decode_raw(name, dtype, &raw, n)?
    } else if !t.raw_data.is_empty() {
        decode_raw(name, dtype, &t.raw_data, n)?
    } else {
        decode_typed(name, dtype, t, n)?
    };
    Tensor::new(shape, data).map_err(|e| terr(name, e.to_string()))
}

/// Densifies a sparse tensor (values with linear `[NNZ]` or coordinate `[NNZ, rank]` indices).
pub fn sparse_to_dense(
    s: &SparseTensorProto,
    base_dir: Option<&Path>,
) -> Result<Tensor, ImportError> {
    let values = s
        .values
        .as_ref()
        .ok_or_else(|| terr("<sparse>", "sparse tensor without values"))?;
    let name = values.name.clone();
    let values = tensor_from_proto(values, base_dir)?;
    let shape = checked_shape(&name, &s.dims, values.dtype())?;
    let n: usize = shape.iter().product();
    let nnz = values.len();
    let idx = match &s.indices {
        Some(i) => tensor_from_proto(i, base_dir)?
            .to_i64_vec()
            .map_err(|e| terr(&name, e.to_string()))?,
        None => vec![],
    };
    let linear: Vec<usize> = if idx.len() == nnz {
        idx.iter().map(|&i| i as usize).collect()
    } else if idx.len() == nnz * shape.len() && !shape.is_empty() {
        let strides = millrace_core::strides_of(&shape);
        idx.chunks(shape.len())
            .map(|c| c.iter().zip(&strides).map(|(&i, &s)| i as usize * s).sum())
            .collect()
    } else {
        return Err(terr(
            &name,
            "sparse indices do not match the number of values",
        ));
    };
    if linear.iter().any(|&i| i >= n) {
        return Err(terr(&name, "sparse index out of range"));
    }
    let mut dense = Tensor::zeros(values.dtype(), shape);
    fn scatter<T: millrace_core::Elem>(d: &mut [T], src: &TensorData, linear: &[usize]) -> bool {
        let Some(src) = T::slice(src) else {
            return false;
        };
        for (k, &i) in linear.iter().enumerate() {
            d[i] = src[k].clone();
        }
        true
    }
    let ok = millrace_core::with_data!(dense.data_mut(), d => scatter(d, values.data(), &linear));
    if !ok {
        return Err(terr(&name, "dtype mismatch"));
    }
    Ok(dense)
}

/// Encodes a tensor as a `TensorProto` (raw little-endian data; strings in `string_data`).
pub fn tensor_to_proto(name: &str, t: &Tensor) -> TensorProto {
    let mut p = TensorProto {
        name: name.to_string(),
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: t.dtype().onnx_code(),
        ..Default::default()
    };
    fn le<T: Copy, const N: usize>(v: &[T], f: fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }
    let raw: Vec<u8> = match t.data() {
        TensorData::F32(v) => le(v, f32::to_le_bytes),
        TensorData::F64(v) => le(v, f64::to_le_bytes),
        TensorData::F16(v) => le(v, |x: f16| x.to_bits().to_le_bytes()),
        TensorData::BF16(v) => le(v, |x: bf16| x.to_bits().to_le_bytes()),
        TensorData::I8(v) => le(v, i8::to_le_bytes),
        TensorData::I16(v) => le(v, i16::to_le_bytes),
        TensorData::I32(v) => le(v, i32::to_le_bytes),
        TensorData::I64(v) => le(v, i64::to_le_bytes),
        TensorData::U8(v) => v.clone(),
        TensorData::U16(v) => le(v, u16::to_le_bytes),
        TensorData::U32(v) => le(v, u32::to_le_bytes),
        TensorData::U64(v) => le(v, u64::to_le_bytes),
        TensorData::Bool(v) => v.iter().map(|&b| b as u8).collect(),
        TensorData::String(v) => {
            p.string_data = v.iter().map(|s| s.as_bytes().to_vec()).collect();
            vec![]
        }
        narrow => pack_narrow(narrow).unwrap_or_default(),
    };
    p.raw_data = raw.into();
    p
}

/// Decodes a serialized `TensorProto` (the ONNX test suite's `.pb` files).
pub fn tensor_from_pb_bytes(bytes: &[u8]) -> Result<Tensor, ImportError> {
    use prost::Message;
    let t = TensorProto::decode(bytes).map_err(|e| ImportError::Decode(e.to_string()))?;
    tensor_from_proto(&t, None)
}

/// Decodes a serialized value of the given kind: a `TensorProto`, `SequenceProto` (of
/// tensors) or `OptionalProto`.
pub fn value_from_pb_bytes(
    bytes: &[u8],
    kind: &millrace_ir::ValueKind,
) -> Result<millrace_ir::Value, ImportError> {
    use crate::proto::{OptionalProto, SequenceProto};
    use millrace_ir::{Value, ValueKind};
    use prost::Message;
    let decode = |e: prost::DecodeError| ImportError::Decode(e.to_string());
    fn sequence(s: &SequenceProto) -> Result<Value, ImportError> {
        if s.elem_type != 1 && !(s.elem_type == 0 && s.tensor_values.is_empty()) {
            return Err(ImportError::Model(format!(
                "sequences of element type {} are not supported",
                s.elem_type
            )));
        }
        Ok(Value::Sequence(
            s.tensor_values
                .iter()
                .map(|t| tensor_from_proto(t, None))
                .collect::<Result<_, _>>()?,
        ))
    }
    Ok(match kind {
        ValueKind::Tensor => Value::Tensor(tensor_from_pb_bytes(bytes)?),
        ValueKind::Sequence => sequence(&SequenceProto::decode(bytes).map_err(decode)?)?,
        ValueKind::Optional(_) => {
            let o = OptionalProto::decode(bytes).map_err(decode)?;
            Value::Optional(match o.elem_type {
                0 => None,
                1 => Some(Box::new(Value::Tensor(tensor_from_proto(
                    o.tensor_value
                        .as_ref()
                        .ok_or_else(|| ImportError::Model("optional without its tensor".into()))?,
                    None,
                )?))),
                3 => Some(Box::new(sequence(o.sequence_value.as_ref().ok_or_else(
                    || ImportError::Model("optional without its sequence".into()),
                )?)?)),
                t => {
                    return Err(ImportError::Model(format!(
                        "optionals of element type {t} are not supported"
                    )))
                }
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raw data past `PARALLEL_DECODE_BYTES` is decoded in chunks on several threads:
    /// every value lands where the sequential decode puts it, the last chunk short too.
    #[test]
    fn large_raw_data_decodes_in_chunks_on_threads() {
        let n = 3 * PARALLEL_DECODE_BYTES / 4 + 37;
        let v: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 7.0).collect();
        let d: Vec<f64> = (0..n / 3).map(|i| i as f64 * -1.25).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for t in [
            Tensor::from_vec(vec![n], v).unwrap(),
            Tensor::from_vec(vec![n / 3], d).unwrap(),
        ] {
            let p = tensor_to_proto("big", &t);
            assert!(p.raw_data.len() >= PARALLEL_DECODE_BYTES);
            assert_eq!(pool.install(|| tensor_from_proto(&p, None)).unwrap(), t);
        }
    }

    #[test]
    fn round_trips_every_dtype() {
        let ts = vec![
            Tensor::from_vec(vec![2, 2], vec![1.0f32, -2.0, 3.5, 0.0]).unwrap(),
            Tensor::from_vec(vec![3], vec![1i64, -2, 3]).unwrap(),
            Tensor::from_vec(vec![2], vec![true, false]).unwrap(),
            Tensor::from_vec(vec![1], vec![f16::from_f32(1.5)]).unwrap(),
            Tensor::from_vec(vec![2], vec!["a".to_string(), "bc".to_string()]).unwrap(),
            Tensor::scalar(7u8),
            Tensor::from_vec(vec![3], vec![F8E4M3FN(0x7e), F8E4M3FN(0x80), F8E4M3FN(1)]).unwrap(),
            Tensor::from_vec(vec![2], vec![F8E5M2FNUZ(3), F8E5M2FNUZ(0x80)]).unwrap(),
            Tensor::from_vec(vec![1], vec![F8E8M0(127)]).unwrap(),
            Tensor::from_vec(vec![3], vec![I4(-8), I4(7), I4(-1)]).unwrap(),
            Tensor::from_vec(vec![2], vec![U4(15), U4(1)]).unwrap(),
            Tensor::from_vec(vec![3], vec![F4E2M1(0xf), F4E2M1(1), F4E2M1(8)]).unwrap(),
            Tensor::from_vec(vec![5], vec![I2(-2), I2(1), I2(-1), I2(0), I2(-2)]).unwrap(),
            Tensor::from_vec(vec![2], vec![U2(3), U2(2)]).unwrap(),
            Tensor::from_vec(vec![0], Vec::<U2>::new()).unwrap(),
        ];
        for t in ts {
            let p = tensor_to_proto("t", &t);
            assert_eq!(tensor_from_proto(&p, None).unwrap(), t);
        }
    }

    #[test]
    fn typed_fields_decode() {
        let p = TensorProto {
            dims: vec![2],
            data_type: 10,
            int32_data: vec![0x3c00, 0x4000],
            ..Default::default()
        };
        let t = tensor_from_proto(&p, None).unwrap();
        assert_eq!(t.to_f32_vec().unwrap(), vec![1.0, 2.0]);
    }

    #[test]
    fn narrow_types_unpack() {
        let raw = |dt: i32, dims: Vec<i64>, raw: Vec<u8>| TensorProto {
            dims,
            data_type: dt,
            raw_data: raw.into(),
            ..Default::default()
        };
        // INT4: low nibble first, odd count padded.
        let t = tensor_from_proto(&raw(22, vec![3], vec![0x8f, 0x07]), None).unwrap();
        assert_eq!(t.as_slice::<I4>().unwrap(), &[I4(-1), I4(-8), I4(7)]);
        let t = tensor_from_proto(&raw(21, vec![2], vec![0x8f]), None).unwrap();
        assert_eq!(t.as_slice::<U4>().unwrap(), &[U4(15), U4(8)]);
        // INT2: four per byte from the low bits.
        let t = tensor_from_proto(&raw(26, vec![5], vec![0b00_11_10_01, 0b10]), None).unwrap();
        assert_eq!(
            t.as_slice::<I2>().unwrap(),
            &[I2(1), I2(-2), I2(-1), I2(0), I2(-2)]
        );
        assert!(tensor_from_proto(&raw(26, vec![5], vec![0]), None).is_err());
        assert!(tensor_from_proto(&raw(17, vec![2], vec![0]), None).is_err());
        // int32_data holds one packed byte each.
        let p = TensorProto {
            dims: vec![3],
            data_type: 23,
            int32_data: vec![0x21, 0x0f],
            ..Default::default()
        };
        let t = tensor_from_proto(&p, None).unwrap();
        assert_eq!(
            t.as_slice::<F4E2M1>().unwrap(),
            &[F4E2M1(1), F4E2M1(2), F4E2M1(0xf)]
        );
        let p = TensorProto {
            dims: vec![2],
            data_type: 19,
            int32_data: vec![0x3c, 0xfc],
            ..Default::default()
        };
        let t = tensor_from_proto(&p, None).unwrap();
        assert_eq!(
            t.as_slice::<F8E5M2>().unwrap(),
            &[F8E5M2(0x3c), F8E5M2(0xfc)]
        );
    }

    #[test]
    fn short_raw_data_is_an_error() {
        let p = TensorProto {
            dims: vec![4],
            data_type: 1,
            raw_data: vec![0; 12].into(),
            ..Default::default()
        };
        assert!(tensor_from_proto(&p, None).is_err());
    }

    #[test]
    fn hostile_dims_are_rejected() {
        let p = TensorProto {
            dims: vec![1 << 40, 1 << 40],
            data_type: 1,
            ..Default::default()
        };
        assert!(tensor_from_proto(&p, None).is_err());
        let p = TensorProto {
            dims: vec![-3],
            data_type: 1,
            ..Default::default()
        };
        assert!(tensor_from_proto(&p, None).is_err());
    }

    #[test]
    fn external_data_cannot_escape_the_model_folder() {
        let mut p = TensorProto {
            dims: vec![1],
            data_type: 1,
            data_location: 1,
            ..Default::default()
        };
        p.external_data.push(crate::proto::StringStringEntryProto {
            key: "location".into(),
            value: "../etc/passwd".into(),
        });
        let err = tensor_from_proto(&p, Some(Path::new("/tmp"))).unwrap_err();
        assert!(err.to_string().contains("relative path"));
    }
}
