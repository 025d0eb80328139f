//! If (ONNX opsets 1, 11, 13, 16, 19, 21, 23, 24, 25): runs `then_branch` or `else_branch`
//! depending on a one-element boolean condition.
use super::body_output_types;
use millrace_core::{Dim, Tensor};
use millrace_ir::{ArgRef, Attributes, Graph, InferCtx, Inputs, Op, OpError, Value, ValueType};

fn truth(cond: &Tensor) -> Result<bool, OpError> {
    let v = cond.to_i64_vec().map_err(|e| OpError::tensor(NAME, e))?;
    match v.as_slice() {
        [c] => Ok(*c != 0),
        _ => Err(OpError::invalid(
            NAME,
            format!("cond must hold one element, has {}", v.len()),
        )),
    }
}
use std::any::Any;
use std::sync::Arc;

#[derive(Debug)]
pub struct If {
    pub then_branch: Arc<Graph>,
    pub else_branch: Arc<Graph>,
}

const NAME: &str = "If";

impl If {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let then_branch = attrs
            .graph("then_branch")?
            .ok_or_else(|| OpError::attribute(NAME, "then_branch", "required"))?;
        let else_branch = attrs
            .graph("else_branch")?
            .ok_or_else(|| OpError::attribute(NAME, "else_branch", "required"))?;
        if then_branch.outputs.len() != else_branch.outputs.len() {
            return Err(OpError::invalid(
                NAME,
                "then_branch and else_branch have different numbers of outputs",
            ));
        }
        Ok(Arc::new(If {
            then_branch,
            else_branch,
        }))
    }
}

/// Both branches' types merged: what both agree on stays known.
fn join(a: &ValueType, b: &ValueType) -> ValueType {
    let dtype = if a.dtype == b.dtype { a.dtype } else { None };
    let shape = match (&a.shape, &b.shape) {
        (Some(x), Some(y)) if x.len() == y.len() => Some(
            x.iter()
                .zip(y)
                .enumerate()
                .map(|(i, (p, q))| {
                    if p == q {
                        p.clone()
                    } else {
                        Dim::Sym(format!("If_dim{i}"))
                    }
                })
                .collect(),
        ),
        _ => None,
    };
    ValueType { dtype, shape }
}

impl Op for If {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, _ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let t = body_output_types(&self.then_branch);
        let e = body_output_types(&self.else_branch);
        Ok(t.iter().zip(&e).map(|(a, b)| join(a, b)).collect())
    }

    fn takes_values(&self) -> bool {
        true
    }

    fn eval_values(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, OpError> {
        let cond = inputs
            .first()
            .copied()
            .flatten()
            .and_then(Value::as_tensor)
            .ok_or(OpError::MissingInput {
                op: NAME.into(),
                index: 0,
            })?;
        let branch = if truth(cond)? {
            &self.then_branch
        } else {
            &self.else_branch
        };
        let captures: Vec<ArgRef<'_>> = inputs
            .iter()
            .skip(1)
            .flatten()
            .map(|v| ArgRef::Value(v))
            .collect();
        branch.eval_args(&[], &captures)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let cond = inputs.req(0)?;
        let v = cond.to_i64_vec().map_err(|e| OpError::tensor(NAME, e))?;
        let [c] = v.as_slice() else {
            return Err(OpError::invalid(
                NAME,
                format!("cond must hold one element, has {}", v.len()),
            ));
        };
        let branch = if *c != 0 {
            &self.then_branch
        } else {
            &self.else_branch
        };
        let captures: Vec<&Tensor> = (1..inputs.len()).filter_map(|i| inputs.opt(i)).collect();
        branch.eval(&[], &captures)
    }

    fn describe(&self) -> String {
        format!(
            "then: {} nodes, else: {} nodes",
            self.then_branch.nodes.len(),
            self.else_branch.nodes.len()
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
