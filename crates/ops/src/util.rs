//! Helpers shared by op files: axes, broadcasting, numeric conversion.
use millrace_core::{bf16, f16, Dim, Elem, Tensor};
use millrace_ir::{OpError, ValueType};

/// Resolves a possibly negative axis against `rank`; an error names the op.
pub fn normalize_axis(op: &str, axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) && !(r == 0 && a == 0) {
        return Err(OpError::invalid(
            op,
            format!("axis {axis} is out of range for rank {rank}"),
        ));
    }
    Ok(a as usize)
}

/// Like [`normalize_axis`] for a list, rejecting duplicates.
pub fn normalize_axes(op: &str, axes: &[i64], rank: usize) -> Result<Vec<usize>, OpError> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = normalize_axis(op, a, rank)?;
        if out.contains(&n) {
            return Err(OpError::invalid(op, format!("axis {a} is repeated")));
        }
        out.push(n);
    }
    Ok(out)
}

/// For each element of a tensor of shape `out`, the flat index of the element it reads in
/// a tensor of shape `inp` broadcast to `out` (numpy rules; `inp` must be broadcastable).
pub fn broadcast_index(out: &[usize], inp: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    if out == inp {
        return (0..n).collect();
    }
    let rank = out.len();
    let off = rank - inp.len();
    // Stride of each output axis in the input (0 where broadcast).
    let mut in_strides = vec![0usize; rank];
    let mut s = 1;
    for i in (0..inp.len()).rev() {
        if inp[i] != 1 {
            in_strides[i + off] = s;
        }
        s *= inp[i];
    }
    let mut idx = Vec::with_capacity(n);
    let mut counter = vec![0usize; rank];
    let mut cur = 0usize;
    for _ in 0..n {
        idx.push(cur);
        for ax in (0..rank).rev() {
            counter[ax] += 1;
            cur += in_strides[ax];
            if counter[ax] < out[ax] {
                break;
            }
            cur -= in_strides[ax] * counter[ax];
            counter[ax] = 0;
        }
    }
    idx
}

/// Broadcast output shape of several concrete shapes, or an error naming the op.
pub fn broadcast_all(op: &str, shapes: &[&[usize]]) -> Result<Vec<usize>, OpError> {
    let mut out: Vec<usize> = vec![];
    for s in shapes {
        out = millrace_core::broadcast_shapes(&out, s).ok_or_else(|| {
            OpError::invalid(
                op,
                format!("shapes {:?} cannot be broadcast together", shapes),
            )
        })?;
    }
    Ok(out)
}

/// Broadcast of symbolic shapes for shape inference; unknown where it cannot tell.
pub fn broadcast_dims(op: &str, shapes: &[&[Dim]]) -> Result<Vec<Dim>, OpError> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let mut d: Option<Dim> = None;
        for s in shapes {
            if i + s.len() < rank {
                continue;
            }
            let x = &s[i + s.len() - rank];
            d = Some(match (d, x) {
                (None, x) => x.clone(),
                (Some(Dim::Known(1)), x) => x.clone(),
                (Some(cur), Dim::Known(1)) => cur,
                (Some(Dim::Known(a)), Dim::Known(b)) if a != *b => {
                    return Err(OpError::invalid(
                        op,
                        format!("dimensions {a} and {b} cannot be broadcast"),
                    ))
                }
                (Some(Dim::Known(a)), _) => Dim::Known(a),
                (Some(Dim::Sym(a)), Dim::Known(b)) => {
                    let _ = a;
                    Dim::Known(*b)
                }
                (Some(Dim::Sym(a)), Dim::Sym(_)) => Dim::Sym(a),
            });
        }
        out.push(d.unwrap_or(Dim::Known(1)));
    }
    Ok(out)
}

/// Shape-inference broadcast over value types: dtype from the first input, shape if all
/// ranks are known.
pub fn broadcast_types(op: &str, tys: &[&ValueType]) -> Result<ValueType, OpError> {
    let dtype = tys.first().and_then(|t| t.dtype);
    let shapes: Option<Vec<&[Dim]>> = tys.iter().map(|t| t.shape.as_deref()).collect();
    let shape = match shapes {
        Some(s) => Some(broadcast_dims(op, &s)?),
        None => None,
    };
    Ok(ValueType { dtype, shape })
}

/// A numeric element type, convertible through f64 (f16/bf16 compute in f32 precision).
pub trait Num: Elem + Copy + PartialOrd + Default {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    fn to_f32(self) -> f32 {
        self.to_f64() as f32
    }
    fn from_f32(v: f32) -> Self {
        Self::from_f64(v as f64)
    }
}

macro_rules! num_prim {
    ($($t:ty),*) => {$(
        impl Num for $t {
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as $t }
        }
    )*};
}
num_prim!(f32, f64, i8, i16, i32, i64, u8, u16, u32, u64);

impl Num for f16 {
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
}

impl Num for bf16 {
    fn to_f64(self) -> f64 {
        bf16::to_f64(self)
    }
    fn from_f64(v: f64) -> Self {
        bf16::from_f64(v)
    }
}

/// Typed slice of an input, with an error naming the op on a dtype mismatch.
pub fn typed<'a, T: Elem>(op: &str, t: &'a Tensor) -> Result<&'a [T], OpError> {
    t.as_slice::<T>().map_err(|e| OpError::tensor(op, e))
}

/// Builds an output tensor, mapping a size mismatch (a bug in the op) to an error.
pub fn output<T: Elem>(op: &str, shape: Vec<usize>, data: Vec<T>) -> Result<Tensor, OpError> {
    Tensor::from_vec(shape, data).map_err(|e| OpError::tensor(op, e))
}

/// Integer values of a shape/axes/indices input.
pub fn ints_of(op: &str, t: &Tensor) -> Result<Vec<i64>, OpError> {
    t.to_i64_vec().map_err(|e| OpError::tensor(op, e))
}

/// Concrete dims to IR dims.
pub fn dims(shape: &[usize]) -> Vec<Dim> {
    shape.iter().map(|&d| Dim::Known(d)).collect()
}

/// Calls `$body` with `$v` bound to the input's typed slice and `$T` to its element type,
/// for every numeric dtype (not bool, not string). Use inside a fn returning
/// `Result<_, OpError>`: other dtypes return an `Unsupported` error naming `$op`.
#[macro_export]
macro_rules! dispatch_num {
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
            other => {
                return Err(millrace_ir::OpError::unsupported(
                    $op,
                    format!("dtype {}", other.dtype()),
                ))
            }
        }
    }};
}

/// Like [`dispatch_num!`] for float dtypes only (f32, f64, f16, bf16).
#[macro_export]
macro_rules! dispatch_float {
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
            other => {
                return Err(millrace_ir::OpError::unsupported(
                    $op,
                    format!("dtype {}", other.dtype()),
                ))
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_index_repeats_rows_and_columns() {
        assert_eq!(broadcast_index(&[2, 3], &[3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(broadcast_index(&[2, 3], &[2, 1]), vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(broadcast_index(&[2, 2], &[]), vec![0, 0, 0, 0]);
    }

    #[test]
    fn negative_axes_resolve() {
        assert_eq!(normalize_axis("T", -1, 4).unwrap(), 3);
        assert!(normalize_axis("T", 4, 4).is_err());
        assert!(normalize_axis("T", -5, 4).is_err());
    }
}
