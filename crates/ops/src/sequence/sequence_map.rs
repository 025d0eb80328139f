//! SequenceMap (ONNX opset 17): applies `body` to each element of the input sequence; each
//! additional input is taken element by element when it is a sequence and whole when it
//! is a tensor. Every body output becomes a sequence.
use super::*;
use millrace_core::Tensor;
use millrace_ir::{ArgRef, Attributes, Graph, InferCtx, Inputs, Op, OpError, Value, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Debug)]
pub struct SequenceMap {
    pub body: Arc<Graph>,
    /// Inputs the node declares; captures follow.
    pub formal: usize,
}

impl SequenceMap {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let body = attrs
            .graph("body")?
            .ok_or_else(|| OpError::attribute("SequenceMap", "body", "required"))?;
        let formal = attrs.node_inputs().max(1);
        if body.inputs.len() != formal {
            return Err(OpError::invalid(
                "SequenceMap",
                "the body takes a different number of inputs than the node gives",
            ));
        }
        Ok(Arc::new(SequenceMap { body, formal }))
    }
}

impl Op for SequenceMap {
    fn name(&self) -> &'static str {
        "SequenceMap"
    }

    fn infer(&self, _ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(self
            .body
            .outputs
            .iter()
            .map(|v| ValueType {
                dtype: self.body.value(*v).ty.dtype,
                shape: None,
            })
            .collect())
    }

    fn eval(&self, _inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        Err(OpError::unsupported(
            self.name(),
            "runs through eval_values",
        ))
    }

    fn takes_values(&self) -> bool {
        true
    }

    fn eval_values(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, OpError> {
        let op = self.name();
        let s = seq(op, inputs, 0)?;
        let captures: Vec<ArgRef<'_>> = inputs
            .iter()
            .skip(self.formal)
            .map(|v| v.map(ArgRef::Value))
            .collect::<Option<_>>()
            .unwrap_or_default();
        let mut outs: Vec<Vec<Tensor>> = vec![Vec::new(); self.body.outputs.len()];
        for (i, elem) in s.iter().enumerate() {
            let mut args = vec![ArgRef::Tensor(elem)];
            for k in 1..self.formal {
                match inputs.get(k).copied().flatten() {
                    Some(Value::Sequence(extra)) => {
                        let t = extra.get(i).ok_or_else(|| {
                            OpError::invalid(op, "input sequences differ in length")
                        })?;
                        args.push(ArgRef::Tensor(t));
                    }
                    Some(v) => args.push(ArgRef::Value(v)),
                    None => {
                        return Err(OpError::MissingInput {
                            op: op.to_string(),
                            index: k,
                        })
                    }
                }
            }
            for (slot, v) in outs.iter_mut().zip(self.body.eval_args(&args, &captures)?) {
                slot.push(v.into_tensor().ok_or_else(|| {
                    OpError::unsupported(op, "a body output that is not a tensor")
                })?);
            }
        }
        Ok(outs.into_iter().map(Value::Sequence).collect())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
