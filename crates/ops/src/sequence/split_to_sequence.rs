//! SplitToSequence (ONNX opsets 11, 24): splits a tensor along `axis` into a sequence, by a
//! scalar chunk size, a list of sizes, or (without `split`) into single slices, whose axis
//! is dropped when `keepdims` is 0.
use super::*;
use crate::util::normalize_axis;
use millrace_core::Tensor;
use millrace_ir::{Attributes, InferCtx, Inputs, Op, OpError, Value, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Debug)]
pub struct SplitToSequence {
    pub axis: i64,
    pub keepdims: bool,
}

impl SplitToSequence {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(SplitToSequence {
            axis: attrs.int_or("axis", 0)?,
            keepdims: attrs.int_or("keepdims", 1)? != 0,
        }))
    }
}

impl Op for SplitToSequence {
    fn name(&self) -> &'static str {
        "SplitToSequence"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ValueType {
            dtype: ctx.opt_input(0).and_then(|t| t.dtype),
            shape: None,
        }])
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
        let x = tensor(op, inputs, 0)?.ok_or(OpError::MissingInput {
            op: op.to_string(),
            index: 0,
        })?;
        let axis = normalize_axis(op, self.axis, x.rank())?;
        let dim = x.shape()[axis];
        let (sizes, squeeze): (Vec<usize>, bool) = match tensor(op, inputs, 1)? {
            None => (vec![1; dim], !self.keepdims),
            Some(s) => {
                let v = s.to_i64_vec().map_err(|e| OpError::tensor(op, e))?;
                if v.iter().any(|&n| n < 0) {
                    return Err(OpError::invalid(op, "split sizes must be non-negative"));
                }
                if s.rank() == 0 {
                    let c = *v
                        .first()
                        .ok_or_else(|| OpError::invalid(op, "empty split"))?
                        as usize;
                    if c == 0 {
                        return Err(OpError::invalid(op, "split size must be positive"));
                    }
                    let mut sizes = vec![c; dim / c];
                    if dim % c != 0 {
                        sizes.push(dim % c);
                    }
                    (sizes, false)
                } else {
                    let sizes: Vec<usize> = v.iter().map(|&n| n as usize).collect();
                    if sizes.iter().sum::<usize>() != dim {
                        return Err(OpError::invalid(
                            op,
                            format!("split sizes {v:?} do not add up to {dim}"),
                        ));
                    }
                    (sizes, false)
                }
            }
        };
        let mut out = Vec::with_capacity(sizes.len());
        let mut at = 0;
        for n in sizes {
            let mut t = narrow(op, x, axis, at, at + n)?;
            if squeeze {
                let mut s = t.shape().to_vec();
                s.remove(axis);
                t = t.reshape(s).map_err(|e| OpError::tensor(op, e))?;
            }
            out.push(t);
            at += n;
        }
        Ok(vec![Value::Sequence(out)])
    }

    fn describe(&self) -> String {
        format!("axis={} keepdims={}", self.axis, u8::from(self.keepdims))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
