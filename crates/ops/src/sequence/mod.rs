//! Sequence and optional ops: their inputs and outputs are [`millrace_ir::Value`]s
//! (sequences of tensors, optionals), so they implement `eval_values`.
use crate::registry::Registry;
use millrace_core::{Tensor, TensorData};
use millrace_ir::{OpError, Value};

pub mod concat_from_sequence;
pub mod optional;
pub mod optional_get_element;
pub mod optional_has_element;
pub mod sequence_at;
pub mod sequence_construct;
pub mod sequence_empty;
pub mod sequence_erase;
pub mod sequence_insert;
pub mod sequence_length;
pub mod sequence_map;
pub mod split_to_sequence;

pub fn register(r: &mut Registry) {
    r.add(
        "ConcatFromSequence",
        concat_from_sequence::ConcatFromSequence::from_onnx,
    );
    r.add("Optional", optional::Optional::from_onnx);
    r.add(
        "OptionalGetElement",
        optional_get_element::OptionalGetElement::from_onnx,
    );
    r.add(
        "OptionalHasElement",
        optional_has_element::OptionalHasElement::from_onnx,
    );
    r.add("SequenceAt", sequence_at::SequenceAt::from_onnx);
    r.add(
        "SequenceConstruct",
        sequence_construct::SequenceConstruct::from_onnx,
    );
    r.add("SequenceEmpty", sequence_empty::SequenceEmpty::from_onnx);
    r.add("SequenceErase", sequence_erase::SequenceErase::from_onnx);
    r.add("SequenceInsert", sequence_insert::SequenceInsert::from_onnx);
    r.add("SequenceLength", sequence_length::SequenceLength::from_onnx);
    r.add("SequenceMap", sequence_map::SequenceMap::from_onnx);
    r.add(
        "SplitToSequence",
        split_to_sequence::SplitToSequence::from_onnx,
    );
}

/// The sequence in input `i`, or an error naming the op.
pub(crate) fn seq<'a>(
    op: &str,
    inputs: &[Option<&'a Value>],
    i: usize,
) -> Result<&'a [Tensor], OpError> {
    match inputs.get(i).copied().flatten() {
        Some(Value::Sequence(s)) => Ok(s),
        Some(Value::Optional(Some(v))) => match v.as_ref() {
            Value::Sequence(s) => Ok(s),
            other => Err(OpError::invalid(
                op,
                format!(
                    "input #{i} must be a sequence, got an optional {}",
                    other.kind()
                ),
            )),
        },
        Some(other) => Err(OpError::invalid(
            op,
            format!("input #{i} must be a sequence, got a {}", other.kind()),
        )),
        None => Err(OpError::MissingInput {
            op: op.to_string(),
            index: i,
        }),
    }
}

/// The tensor in input `i`, if present.
pub(crate) fn tensor<'a>(
    op: &str,
    inputs: &[Option<&'a Value>],
    i: usize,
) -> Result<Option<&'a Tensor>, OpError> {
    match inputs.get(i).copied().flatten() {
        None => Ok(None),
        Some(Value::Tensor(t)) => Ok(Some(t)),
        Some(other) => Err(OpError::invalid(
            op,
            format!("input #{i} must be a tensor, got a {}", other.kind()),
        )),
    }
}

/// A one-element integer input as i64.
pub(crate) fn position(op: &str, t: &Tensor) -> Result<i64, OpError> {
    match t
        .to_i64_vec()
        .map_err(|e| OpError::tensor(op, e))?
        .as_slice()
    {
        [p] => Ok(*p),
        _ => Err(OpError::invalid(op, "position must hold one element")),
    }
}

/// Resolves a possibly negative position in `0..=len` (inclusive when `allow_end`).
pub(crate) fn resolve(op: &str, p: i64, len: usize, allow_end: bool) -> Result<usize, OpError> {
    let n = len as i64;
    let q = if p < 0 { p + n } else { p };
    let hi = if allow_end { n } else { n - 1 };
    if q < 0 || q > hi {
        return Err(OpError::invalid(
            op,
            format!("position {p} is out of range for a sequence of {len}"),
        ));
    }
    Ok(q as usize)
}

/// `x[.., a..b, ..]` along `axis`.
pub(crate) fn narrow(
    op: &str,
    x: &Tensor,
    axis: usize,
    a: usize,
    b: usize,
) -> Result<Tensor, OpError> {
    let shape = x.shape();
    let outer: usize = shape[..axis].iter().product();
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let idx = (0..outer).flat_map(|o| {
        (a..b).flat_map(move |i| ((o * len + i) * inner)..((o * len + i) * inner + inner))
    });
    let data: TensorData = x
        .data()
        .gather(idx)
        .ok_or_else(|| OpError::invalid(op, "slice out of range"))?;
    let mut s = shape.to_vec();
    s[axis] = b - a;
    Tensor::new(s, data).map_err(|e| OpError::tensor(op, e))
}

/// Concatenates tensors along an existing axis.
pub(crate) fn concat_axis(op: &str, parts: &[Tensor], axis: usize) -> Result<Tensor, OpError> {
    let first = parts
        .first()
        .ok_or_else(|| OpError::invalid(op, "nothing to concatenate"))?;
    let rank = first.rank();
    if axis >= rank {
        return Err(OpError::invalid(
            op,
            format!("axis {axis} out of range for rank {rank}"),
        ));
    }
    for p in parts {
        let ok = p.rank() == rank
            && p.dtype() == first.dtype()
            && (0..rank).all(|d| d == axis || p.shape()[d] == first.shape()[d]);
        if !ok {
            return Err(OpError::invalid(
                op,
                format!(
                    "cannot concatenate {:?} with {:?}",
                    p.shape(),
                    first.shape()
                ),
            ));
        }
    }
    let outer: usize = first.shape()[..axis].iter().product();
    let inner: usize = first.shape()[axis + 1..].iter().product();
    let mut bases = Vec::with_capacity(parts.len());
    let mut all = first.data().clone();
    bases.push(0);
    for p in &parts[1..] {
        bases.push(all.len());
        all = crate::control::concat_data(op, &all, p.data())?;
    }
    let mut idx = Vec::with_capacity(all.len());
    for o in 0..outer {
        for (p, base) in parts.iter().zip(&bases) {
            let block = p.shape()[axis] * inner;
            let start = base + o * block;
            idx.extend(start..start + block);
        }
    }
    let data = all
        .gather(idx.into_iter())
        .ok_or_else(|| OpError::invalid(op, "concat index out of range"))?;
    let mut shape = first.shape().to_vec();
    shape[axis] = parts.iter().map(|p| p.shape()[axis]).sum();
    Tensor::new(shape, data).map_err(|e| OpError::tensor(op, e))
}
