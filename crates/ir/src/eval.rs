//! A plain interpreter for graphs: runs nodes in order with their reference `eval`.
//!
//! Used for subgraphs (If/Loop/Scan bodies), which run once per branch or iteration and
//! are not planned or optimized separately.
use crate::graph::Graph;
use crate::op::OpError;
use crate::value::{invoke, ArgRef, Value};
use millrace_core::Tensor;

impl Graph {
    /// Runs the graph on tensor `inputs` (in [`Graph::inputs`] order) and `captures` (in
    /// [`Graph::captures`] order); every output must be a tensor.
    pub fn eval(&self, inputs: &[&Tensor], captures: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
        let ins: Vec<ArgRef<'_>> = inputs.iter().map(|t| ArgRef::Tensor(t)).collect();
        let caps: Vec<ArgRef<'_>> = captures.iter().map(|t| ArgRef::Tensor(t)).collect();
        self.eval_args(&ins, &caps)?
            .into_iter()
            .map(|v| {
                let kind = v.kind();
                v.into_tensor().ok_or_else(|| {
                    OpError::unsupported(
                        &self.name,
                        format!("a {kind} output where a tensor is expected"),
                    )
                })
            })
            .collect()
    }

    /// Runs the graph on values of any kind.
    pub fn eval_args(
        &self,
        inputs: &[ArgRef<'_>],
        captures: &[ArgRef<'_>],
    ) -> Result<Vec<Value>, OpError> {
        let op = self.name.as_str();
        let runtime: Vec<_> = self.runtime_inputs().collect();
        if inputs.len() != runtime.len() || captures.len() != self.captures.len() {
            return Err(OpError::invalid(
                op,
                format!(
                    "subgraph takes {} inputs and {} captures, got {} and {}",
                    runtime.len(),
                    self.captures.len(),
                    inputs.len(),
                    captures.len()
                ),
            ));
        }
        let n = self.values.len();
        // Last reader of each value, so intermediates are dropped early.
        let mut last_use = vec![usize::MAX; n];
        for (i, node) in self.nodes.iter().enumerate() {
            for v in node.inputs.iter().flatten() {
                last_use[v.index()] = i;
            }
        }
        for v in &self.outputs {
            last_use[v.index()] = usize::MAX - 1;
        }
        let mut fed: Vec<Option<ArgRef<'_>>> = vec![None; n];
        for (v, a) in runtime
            .iter()
            .zip(inputs)
            .chain(self.captures.iter().zip(captures))
        {
            fed[v.index()] = Some(*a);
        }
        for (v, t) in &self.constants {
            fed[v.index()] = Some(ArgRef::Tensor(t));
        }
        let mut vals: Vec<Option<Value>> = (0..n).map(|_| None).collect();
        for (i, node) in self.nodes.iter().enumerate() {
            let outs = {
                let mut args = Vec::with_capacity(node.inputs.len());
                for v in &node.inputs {
                    args.push(match v {
                        None => None,
                        Some(v) => Some(
                            fed[v.index()]
                                .or(vals[v.index()].as_ref().map(ArgRef::Value))
                                .ok_or_else(|| {
                                    OpError::invalid(
                                        node.op.name(),
                                        format!(
                                            "node `{}` reads `{}` before it is computed",
                                            node.name,
                                            self.value(*v).name
                                        ),
                                    )
                                })?,
                        ),
                    });
                }
                invoke(node.op.as_ref(), &args)?
            };
            if outs.len() < node.outputs.len() {
                return Err(OpError::invalid(
                    node.op.name(),
                    format!(
                        "node `{}` produced {} outputs, expected {}",
                        node.name,
                        outs.len(),
                        node.outputs.len()
                    ),
                ));
            }
            for (v, t) in node.outputs.iter().zip(outs) {
                vals[v.index()] = Some(t);
            }
            for v in node.inputs.iter().flatten() {
                if last_use[v.index()] == i {
                    vals[v.index()] = None;
                }
            }
        }
        self.outputs
            .iter()
            .map(|v| {
                if let Some(a) = fed[v.index()] {
                    return Ok(match a {
                        ArgRef::Tensor(t) => Value::Tensor(t.clone()),
                        ArgRef::Value(v) => v.clone(),
                    });
                }
                vals[v.index()].clone().ok_or_else(|| {
                    OpError::invalid(
                        op,
                        format!(
                            "subgraph output `{}` was never computed",
                            self.value(*v).name
                        ),
                    )
                })
            })
            .collect()
    }
}
