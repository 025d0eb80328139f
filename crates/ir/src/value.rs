//! Runtime values beyond tensors: sequences of tensors and optionals (ONNX sequence and
//! optional types). Most ops see only tensors; ops that take or make the other kinds say
//! so through [`crate::Op::takes_values`] and implement [`crate::Op::eval_values`].
use crate::op::{Inputs, Op, OpError};
use millrace_core::Tensor;
use std::borrow::Cow;

/// A value flowing along a graph edge at run time.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Tensor(Tensor),
    Sequence(Vec<Tensor>),
    /// An optional: `None` when empty.
    Optional(Option<Box<Value>>),
}

impl Value {
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }

    pub fn into_tensor(self) -> Option<Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Value::Tensor(_) => "tensor",
            Value::Sequence(_) => "sequence",
            Value::Optional(_) => "optional",
        }
    }
}

/// The kind of a graph input or output that is not a plain tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Tensor,
    Sequence,
    Optional(Box<ValueKind>),
}

/// An argument as an executor holds it: a borrowed tensor (weights, user inputs) or a value.
#[derive(Clone, Copy, Debug)]
pub enum ArgRef<'a> {
    Tensor(&'a Tensor),
    Value(&'a Value),
}

impl<'a> ArgRef<'a> {
    pub fn tensor(&self) -> Option<&'a Tensor> {
        match *self {
            ArgRef::Tensor(t) => Some(t),
            ArgRef::Value(v) => v.as_tensor(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ArgRef::Tensor(_) => "tensor",
            ArgRef::Value(v) => v.kind(),
        }
    }
}

/// Runs `op` on executor arguments: tensors for ordinary ops, values for value-aware ones.
pub fn invoke(op: &dyn Op, args: &[Option<ArgRef<'_>>]) -> Result<Vec<Value>, OpError> {
    if op.takes_values() {
        let owned: Vec<Option<Cow<'_, Value>>> = args
            .iter()
            .map(|a| {
                a.map(|a| match a {
                    ArgRef::Tensor(t) => Cow::Owned(Value::Tensor(t.clone())),
                    ArgRef::Value(v) => Cow::Borrowed(v),
                })
            })
            .collect();
        let refs: Vec<Option<&Value>> = owned.iter().map(|c| c.as_deref()).collect();
        return op.eval_values(refs.as_slice());
    }
    let mut tensors = Vec::with_capacity(args.len());
    for (i, a) in args.iter().enumerate() {
        tensors.push(match a {
            None => None,
            Some(a) => Some(a.tensor().ok_or_else(|| {
                OpError::unsupported(
                    op.name(),
                    format!("input #{i} is a {}, this op takes tensors", a.kind()),
                )
            })?),
        });
    }
    Ok(op
        .eval(&Inputs::new(op.name(), &tensors))?
        .into_iter()
        .map(Value::Tensor)
        .collect())
}
