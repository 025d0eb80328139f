//! Real outputs: each node's op evaluated on the host (`Op` reference evaluation through
//! `millrace_ir::invoke`, as `Graph::eval_args` does) in the order the simulated device
//! finishes the nodes, so the simulator's outputs can be checked against references.
//!
//! Arithmetic is fp32 whatever `weight_dtype` says: the dtype changes bytes and time, not
//! values (quantization error is not modelled).
use millrace_core::Tensor;
use millrace_ir::{invoke, ArgRef, Graph, OpError, Value};

/// Why the functional run failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FunctionalError {
    #[error("missing input `{0}`")]
    MissingInput(String),
    #[error("input `{name}`: shape {got:?}, the compiled graph expects {want:?}")]
    Shape {
        name: String,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    #[error("node `{node}`: {source}")]
    Op {
        node: String,
        #[source]
        source: OpError,
    },
    #[error("node `{node}` reads `{value}` before it is computed (bad finish order)")]
    Order { node: String, value: String },
    #[error("output `{0}` was never computed or is not a tensor")]
    Output(String),
}

/// Evaluates `g` on `inputs` (by graph input name), node by node in `order` (a topological
/// order, here the simulated finish order). Returns the outputs by name, in graph order.
pub fn eval_in_order(
    g: &Graph,
    inputs: &[(String, Tensor)],
    order: &[usize],
) -> Result<Vec<(String, Tensor)>, FunctionalError> {
    let n = g.values.len();
    let mut vals: Vec<Option<Value>> = vec![None; n];
    for v in g.runtime_inputs() {
        let name = &g.value(v).name;
        let t = inputs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, t)| t)
            .ok_or_else(|| FunctionalError::MissingInput(name.clone()))?;
        if let Some(want) = g.value(v).ty.concrete_shape() {
            if want != t.shape() {
                return Err(FunctionalError::Shape {
                    name: name.clone(),
                    got: t.shape().to_vec(),
                    want,
                });
            }
        }
        vals[v.index()] = Some(Value::Tensor(t.clone()));
    }
    // Last reader in `order`, so intermediates are dropped early.
    let mut last = vec![usize::MAX; n];
    for (pos, &ni) in order.iter().enumerate() {
        if let Some(node) = g.nodes.get(ni) {
            for v in node.inputs.iter().flatten() {
                last[v.index()] = pos;
            }
        }
    }
    for v in &g.outputs {
        last[v.index()] = usize::MAX;
    }
    for (pos, &ni) in order.iter().enumerate() {
        let Some(node) = g.nodes.get(ni) else {
            continue;
        };
        let outs = {
            let mut args = Vec::with_capacity(node.inputs.len());
            for v in &node.inputs {
                args.push(match v {
                    None => None,
                    Some(v) => Some(match g.constant(*v) {
                        Some(t) => ArgRef::Tensor(t),
                        None => vals[v.index()].as_ref().map(ArgRef::Value).ok_or_else(|| {
                            FunctionalError::Order {
                                node: node.name.clone(),
                                value: g.value(*v).name.clone(),
                            }
                        })?,
                    }),
                });
            }
            invoke(node.op.as_ref(), &args).map_err(|source| FunctionalError::Op {
                node: node.name.clone(),
                source,
            })?
        };
        for (v, t) in node.outputs.iter().zip(outs) {
            vals[v.index()] = Some(t);
        }
        for v in node.inputs.iter().flatten() {
            if last[v.index()] == pos {
                vals[v.index()] = None;
            }
        }
    }
    g.outputs
        .iter()
        .map(|v| {
            let name = g.value(*v).name.clone();
            let t = match g.constant(*v) {
                Some(t) => Some(t.as_ref().clone()),
                None => vals[v.index()].clone().and_then(Value::into_tensor),
            };
            t.map(|t| (name.clone(), t))
                .ok_or(FunctionalError::Output(name))
        })
        .collect()
}

/// Relative L2 error `|a - b| / |b|` (0 when both are zero); `None` when shapes differ or
/// the values are not numeric.
pub fn rel_l2(a: &Tensor, b: &Tensor) -> Option<f64> {
    if a.shape() != b.shape() {
        return None;
    }
    let x = a.to_f64_vec().ok()?;
    let y = b.to_f64_vec().ok()?;
    let (mut num, mut den) = (0.0, 0.0);
    for (p, q) in x.iter().zip(&y) {
        num += (p - q) * (p - q);
        den += q * q;
    }
    Some(if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    })
}
