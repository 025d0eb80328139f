//! Helpers shared by the tensor ops: dtype-generic gathers, index iteration, symbolic dims.
use millrace_core::{with_data, DType, Dim, Elem, Tensor, TensorData};
use millrace_ir::{InferCtx, Inputs, OpError};

/// Builds a tensor of `shape` whose elements are `data[idx[k]]`, for any dtype.
/// An out-of-range index is an error, never a panic.
pub(crate) fn take(
    op: &str,
    data: &TensorData,
    idx: &[usize],
    shape: Vec<usize>,
) -> Result<Tensor, OpError> {
    let n = data.len();
    if let Some(&bad) = idx.iter().find(|&&i| i >= n) {
        return Err(OpError::invalid(
            op,
            format!("internal index {bad} out of range for {n} elements"),
        ));
    }
    let out = data
        .gather(idx.iter().copied())
        .ok_or_else(|| OpError::invalid(op, "index out of range"))?;
    Tensor::new(shape, out).map_err(|e| OpError::tensor(op, e))
}

/// Builds a tensor of `shape` from runs of `inner` elements: for each of `outer` blocks of
/// `dim * inner` elements, the runs at `idx` (each `< dim`), in order. Gather along an axis
/// as whole-run copies, with no per-element index list. An out-of-range run is an error.
pub(crate) fn take_runs(
    op: &str,
    data: &TensorData,
    (outer, dim, inner): (usize, usize, usize),
    idx: &[usize],
    shape: Vec<usize>,
) -> Result<Tensor, OpError> {
    fn runs<T: Elem>(
        op: &str,
        v: &[T],
        (outer, dim, inner): (usize, usize, usize),
        idx: &[usize],
    ) -> Result<Vec<T>, OpError> {
        let mut out = Vec::with_capacity(outer * idx.len() * inner);
        for o in 0..outer {
            for &i in idx {
                let run = (i < dim)
                    .then(|| (o * dim + i) * inner)
                    .and_then(|b| v.get(b..b + inner))
                    .ok_or_else(|| OpError::invalid(op, "internal index out of range"))?;
                out.extend_from_slice(run);
            }
        }
        Ok(out)
    }
    // The output size is the caller's shape: check it before reserving room for it (an
    // index tensor from a model can make it overflow).
    let n = checked_numel(op, &shape)?;
    if outer
        .checked_mul(idx.len())
        .and_then(|r| r.checked_mul(inner))
        != Some(n)
    {
        return Err(OpError::invalid(
            op,
            "output shape does not match the gathered runs",
        ));
    }
    let out = with_data!(data, v => Elem::wrap(runs(op, v, (outer, dim, inner), idx)?));
    Tensor::new(shape, out).map_err(|e| OpError::tensor(op, e))
}

/// The same data under a new shape (pure metadata: the buffer is cloned, not recomputed).
pub(crate) fn with_shape(op: &str, t: &Tensor, shape: Vec<usize>) -> Result<Tensor, OpError> {
    Tensor::new(shape, t.data().clone()).map_err(|e| OpError::tensor(op, e))
}

/// Number of elements of a shape, an error on overflow.
pub(crate) fn checked_numel(op: &str, shape: &[usize]) -> Result<usize, OpError> {
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| OpError::invalid(op, format!("shape {shape:?} is too large")))
    })
}

/// Calls `f` with every multi-index of `shape` in row-major order.
pub(crate) fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut idx = vec![0usize; shape.len()];
    loop {
        f(&idx);
        let mut ax = shape.len();
        loop {
            if ax == 0 {
                return;
            }
            ax -= 1;
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
}

/// Flat source indices for an output of `out_shape` where output axis `i` advances the
/// source by `strides[i]` (possibly negative or zero) from `offset`.
pub(crate) fn strided_indices(out_shape: &[usize], strides: &[isize], offset: isize) -> Vec<usize> {
    let n: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(n);
    for_each_index(out_shape, |ix| {
        let mut p = offset;
        for (i, s) in ix.iter().zip(strides) {
            p += *i as isize * s;
        }
        out.push(p.max(0) as usize);
    });
    out
}

/// Row-major strides as isize.
pub(crate) fn istrides(shape: &[usize]) -> Vec<isize> {
    millrace_core::strides_of(shape)
        .into_iter()
        .map(|s| s as isize)
        .collect()
}

/// Integer values of a constant input during inference, if known.
pub(crate) fn const_ints(ctx: &InferCtx<'_>, i: usize) -> Option<Vec<i64>> {
    ctx.constant(i).and_then(|t| t.to_i64_vec().ok())
}

/// Integer values of an optional input during evaluation.
pub(crate) fn opt_ints(
    op: &str,
    inputs: &Inputs<'_>,
    i: usize,
) -> Result<Option<Vec<i64>>, OpError> {
    match inputs.opt(i) {
        None => Ok(None),
        Some(t) => Ok(Some(crate::util::ints_of(op, t)?)),
    }
}

/// A single integer from a scalar-like input (a rank-0 or one-element tensor).
pub(crate) fn scalar_int(op: &str, t: &Tensor, what: &str) -> Result<i64, OpError> {
    let v = crate::util::ints_of(op, t)?;
    if v.len() != 1 {
        return Err(OpError::invalid(
            op,
            format!("{what} must hold one element, got {}", v.len()),
        ));
    }
    Ok(v[0])
}

/// Product of dims: known when all are known, otherwise a symbolic expression.
pub(crate) fn dim_product(dims: &[Dim]) -> Dim {
    let mut known = 1usize;
    let mut syms: Vec<String> = vec![];
    for d in dims {
        match d {
            Dim::Known(n) => known = known.saturating_mul(*n),
            Dim::Sym(s) => syms.push(s.clone()),
        }
    }
    if known == 0 {
        return Dim::Known(0);
    }
    if syms.is_empty() {
        return Dim::Known(known);
    }
    if known != 1 {
        syms.push(known.to_string());
    }
    Dim::Sym(syms.join("*"))
}

/// Sum of dims: known when all are known, otherwise a symbolic expression.
pub(crate) fn dim_sum(dims: &[Dim]) -> Dim {
    let mut known = 0usize;
    let mut syms: Vec<String> = vec![];
    for d in dims {
        match d {
            Dim::Known(n) => known = known.saturating_add(*n),
            Dim::Sym(s) => syms.push(s.clone()),
        }
    }
    if syms.is_empty() {
        return Dim::Known(known);
    }
    if known != 0 {
        syms.push(known.to_string());
    }
    Dim::Sym(syms.join("+"))
}

/// Combines two dims that must be equal: known wins over symbolic; an error if both are
/// known and differ.
pub(crate) fn unify_dim(op: &str, a: &Dim, b: &Dim) -> Result<Dim, OpError> {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) if x != y => Err(OpError::invalid(
            op,
            format!("dimensions {x} and {y} must match"),
        )),
        (Dim::Known(_), _) => Ok(a.clone()),
        (_, Dim::Known(_)) => Ok(b.clone()),
        _ => Ok(a.clone()),
    }
}

/// Resolves an axis in `[-rank, rank]` (negative counts from the end) to `0..=rank`
/// (Flatten-style: `axis == rank` is allowed).
pub(crate) fn normalize_axis_incl(op: &str, axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a > r {
        return Err(OpError::invalid(
            op,
            format!("axis {axis} is out of range for rank {rank}"),
        ));
    }
    Ok(a as usize)
}

/// Typed slice of another tensor with the same element type as `_like`.
pub(crate) fn same_typed<'a, T: Elem>(
    op: &str,
    _like: &[T],
    t: &'a Tensor,
) -> Result<&'a [T], OpError> {
    T::slice(t.data()).ok_or_else(|| {
        OpError::invalid(
            op,
            format!("dtype mismatch: expected {}, got {}", T::DTYPE, t.dtype()),
        )
    })
}

/// Like [`take`], but `None` picks the single element of `fill` (same dtype as `data`).
pub(crate) fn take_or(
    op: &str,
    data: &TensorData,
    idx: &[Option<usize>],
    fill: &TensorData,
    shape: Vec<usize>,
) -> Result<Tensor, OpError> {
    let out = with_data!(data, v => Elem::wrap(take_or_typed(op, v, idx, fill)?));
    Tensor::new(shape, out).map_err(|e| OpError::tensor(op, e))
}

fn take_or_typed<T: Elem>(
    op: &str,
    v: &[T],
    idx: &[Option<usize>],
    fill: &TensorData,
) -> Result<Vec<T>, OpError> {
    let f = same_typed_data(op, v, fill)?
        .first()
        .ok_or_else(|| OpError::invalid(op, "empty fill value"))?;
    let mut out = Vec::with_capacity(idx.len());
    for i in idx {
        out.push(match i {
            Some(i) => v
                .get(*i)
                .ok_or_else(|| OpError::invalid(op, "internal index out of range"))?
                .clone(),
            None => f.clone(),
        });
    }
    Ok(out)
}

fn assign_typed<T: Elem>(
    op: &str,
    v: &mut [T],
    pos: &[usize],
    src: &TensorData,
) -> Result<(), OpError> {
    let u = same_typed_data(op, v, src)?;
    for (&p, x) in pos.iter().zip(u) {
        let slot = v
            .get_mut(p)
            .ok_or_else(|| OpError::invalid(op, "internal position out of range"))?;
        *slot = x.clone();
    }
    Ok(())
}

fn same_typed_data<'a, T: Elem>(
    op: &str,
    _like: &[T],
    d: &'a TensorData,
) -> Result<&'a [T], OpError> {
    T::slice(d).ok_or_else(|| {
        OpError::invalid(
            op,
            format!("dtype mismatch: expected {}, got {}", T::DTYPE, d.dtype()),
        )
    })
}

/// A one-element buffer of `dtype` holding `v` (numeric and bool dtypes; strings get `""`
/// for 0 and an error otherwise).
pub(crate) fn scalar_data(op: &str, dtype: DType, v: f64) -> Result<TensorData, OpError> {
    use half::{bf16, f16};
    Ok(match dtype {
        DType::F32 => TensorData::F32(vec![v as f32]),
        DType::F64 => TensorData::F64(vec![v]),
        DType::F16 => TensorData::F16(vec![f16::from_f64(v)]),
        DType::BF16 => TensorData::BF16(vec![bf16::from_f64(v)]),
        DType::I8 => TensorData::I8(vec![v as i8]),
        DType::I16 => TensorData::I16(vec![v as i16]),
        DType::I32 => TensorData::I32(vec![v as i32]),
        DType::I64 => TensorData::I64(vec![v as i64]),
        DType::U8 => TensorData::U8(vec![v as u8]),
        DType::U16 => TensorData::U16(vec![v as u16]),
        DType::U32 => TensorData::U32(vec![v as u32]),
        DType::U64 => TensorData::U64(vec![v as u64]),
        DType::Bool => TensorData::Bool(vec![v != 0.0]),
        DType::String if v == 0.0 => TensorData::String(vec![String::new()]),
        DType::String => {
            return Err(OpError::unsupported(
                op,
                "a numeric value for a string tensor",
            ))
        }
        narrow => return Err(OpError::unsupported(op, format!("dtype {narrow}"))),
    })
}

/// Cost of a gather-like op: reads the inputs from `first_small` on (indices, params)
/// plus as many data bytes as it writes.
pub(crate) fn gather_cost(
    inputs: &[millrace_ir::ValueType],
    outputs: &[millrace_ir::ValueType],
    first_small: usize,
) -> millrace_ir::Cost {
    let c = millrace_ir::Cost::movement(inputs.get(first_small..).unwrap_or(&[]), outputs);
    millrace_ir::Cost {
        bytes_read: c.bytes_read + c.bytes_written,
        ..c
    }
}

/// Exact arithmetic for scatter reductions and cumulative sums (wrapping for integers;
/// f16/bf16 through f32).
pub(crate) trait Arith: crate::util::Num {
    fn add(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
}

macro_rules! arith_int {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
        }
    )*};
}
arith_int!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! arith_float {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            fn add(self, o: Self) -> Self { self + o }
            fn mul(self, o: Self) -> Self { self * o }
        }
    )*};
}
arith_float!(f32, f64);

macro_rules! arith_half {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            fn add(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() + o.to_f32()) }
            fn mul(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() * o.to_f32()) }
        }
    )*};
}
arith_half!(half::f16, half::bf16);

/// How a scatter combines an update with the existing value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

impl Reduction {
    pub(crate) fn parse(op: &str, s: &str, opset: i64) -> Result<Reduction, OpError> {
        Ok(match s {
            "none" => Reduction::None,
            "add" if opset >= 16 => Reduction::Add,
            "mul" if opset >= 16 => Reduction::Mul,
            "max" if opset >= 18 => Reduction::Max,
            "min" if opset >= 18 => Reduction::Min,
            _ => {
                return Err(OpError::attribute(
                    op,
                    "reduction",
                    format!("unknown reduction {s}"),
                ))
            }
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::Add => "add",
            Reduction::Mul => "mul",
            Reduction::Max => "max",
            Reduction::Min => "min",
        }
    }
}

/// Writes `updates[k]` into `out[pos[k]]` in order, combining per `red`. Any dtype for
/// `Reduction::None`; numeric dtypes otherwise.
pub(crate) fn scatter_into(
    op: &str,
    data: &Tensor,
    pos: &[usize],
    updates: &Tensor,
    red: Reduction,
) -> Result<Tensor, OpError> {
    if data.dtype() != updates.dtype() {
        return Err(OpError::invalid(op, "updates dtype differs from data"));
    }
    if pos.len() != updates.len() {
        return Err(OpError::invalid(
            op,
            "updates size does not match the indices",
        ));
    }
    let n = data.len();
    if pos.iter().any(|&p| p >= n) {
        return Err(OpError::invalid(op, "internal position out of range"));
    }
    let mut out = data.clone();
    if red == Reduction::None {
        let src = updates.data();
        with_data!(out.data_mut(), v => assign_typed(op, v, pos, src)?);
        return Ok(out);
    }
    fn apply<T: Arith>(v: &mut [T], pos: &[usize], u: &[T], red: Reduction) {
        for (&p, &x) in pos.iter().zip(u) {
            let c = v[p];
            v[p] = match red {
                Reduction::None => x,
                Reduction::Add => c.add(x),
                Reduction::Mul => c.mul(x),
                Reduction::Max => {
                    if x > c {
                        x
                    } else {
                        c
                    }
                }
                Reduction::Min => {
                    if x < c {
                        x
                    } else {
                        c
                    }
                }
            };
        }
    }
    let mut d = out.data().clone();
    {
        let dd = &mut d;
        crate::dispatch_num!(op, updates, |u: T| {
            let v = T::slice_mut(dd).ok_or_else(|| OpError::invalid(op, "dtype mismatch"))?;
            apply::<T>(v, pos, u, red);
        });
    }
    *out.data_mut() = d;
    Ok(out)
}
