//! Helpers for the planned-buffer hooks of [`millrace_ir::Op`] (`writes_into`,
//! `eval_into`, `inplace_input`, `eval_inplace`): type checks the ops share, and the
//! bridge from [`Inputs`] to [`F32View`]s so that `eval` can allocate its output and run
//! the same into-path the planner calls.
use millrace_core::{DType, Tensor, TensorData};
use millrace_ir::{F32View, Inputs, OpError, ValueType};

/// The concrete shape of an f32 value, `None` for any other dtype or an unknown shape.
pub fn f32_shape(t: &ValueType) -> Option<Vec<usize>> {
    if t.dtype != Some(DType::F32) {
        return None;
    }
    t.concrete_shape()
}

/// True when `t` is an f32 value of concrete shape.
pub fn is_f32(t: Option<&ValueType>) -> bool {
    t.is_some_and(|t| f32_shape(t).is_some())
}

/// One output, f32 and concrete, and the first `n` inputs f32 and concrete: the common
/// condition of `writes_into`.
pub fn f32_io(inputs: &[ValueType], outputs: &[ValueType], n: usize) -> bool {
    outputs.len() == 1 && is_f32(outputs.first()) && (0..n).all(|i| is_f32(inputs.get(i)))
}

/// The inputs as f32 views (`None` for an absent input); an error naming `op` when a
/// present input is not f32.
/// `Op::writes_into` of a fused op reading input 0 and, with `residual`, input 1 shaped
/// like the output: all f32 with concrete shapes, the output the shape `out_shape` gives.
pub fn fused_writes_into<E>(
    inputs: &[ValueType],
    outputs: &[ValueType],
    residual: bool,
    out_shape: impl Fn(&[usize]) -> Result<Vec<usize>, E>,
) -> bool {
    if !f32_io(inputs, outputs, 1 + residual as usize) {
        return false;
    }
    match (f32_shape(&inputs[0]), f32_shape(&outputs[0])) {
        (Some(x), Some(y)) => {
            out_shape(&x).is_ok_and(|s| s == y)
                && (!residual || f32_shape(&inputs[1]).is_some_and(|r| r == y))
        }
        _ => false,
    }
}

pub fn views<'a>(op: &str, inputs: &Inputs<'a>) -> Result<Vec<Option<F32View<'a>>>, OpError> {
    (0..inputs.len())
        .map(|i| match inputs.opt(i) {
            None => Ok(None),
            Some(t) => F32View::of(t).map(Some).ok_or_else(|| {
                OpError::invalid(op, format!("input {i} must be float32, got {}", t.dtype()))
            }),
        })
        .collect()
}

/// Allocates the output `shape` and fills it with `f` (the op's into-path).
pub fn alloc_f32(
    op: &str,
    shape: Vec<usize>,
    f: impl FnOnce(&mut [f32]) -> Result<(), OpError>,
) -> Result<Tensor, OpError> {
    let n = shape.iter().product::<usize>();
    let mut y = vec![0.0f32; n];
    f(&mut y)?;
    Tensor::new(shape, TensorData::F32(y)).map_err(|e| OpError::tensor(op, e))
}

/// Checks the planner handed an output buffer of `out_shape`'s size.
pub fn check_out(op: &str, out: &[f32], out_shape: &[usize]) -> Result<(), OpError> {
    let n = out_shape.iter().product::<usize>();
    if out.len() != n {
        return Err(OpError::invalid(
            op,
            format!(
                "output buffer holds {} values, shape {out_shape:?} needs {n}",
                out.len()
            ),
        ));
    }
    Ok(())
}

/// Checks an input's shape is what the op expected.
pub fn check_shape(op: &str, what: &str, got: &[usize], want: &[usize]) -> Result<(), OpError> {
    if got != want {
        return Err(OpError::invalid(
            op,
            format!("{what} shape {got:?} differs from {want:?}"),
        ));
    }
    Ok(())
}
