//! fuse-attention: scaled dot-product attention into one `FusedAttention` node, which
//! never materializes the `[..., Sq, Skv]` score tensor.
//!
//! ```text
//! %q  = Transpose[perm](%q0)        (optional, absorbed: read through strides)
//! %kt = Transpose[perm](%k0)        (optional; without it %kt is K already transposed)
//! %v  = Transpose[perm](%v0)        (optional)
//! %s  = MatMul(%q, %kt)
//! %s1 = Div(%s, c) or Mul(%s, c)    (optional, c a constant f32 scalar)
//! %s2 = Add(%s1, %mask)             (optional, %mask f32, broadcasting to %s)
//! %p  = Softmax[axis=-1](%s2)                 =>   %y = FusedAttention(%q0, %k0, %v0, %mask)
//! %o  = MatMul(%p, %v)
//! %y  = Transpose[swap of the two axes before the last](%o)   (optional)
//! ```
//! Every intermediate (and every absorbed Transpose's output) must have exactly one reader;
//! shapes must be known, f32, with identical leading dimensions for Q, K and V (no
//! broadcasting between them).
use crate::patterns::{rebuild, Uses};
use crate::pipeline::{Pass, PassError, PassStats};
use millrace_core::DType;
use millrace_ir::{Graph, InferCtx, Node, NodeId, ValueId, ValueType};
use millrace_ops::attention::fused_attention::FusedAttention;
use millrace_ops::nn::softmax::{Kind, Softmax};
use millrace_ops::tensor::transpose::Transpose;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub struct FuseAttention;

impl Pass for FuseAttention {
    fn name(&self) -> &'static str {
        "fuse-attention"
    }

    fn summary(&self) -> &'static str {
        "MatMul(Q,K^T) [* scale] [+ mask] -> Softmax -> MatMul(.,V) (and the head Transposes) into one FusedAttention"
    }

    fn run(&self, g: &mut Graph, stats: &mut PassStats) -> Result<bool, PassError> {
        let uses = Uses::new(g);
        let producers = g.producers();
        let mut removed: HashSet<usize> = HashSet::new();
        let mut replaced: HashMap<usize, Node> = HashMap::new();
        for si in 0..g.nodes.len() {
            if g.nodes[si].op.name() != "Softmax" {
                continue;
            }
            let Some(m) = match_at(g, &uses, &producers, si, stats) else {
                continue;
            };
            if m.nodes
                .iter()
                .any(|n| removed.contains(n) || replaced.contains_key(n))
            {
                stats.bump("refused: overlaps another match");
                continue;
            }
            let last = m.nodes.iter().copied().max().unwrap_or(si);
            removed.extend(m.nodes.iter().copied());
            removed.remove(&last);
            replaced.insert(
                last,
                Node {
                    name: g.nodes[si].name.replace("Softmax", "FusedAttention"),
                    op: Arc::new(m.op),
                    inputs: m.inputs,
                    outputs: vec![m.y],
                },
            );
            stats.bump("fused attention");
        }
        let changed = !replaced.is_empty();
        rebuild(g, &removed, replaced);
        if changed {
            g.remove_dead();
        }
        Ok(changed)
    }
}

struct Match {
    op: FusedAttention,
    inputs: Vec<Option<ValueId>>,
    y: ValueId,
    nodes: Vec<usize>,
}

/// The node producing `v` (output 0) if `v` has no other reader.
fn sole_producer<'g>(
    g: &'g Graph,
    uses: &Uses,
    producers: &HashMap<ValueId, (NodeId, usize)>,
    v: ValueId,
) -> Option<(usize, &'g Node)> {
    let (ni, slot) = producers.get(&v)?;
    uses.sole_consumer(v)?;
    (*slot == 0).then(|| (ni.index(), &g.nodes[ni.index()]))
}

/// A Transpose's permutation as indices, checked.
fn perm_of(g: &Graph, node: &Node) -> Option<Vec<usize>> {
    let t = node.op.as_any().downcast_ref::<Transpose>()?;
    let x = node.inputs.first().copied().flatten()?;
    let r = g.value(x).ty.rank()?;
    let p: Vec<usize> = match &t.perm {
        None => (0..r).rev().collect(),
        Some(p) => p
            .iter()
            .map(|&i| usize::try_from(i).ok())
            .collect::<Option<_>>()?,
    };
    let mut seen = vec![false; r];
    for &i in &p {
        if i >= r || std::mem::replace(&mut seen[i], true) {
            return None;
        }
    }
    (p.len() == r).then_some(p)
}

/// An operand `v` of rank `r`: absorbs the Transpose producing it when it has no other
/// reader. Returns the value to read, its permutation and the absorbed node.
fn operand(
    g: &Graph,
    uses: &Uses,
    producers: &HashMap<ValueId, (NodeId, usize)>,
    v: ValueId,
    r: usize,
) -> (ValueId, Vec<usize>, Option<usize>) {
    if let Some((ni, n)) = sole_producer(g, uses, producers, v) {
        if n.op.name() == "Transpose" {
            if let (Some(p), Some(x)) = (perm_of(g, n), n.inputs.first().copied().flatten()) {
                if p.len() == r {
                    return (x, p, Some(ni));
                }
            }
        }
    }
    (v, (0..r).collect(), None)
}

fn scalar(g: &Graph, v: ValueId) -> Option<f32> {
    let t = g.constant(v)?;
    if t.dtype() != DType::F32 || t.len() != 1 {
        return None;
    }
    t.to_f32_vec().ok().map(|v| v[0])
}

fn match_at(
    g: &Graph,
    uses: &Uses,
    producers: &HashMap<ValueId, (NodeId, usize)>,
    si: usize,
    stats: &mut PassStats,
) -> Option<Match> {
    let sm_node = &g.nodes[si];
    let sm = sm_node.op.as_any().downcast_ref::<Softmax>()?;
    let x = sm_node.inputs.first().copied().flatten()?;
    let ty = &g.value(x).ty;
    let r = ty.rank()?;
    if sm.kind != Kind::Softmax || !(sm.axis == -1 || sm.axis == r as i64 - 1) || r < 2 {
        stats.bump("refused: softmax not over the last axis");
        return None;
    }
    let mut nodes = vec![si];
    let mut names = Vec::new();
    // Walk back: [Add mask], [Mul/Div scale], MatMul.
    let Some((ai, add)) = sole_producer(g, uses, producers, x) else {
        stats.bump("refused: scores have other readers or no producer");
        return None;
    };
    let (mask, (scale, chain, mi)) = if add.op.name() == "Add" {
        let (a, b) = (
            add.inputs.first().copied().flatten()?,
            add.inputs.get(1).copied().flatten()?,
        );
        let found = back_scale(g, uses, producers, a)
            .map(|c| (b, c))
            .or_else(|| back_scale(g, uses, producers, b).map(|c| (a, c)));
        let Some((m, c)) = found else {
            stats.bump("refused: Add before Softmax not on scores of a MatMul");
            return None;
        };
        nodes.push(ai);
        names.push(add.name.clone());
        (Some(m), c)
    } else if let Some(c) = back_scale(g, uses, producers, x) {
        (None, c)
    } else {
        stats.bump(format!("refused: {} before Softmax", add.op.name()));
        return None;
    };
    for ni in chain.into_iter().chain([mi]) {
        nodes.push(ni);
        names.push(g.nodes[ni].name.clone());
    }
    let mm = &g.nodes[mi];
    let q = mm.inputs.first().copied().flatten()?;
    let kt = mm.inputs.get(1).copied().flatten()?;
    // Forward: MatMul(p, V), then an optional Transpose back.
    let p = sm_node.outputs[0];
    let Some(m2i) = uses.sole_consumer(p).map(NodeId::index) else {
        stats.bump("refused: softmax has other readers");
        return None;
    };
    let m2 = &g.nodes[m2i];
    if m2.op.name() != "MatMul" || m2.inputs.first() != Some(&Some(p)) {
        stats.bump("refused: softmax not followed by MatMul(p, V)");
        return None;
    }
    let v = m2.inputs.get(1).copied().flatten()?;
    nodes.push(m2i);
    names.push(m2.name.clone());
    let mut y = m2.outputs[0];
    let mut out_swap = false;
    if r >= 3 {
        if let Some(ti) = uses.sole_consumer(y).map(NodeId::index) {
            let t = &g.nodes[ti];
            let mut want: Vec<usize> = (0..r).collect();
            want.swap(r - 3, r - 2);
            if t.op.name() == "Transpose" && perm_of(g, t).as_deref() == Some(&want[..]) {
                out_swap = true;
                y = t.outputs[0];
                nodes.push(ti);
                names.push(t.name.clone());
            }
        }
    }
    let (q0, q_perm, qn) = operand(g, uses, producers, q, r);
    let (k0, kt_perm, kn) = operand(g, uses, producers, kt, r);
    let (v0, v_perm, vn) = operand(g, uses, producers, v, r);
    // Logical K swaps K^T's last two axes.
    let mut sw: Vec<usize> = (0..r).collect();
    sw.swap(r - 2, r - 1);
    let k_perm: Vec<usize> = sw.iter().map(|&i| kt_perm[i]).collect();
    nodes.extend([qn, kn, vn].into_iter().flatten());
    let op = FusedAttention {
        scale,
        q_perm,
        k_perm,
        v_perm,
        out_swap,
        fused: names,
    };
    let inputs = vec![Some(q0), Some(k0), Some(v0), mask];
    // The op must agree with the graph on the output's type: this checks f32, ranks,
    // leading dimensions and that the mask broadcasts.
    let types: Vec<Option<ValueType>> = inputs
        .iter()
        .map(|i| i.map(|v| g.value(v).ty.clone()))
        .collect();
    if types.iter().flatten().any(|t| t.dtype != Some(DType::F32)) {
        stats.bump("refused: not float32");
        return None;
    }
    let want = g.value(y).ty.concrete_shape();
    let consts = vec![None; types.len()];
    let got = millrace_ir::Op::infer(&op, &InferCtx::new("FusedAttention", &types, &consts));
    match (got, want) {
        (Ok(t), Some(w)) if t.first().and_then(|t| t.concrete_shape()).as_ref() == Some(&w) => {}
        _ => {
            stats.bump("refused: shapes unknown or not plain attention");
            return None;
        }
    }
    Some(Match {
        op,
        inputs,
        y,
        nodes,
    })
}

/// Walks back from scores `v`: an optional `Mul`/`Div` by a constant scalar, then a
/// `MatMul`, each with no other reader. Returns the scale, the scale node and the MatMul.
fn back_scale(
    g: &Graph,
    uses: &Uses,
    producers: &HashMap<ValueId, (NodeId, usize)>,
    v: ValueId,
) -> Option<(f32, Option<usize>, usize)> {
    let (ni, n) = sole_producer(g, uses, producers, v)?;
    match n.op.name() {
        "MatMul" => Some((1.0, None, ni)),
        "Mul" | "Div" => {
            let a = n.inputs.first().copied().flatten()?;
            let b = n.inputs.get(1).copied().flatten()?;
            let (s, c) = match (scalar(g, a), scalar(g, b)) {
                (_, Some(c)) => (a, c),
                (Some(c), None) if n.op.name() == "Mul" => (b, c),
                _ => return None,
            };
            let scale = if n.op.name() == "Div" { 1.0 / c } else { c };
            let (mi, m) = sole_producer(g, uses, producers, s)?;
            (m.op.name() == "MatMul").then_some((scale, Some(ni), mi))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{op, rnd};
    use millrace_core::Tensor;
    use millrace_ir::Attr;

    /// BERT's self-attention: [B, S, H, D] inputs, transposed to heads, K^T by perm
    /// [0, 2, 3, 1], scale by Mul, mask Add, Softmax, MatMul, Transpose back.
    fn bert_attention(extra_reader: bool) -> Graph {
        let (b, s, h, d) = (2, 9, 3, 4);
        let mut g = Graph::new("t");
        let f = |g: &mut Graph, n: &str, shape: &[usize]| {
            let v = g.add_value(n, ValueType::concrete(DType::F32, shape));
            g.inputs.push(v);
            v
        };
        let q0 = f(&mut g, "q0", &[b, s, h, d]);
        let k0 = f(&mut g, "k0", &[b, s, h, d]);
        let v0 = f(&mut g, "v0", &[b, s, h, d]);
        let mask = f(&mut g, "mask", &[b, 1, 1, s]);
        let c = g.add_constant("c", Tensor::scalar(0.5f32));
        let u = |g: &mut Graph, n: &str| g.add_value(n, ValueType::unknown());
        let names = ["q", "kt", "v", "s", "s1", "s2", "p", "o", "y"];
        let [q, kt, v, sc, s1, s2, p, o, y] = names.map(|n| u(&mut g, n));
        let tr = |p: &[i64]| op("Transpose", vec![("perm", Attr::Ints(p.to_vec()))]);
        g.add_node("tq", tr(&[0, 2, 1, 3]), vec![Some(q0)], vec![q]);
        g.add_node("tk", tr(&[0, 2, 3, 1]), vec![Some(k0)], vec![kt]);
        g.add_node("tv", tr(&[0, 2, 1, 3]), vec![Some(v0)], vec![v]);
        g.add_node(
            "mm",
            op("MatMul", vec![]),
            vec![Some(q), Some(kt)],
            vec![sc],
        );
        g.add_node("mul", op("Mul", vec![]), vec![Some(sc), Some(c)], vec![s1]);
        g.add_node(
            "add",
            op("Add", vec![]),
            vec![Some(mask), Some(s1)],
            vec![s2],
        );
        let sm = op("Softmax", vec![("axis", Attr::Int(-1))]);
        g.add_node("Softmax", sm, vec![Some(s2)], vec![p]);
        g.add_node("mm2", op("MatMul", vec![]), vec![Some(p), Some(v)], vec![o]);
        g.add_node("to", tr(&[0, 2, 1, 3]), vec![Some(o)], vec![y]);
        g.outputs.push(y);
        if extra_reader {
            g.outputs.push(p);
        }
        g.infer_types().unwrap();
        g
    }

    #[test]
    fn fuses_bert_attention_with_equal_results() {
        let g0 = bert_attention(false);
        let mut g = g0.clone();
        let mut stats = PassStats::default();
        assert!(FuseAttention.run(&mut g, &mut stats).unwrap());
        millrace_ir::verify(&g).unwrap();
        g.infer_types().unwrap();
        let names: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
        assert_eq!(names, ["FusedAttention"], "{:?}", stats.counters);
        assert_eq!(stats.counters.get("fused attention"), Some(&1));
        let ins: Vec<Tensor> = [(0, 2 * 9 * 12), (1, 2 * 9 * 12), (2, 2 * 9 * 12), (3, 18)]
            .iter()
            .map(|&(i, n)| {
                let shape = g0.value(g0.inputs[i]).ty.concrete_shape().unwrap();
                Tensor::from_vec(shape, rnd(n, 3 + i as u32)).unwrap()
            })
            .collect();
        let refs: Vec<&Tensor> = ins.iter().collect();
        let want = g0.eval(&refs, &[]).unwrap()[0].to_f32_vec().unwrap();
        let got = g.eval(&refs, &[]).unwrap()[0].to_f32_vec().unwrap();
        let num: f64 = want
            .iter()
            .zip(&got)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        let den: f64 = want.iter().map(|a| (*a as f64).powi(2)).sum();
        assert!((num / den).sqrt() <= 1e-5);
    }

    #[test]
    fn a_second_reader_of_the_probabilities_refuses() {
        let mut g = bert_attention(true);
        let mut stats = PassStats::default();
        assert!(!FuseAttention.run(&mut g, &mut stats).unwrap());
        assert_eq!(
            stats.counters.get("refused: softmax has other readers"),
            Some(&1)
        );
    }
}
