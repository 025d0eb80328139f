//! const-fold: evaluates nodes whose inputs are all constants, and shape queries whose
//! input shape is known, replacing their outputs by constants.
//!
//! This is what resolves PyTorch's exported shape arithmetic once input shapes are fixed:
//!
//! ```text
//! %s = Shape(%x)                     (x: f32[1,128,768])
//! %d = Gather(%s, 0)                 %r = Reshape(%x, const [1,128,12,64])
//! %u = Unsqueeze(%d, 0)      =>
//! %c = Concat(%u, const [128,12,64])
//! %r = Reshape(%x, %c)
//! ```
//!
//! Refuses to fold when an output would exceed 64 MiB (a constant that large costs memory
//! for no gain); such refusals are counted.
use crate::pipeline::{Pass, PassError, PassStats};
use millrace_core::Tensor;
use millrace_ir::{Graph, Inputs, ValueType};
use std::sync::Arc;

pub struct ConstFold;

const MAX_FOLDED_BYTES: usize = 64 << 20;

impl Pass for ConstFold {
    fn name(&self) -> &'static str {
        "const-fold"
    }

    fn summary(&self) -> &'static str {
        "evaluate nodes with constant inputs and shape queries on known shapes at compile time"
    }

    fn run(&self, g: &mut Graph, stats: &mut PassStats) -> Result<bool, PassError> {
        // Folding a shape query makes a constant whose value can fix the type of a later
        // node (a Reshape's target), which may enable more folding: repeat, re-inferring
        // types in between, until nothing changes.
        let mut changed = false;
        for _ in 0..16 {
            if !self.fold_once(g, stats)? {
                break;
            }
            changed = true;
            g.infer_types().map_err(|source| PassError::Infer {
                pass: "const-fold",
                source,
            })?;
        }
        Ok(changed)
    }
}

impl ConstFold {
    fn fold_once(&self, g: &mut Graph, stats: &mut PassStats) -> Result<bool, PassError> {
        let mut changed = false;
        let mut keep = Vec::with_capacity(g.nodes.len());
        let nodes = std::mem::take(&mut g.nodes);
        for node in nodes {
            let folded = fold_node(g, &node, stats)?;
            match folded {
                Some(outs) => {
                    for (v, t) in node.outputs.iter().zip(outs) {
                        g.values[v.index()].ty = ValueType::concrete(t.dtype(), t.shape());
                        g.constants.insert(*v, Arc::new(t));
                    }
                    stats.bump(format!("folded {}", node.op.name()));
                    changed = true;
                }
                None => keep.push(node),
            }
        }
        g.nodes = keep;
        Ok(changed)
    }
}

fn fold_node(
    g: &Graph,
    node: &millrace_ir::Node,
    stats: &mut PassStats,
) -> Result<Option<Vec<Tensor>>, PassError> {
    // Output size guard, when inference knows it.
    let out_bytes: usize = node
        .outputs
        .iter()
        .filter_map(|v| g.value(*v).ty.size_bytes())
        .sum();
    if out_bytes > MAX_FOLDED_BYTES && !node.inputs.is_empty() {
        stats.bump(format!("refused {}: output over 64 MiB", node.op.name()));
        return Ok(None);
    }
    let all_const = node
        .inputs
        .iter()
        .flatten()
        .all(|v| g.constants.contains_key(v));
    let outs = if all_const {
        let ins: Vec<Option<&Tensor>> = node
            .inputs
            .iter()
            .map(|i| i.and_then(|v| g.constants.get(&v).map(|t| t.as_ref())))
            .collect();
        match node.op.eval(&Inputs::new(node.op.name(), &ins)) {
            Ok(outs) => outs,
            Err(e) if e.is_unsupported() => {
                stats.bump(format!("refused {}: {e}", node.op.name()));
                return Ok(None);
            }
            Err(e) => {
                return Err(PassError::Node {
                    pass: "const-fold",
                    node: node.name.clone(),
                    op: node.op.name().to_string(),
                    msg: e.to_string(),
                })
            }
        }
    } else {
        let (types, _) = g.node_types(node);
        match node.op.fold_from_types(&types) {
            Some(outs) => outs,
            None => return Ok(None),
        }
    };
    if outs.len() != node.outputs.len() {
        return Err(PassError::Node {
            pass: "const-fold",
            node: node.name.clone(),
            op: node.op.name().to_string(),
            msg: format!(
                "produced {} outputs, the node has {}",
                outs.len(),
                node.outputs.len()
            ),
        });
    }
    Ok(Some(outs))
}
