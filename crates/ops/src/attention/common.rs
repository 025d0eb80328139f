//! Helpers shared by the attention family: loading float tensors into a compute type,
//! head (un)packing between `[B, S, H*D]` and `[B, H, S, D]`, and shape-inference bits.
use crate::nn::common::Float;
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::OpError;

/// The elements of a float tensor (any float dtype) in compute type `F`.
pub fn load<F: Float>(op: &str, t: &Tensor, what: &str) -> Result<Vec<F>, OpError> {
    let d = t.dtype();
    if !d.is_float() {
        return Err(OpError::invalid(
            op,
            format!("{what} must be a float tensor, got {d}"),
        ));
    }
    if d == F::DTYPE || (F::DTYPE == DType::F32 && matches!(d, DType::F16 | DType::BF16)) {
        return Ok(F::cow(op, t)?.into_owned());
    }
    Ok(t.to_f64_vec()
        .map_err(|e| OpError::tensor(op, e))?
        .into_iter()
        .map(F::from_f64)
        .collect())
}

/// `[B, S, H*D]` (row-major) to `[B, H, S, D]`.
pub fn unpack_heads<T: Copy>(x: &[T], b: usize, s: usize, h: usize, d: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for bi in 0..b {
        for hi in 0..h {
            for si in 0..s {
                let base = (bi * s + si) * h * d + hi * d;
                out.extend_from_slice(&x[base..base + d]);
            }
        }
    }
    out
}

/// `[B, H, S, D]` (row-major) to `[B, S, H*D]`.
pub fn pack_heads<T: Copy>(x: &[T], b: usize, h: usize, s: usize, d: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for bi in 0..b {
        for si in 0..s {
            for hi in 0..h {
                let base = ((bi * h + hi) * s + si) * d;
                out.extend_from_slice(&x[base..base + d]);
            }
        }
    }
    out
}

/// A dimension for shape inference: known when `v` is, else a symbol named after the op.
pub fn dim_or(v: Option<usize>, sym: &str) -> Dim {
    match v {
        Some(n) => Dim::Known(n),
        None => Dim::Sym(sym.to_string()),
    }
}

/// The known size of dimension `i` of an optional shape.
pub fn known(shape: Option<&[Dim]>, i: usize) -> Option<usize> {
    shape.and_then(|s| s.get(i)).and_then(Dim::known)
}

/// Reads a non-negative int attribute as usize.
pub fn non_negative(op: &str, attr: &str, v: i64) -> Result<usize, OpError> {
    usize::try_from(v).map_err(|_| OpError::attribute(op, attr, format!("negative value {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_packing_round_trips() {
        // B=1, S=2, H=2, D=2
        let x: Vec<i32> = (0..8).collect();
        let u = unpack_heads(&x, 1, 2, 2, 2);
        assert_eq!(u, vec![0, 1, 4, 5, 2, 3, 6, 7]);
        assert_eq!(pack_heads(&u, 1, 2, 2, 2), x);
    }
}
