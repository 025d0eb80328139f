//! Pattern helpers shared by the fusion passes: recognising activations and per-channel
//! constants, and replacing a chain of nodes by one.
use crate::pipeline::PassStats;
use millrace_core::{DType, Tensor};
use millrace_ir::{Graph, Node, NodeId, Op, ValueId};
use millrace_kernels::activation::Activation;
use millrace_ops::elementwise::{
    clip::Clip, gelu::Gelu, hard_sigmoid::HardSigmoid, leaky_relu::LeakyRelu,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The activation a node computes on its first input, if it is one an epilogue can fuse.
pub fn activation_of(g: &Graph, node: &Node) -> Option<Activation> {
    let op = node.op.as_any();
    let act = match node.op.name() {
        "Relu" => Activation::Relu,
        "Sigmoid" => Activation::Sigmoid,
        "Tanh" => Activation::Tanh,
        "HardSwish" => Activation::HardSwish,
        "LeakyRelu" => Activation::LeakyRelu {
            alpha: op.downcast_ref::<LeakyRelu>()?.alpha,
        },
        "HardSigmoid" => {
            let h = op.downcast_ref::<HardSigmoid>()?;
            Activation::HardSigmoid {
                alpha: h.alpha,
                beta: h.beta,
            }
        }
        "Gelu" => {
            if op.downcast_ref::<Gelu>()?.tanh {
                Activation::GeluTanh
            } else {
                Activation::Gelu
            }
        }
        "Clip" => {
            let c = op.downcast_ref::<Clip>()?;
            let (lo, hi) = match c.attr_bounds {
                Some((lo, hi)) => (lo, hi),
                None => (scalar_input(g, node, 1)?, scalar_input(g, node, 2)?),
            };
            Activation::Clip {
                lo: lo.unwrap_or(f32::NEG_INFINITY),
                hi: hi.unwrap_or(f32::INFINITY),
            }
        }
        _ => return None,
    };
    Some(act)
}

/// `Some(None)` for an absent optional input, `Some(Some(v))` for a constant f32 scalar,
/// `None` when the input is present but not a constant scalar.
fn scalar_input(g: &Graph, node: &Node, i: usize) -> Option<Option<f32>> {
    match node.inputs.get(i).copied().flatten() {
        None => Some(None),
        Some(v) => {
            let t = g.constant(v)?;
            if t.dtype() != DType::F32 || t.len() != 1 {
                return None;
            }
            Some(Some(t.to_f32_vec().ok()?[0]))
        }
    }
}

/// The operand of binary `node` other than `v`, with its position; `None` unless `v` is
/// exactly one of two present inputs.
pub fn other_operand(node: &Node, v: ValueId) -> Option<(usize, ValueId)> {
    match node.inputs.as_slice() {
        [Some(a), Some(b)] if *a == v && *b != v => Some((1, *b)),
        [Some(a), Some(b)] if *b == v && *a != v => Some((0, *a)),
        _ => None,
    }
}

/// Whether `o` can be a fused residual of an output of shape `out_shape`: f32, same
/// concrete shape (no broadcasting in the epilogue).
pub fn fits_residual(g: &Graph, o: ValueId, out_shape: Option<&Vec<usize>>) -> bool {
    let t = &g.value(o).ty;
    out_shape.is_some() && t.concrete_shape().as_ref() == out_shape && t.dtype == Some(DType::F32)
}

/// Absorbs `next` as the chain's activation if it is one (applied to `cur`) and the chain
/// has none yet.
pub fn absorb_activation(
    g: &Graph,
    next: &Node,
    cur: ValueId,
    act: &mut Activation,
    stats: &mut PassStats,
) -> bool {
    if !act.is_none() || next.inputs.first() != Some(&Some(cur)) {
        return false;
    }
    match activation_of(g, next) {
        Some(a) => {
            *act = a;
            stats.bump(format!("fused {}", next.op.name()));
            true
        }
        None => false,
    }
}

/// A constant f32 tensor as a vector.
pub fn const_f32(g: &Graph, v: ValueId) -> Option<(Vec<usize>, Vec<f32>)> {
    let t: &Tensor = g.constant(v)?;
    if t.dtype() != DType::F32 {
        return None;
    }
    Some((t.shape().to_vec(), t.to_f32_vec().ok()?))
}

/// The values of a constant that broadcasts against an `out_rank` tensor as one value per
/// index of axis `axis` (or one value overall), expanded to `len` values.
pub fn per_axis(
    shape: &[usize],
    v: &[f32],
    out_rank: usize,
    axis: usize,
    len: usize,
) -> Option<Vec<f32>> {
    if v.len() == 1 && shape.len() <= out_rank {
        return Some(vec![v[0]; len]);
    }
    if shape.len() > out_rank || v.len() != len {
        return None;
    }
    // Right-aligned broadcast: the only non-1 dim must land on `axis`.
    let off = out_rank - shape.len();
    for (i, &d) in shape.iter().enumerate() {
        if d != 1 && i + off != axis {
            return None;
        }
    }
    Some(v.to_vec())
}

/// Consumers of each value, and which values are graph outputs.
pub struct Uses {
    consumers: HashMap<ValueId, Vec<NodeId>>,
    outputs: HashSet<ValueId>,
}

impl Uses {
    pub fn new(g: &Graph) -> Uses {
        Uses {
            consumers: g.consumers(),
            outputs: g.outputs.iter().copied().collect(),
        }
    }

    /// The single node reading `v`, if exactly one does and `v` is not a graph output.
    pub fn sole_consumer(&self, v: ValueId) -> Option<NodeId> {
        if self.outputs.contains(&v) {
            return None;
        }
        match self.consumers.get(&v).map(Vec::as_slice) {
            Some([n]) => Some(*n),
            _ => None,
        }
    }
}

/// Rewrites `g.nodes`: every node in `removed` goes, every node in `replaced` is swapped.
pub fn rebuild(g: &mut Graph, removed: &HashSet<usize>, mut replaced: HashMap<usize, Node>) {
    let nodes = std::mem::take(&mut g.nodes);
    g.nodes = nodes
        .into_iter()
        .enumerate()
        .filter_map(|(i, n)| {
            if let Some(r) = replaced.remove(&i) {
                Some(r)
            } else if removed.contains(&i) {
                None
            } else {
                Some(n)
            }
        })
        .collect();
}

/// A fused node's op and its inputs.
pub type Fused = (Arc<dyn Op>, Vec<Option<ValueId>>);

/// A fusion chain grown from its first node (a `Conv`, a `MatMul`) along single readers.
pub trait Grow: Sized {
    /// Tries to fold `next`, which reads `cur`, into the chain.
    fn absorb(&mut self, g: &Graph, next: &Node, cur: ValueId, stats: &mut PassStats) -> bool;
    /// The fused op and its inputs, or `None` when it cannot be built (the reason counted).
    fn finish(self, g: &Graph, stats: &mut PassStats) -> Option<Fused>;
}

/// Grows a chain from every node `start` accepts and replaces each by one fused node,
/// placed where the chain's last node was (so every input it reads is computed before
/// it) and named after the first. Returns whether anything changed.
pub fn fuse_chains<C: Grow>(
    g: &mut Graph,
    stats: &mut PassStats,
    start: impl Fn(&Graph, &Node, &mut PassStats) -> Option<C>,
) -> bool {
    let uses = Uses::new(g);
    let mut removed: HashSet<usize> = HashSet::new();
    let mut replaced: HashMap<usize, Node> = HashMap::new();
    for ni in 0..g.nodes.len() {
        if removed.contains(&ni) || replaced.contains_key(&ni) {
            continue;
        }
        let node = &g.nodes[ni];
        let Some(mut chain) = start(g, node, stats) else {
            continue;
        };
        let mut absorbed = Vec::new();
        let mut cur = node.outputs[0];
        while let Some(nj) = uses.sole_consumer(cur) {
            let nj = nj.index();
            if removed.contains(&nj) || replaced.contains_key(&nj) {
                break;
            }
            let next = &g.nodes[nj];
            if next.outputs.len() != 1 || !chain.absorb(g, next, cur, stats) {
                break;
            }
            absorbed.push(nj);
            cur = next.outputs[0];
        }
        let Some((op, inputs)) = chain.finish(g, stats) else {
            continue;
        };
        let last = absorbed.last().copied().unwrap_or(ni);
        removed.insert(ni);
        removed.extend(absorbed);
        removed.remove(&last);
        replaced.insert(
            last,
            Node {
                name: node.name.clone(),
                op,
                inputs,
                outputs: vec![cur],
            },
        );
    }
    let changed = !replaced.is_empty();
    rebuild(g, &removed, replaced);
    if changed {
        g.remove_dead();
    }
    changed
}
