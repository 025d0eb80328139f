//! Control flow: If, Loop, Scan. Their bodies are subgraphs ([`millrace_ir::Graph`]) run by
//! the IR's interpreter; values a body takes from the enclosing scope arrive as the node's
//! trailing inputs (after the ones the model declares) and are passed as captures.
use crate::registry::Registry;
use millrace_core::{Dim, Tensor};
use millrace_ir::{Graph, OpError, ValueType};

pub mod if_op;
pub mod loop_op;
pub mod scan;

pub fn register(r: &mut Registry) {
    r.add("If", if_op::If::from_onnx);
    r.add("Loop", loop_op::Loop::from_onnx);
    r.add("Scan", scan::Scan::from_onnx);
}

/// Output types of a body, as far as they are known.
pub(crate) fn body_output_types(g: &Graph) -> Vec<ValueType> {
    g.outputs.iter().map(|v| g.value(*v).ty.clone()).collect()
}

/// Stacks equally shaped tensors along a new axis `axis` (0..=rank).
pub(crate) fn stack(op: &str, parts: &[Tensor], axis: usize) -> Result<Tensor, OpError> {
    let first = parts
        .first()
        .ok_or_else(|| OpError::invalid(op, "nothing to stack"))?;
    let shape = first.shape().to_vec();
    if axis > shape.len() {
        return Err(OpError::invalid(
            op,
            format!("axis {axis} out of range for rank {}", shape.len()),
        ));
    }
    for p in parts {
        if p.shape() != shape.as_slice() || p.dtype() != first.dtype() {
            return Err(OpError::invalid(
                op,
                format!(
                    "iterations produced different shapes or dtypes: {:?} vs {:?}",
                    p.shape(),
                    shape
                ),
            ));
        }
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis..].iter().product();
    let n = parts.len();
    let mut idx = Vec::with_capacity(outer * n * inner);
    // Flat index over the concatenation of all parts: part p starts at p * numel.
    let numel = outer * inner;
    for o in 0..outer {
        for p in 0..n {
            let base = p * numel + o * inner;
            idx.extend(base..base + inner);
        }
    }
    let mut all = first.data().clone();
    for p in &parts[1..] {
        all = concat_data(op, &all, p.data())?;
    }
    let data = all
        .gather(idx.into_iter())
        .ok_or_else(|| OpError::invalid(op, "stack index out of range"))?;
    let mut out_shape = shape;
    out_shape.insert(axis, n);
    Tensor::new(out_shape, data).map_err(|e| OpError::tensor(op, e))
}

pub(crate) fn concat_data(
    op: &str,
    a: &millrace_core::TensorData,
    b: &millrace_core::TensorData,
) -> Result<millrace_core::TensorData, OpError> {
    fn cat<T: millrace_core::Elem>(
        a: &[T],
        b: &millrace_core::TensorData,
    ) -> Option<millrace_core::TensorData> {
        let b = T::slice(b)?;
        let mut v = a.to_vec();
        v.extend_from_slice(b);
        Some(T::wrap(v))
    }
    millrace_core::with_data!(a, v => cat(v, b))
        .ok_or_else(|| OpError::invalid(op, "dtype mismatch between iterations"))
}

/// An empty tensor `[0, ...elem]` for a scan output of a loop that ran zero times, when the
/// body declares the element's dtype and full shape.
pub(crate) fn empty_scan_output(op: &str, ty: &ValueType, axis: usize) -> Result<Tensor, OpError> {
    let (Some(dtype), Some(mut shape)) = (ty.dtype, ty.concrete_shape()) else {
        return Err(OpError::unsupported(
            op,
            "zero iterations with a scan output whose element shape is not declared",
        ));
    };
    if axis > shape.len() {
        return Err(OpError::invalid(op, "scan output axis out of range"));
    }
    shape.insert(axis, 0);
    Ok(Tensor::zeros(dtype, shape))
}

/// A type with the dtype kept and the shape dropped (it may change between iterations).
pub(crate) fn dtype_only(t: Option<&ValueType>) -> ValueType {
    ValueType {
        dtype: t.and_then(|t| t.dtype),
        shape: None,
    }
}

/// Inserts an unknown dimension at `axis` (the iteration count) into a known-rank type.
pub(crate) fn with_iter_dim(t: &ValueType, axis: usize, name: &str) -> ValueType {
    let shape = t.shape.as_ref().filter(|s| axis <= s.len()).map(|s| {
        let mut s = s.clone();
        s.insert(axis, Dim::Sym(name.to_string()));
        s
    });
    ValueType {
        dtype: t.dtype,
        shape,
    }
}
