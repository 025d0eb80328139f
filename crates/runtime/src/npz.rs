//! `.npy` and `.npz` (numpy) reading and writing, for inputs and outputs keyed by name.
//!
//! Supports little-endian numeric dtypes and bool, C order (Fortran order is rejected),
//! stored or deflated zip members.
use millrace_core::{f16, DType, Tensor, TensorData};
use std::io::{Read, Write};
use std::path::Path;

/// A malformed or unsupported .npy/.npz file.
#[derive(Debug, thiserror::Error)]
pub enum NpzError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not a valid .npz archive: {msg}")]
    Zip { path: String, msg: String },
    #[error("array `{name}`: {msg}")]
    Npy { name: String, msg: String },
}

fn npy_err(name: &str, msg: impl Into<String>) -> NpzError {
    NpzError::Npy {
        name: name.to_string(),
        msg: msg.into(),
    }
}

fn dtype_of_descr(name: &str, descr: &str) -> Result<DType, NpzError> {
    Ok(match descr {
        "<f4" | "f4" => DType::F32,
        "<f8" | "f8" => DType::F64,
        "<f2" | "f2" => DType::F16,
        "|i1" | "i1" | "<i1" => DType::I8,
        "<i2" | "i2" => DType::I16,
        "<i4" | "i4" => DType::I32,
        "<i8" | "i8" => DType::I64,
        "|u1" | "u1" | "<u1" => DType::U8,
        "<u2" | "u2" => DType::U16,
        "<u4" | "u4" => DType::U32,
        "<u8" | "u8" => DType::U64,
        "|b1" | "b1" | "?" => DType::Bool,
        other => {
            return Err(npy_err(
                name,
                format!("dtype `{other}` is not supported (big-endian, complex, object?)"),
            ))
        }
    })
}

/// Extracts `'key': value` from the header dict (a Python literal).
fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("'{key}':");
    let start = header.find(&pat)? + pat.len();
    Some(header[start..].trim_start())
}

/// Parses one .npy file.
pub fn read_npy(name: &str, bytes: &[u8]) -> Result<Tensor, NpzError> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(npy_err(name, "missing the \\x93NUMPY magic"));
    }
    let major = bytes[6];
    let (hlen, hstart) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(npy_err(name, "truncated header"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(npy_err(name, format!("npy version {v} is not supported"))),
    };
    let header = bytes
        .get(hstart..hstart + hlen)
        .ok_or_else(|| npy_err(name, "truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| npy_err(name, "header is not UTF-8"))?;
    let descr =
        header_field(header, "descr").ok_or_else(|| npy_err(name, "header lacks 'descr'"))?;
    let descr = descr.trim_start_matches('\'');
    let descr = &descr[..descr
        .find('\'')
        .ok_or_else(|| npy_err(name, "bad 'descr'"))?];
    let dtype = dtype_of_descr(name, descr)?;
    let fortran = header_field(header, "fortran_order")
        .ok_or_else(|| npy_err(name, "header lacks 'fortran_order'"))?;
    if fortran.starts_with("True") {
        return Err(npy_err(
            name,
            "Fortran-ordered arrays are not supported; save with np.ascontiguousarray",
        ));
    }
    let shape_s =
        header_field(header, "shape").ok_or_else(|| npy_err(name, "header lacks 'shape'"))?;
    let shape_s = shape_s
        .strip_prefix('(')
        .ok_or_else(|| npy_err(name, "bad 'shape'"))?;
    let shape_s = &shape_s[..shape_s
        .find(')')
        .ok_or_else(|| npy_err(name, "bad 'shape'"))?];
    let mut shape = Vec::new();
    for part in shape_s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        shape.push(
            part.parse::<usize>()
                .map_err(|_| npy_err(name, format!("bad dimension `{part}`")))?,
        );
    }
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| npy_err(name, "shape overflows"))?;
    let body = &bytes[hstart + hlen..];
    let need = n
        .checked_mul(dtype.size_bytes())
        .ok_or_else(|| npy_err(name, "shape overflows"))?;
    if body.len() < need {
        return Err(npy_err(
            name,
            format!(
                "data has {} bytes, shape {:?} needs {need}",
                body.len(),
                shape
            ),
        ));
    }
    let body = &body[..need];
    fn le<T, const N: usize>(b: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
        b.chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect()
    }
    let data = match dtype {
        DType::F32 => TensorData::F32(le(body, f32::from_le_bytes)),
        DType::F64 => TensorData::F64(le(body, f64::from_le_bytes)),
        DType::F16 => TensorData::F16(le(body, |b| f16::from_bits(u16::from_le_bytes(b)))),
        DType::I8 => TensorData::I8(le(body, i8::from_le_bytes)),
        DType::I16 => TensorData::I16(le(body, i16::from_le_bytes)),
        DType::I32 => TensorData::I32(le(body, i32::from_le_bytes)),
        DType::I64 => TensorData::I64(le(body, i64::from_le_bytes)),
        DType::U8 => TensorData::U8(body.to_vec()),
        DType::U16 => TensorData::U16(le(body, u16::from_le_bytes)),
        DType::U32 => TensorData::U32(le(body, u32::from_le_bytes)),
        DType::U64 => TensorData::U64(le(body, u64::from_le_bytes)),
        DType::Bool => TensorData::Bool(body.iter().map(|&b| b != 0).collect()),
        DType::BF16 | DType::String => return Err(npy_err(name, "unsupported dtype")),
        narrow => return Err(npy_err(name, format!("unsupported dtype {narrow}"))),
    };
    Tensor::new(shape, data).map_err(|e| npy_err(name, e.to_string()))
}

/// Serializes a tensor as .npy (version 1.0).
pub fn write_npy(name: &str, t: &Tensor) -> Result<Vec<u8>, NpzError> {
    let descr = t.dtype().numpy_descr().ok_or_else(|| {
        npy_err(
            name,
            format!("{} tensors cannot be saved as .npy", t.dtype()),
        )
    })?;
    let shape = match t.shape() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + t.size_bytes());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match t.data() {
        TensorData::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::F64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::F16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_bits().to_le_bytes())),
        TensorData::I8(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::U8(v) => out.extend_from_slice(v),
        TensorData::U16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::U32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::U64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Bool(v) => v.iter().for_each(|&x| out.push(x as u8)),
        TensorData::BF16(_) | TensorData::String(_) => {
            unreachable!("rejected by numpy_descr above")
        }
        // No numpy descr for the narrow dtypes (also rejected above).
        other => {
            return Err(npy_err(
                name,
                format!("{} tensors cannot be saved as .npy", other.dtype()),
            ))
        }
    }
    Ok(out)
}

/// Reads every array of an .npz file, in archive order, keyed by name (without `.npy`).
pub fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>, NpzError> {
    let p = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| NpzError::Io {
        path: p.clone(),
        source: e,
    })?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| NpzError::Zip {
        path: p.clone(),
        msg: e.to_string(),
    })?;
    let mut out = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| NpzError::Zip {
            path: p.clone(),
            msg: e.to_string(),
        })?;
        let name = f.name().trim_end_matches(".npy").to_string();
        let mut buf = Vec::with_capacity(f.size().min(1 << 30) as usize);
        f.read_to_end(&mut buf).map_err(|e| NpzError::Io {
            path: p.clone(),
            source: e,
        })?;
        out.push((name.clone(), read_npy(&name, &buf)?));
    }
    Ok(out)
}

/// Reads a single .npy file.
pub fn read_npy_file(path: &Path) -> Result<Tensor, NpzError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| NpzError::Io { path: p, source: e })?;
    read_npy(&path.display().to_string(), &bytes)
}

/// Writes arrays to an .npz file (stored, uncompressed, like `np.savez`).
pub fn write_npz(path: &Path, arrays: &[(String, Tensor)]) -> Result<(), NpzError> {
    let p = path.display().to_string();
    let io = |e: std::io::Error| NpzError::Io {
        path: p.clone(),
        source: e,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    for (name, t) in arrays {
        let bytes = write_npy(name, t)?;
        zip.start_file(format!("{name}.npy"), opts)
            .map_err(|e| NpzError::Zip {
                path: p.clone(),
                msg: e.to_string(),
            })?;
        zip.write_all(&bytes).map_err(io)?;
    }
    zip.finish().map_err(|e| NpzError::Zip {
        path: p.clone(),
        msg: e.to_string(),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npz_round_trip() {
        let dir = std::env::temp_dir().join(format!("millrace-npz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.npz");
        let arrays = vec![
            (
                "a".to_string(),
                Tensor::from_vec(vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap(),
            ),
            (
                "ids".to_string(),
                Tensor::from_vec(vec![1, 2], vec![7i64, 8]).unwrap(),
            ),
            ("s".to_string(), Tensor::scalar(true)),
        ];
        write_npz(&path, &arrays).unwrap();
        assert_eq!(read_npz(&path).unwrap(), arrays);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truncated_npy_is_an_error() {
        let t = Tensor::from_vec(vec![4], vec![1.0f32; 4]).unwrap();
        let bytes = write_npy("x", &t).unwrap();
        assert!(read_npy("x", &bytes[..bytes.len() - 3]).is_err());
        assert!(read_npy("x", b"garbage").is_err());
    }

    #[test]
    fn narrow_dtypes_are_refused() {
        let t = Tensor::from_vec(vec![2], vec![millrace_core::F8E4M3FN(0x38); 2]).unwrap();
        assert!(write_npy("x", &t).is_err());
        let t = Tensor::from_vec(vec![1], vec![millrace_core::I4(-1)]).unwrap();
        assert!(write_npy("x", &t).is_err());
    }
}
