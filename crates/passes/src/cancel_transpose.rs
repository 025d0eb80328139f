//! cancel-transpose: removes data movement that does nothing and merges movement that
//! composes, repeated until nothing changes.
//!
//! ```text
//! %a = Transpose[perm=p1](%x)
//! %b = Transpose[perm=p2](%a)      =>   %b = Transpose[perm=p1∘p2](%x)   (nothing if identity)
//! %c = Reshape(%x, s1); %d = Reshape(%c, s2)   =>   %d = Reshape(%x, shape of %d)
//!                                                   (nothing if that is %x's shape)
//! %e = Identity(%x)  /  Dropout(%x) (inference, mask unused)   =>   readers read %x
//! Transpose with the identity perm; Reshape/Flatten/Squeeze/Unsqueeze to %x's own shape
//!                                                   =>   readers read %x
//! ```
//! Reshape, Flatten, Squeeze and Unsqueeze form one family: any two in a row become one
//! Reshape to the second's (concrete) shape, so Squeeze/Unsqueeze pairs that cancel go
//! away. A pair is merged only when the intermediate has a single reader (else it is kept
//! and counted `refused: shared`). A node whose output is a graph output is never removed
//! (counted), nor one read by a node with a subgraph (If, Loop, Scan), which names what it
//! captures.
use crate::pipeline::{Pass, PassError, PassStats};
use millrace_core::Tensor;
use millrace_ir::{Graph, Node, NodeId, ValueId};
use millrace_ops::tensor::{reshape::Reshape, transpose::Transpose};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub struct CancelTranspose;

/// Rounds of rewriting at most (each round can only shrink the graph).
const MAX_ROUNDS: usize = 16;

const RESHAPES: &[&str] = &["Reshape", "Flatten", "Squeeze", "Unsqueeze"];

fn has_subgraph(name: &str) -> bool {
    matches!(name, "If" | "Loop" | "Scan")
}

/// The permutation of a Transpose node, validated against its input's rank.
fn perm_of(g: &Graph, node: &Node) -> Option<Vec<usize>> {
    let t = node.op.as_any().downcast_ref::<Transpose>()?;
    let x = node.inputs.first().copied().flatten()?;
    let rank = g.value(x).ty.rank()?;
    let p: Vec<usize> = match &t.perm {
        None => (0..rank).rev().collect(),
        Some(p) => p
            .iter()
            .map(|&a| {
                let n = if a < 0 { a + rank as i64 } else { a };
                usize::try_from(n).ok().filter(|&n| n < rank)
            })
            .collect::<Option<Vec<usize>>>()?,
    };
    let mut seen = vec![false; rank];
    if p.len() != rank {
        return None;
    }
    for &a in &p {
        if std::mem::replace(&mut seen[a], true) {
            return None;
        }
    }
    Some(p)
}

fn is_identity(p: &[usize]) -> bool {
    p.iter().enumerate().all(|(i, &a)| i == a)
}

/// For a node that passes its input through unchanged: `(input, output, what)`.
fn passthrough(g: &Graph, node: &Node) -> Option<(ValueId, ValueId, &'static str)> {
    let x = node.inputs.first().copied().flatten()?;
    let y = *node.outputs.first()?;
    let what = match node.op.name() {
        "Identity" => "removed Identity",
        "Dropout" => {
            // Inference only: no training_mode, or a constant false one; mask unused.
            if let Some(tm) = node.inputs.get(2).copied().flatten() {
                let t = g.constant(tm)?;
                if t.to_i64_vec().ok()?.first().copied().unwrap_or(0) != 0 {
                    return None;
                }
            }
            "removed Dropout"
        }
        "Transpose" => {
            if !is_identity(&perm_of(g, node)?) {
                return None;
            }
            "removed identity Transpose"
        }
        name if RESHAPES.contains(&name) => {
            let xs = g.value(x).ty.concrete_shape()?;
            if g.value(y).ty.concrete_shape()? != xs {
                return None;
            }
            "removed Reshape-like to the same shape"
        }
        _ => return None,
    };
    Some((x, y, what))
}

/// A rewrite decided in one round.
enum Merge {
    Transpose(Vec<usize>),
    Reshape(Vec<usize>),
}

impl Pass for CancelTranspose {
    fn name(&self) -> &'static str {
        "cancel-transpose"
    }

    fn summary(&self) -> &'static str {
        "remove no-op Transpose/Reshape/Identity/Dropout and merge Transpose or Reshape pairs"
    }

    fn run(&self, g: &mut Graph, stats: &mut PassStats) -> Result<bool, PassError> {
        // Refusals are counted from the last round only (earlier rounds see them again).
        let mut changed = false;
        let mut refused = PassStats::default();
        for _ in 0..MAX_ROUNDS {
            refused = PassStats::default();
            if !round(g, stats, &mut refused) {
                break;
            }
            changed = true;
        }
        for (k, n) in refused.counters {
            *stats.counters.entry(k).or_default() += n;
        }
        Ok(changed)
    }
}

/// Whether `v`'s readers may be redirected: not a graph output, no subgraph reader.
fn redirectable(
    g: &Graph,
    v: ValueId,
    outputs: &HashSet<ValueId>,
    consumers: &HashMap<ValueId, Vec<NodeId>>,
    stats: &mut PassStats,
) -> bool {
    if outputs.contains(&v) {
        stats.bump("refused: graph output");
        return false;
    }
    let readers = consumers.get(&v).map(Vec::as_slice).unwrap_or(&[]);
    if readers
        .iter()
        .any(|r| has_subgraph(g.nodes[r.index()].op.name()))
    {
        stats.bump("refused: subgraph reader");
        return false;
    }
    true
}

/// One round of rewrites; returns whether anything changed.
fn round(g: &mut Graph, stats: &mut PassStats, refused: &mut PassStats) -> bool {
    let consumers = g.consumers();
    let outputs: HashSet<ValueId> = g.outputs.iter().copied().collect();
    let mut touched: HashSet<usize> = HashSet::new();
    let mut removed: HashSet<usize> = HashSet::new();
    let mut subst: HashMap<ValueId, ValueId> = HashMap::new();
    // (first node, second node, first node's input, second node's output, new op)
    let mut merges: Vec<(usize, usize, ValueId, ValueId, Merge)> = Vec::new();
    for ni in 0..g.nodes.len() {
        if touched.contains(&ni) {
            continue;
        }
        let node = &g.nodes[ni];
        if node.op.name() == "Dropout" {
            // The mask must be unused for the node to go.
            if let Some(&m) = node.outputs.get(1) {
                if outputs.contains(&m) || consumers.contains_key(&m) {
                    continue;
                }
            }
        }
        if let Some((x, y, what)) = passthrough(g, node) {
            if redirectable(g, y, &outputs, &consumers, refused) {
                subst.insert(y, x);
                removed.insert(ni);
                touched.insert(ni);
                stats.bump(what);
            }
            continue;
        }
        let name = node.op.name();
        let is_t = name == "Transpose";
        let is_r = RESHAPES.contains(&name);
        if !is_t && !is_r || node.outputs.len() != 1 {
            continue;
        }
        let Some(x) = node.inputs.first().copied().flatten() else {
            continue;
        };
        let y = node.outputs[0];
        let readers = consumers.get(&y).map(Vec::as_slice).unwrap_or(&[]);
        let same_family = |n: &Node| {
            let m = n.op.name();
            if is_t {
                m == "Transpose"
            } else {
                RESHAPES.contains(&m)
            }
        };
        let nj = match readers {
            [r] if same_family(&g.nodes[r.index()]) => r.index(),
            rs => {
                if rs.len() > 1 && rs.iter().any(|r| same_family(&g.nodes[r.index()])) {
                    refused.bump("refused: shared");
                }
                continue;
            }
        };
        if touched.contains(&nj) {
            continue;
        }
        if outputs.contains(&y) {
            refused.bump("refused: graph output");
            continue;
        }
        let next = &g.nodes[nj];
        let Some(&z) = next.outputs.first() else {
            continue;
        };
        if next.outputs.len() != 1 {
            continue;
        }
        let merge = if is_t {
            let (Some(p1), Some(p2)) = (perm_of(g, node), perm_of(g, next)) else {
                continue;
            };
            // z axis i is a axis p2[i], which is x axis p1[p2[i]].
            let q: Vec<usize> = p2.iter().map(|&i| p1[i]).collect();
            if is_identity(&q) {
                None
            } else {
                Some(Merge::Transpose(q))
            }
        } else {
            let (Some(xs), Some(zs)) = (
                g.value(x).ty.concrete_shape(),
                g.value(z).ty.concrete_shape(),
            ) else {
                continue;
            };
            if xs == zs {
                None
            } else {
                Some(Merge::Reshape(zs))
            }
        };
        match merge {
            None => {
                if !redirectable(g, z, &outputs, &consumers, refused) {
                    continue;
                }
                subst.insert(z, x);
                removed.extend([ni, nj]);
                stats.bump(if is_t {
                    "cancelled Transpose pair"
                } else {
                    "cancelled Reshape-like pair"
                });
            }
            Some(m) => {
                removed.insert(ni);
                stats.bump(if is_t {
                    "merged Transpose pair"
                } else {
                    "merged Reshape-like pair"
                });
                merges.push((ni, nj, x, z, m));
            }
        }
        touched.extend([ni, nj]);
    }
    if removed.is_empty() && merges.is_empty() {
        return false;
    }
    let mut replaced: HashMap<usize, Node> = HashMap::new();
    for (ni, nj, x, z, m) in merges {
        let name = g.nodes[nj].name.clone();
        let (op, inputs): (Arc<dyn millrace_ir::Op>, Vec<Option<ValueId>>) = match m {
            Merge::Transpose(q) => (
                Arc::new(Transpose {
                    perm: Some(q.iter().map(|&a| a as i64).collect()),
                }),
                vec![Some(x)],
            ),
            Merge::Reshape(zs) => {
                let dims: Vec<i64> = zs.iter().map(|&d| d as i64).collect();
                let Ok(t) = Tensor::from_vec(vec![dims.len()], dims) else {
                    removed.remove(&ni);
                    continue;
                };
                let mut cname = format!("{name}_shape");
                while g.find_value(&cname).is_some() {
                    cname.push('_');
                }
                let s = g.add_constant(cname, t);
                (
                    Arc::new(Reshape {
                        shape_attr: None,
                        allowzero: true,
                    }),
                    vec![Some(x), Some(s)],
                )
            }
        };
        replaced.insert(
            nj,
            Node {
                name,
                op,
                inputs,
                outputs: vec![z],
            },
        );
    }
    crate::patterns::rebuild(g, &removed, replaced);
    let resolve = |mut v: ValueId| {
        let mut hops = 0;
        while let Some(&w) = subst.get(&v) {
            v = w;
            hops += 1;
            if hops > subst.len() {
                break;
            }
        }
        v
    };
    for n in &mut g.nodes {
        for v in n.inputs.iter_mut().flatten() {
            *v = resolve(*v);
        }
    }
    g.remove_dead();
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::op;
    use millrace_core::DType;
    use millrace_ir::{verify, Attr, ValueType};

    fn node(g: &mut Graph, name: &str, attrs: Vec<(&str, Attr)>, inputs: &[ValueId]) -> ValueId {
        let k = g.nodes.len();
        let y = g.add_value(format!("v{k}"), ValueType::unknown());
        g.add_node(
            format!("{name}_{k}"),
            op(name, attrs),
            inputs.iter().map(|&v| Some(v)).collect(),
            vec![y],
        );
        y
    }

    fn tr(g: &mut Graph, x: ValueId, perm: &[i64]) -> ValueId {
        node(
            g,
            "Transpose",
            vec![("perm", Attr::Ints(perm.to_vec()))],
            &[x],
        )
    }

    fn shape(g: &mut Graph, s: &[i64]) -> ValueId {
        let k = g.values.len();
        g.add_constant(
            format!("s{k}"),
            Tensor::from_vec(vec![s.len()], s.to_vec()).unwrap(),
        )
    }

    fn input(g: &mut Graph, s: &[usize]) -> ValueId {
        let v = g.add_value("x", ValueType::concrete(DType::F32, s));
        g.inputs.push(v);
        v
    }

    /// Runs the pass, checks outputs equal the original graph's; returns graph and stats.
    fn run_and_compare(mut g: Graph) -> (Graph, PassStats) {
        g.infer_types().unwrap();
        let before = g.clone();
        let mut stats = PassStats::default();
        CancelTranspose.run(&mut g, &mut stats).unwrap();
        verify(&g).unwrap();
        g.infer_types().unwrap();
        let ins: Vec<Tensor> = before
            .runtime_inputs()
            .map(|v| {
                let s = before.value(v).ty.concrete_shape().unwrap();
                let n: usize = s.iter().product();
                Tensor::from_vec(s, (0..n).map(|i| i as f32 * 0.5 - 3.0).collect()).unwrap()
            })
            .collect();
        let refs: Vec<&Tensor> = ins.iter().collect();
        let want = before.eval(&refs, &[]).unwrap();
        let got = g.eval(&refs, &[]).unwrap();
        assert_eq!(want, got);
        (g, stats)
    }

    fn count(s: &PassStats, k: &str) -> usize {
        s.counters.get(k).copied().unwrap_or(0)
    }

    #[test]
    fn transpose_pairs_merge_or_cancel() {
        let mut g = Graph::new("t");
        let x = input(&mut g, &[2, 3, 4, 5]);
        let a = tr(&mut g, x, &[0, 2, 3, 1]);
        let b = tr(&mut g, a, &[0, 3, 1, 2]); // inverse: cancels
        let c = tr(&mut g, b, &[1, 0, 2, 3]);
        let d = tr(&mut g, c, &[0, 1, 3, 2]); // merges with c
        let e = node(&mut g, "Relu", vec![], &[d]);
        g.outputs.push(e);
        let (g, stats) = run_and_compare(g);
        assert_eq!(count(&stats, "cancelled Transpose pair"), 1);
        assert_eq!(count(&stats, "merged Transpose pair"), 1);
        assert_eq!(g.nodes.len(), 2);
        assert_eq!(g.nodes[0].inputs[0], Some(x));
    }

    #[test]
    fn identity_transpose_identity_and_dropout_go() {
        let mut g = Graph::new("t");
        let x = input(&mut g, &[2, 3]);
        let a = tr(&mut g, x, &[0, 1]);
        let b = node(&mut g, "Identity", vec![], &[a]);
        let c = node(&mut g, "Dropout", vec![], &[b]);
        let d = node(&mut g, "Neg", vec![], &[c]);
        let e = node(&mut g, "Identity", vec![], &[d]);
        g.outputs.push(e);
        let (g, stats) = run_and_compare(g);
        // The last Identity makes the graph output: it stays.
        assert_eq!(g.nodes.len(), 2);
        assert_eq!(count(&stats, "refused: graph output"), 1);
        assert_eq!(count(&stats, "removed Dropout"), 1);
        assert_eq!(count(&stats, "removed Identity"), 1);
        assert_eq!(count(&stats, "removed identity Transpose"), 1);
        assert_eq!(g.nodes[0].inputs, vec![Some(x)]);
    }

    #[test]
    fn reshape_family_pairs_merge_or_cancel() {
        let mut g = Graph::new("t");
        let x = input(&mut g, &[2, 3, 4]);
        let s1 = shape(&mut g, &[6, 4]);
        let a = node(&mut g, "Reshape", vec![], &[x, s1]);
        let s2 = shape(&mut g, &[4, -1]);
        let b = node(&mut g, "Reshape", vec![], &[a, s2]); // merges: [2,3,4] -> [4,6]
        let ax = shape(&mut g, &[0]);
        let c = node(&mut g, "Unsqueeze", vec![], &[b, ax]);
        let ax2 = shape(&mut g, &[0]);
        let d = node(&mut g, "Squeeze", vec![], &[c, ax2]); // cancels with the Unsqueeze
        let s3 = shape(&mut g, &[4, 6]);
        let e = node(&mut g, "Reshape", vec![], &[d, s3]); // same shape: removed
        let f = node(&mut g, "Flatten", vec![("axis", Attr::Int(1))], &[e]);
        let h = node(&mut g, "Sigmoid", vec![], &[f]);
        g.outputs.push(h);
        let (g, stats) = run_and_compare(g);
        let names: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
        assert_eq!(names, ["Reshape", "Sigmoid"], "{stats:?}");
        assert_eq!(g.nodes[0].inputs[0], Some(x));
    }

    #[test]
    fn shared_intermediates_are_kept() {
        let mut g = Graph::new("t");
        let x = input(&mut g, &[2, 3]);
        let a = tr(&mut g, x, &[1, 0]);
        let b = tr(&mut g, a, &[1, 0]);
        let c = node(&mut g, "Relu", vec![], &[a]);
        g.outputs.extend([b, c]);
        let (g, stats) = run_and_compare(g);
        assert_eq!(g.nodes.len(), 3);
        assert_eq!(count(&stats, "refused: shared"), 1);
    }
}
