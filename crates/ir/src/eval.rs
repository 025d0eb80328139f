//! A plain interpreter for graphs: runs nodes in order with their reference `eval`.
//!
//! Used for subgraphs (If/Loop/Scan bodies), which run once per branch or iteration and
//! are not planned or optimized separately.
use crate::graph::Graph;
use crate::op::{Inputs, OpError};
use millrace_core::Tensor;

impl Graph {
    /// Runs the graph on `inputs` (in [`Graph::inputs`] order) and `captures` (in
    /// [`Graph::captures`] order); returns the outputs in order.
    pub fn eval(&self, inputs: &[&Tensor], captures: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
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
        let mut fed: Vec<Option<&Tensor>> = vec![None; n];
        for (v, t) in runtime
            .iter()
            .zip(inputs)
            .chain(self.captures.iter().zip(captures))
        {
            fed[v.index()] = Some(*t);
        }
        let mut vals: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
        for (i, node) in self.nodes.iter().enumerate() {
            let outs = {
                let mut args = Vec::with_capacity(node.inputs.len());
                for v in &node.inputs {
                    args.push(match v {
                        None => None,
                        Some(v) => Some(
                            self.constants
                                .get(v)
                                .map(|t| t.as_ref())
                                .or(fed[v.index()])
                                .or(vals[v.index()].as_ref())
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
                node.op.eval(&Inputs::new(node.op.name(), &args))?
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
                let t = self
                    .constants
                    .get(v)
                    .map(|t| t.as_ref().clone())
                    .or_else(|| fed[v.index()].cloned());
                match t {
                    Some(t) => Ok(t),
                    None => vals[v.index()].clone().ok_or_else(|| {
                        OpError::invalid(
                            op,
                            format!(
                                "subgraph output `{}` was never computed",
                                self.value(*v).name
                            ),
                        )
                    }),
                }
            })
            .collect()
    }
}
