//! fuse-gelu: recognises the erf form of GELU that PyTorch exports before opset 20 and
//! replaces it by one `Gelu` node (which `fuse-matmul` can then fold into a GEMM).
//!
//! ```text
//! %d = Div(%x, 1.4142135)       (or Mul(%x, 0.70710677))
//! %e = Erf(%d)
//! %a = Add(%e, 1.0)                      =>   %y = Gelu(%x)
//! %m = Mul(%x, %a)
//! %y = Mul(%m, 0.5)
//! ```
//! The last two may also come as `Mul(Mul(%x, 0.5), %a)`; operands of Add and Mul in
//! either order. Every intermediate must have no other reader.
use crate::patterns::{other_operand, rebuild, Uses};
use crate::pipeline::{Pass, PassError, PassStats};
use millrace_ir::{Graph, Node, NodeId, ValueId};
use millrace_ops::elementwise::gelu::Gelu;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub struct FuseGelu;

impl Pass for FuseGelu {
    fn name(&self) -> &'static str {
        "fuse-gelu"
    }

    fn summary(&self) -> &'static str {
        "the x*0.5*(1+erf(x/sqrt2)) pattern into one Gelu node"
    }

    fn run(&self, g: &mut Graph, stats: &mut PassStats) -> Result<bool, PassError> {
        let uses = Uses::new(g);
        let producers = g.producers();
        let mut removed: HashSet<usize> = HashSet::new();
        let mut replaced: HashMap<usize, Node> = HashMap::new();
        for ei in 0..g.nodes.len() {
            if g.nodes[ei].op.name() != "Erf" || removed.contains(&ei) {
                continue;
            }
            let Some(m) = match_at(g, &uses, &producers, ei) else {
                continue;
            };
            if m.nodes
                .iter()
                .any(|n| removed.contains(n) || replaced.contains_key(n))
            {
                continue;
            }
            let last = *m.nodes.iter().max().unwrap_or(&ei);
            for &n in &m.nodes {
                removed.insert(n);
            }
            removed.remove(&last);
            replaced.insert(
                last,
                Node {
                    name: g.nodes[ei].name.replace("Erf", "Gelu"),
                    op: Arc::new(Gelu { tanh: false }),
                    inputs: vec![Some(m.x)],
                    outputs: vec![m.y],
                },
            );
            stats.bump("fused GELU patterns");
        }
        let changed = !replaced.is_empty();
        rebuild(g, &removed, replaced);
        Ok(changed)
    }
}

struct Match {
    x: ValueId,
    y: ValueId,
    nodes: Vec<usize>,
}

fn scalar(g: &Graph, v: ValueId) -> Option<f32> {
    let t = g.constant(v)?;
    (t.len() == 1)
        .then(|| t.to_f32_vec().ok().map(|v| v[0]))
        .flatten()
}

fn near(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-4 * b.abs()
}

/// The operand of binary `node` other than `v`.
fn other(node: &Node, v: ValueId) -> Option<ValueId> {
    other_operand(node, v).map(|(_, o)| o)
}

fn match_at(
    g: &Graph,
    uses: &Uses,
    producers: &HashMap<ValueId, (NodeId, usize)>,
    ei: usize,
) -> Option<Match> {
    let erf = &g.nodes[ei];
    let d = erf.inputs.first().copied().flatten()?;
    let (di, _) = producers.get(&d)?;
    let div = &g.nodes[di.index()];
    uses.sole_consumer(d)?;
    let x = div.inputs.first().copied().flatten()?;
    let c = scalar(g, div.inputs.get(1).copied().flatten()?)?;
    let ok = match div.op.name() {
        "Div" => near(c, std::f32::consts::SQRT_2),
        "Mul" => near(c, std::f32::consts::FRAC_1_SQRT_2),
        _ => false,
    };
    if !ok {
        return None;
    }
    let e = erf.outputs[0];
    let ai = uses.sole_consumer(e)?.index();
    let add = &g.nodes[ai];
    if add.op.name() != "Add" || !near(scalar(g, other(add, e)?)?, 1.0) {
        return None;
    }
    let a = add.outputs[0];
    let mi = uses.sole_consumer(a)?.index();
    let mul = &g.nodes[mi];
    if mul.op.name() != "Mul" {
        return None;
    }
    let o = other(mul, a)?;
    let mut nodes = vec![di.index(), ei, ai, mi];
    let y = if o == x {
        // Mul(x, a) then Mul(., 0.5)
        let m = mul.outputs[0];
        let hi = uses.sole_consumer(m)?.index();
        let half = &g.nodes[hi];
        if half.op.name() != "Mul" || !near(scalar(g, other(half, m)?)?, 0.5) {
            return None;
        }
        nodes.push(hi);
        half.outputs[0]
    } else {
        // Mul(Mul(x, 0.5), a)
        let (hi, _) = producers.get(&o)?;
        let half = &g.nodes[hi.index()];
        uses.sole_consumer(o)?;
        if half.op.name() != "Mul"
            || other(half, x)
                .and_then(|c| scalar(g, c))
                .is_none_or(|c| !near(c, 0.5))
        {
            return None;
        }
        nodes.push(hi.index());
        mul.outputs[0]
    };
    // x itself is read by Div and one Mul: fine, it stays.
    Some(Match { x, y, nodes })
}
