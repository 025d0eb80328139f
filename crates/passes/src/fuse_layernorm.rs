//! fuse-layernorm: the decomposed LayerNorm that exporters before opset 17 (and
//! hand-written models) emit, into one `LayerNormalization` over the last axis.
//!
//! ```text
//! %m = ReduceMean[axes=[-1], keepdims=1](%x)     (axes as attribute or constant input)
//! %d = Sub(%x, %m)
//! %q = Pow(%d, 2)            (or Mul(%d, %d))
//! %v = ReduceMean[axes=[-1], keepdims=1](%q)
//! %a = Add(%v, eps)                                  =>   %y = LayerNormalization[axis=-1,
//! %r = Sqrt(%a)                                                  epsilon=eps](%x, gamma, beta)
//! %n = Div(%d, %r)           (or Mul(%d, Reciprocal(%r)))
//! %g = Mul(%n, gamma)        (optional, constant, one value per last-axis index)
//! %y = Add(%g, beta)         (optional, constant, likewise)
//! ```
//! Every intermediate must have no reader outside the pattern (`%d` is read by the square
//! and the division only). Without `gamma` the scale is a constant of ones.
use crate::patterns::{const_f32, other_operand, per_axis, rebuild, Uses};
use crate::pipeline::{Pass, PassError, PassStats};
use millrace_core::{DType, Tensor};
use millrace_ir::{Attr, Attributes, Graph, Node, NodeId, ValueId};
use millrace_ops::reduce::common::{Reduce, ReduceKind};
use millrace_ops::registry::Registry;
use std::collections::{HashMap, HashSet};

pub struct FuseLayerNorm;

impl Pass for FuseLayerNorm {
    fn name(&self) -> &'static str {
        "fuse-layernorm"
    }

    fn summary(&self) -> &'static str {
        "ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div (+ Mul gamma + Add beta) into one LayerNormalization"
    }

    fn run(&self, g: &mut Graph, stats: &mut PassStats) -> Result<bool, PassError> {
        let uses = Uses::new(g);
        let consumers = g.consumers();
        let producers = g.producers();
        let mut removed: HashSet<usize> = HashSet::new();
        let mut replaced: HashMap<usize, Node> = HashMap::new();
        for si in 0..g.nodes.len() {
            if g.nodes[si].op.name() != "Sub" {
                continue;
            }
            let Some(m) = match_at(g, &uses, &consumers, &producers, si, stats) else {
                continue;
            };
            if m.nodes
                .iter()
                .any(|n| removed.contains(n) || replaced.contains_key(n))
            {
                continue;
            }
            let items = vec![
                ("axis".to_string(), Attr::Int(-1)),
                ("epsilon".to_string(), Attr::Float(m.eps)),
            ];
            let attrs = Attributes::new("LayerNormalization", items);
            let Some(op) = Registry::global()
                .get("LayerNormalization")
                .and_then(|f| f(&attrs, 17).ok())
            else {
                stats.bump("refused: LayerNormalization not available");
                continue;
            };
            let name = g.nodes[si].name.clone();
            let n = m.n;
            let scale = m.gamma.unwrap_or_else(|| vec![1.0; n]);
            let Ok(st) = Tensor::from_vec(vec![n], scale) else {
                continue;
            };
            let bt = match m.beta.clone().map(|b| Tensor::from_vec(vec![n], b)) {
                None => None,
                Some(Ok(t)) => Some(t),
                Some(Err(_)) => continue,
            };
            let sv = g.add_constant(format!("{name}.ln_scale"), st);
            let bv = bt.map(|t| g.add_constant(format!("{name}.ln_bias"), t));
            let last = m.nodes.iter().copied().max().unwrap_or(si);
            removed.extend(m.nodes.iter().copied());
            removed.remove(&last);
            replaced.insert(
                last,
                Node {
                    name: name.replace("Sub", "LayerNormalization"),
                    op,
                    inputs: vec![Some(m.x), Some(sv), bv],
                    outputs: vec![m.y],
                },
            );
            stats.bump("fused LayerNorm");
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
    x: ValueId,
    y: ValueId,
    n: usize,
    eps: f32,
    gamma: Option<Vec<f32>>,
    beta: Option<Vec<f32>>,
    nodes: Vec<usize>,
}

fn scalar(g: &Graph, v: ValueId) -> Option<f32> {
    let t = g.constant(v)?;
    if t.len() != 1 || !matches!(t.dtype(), DType::F32 | DType::F64) {
        return None;
    }
    t.to_f32_vec().ok().map(|v| v[0])
}

/// Whether `node` is `ReduceMean` over exactly the last axis of a rank-`r` input,
/// keeping dimensions.
fn mean_last(g: &Graph, node: &Node, r: usize) -> bool {
    let Some(red) = node.op.as_any().downcast_ref::<Reduce>() else {
        return false;
    };
    if red.kind != ReduceKind::Mean || !red.keepdims {
        return false;
    }
    let axes = if red.axes_from_input {
        match node.inputs.get(1).copied().flatten() {
            Some(a) => match g.constant(a).and_then(|t| t.to_i64_vec().ok()) {
                Some(v) => v,
                None => return false,
            },
            None => return false,
        }
    } else {
        match &red.axes {
            Some(a) => a.clone(),
            None => return false,
        }
    };
    axes.len() == 1 && (axes[0] == -1 || axes[0] == r as i64 - 1)
}

fn match_at(
    g: &Graph,
    uses: &Uses,
    consumers: &HashMap<ValueId, Vec<NodeId>>,
    producers: &HashMap<ValueId, (NodeId, usize)>,
    si: usize,
    stats: &mut PassStats,
) -> Option<Match> {
    let sub = &g.nodes[si];
    let x = sub.inputs.first().copied().flatten()?;
    let mv = sub.inputs.get(1).copied().flatten()?;
    let (mi, _) = producers.get(&mv)?;
    let mean = &g.nodes[mi.index()];
    if mean.op.name() != "ReduceMean" || mean.inputs.first() != Some(&Some(x)) {
        return None;
    }
    let xt = &g.value(x).ty;
    let (Some(shape), Some(DType::F32)) = (xt.concrete_shape(), xt.dtype) else {
        stats.bump("refused: shape unknown or not float32");
        return None;
    };
    let r = shape.len();
    let n = *shape.last()?;
    if !mean_last(g, mean, r) {
        stats.bump("refused: mean not over the last axis");
        return None;
    }
    uses.sole_consumer(mv)?;
    let d = sub.outputs[0];
    // Readers of d: the square (once as Pow, twice as Mul(d, d)) and the division.
    let readers = consumers.get(&d)?;
    let mut uniq: Vec<usize> = readers.iter().map(|n| n.index()).collect();
    uniq.sort_unstable();
    uniq.dedup();
    if uniq.len() != 2 || g.outputs.contains(&d) {
        stats.bump("refused: centered value has other readers");
        return None;
    }
    let is_square = |ni: usize| {
        let n = &g.nodes[ni];
        match n.op.name() {
            "Pow" => {
                n.inputs.first() == Some(&Some(d))
                    && n.inputs
                        .get(1)
                        .copied()
                        .flatten()
                        .and_then(|e| scalar(g, e))
                        == Some(2.0)
            }
            "Mul" => n.inputs.len() == 2 && n.inputs.iter().all(|i| *i == Some(d)),
            _ => false,
        }
    };
    let (qi, di) = if is_square(uniq[0]) {
        (uniq[0], uniq[1])
    } else if is_square(uniq[1]) {
        (uniq[1], uniq[0])
    } else {
        return None;
    };
    let mut nodes = vec![mi.index(), si, qi];
    let next = |v: ValueId| uses.sole_consumer(v).map(NodeId::index);
    let vi = next(g.nodes[qi].outputs[0])?;
    if g.nodes[vi].op.name() != "ReduceMean" || !mean_last(g, &g.nodes[vi], r) {
        return None;
    }
    let v = g.nodes[vi].outputs[0];
    let ai = next(v)?;
    let add = &g.nodes[ai];
    let eps = (add.op.name() == "Add")
        .then(|| other_operand(add, v))
        .flatten()
        .and_then(|(_, e)| scalar(g, e))?;
    let ri = next(add.outputs[0])?;
    if g.nodes[ri].op.name() != "Sqrt" {
        return None;
    }
    nodes.extend([vi, ai, ri]);
    let rv = g.nodes[ri].outputs[0];
    let div = &g.nodes[di];
    let ok = match div.op.name() {
        "Div" => div.inputs == [Some(d), Some(rv)],
        "Mul" => {
            let rec = next(rv)?;
            let rn = &g.nodes[rec];
            if rn.op.name() != "Reciprocal" || next(rn.outputs[0]) != Some(di) {
                return None;
            }
            nodes.push(rec);
            other_operand(div, rn.outputs[0]).map(|(_, o)| o) == Some(d)
        }
        _ => false,
    };
    if !ok || next(rv).is_none_or(|u| u != di && g.nodes[u].op.name() != "Reciprocal") {
        return None;
    }
    nodes.push(di);
    let mut y = div.outputs[0];
    // Optional Mul(gamma), then optional Add(beta), both per last-axis index.
    let mut gamma = None;
    let mut beta = None;
    let per_last = |c: ValueId| const_f32(g, c).and_then(|(s, v)| per_axis(&s, &v, r, r - 1, n));
    if let Some(mi) = next(y) {
        let m = &g.nodes[mi];
        if m.op.name() == "Mul" {
            if let Some(gv) = other_operand(m, y).and_then(|(_, c)| per_last(c)) {
                gamma = Some(gv);
                nodes.push(mi);
                y = m.outputs[0];
            }
        }
    }
    if let Some(ai) = next(y) {
        let a = &g.nodes[ai];
        if a.op.name() == "Add" {
            if let Some(bv) = other_operand(a, y).and_then(|(_, c)| per_last(c)) {
                beta = Some(bv);
                nodes.push(ai);
                y = a.outputs[0];
            }
        }
    }
    // The output keeps x's shape only if gamma/beta did not broadcast it wider.
    if g.value(y).ty.concrete_shape().as_ref() != Some(&shape) {
        stats.bump("refused: output shape differs from the input's");
        return None;
    }
    Some(Match {
        x,
        y,
        n,
        eps,
        gamma,
        beta,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{op_at as op, rnd};
    use millrace_ir::ValueType;

    /// The decomposed form. `opset18`: axes as a constant input; `mul_form`: Mul(d, d) and
    /// Mul(d, Reciprocal(r)); `affine`: with gamma and beta.
    fn decomposed(opset18: bool, mul_form: bool, affine: bool) -> Graph {
        let mut g = Graph::new("t");
        let x = g.add_value("x", ValueType::concrete(DType::F32, &[2, 3, 8]));
        g.inputs.push(x);
        let u = |g: &mut Graph, n: &str| g.add_value(n, ValueType::unknown());
        let opset = if opset18 { 18 } else { 13 };
        let mean = |g: &mut Graph, name: &str, src: ValueId, dst: ValueId| {
            if opset18 {
                let a = g.add_constant(
                    format!("{name}.axes"),
                    Tensor::from_vec(vec![1], vec![-1i64]).unwrap(),
                );
                g.add_node(
                    name,
                    op("ReduceMean", vec![], opset),
                    vec![Some(src), Some(a)],
                    vec![dst],
                );
            } else {
                let o = op("ReduceMean", vec![("axes", Attr::Ints(vec![2]))], opset);
                g.add_node(name, o, vec![Some(src)], vec![dst]);
            }
        };
        let [m, d, q, v, a, r, n] = ["m", "d", "q", "v", "a", "r", "n"].map(|s| u(&mut g, s));
        mean(&mut g, "mean", x, m);
        g.add_node(
            "Sub",
            op("Sub", vec![], opset),
            vec![Some(x), Some(m)],
            vec![d],
        );
        if mul_form {
            g.add_node(
                "sq",
                op("Mul", vec![], opset),
                vec![Some(d), Some(d)],
                vec![q],
            );
        } else {
            let two = g.add_constant("two", Tensor::scalar(2.0f32));
            g.add_node(
                "sq",
                op("Pow", vec![], opset),
                vec![Some(d), Some(two)],
                vec![q],
            );
        }
        mean(&mut g, "var", q, v);
        let eps = g.add_constant("eps", Tensor::scalar(1e-5f32));
        g.add_node(
            "add",
            op("Add", vec![], opset),
            vec![Some(v), Some(eps)],
            vec![a],
        );
        g.add_node("sqrt", op("Sqrt", vec![], opset), vec![Some(a)], vec![r]);
        if mul_form {
            let rc = u(&mut g, "rc");
            g.add_node(
                "rec",
                op("Reciprocal", vec![], opset),
                vec![Some(r)],
                vec![rc],
            );
            g.add_node(
                "div",
                op("Mul", vec![], opset),
                vec![Some(rc), Some(d)],
                vec![n],
            );
        } else {
            g.add_node(
                "div",
                op("Div", vec![], opset),
                vec![Some(d), Some(r)],
                vec![n],
            );
        }
        let mut y = n;
        if affine {
            let gm = g.add_constant("gamma", Tensor::from_vec(vec![8], rnd(8, 5)).unwrap());
            let bt = g.add_constant("beta", Tensor::from_vec(vec![1, 8], rnd(8, 6)).unwrap());
            let (yg, yb) = (u(&mut g, "yg"), u(&mut g, "yb"));
            g.add_node(
                "mulg",
                op("Mul", vec![], opset),
                vec![Some(n), Some(gm)],
                vec![yg],
            );
            g.add_node(
                "addb",
                op("Add", vec![], opset),
                vec![Some(bt), Some(yg)],
                vec![yb],
            );
            y = yb;
        }
        g.outputs.push(y);
        g.infer_types().unwrap();
        g
    }

    #[test]
    fn fuses_every_form_with_equal_results() {
        for opset18 in [false, true] {
            for mul_form in [false, true] {
                for affine in [false, true] {
                    let g0 = decomposed(opset18, mul_form, affine);
                    let mut g = g0.clone();
                    let mut stats = PassStats::default();
                    assert!(
                        FuseLayerNorm.run(&mut g, &mut stats).unwrap(),
                        "{opset18} {mul_form} {affine} {:?}",
                        stats.counters
                    );
                    millrace_ir::verify(&g).unwrap();
                    g.infer_types().unwrap();
                    let names: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
                    assert_eq!(names, ["LayerNormalization"]);
                    assert_eq!(stats.counters.get("fused LayerNorm"), Some(&1));
                    let x = Tensor::from_vec(vec![2, 3, 8], rnd(48, 11)).unwrap();
                    let want = g0.eval(&[&x], &[]).unwrap()[0].to_f32_vec().unwrap();
                    let got = g.eval(&[&x], &[]).unwrap()[0].to_f32_vec().unwrap();
                    for (a, b) in want.iter().zip(&got) {
                        assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_mean_over_another_axis_or_a_second_reader_refuses() {
        let mut g = decomposed(false, false, false);
        let d = g.find_value("d").unwrap();
        g.outputs.push(d);
        let mut stats = PassStats::default();
        assert!(!FuseLayerNorm.run(&mut g, &mut stats).unwrap());
        assert_eq!(
            stats
                .counters
                .get("refused: centered value has other readers"),
            Some(&1)
        );
        let mut g = decomposed(false, false, false);
        let o = op("ReduceMean", vec![("axes", Attr::Ints(vec![1]))], 13);
        g.nodes[0].op = o;
        let mut stats = PassStats::default();
        assert!(!FuseLayerNorm.run(&mut g, &mut stats).unwrap());
        assert_eq!(
            stats.counters.get("refused: mean not over the last axis"),
            Some(&1)
        );
    }
}
