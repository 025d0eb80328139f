//! fuse-elementwise: replaces a chain of f32 elementwise nodes by one `FusedElementwise`
//! node that makes a single pass over the data (runs after fuse-conv and fuse-matmul, so
//! it only takes what they did not absorb into an epilogue).
//!
//! ```text
//! %a = Mul(%x, 0.5)
//! %b = Add(%a, %bias)          =>   %c = FusedElementwise[Mul(0.5) -> Add(in1) -> Relu](%x, %bias)
//! %c = Relu(%b)
//! ```
//! A chain grows from its first node along the main operand (the one with the output's
//! shape) while each intermediate has exactly one reader and is not a graph output. Steps:
//! Relu, Sigmoid, Tanh, Exp, Log, Sqrt, Neg, Abs, Erf, Reciprocal, HardSwish, Gelu,
//! LeakyRelu, HardSigmoid, Clip with constant bounds, Pow with a constant scalar exponent,
//! and Add/Sub/Mul/Div/Max/Min whose other operand (a constant scalar, folded into the
//! step, or any f32 tensor) broadcasts to the main operand's shape. A step that would
//! broadcast the main operand up ends the chain. Chains of one node are left alone.
use crate::pipeline::{Pass, PassError, PassStats};
use millrace_core::{DType, Tensor};
use millrace_ir::{Graph, Node, ValueId};
use millrace_ops::elementwise::{
    add::Add,
    binary::Legacy,
    clip::Clip,
    div::Div,
    fused_chain::{Binary, FusedElementwise, Operand, Step, Unary},
    gelu::Gelu,
    hard_sigmoid::HardSigmoid,
    leaky_relu::LeakyRelu,
    mul::Mul,
    sub::Sub,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub struct FuseElementwise;

/// The other operand of a binary step, before input indices are assigned.
enum Side {
    Scalar(f32),
    Value(ValueId),
}

/// A node as a chain step.
enum Class {
    /// Not an elementwise op this pass knows.
    No,
    /// An elementwise op that cannot join here, and why.
    Refused(&'static str),
    Yes {
        main: ValueId,
        unary: Option<Unary>,
        binary: Option<(Binary, Side, bool)>,
    },
}

const ELEMENTWISE: &[&str] = &[
    "Relu",
    "Sigmoid",
    "Tanh",
    "Exp",
    "Log",
    "Sqrt",
    "Neg",
    "Abs",
    "Erf",
    "Reciprocal",
    "HardSwish",
    "Gelu",
    "LeakyRelu",
    "HardSigmoid",
    "Clip",
    "Pow",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Max",
    "Min",
];

/// A constant f32 (or any numeric, when `any_dtype`) scalar's value.
fn const_scalar(g: &Graph, v: ValueId, any_dtype: bool) -> Option<f64> {
    let t: &Tensor = g.constant(v)?;
    if t.len() != 1 || (!any_dtype && t.dtype() != DType::F32) {
        return None;
    }
    t.to_f64_vec().ok()?.first().copied()
}

fn f32_shape(g: &Graph, v: ValueId) -> Option<Vec<usize>> {
    let t = &g.value(v).ty;
    if t.dtype != Some(DType::F32) {
        return None;
    }
    t.concrete_shape()
}

/// Whether `s` broadcasts to `out` without changing it.
fn broadcasts_to(s: &[usize], out: &[usize]) -> bool {
    s.len() <= out.len()
        && s.iter()
            .zip(&out[out.len() - s.len()..])
            .all(|(&a, &b)| a == 1 || a == b)
}

fn legacy_ok(node: &Node) -> bool {
    let op = node.op.as_any();
    let l = op
        .downcast_ref::<Add>()
        .map(|o| &o.legacy)
        .or_else(|| op.downcast_ref::<Sub>().map(|o| &o.legacy))
        .or_else(|| op.downcast_ref::<Mul>().map(|o| &o.legacy))
        .or_else(|| op.downcast_ref::<Div>().map(|o| &o.legacy));
    l.is_none_or(|l| *l == Legacy::default())
}

fn unary_of(g: &Graph, node: &Node) -> Result<Option<Unary>, &'static str> {
    let op = node.op.as_any();
    let u = match node.op.name() {
        "Relu" => Unary::Relu,
        "Sigmoid" => Unary::Sigmoid,
        "Tanh" => Unary::Tanh,
        "Exp" => Unary::Exp,
        "Log" => Unary::Log,
        "Sqrt" => Unary::Sqrt,
        "Neg" => Unary::Neg,
        "Abs" => Unary::Abs,
        "Erf" => Unary::Erf,
        "Reciprocal" => Unary::Reciprocal,
        "HardSwish" => Unary::HardSwish,
        "Gelu" => match op.downcast_ref::<Gelu>() {
            Some(g) if g.tanh => Unary::GeluTanh,
            Some(_) => Unary::Gelu,
            None => return Ok(None),
        },
        "LeakyRelu" => match op.downcast_ref::<LeakyRelu>() {
            Some(l) => Unary::LeakyRelu { alpha: l.alpha },
            None => return Ok(None),
        },
        "HardSigmoid" => match op.downcast_ref::<HardSigmoid>() {
            Some(h) => Unary::HardSigmoid {
                alpha: h.alpha,
                beta: h.beta,
            },
            None => return Ok(None),
        },
        "Clip" => {
            let Some(c) = op.downcast_ref::<Clip>() else {
                return Ok(None);
            };
            let (lo, hi) = match c.attr_bounds {
                Some(b) => b,
                None => {
                    let bound = |i: usize| -> Result<Option<f32>, &'static str> {
                        match node.inputs.get(i).copied().flatten() {
                            None => Ok(None),
                            Some(v) => const_scalar(g, v, false)
                                .map(|x| Some(x as f32))
                                .ok_or("Clip bounds not constant"),
                        }
                    };
                    (bound(1)?, bound(2)?)
                }
            };
            Unary::Clip {
                lo: lo.unwrap_or(f32::NEG_INFINITY),
                hi: hi.unwrap_or(f32::INFINITY),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(u))
}

/// How `node` joins a chain whose current value is `cur` (or starts one when `None`).
fn classify(g: &Graph, node: &Node, cur: Option<ValueId>) -> Class {
    let name = node.op.name();
    if !ELEMENTWISE.contains(&name) {
        return Class::No;
    }
    if node.outputs.len() != 1 {
        return Class::Refused("several outputs");
    }
    let Some(out) = f32_shape(g, node.outputs[0]) else {
        return Class::Refused("not float32 or shape unknown");
    };
    let x0 = node.inputs.first().copied().flatten();
    match unary_of(g, node) {
        Err(why) => return Class::Refused(why),
        Ok(Some(u)) => {
            let Some(x) = x0 else {
                return Class::Refused("missing input");
            };
            if cur.is_some_and(|c| c != x) {
                return Class::Refused("chain value is not the main operand");
            }
            if f32_shape(g, x).as_ref() != Some(&out) {
                return Class::Refused("main operand broadcast up");
            }
            return Class::Yes {
                main: x,
                unary: Some(u),
                binary: None,
            };
        }
        Ok(None) => {}
    }
    let (Some(a), Some(b), 2) = (x0, node.inputs.get(1).copied().flatten(), node.inputs.len())
    else {
        return Class::Refused("not two inputs");
    };
    if !legacy_ok(node) {
        return Class::Refused("legacy broadcast attributes");
    }
    // The main operand: the chain's value, or (starting) the first input of output shape.
    let main_pos = match cur {
        Some(c) if a == c => 0,
        Some(c) if b == c => 1,
        Some(_) => return Class::Refused("chain value is not an operand"),
        None if f32_shape(g, a).as_ref() == Some(&out) => 0,
        None if f32_shape(g, b).as_ref() == Some(&out) => 1,
        None => return Class::Refused("main operand broadcast up"),
    };
    let (main, other) = if main_pos == 0 { (a, b) } else { (b, a) };
    if f32_shape(g, main).as_ref() != Some(&out) {
        return Class::Refused("main operand broadcast up");
    }
    if name == "Pow" {
        return match (main_pos, const_scalar(g, other, true)) {
            (0, Some(e)) => Class::Yes {
                main,
                unary: Some(Unary::Pow { exponent: e }),
                binary: None,
            },
            _ => Class::Refused("Pow exponent not a constant scalar"),
        };
    }
    let op = match name {
        "Add" => Binary::Add,
        "Sub" => Binary::Sub,
        "Mul" => Binary::Mul,
        "Div" => Binary::Div,
        "Max" => Binary::Max,
        "Min" => Binary::Min,
        _ => return Class::No,
    };
    let side = match const_scalar(g, other, false) {
        Some(c) => Side::Scalar(c as f32),
        None => match f32_shape(g, other) {
            Some(s) if broadcasts_to(&s, &out) => Side::Value(other),
            Some(_) => return Class::Refused("main operand broadcast up"),
            None => return Class::Refused("operand not float32 or shape unknown"),
        },
    };
    Class::Yes {
        main,
        unary: None,
        binary: Some((op, side, main_pos == 1)),
    }
}

/// A chain being grown.
struct Chain {
    steps: Vec<Step>,
    /// Input 0 is the main operand; then side operands, each once.
    inputs: Vec<ValueId>,
    nodes: Vec<usize>,
}

impl Chain {
    fn push(&mut self, ni: usize, unary: Option<Unary>, binary: Option<(Binary, Side, bool)>) {
        if let Some(u) = unary {
            self.steps.push(Step::Unary(u));
        }
        if let Some((op, side, swapped)) = binary {
            let other = match side {
                Side::Scalar(c) => Operand::Scalar(c),
                Side::Value(v) => match self.inputs.iter().position(|&i| i == v) {
                    Some(i) => Operand::Input(i),
                    None => {
                        self.inputs.push(v);
                        Operand::Input(self.inputs.len() - 1)
                    }
                },
            };
            self.steps.push(Step::Binary { op, other, swapped });
        }
        self.nodes.push(ni);
    }
}

impl Pass for FuseElementwise {
    fn name(&self) -> &'static str {
        "fuse-elementwise"
    }

    fn summary(&self) -> &'static str {
        "chains of f32 elementwise ops into one single-pass FusedElementwise node"
    }

    fn run(&self, g: &mut Graph, stats: &mut PassStats) -> Result<bool, PassError> {
        let consumers = g.consumers();
        let outputs: HashSet<ValueId> = g.outputs.iter().copied().collect();
        let mut taken: HashSet<usize> = HashSet::new();
        let mut removed: HashSet<usize> = HashSet::new();
        let mut replaced: HashMap<usize, Node> = HashMap::new();
        for ni in 0..g.nodes.len() {
            if taken.contains(&ni) {
                continue;
            }
            let node = &g.nodes[ni];
            let Class::Yes {
                main,
                unary,
                binary,
            } = classify(g, node, None)
            else {
                continue;
            };
            let mut chain = Chain {
                steps: vec![],
                inputs: vec![main],
                nodes: vec![],
            };
            chain.push(ni, unary, binary);
            let mut cur = node.outputs[0];
            loop {
                let readers = consumers.get(&cur).map(Vec::as_slice).unwrap_or(&[]);
                let fusible_reader = readers
                    .iter()
                    .any(|r| ELEMENTWISE.contains(&g.nodes[r.index()].op.name()));
                if outputs.contains(&cur) {
                    if fusible_reader {
                        stats.bump("refused: intermediate is a graph output");
                    }
                    break;
                }
                let [nj] = readers else {
                    if fusible_reader {
                        stats.bump("refused: intermediate has several readers");
                    }
                    break;
                };
                let nj = nj.index();
                if taken.contains(&nj) {
                    break;
                }
                let next = &g.nodes[nj];
                match classify(g, next, Some(cur)) {
                    Class::No => break,
                    Class::Refused(why) => {
                        stats.bump(format!("refused: {why}"));
                        break;
                    }
                    Class::Yes { unary, binary, .. } => {
                        chain.push(nj, unary, binary);
                        cur = next.outputs[0];
                    }
                }
            }
            if chain.nodes.len() < 2 {
                continue;
            }
            taken.extend(chain.nodes.iter().copied());
            let last = *chain.nodes.last().unwrap_or(&ni);
            removed.extend(chain.nodes.iter().copied().filter(|&n| n != last));
            stats.bump("fused");
            for _ in &chain.nodes {
                stats.bump("ops absorbed");
            }
            let inputs = chain.inputs.iter().map(|&v| Some(v)).collect();
            let op = FusedElementwise::new(chain.steps, chain.inputs.len());
            replaced.insert(
                last,
                Node {
                    name: node.name.clone(),
                    op: Arc::new(op),
                    inputs,
                    outputs: vec![cur],
                },
            );
        }
        let changed = !replaced.is_empty();
        crate::patterns::rebuild(g, &removed, replaced);
        if changed {
            g.remove_dead();
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::op;
    use millrace_ir::{verify, Attr, ValueType};

    fn rnd(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    /// A graph builder: `node(g, op, inputs)` appends a node with a fresh output.
    fn node(g: &mut Graph, name: &str, inputs: &[ValueId]) -> ValueId {
        node_with(g, name, vec![], inputs)
    }

    fn node_with(
        g: &mut Graph,
        name: &str,
        attrs: Vec<(&str, Attr)>,
        inputs: &[ValueId],
    ) -> ValueId {
        let k = g.nodes.len();
        let y = g.add_value(format!("v{k}"), ValueType::unknown());
        let o = op(name, attrs);
        g.add_node(
            format!("{name}_{k}"),
            o,
            inputs.iter().map(|&v| Some(v)).collect(),
            vec![y],
        );
        y
    }

    fn input(g: &mut Graph, name: &str, shape: &[usize]) -> ValueId {
        let v = g.add_value(name, ValueType::concrete(DType::F32, shape));
        g.inputs.push(v);
        v
    }

    fn konst(g: &mut Graph, name: &str, shape: &[usize], v: Vec<f32>) -> ValueId {
        g.add_constant(name, Tensor::from_vec(shape.to_vec(), v).unwrap())
    }

    /// Runs the pass; checks the outputs against the unfused graph and returns the stats.
    fn run_and_compare(mut g: Graph) -> (Graph, PassStats) {
        g.infer_types().unwrap();
        let before = g.clone();
        let mut stats = PassStats::default();
        FuseElementwise.run(&mut g, &mut stats).unwrap();
        verify(&g).unwrap();
        g.infer_types().unwrap();
        let ins: Vec<Tensor> = before
            .runtime_inputs()
            .enumerate()
            .map(|(i, v)| {
                let s = before.value(v).ty.concrete_shape().unwrap();
                let n = s.iter().product();
                let mut d = rnd(n, 7 + i as u32);
                if n > 3 {
                    d[1] = f32::NAN;
                    d[2] = -0.0;
                }
                Tensor::from_vec(s, d).unwrap()
            })
            .collect();
        let refs: Vec<&Tensor> = ins.iter().collect();
        let want = before.eval(&refs, &[]).unwrap();
        let got = g.eval(&refs, &[]).unwrap();
        assert_eq!(want.len(), got.len());
        for (w, o) in want.iter().zip(&got) {
            assert_eq!(w.shape(), o.shape());
            for (a, b) in w
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .zip(o.as_slice::<f32>().unwrap())
            {
                assert!(
                    a.to_bits() == b.to_bits()
                        || (a.is_nan() && b.is_nan())
                        || (a - b).abs() <= 2e-6 * a.abs().max(1.0),
                    "{a} vs {b}"
                );
            }
        }
        (g, stats)
    }

    fn count(s: &PassStats, k: &str) -> usize {
        s.counters.get(k).copied().unwrap_or(0)
    }

    #[test]
    fn fuses_scale_bias_relu_with_broadcast_operands() {
        let mut g = Graph::new("t");
        let x = input(&mut g, "x", &[2, 3, 4]);
        let bias = input(&mut g, "bias", &[4]);
        let half = konst(&mut g, "half", &[], vec![0.5]);
        let lo = konst(&mut g, "lo", &[], vec![-0.25]);
        let hi = konst(&mut g, "hi", &[], vec![1.5]);
        let a = node(&mut g, "Mul", &[half, x]);
        let b = node(&mut g, "Add", &[a, bias]);
        let c = node(&mut g, "Relu", &[b]);
        let d = node(&mut g, "Clip", &[c, lo, hi]);
        let e = node(&mut g, "Sub", &[bias, d]);
        g.outputs.push(e);
        let (g, stats) = run_and_compare(g);
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(count(&stats, "fused"), 1);
        assert_eq!(count(&stats, "ops absorbed"), 5);
        assert_eq!(
            g.nodes[0].op.describe(),
            "Mul(0.5, .) -> Add(in1) -> Relu -> Clip(-0.25,1.5) -> Sub(in1, .)"
        );
        assert_eq!(g.nodes[0].inputs, vec![Some(x), Some(bias)]);
        assert!(g.constants.is_empty());
    }

    #[test]
    fn fuses_silu_and_pow_chains() {
        let mut g = Graph::new("t");
        let x = input(&mut g, "x", &[5, 6]);
        let two = g.add_constant("two", Tensor::from_vec(vec![], vec![2i64]).unwrap());
        let s = node(&mut g, "Sigmoid", &[x]);
        let m = node(&mut g, "Mul", &[x, s]);
        let p = node(&mut g, "Pow", &[m, two]);
        let l = node_with(&mut g, "LeakyRelu", vec![("alpha", Attr::Float(0.2))], &[p]);
        g.outputs.push(l);
        let (g, stats) = run_and_compare(g);
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(count(&stats, "ops absorbed"), 4);
        assert_eq!(g.nodes[0].inputs, vec![Some(x)]);
    }

    #[test]
    fn refuses_shared_intermediates_and_graph_outputs() {
        // %a has two readers: nothing fuses across it.
        let mut g = Graph::new("t");
        let x = input(&mut g, "x", &[8]);
        let a = node(&mut g, "Relu", &[x]);
        let b = node(&mut g, "Exp", &[a]);
        let c = node(&mut g, "Neg", &[a]);
        g.outputs.extend([b, c]);
        let (g, stats) = run_and_compare(g);
        assert_eq!(g.nodes.len(), 3);
        assert_eq!(
            count(&stats, "refused: intermediate has several readers"),
            1
        );
        assert_eq!(count(&stats, "fused"), 0);

        // %a is a graph output: kept.
        let mut g = Graph::new("t");
        let x = input(&mut g, "x", &[8]);
        let a = node(&mut g, "Relu", &[x]);
        let b = node(&mut g, "Exp", &[a]);
        let c = node(&mut g, "Tanh", &[b]);
        g.outputs.extend([a, c]);
        let (g, stats) = run_and_compare(g);
        assert_eq!(count(&stats, "refused: intermediate is a graph output"), 1);
        // Exp -> Tanh still fuses.
        assert_eq!(g.nodes.len(), 2);
        assert_eq!(count(&stats, "fused"), 1);
    }

    #[test]
    fn refuses_to_broadcast_the_main_operand_up() {
        let mut g = Graph::new("t");
        let x = input(&mut g, "x", &[4]);
        let y = input(&mut g, "y", &[3, 4]);
        let a = node(&mut g, "Relu", &[x]);
        let b = node(&mut g, "Add", &[a, y]);
        let c = node(&mut g, "Sigmoid", &[b]);
        g.outputs.push(c);
        let (g, stats) = run_and_compare(g);
        assert_eq!(count(&stats, "refused: main operand broadcast up"), 1);
        // Add (main: y, x broadcast) -> Sigmoid fuses; Relu stays alone.
        assert_eq!(g.nodes.len(), 2);
        assert_eq!(g.nodes[1].op.describe(), "Add(in1, .) -> Sigmoid");
    }

    #[test]
    fn single_ops_and_other_dtypes_are_left_alone() {
        let mut g = Graph::new("t");
        let x = input(&mut g, "x", &[4]);
        let a = node(&mut g, "Relu", &[x]);
        g.outputs.push(a);
        let i = g.add_value("i", ValueType::concrete(DType::I64, &[4]));
        g.inputs.push(i);
        let mut gi = g.clone();
        let b = node(&mut gi, "Neg", &[i]);
        let c = node(&mut gi, "Abs", &[b]);
        gi.outputs = vec![c];
        gi.infer_types().unwrap();
        let mut stats = PassStats::default();
        assert!(!FuseElementwise.run(&mut gi, &mut stats).unwrap());
        g.inputs.pop();
        let (g, stats) = run_and_compare(g);
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(stats.total(), 0);
    }
}
