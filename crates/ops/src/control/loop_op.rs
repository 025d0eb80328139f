//! Loop (ONNX opsets 1, 11, 13, 16, 19, 21, 23, 24, 25): runs `body` while an optional trip
//! count and an optional condition allow, threading N loop-carried values and stacking K
//! per-iteration scan outputs along a new first axis.
//!
//! Without a condition input the loop is a `for` and the body's condition output is
//! ignored; without a trip count it is a `while`.
use super::{body_output_types, dtype_only, empty_scan_output, stack, with_iter_dim};
use millrace_core::Tensor;
use millrace_ir::{ArgRef, Attributes, Graph, InferCtx, Inputs, Op, OpError, Value, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Debug)]
pub struct Loop {
    pub body: Arc<Graph>,
    /// Inputs the node declares (M, cond, the N initial values); captures follow.
    pub formal: usize,
}

const NAME: &str = "Loop";

impl Loop {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let body = attrs
            .graph("body")?
            .ok_or_else(|| OpError::attribute(NAME, "body", "required"))?;
        let formal = attrs.node_inputs().max(2);
        let carried = formal - 2;
        if body.inputs.len() != carried + 2 {
            return Err(OpError::invalid(
                NAME,
                format!(
                    "body takes {} inputs, expected {} (iteration, condition, {carried} carried)",
                    body.inputs.len(),
                    carried + 2
                ),
            ));
        }
        if body.outputs.len() < carried + 1 {
            return Err(OpError::invalid(
                NAME,
                "body has too few outputs for its loop-carried values",
            ));
        }
        Ok(Arc::new(Loop { body, formal }))
    }

    fn carried(&self) -> usize {
        self.formal - 2
    }

    fn scans(&self) -> usize {
        self.body.outputs.len() - 1 - self.carried()
    }
}

fn scalar(op: &str, t: &Tensor, what: &str) -> Result<i64, OpError> {
    let v = t.to_i64_vec().map_err(|e| OpError::tensor(op, e))?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(OpError::invalid(
            op,
            format!("{what} must hold one element, has {}", v.len()),
        )),
    }
}

impl Op for Loop {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let body = body_output_types(&self.body);
        let mut out: Vec<ValueType> = (0..self.carried())
            .map(|i| dtype_only(ctx.opt_input(2 + i)))
            .collect();
        for t in body.iter().skip(1 + self.carried()) {
            out.push(with_iter_dim(t, 0, "loop_iterations"));
        }
        Ok(out)
    }

    fn eval(&self, _inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        Err(OpError::unsupported(NAME, "runs through eval_values"))
    }

    fn takes_values(&self) -> bool {
        true
    }

    fn eval_values(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, OpError> {
        let tensor_at = |i: usize| inputs.get(i).copied().flatten().and_then(Value::as_tensor);
        let max_trips = tensor_at(0).map(|m| scalar(NAME, m, "M")).transpose()?;
        let cond_given = tensor_at(1).map(|c| scalar(NAME, c, "cond")).transpose()?;
        let captures: Vec<ArgRef<'_>> = inputs
            .iter()
            .skip(self.formal)
            .flatten()
            .map(|v| ArgRef::Value(v))
            .collect();
        let mut state: Vec<Value> = (0..self.carried())
            .map(|i| {
                inputs
                    .get(2 + i)
                    .copied()
                    .flatten()
                    .cloned()
                    .ok_or(OpError::MissingInput {
                        op: NAME.into(),
                        index: 2 + i,
                    })
            })
            .collect::<Result<_, _>>()?;
        let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); self.scans()];
        let mut cond = cond_given.is_none_or(|c| c != 0);
        let mut it: i64 = 0;
        while cond && max_trips.is_none_or(|m| it < m) {
            let iter_t = Tensor::scalar(it);
            let cond_t = Tensor::scalar(cond);
            let mut args: Vec<ArgRef<'_>> = vec![ArgRef::Tensor(&iter_t), ArgRef::Tensor(&cond_t)];
            args.extend(state.iter().map(ArgRef::Value));
            let mut outs = self.body.eval_args(&args, &captures)?.into_iter();
            let c = outs
                .next()
                .and_then(Value::into_tensor)
                .ok_or_else(|| OpError::invalid(NAME, "body returned no condition"))?;
            if cond_given.is_some() {
                cond = scalar(NAME, &c, "body condition")? != 0;
            }
            state = outs.by_ref().take(self.carried()).collect();
            for (k, v) in outs.enumerate() {
                let t = v.into_tensor().ok_or_else(|| {
                    OpError::unsupported(NAME, "scan outputs that are not tensors")
                })?;
                if let Some(s) = scans.get_mut(k) {
                    s.push(t);
                }
            }
            it += 1;
        }
        let body_types = body_output_types(&self.body);
        let mut result = state;
        for (k, parts) in scans.into_iter().enumerate() {
            result.push(Value::Tensor(if parts.is_empty() {
                let ty = body_types
                    .get(1 + self.carried() + k)
                    .cloned()
                    .unwrap_or_default();
                empty_scan_output(NAME, &ty, 0)?
            } else {
                stack(NAME, &parts, 0)?
            }));
        }
        Ok(result)
    }

    fn describe(&self) -> String {
        format!(
            "body: {} nodes, {} carried, {} scan outputs",
            self.body.nodes.len(),
            self.carried(),
            self.scans()
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
