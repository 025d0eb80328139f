//! fuse-conv: turns a 2-D f32 `Conv` with constant weights, and the chain that follows it,
//! into one `FusedConv` with prepacked weights and a fused epilogue.
//!
//! Folded into the weights and bias: `BatchNormalization` (inference form, constant
//! statistics), `Mul`/`Div` by a per-channel or scalar constant, `Add`/`Sub` of one.
//! Fused into the epilogue: one residual `Add` of a same-shaped tensor (the ResNet skip
//! connection, added on each output tile while it is in cache), then one activation
//! (`Relu`, `Clip`, `Sigmoid`, `HardSigmoid`, `HardSwish`, `LeakyRelu`, `Tanh`, `Gelu`).
//!
//! ```text
//! %c = Conv(%x, W, B)                        %y = FusedConv[W'=fold(W,BN), +bias,
//! %n = BatchNormalization(%c, s, b, m, v)               +residual, +relu](%x, %skip)
//! %a = Add(%n, %skip)                 =>
//! %y = Relu(%a)
//! ```
//!
//! A link of the chain is fused only when its input has no other reader and is not a
//! graph output. Refusals are counted with their reason.
//!
//! Which convolution hosts a residual `Add` of two convolution branches matters to the
//! branch-parallel schedule: the host waits for the other branch. So the `Add` goes to the
//! branch that finishes later on the FLOP-weighted longest path (ResNet's main branch
//! `conv1 -> conv2 -> conv3`, not its projection shortcut), leaving the shorter branch
//! free to run beside it; the other branch's chain refuses it
//! (`refused residual Add: left to the longer branch`).
use crate::patterns::{
    absorb_activation, const_f32, fits_residual, fuse_chains, other_operand, per_axis, Fused, Grow,
};
use crate::pipeline::{Pass, PassError, PassStats};
use millrace_core::{DType, Tensor};
use millrace_ir::{Graph, Node, ValueId};
use millrace_kernels::activation::Activation;
use millrace_ops::nn::{batch_norm::BatchNormalization, conv::Conv, fused_conv::FusedConv};
use std::rc::Rc;
use std::sync::Arc;

pub struct FuseConv;

impl Pass for FuseConv {
    fn name(&self) -> &'static str {
        "fuse-conv"
    }

    fn summary(&self) -> &'static str {
        "Conv + BatchNorm/scale/shift + residual Add + activation into one FusedConv with prepacked weights"
    }

    fn run(&self, g: &mut Graph, stats: &mut PassStats) -> Result<bool, PassError> {
        let paths = Rc::new(Paths::new(g));
        Ok(fuse_chains(g, stats, |g, node, stats| {
            let conv = node.op.as_any().downcast_ref::<Conv>()?;
            Chain::start(g, node, conv, stats, paths.clone())
        }))
    }
}

/// Per value: when it is ready on the FLOP-weighted longest path from the graph inputs,
/// and whether a convolution chain makes it (a `Conv`, or a per-channel op right after one).
struct Paths {
    ready: Vec<f64>,
    from_conv: Vec<bool>,
}

impl Paths {
    fn new(g: &Graph) -> Paths {
        let n = g.values.len();
        let (mut ready, mut from_conv) = (vec![0.0f64; n], vec![false; n]);
        for node in &g.nodes {
            let start = node
                .inputs
                .iter()
                .flatten()
                .map(|v| ready[v.index()])
                .fold(0.0, f64::max);
            let done = start + g.node_cost(node).flops as f64;
            let conv = match node.op.name() {
                "Conv" => true,
                "BatchNormalization" | "Mul" | "Div" | "Add" | "Sub" => node
                    .inputs
                    .first()
                    .copied()
                    .flatten()
                    .is_some_and(|v| from_conv[v.index()]),
                _ => false,
            };
            for o in &node.outputs {
                ready[o.index()] = done;
                from_conv[o.index()] = conv;
            }
        }
        Paths { ready, from_conv }
    }

    /// Whether the Add of `cur` and `other` should be left to `other`'s chain.
    fn other_hosts(&self, cur: ValueId, other: ValueId) -> bool {
        let (c, o) = (cur.index(), other.index());
        self.from_conv.get(o) == Some(&true)
            && self.ready.get(o).copied().unwrap_or(0.0) > self.ready.get(c).copied().unwrap_or(0.0)
    }
}

/// The convolution being grown.
struct Chain {
    conv: Conv,
    x: ValueId,
    w_shape: Vec<usize>,
    w: Weights,
    bias: Option<Vec<f32>>,
    residual: Option<ValueId>,
    act: Activation,
    names: Vec<String>,
    /// Output shape, when known (needed to accept a residual).
    out_shape: Option<Vec<usize>>,
    paths: Rc<Paths>,
}

/// A chain's weights: the graph's constant while nothing has changed them (most exported
/// models fold their batch norms already), a copy once a fold scales them. Copying every
/// convolution's weights up front took 7% of ResNet-50's load and compile (perf samples).
enum Weights {
    Shared(Arc<Tensor>),
    Owned(Vec<f32>),
}

impl Weights {
    fn as_slice(&self) -> &[f32] {
        match self {
            // `start` admits only f32 constants.
            Weights::Shared(t) => t.as_slice::<f32>().unwrap_or(&[]),
            Weights::Owned(v) => v,
        }
    }

    /// Scales each run of `per` values by its entry of `s` (output channel `i`'s weights by
    /// `s[i]`), copying shared weights in the same pass.
    fn scale(&mut self, per: usize, s: &[f32]) {
        match self {
            Weights::Owned(w) => {
                for (run, &si) in w.chunks_mut(per.max(1)).zip(s) {
                    run.iter_mut().for_each(|w| *w *= si);
                }
            }
            Weights::Shared(t) => {
                let src = t.as_slice::<f32>().unwrap_or(&[]);
                let w = src
                    .chunks(per.max(1))
                    .zip(s)
                    .flat_map(|(run, &si)| run.iter().map(move |w| w * si))
                    .collect();
                *self = Weights::Owned(w);
            }
        }
    }
}

impl Chain {
    fn start(
        g: &Graph,
        node: &Node,
        conv: &Conv,
        stats: &mut PassStats,
        paths: Rc<Paths>,
    ) -> Option<Chain> {
        let x = node.inputs.first().copied().flatten()?;
        if g.value(x).ty.dtype != Some(DType::F32) {
            stats.bump("refused: not float32");
            return None;
        }
        let Some(w) = node
            .inputs
            .get(1)
            .copied()
            .flatten()
            .and_then(|v| g.constant(v))
            .filter(|t| t.dtype() == DType::F32)
            .cloned()
        else {
            stats.bump("refused: weights not constant");
            return None;
        };
        let w_shape = w.shape().to_vec();
        if w_shape.len() != 4 {
            stats.bump("refused: not 2-D");
            return None;
        }
        let bias = match node.inputs.get(2).copied().flatten() {
            None => None,
            Some(b) => match const_f32(g, b) {
                Some((s, v)) if s == [w_shape[0]] => Some(v),
                _ => {
                    stats.bump("refused: bias not constant");
                    return None;
                }
            },
        };
        Some(Chain {
            conv: conv.clone(),
            x,
            out_shape: g.value(node.outputs[0]).ty.concrete_shape(),
            w_shape,
            w: Weights::Shared(w),
            bias,
            residual: None,
            act: Activation::None,
            names: Vec::new(),
            paths,
        })
    }

    fn m(&self) -> usize {
        self.w_shape[0]
    }
}

impl Grow for Chain {
    fn finish(self, g: &Graph, stats: &mut PassStats) -> Option<Fused> {
        let planned = g.value(self.x).ty.concrete_shape();
        match FusedConv::new(
            &self.conv,
            planned.as_deref(),
            &self.w_shape,
            self.w.as_slice(),
            self.bias,
            self.act,
            self.residual.is_some(),
            self.names,
        ) {
            Ok(f) => {
                stats.bump("fused convolutions");
                let mut inputs = vec![Some(self.x)];
                inputs.extend(self.residual.map(Some));
                Some((Arc::new(f), inputs))
            }
            Err(_) => {
                stats.bump("refused: weights do not fit the convolution");
                None
            }
        }
    }

    fn absorb(&mut self, g: &Graph, next: &Node, cur: ValueId, stats: &mut PassStats) -> bool {
        self.absorb_node(g, next, cur, stats)
    }
}

impl Chain {
    /// Scales output channel `i` by `s[i]` (weights and bias).
    fn scale(&mut self, s: &[f32]) {
        let per = self.w.as_slice().len() / self.m().max(1);
        self.w.scale(per, s);
        if let Some(b) = &mut self.bias {
            b.iter_mut().zip(s).for_each(|(b, s)| *b *= s);
        }
    }

    fn shift(&mut self, d: &[f32]) {
        let b = self.bias.get_or_insert_with(|| vec![0.0; d.len()]);
        b.iter_mut().zip(d).for_each(|(b, d)| *b += d);
    }

    /// Tries to fold `next` (which reads `cur`) into the chain.
    fn absorb_node(&mut self, g: &Graph, next: &Node, cur: ValueId, stats: &mut PassStats) -> bool {
        let m = self.m();
        let linear_ok = self.residual.is_none() && self.act.is_none();
        let ok = match next.op.name() {
            "BatchNormalization" if linear_ok && next.inputs.first() == Some(&Some(cur)) => {
                let Some(bn) = next.op.as_any().downcast_ref::<BatchNormalization>() else {
                    return false;
                };
                let params: Option<Vec<Vec<f32>>> = (1..5)
                    .map(|i| {
                        let (s, v) = const_f32(g, next.inputs.get(i).copied().flatten()?)?;
                        (s == [m]).then_some(v)
                    })
                    .collect();
                let Some(p) = params else {
                    stats.bump("refused BatchNormalization: statistics not constant");
                    return false;
                };
                let (gamma, beta, mean, var) = (&p[0], &p[1], &p[2], &p[3]);
                let s: Vec<f32> = (0..m)
                    .map(|i| gamma[i] / (var[i] + bn.epsilon).sqrt())
                    .collect();
                let d: Vec<f32> = (0..m).map(|i| beta[i] - mean[i] * s[i]).collect();
                self.scale(&s);
                self.shift(&d);
                stats.bump("folded BatchNormalization");
                true
            }
            op @ ("Mul" | "Div" | "Add" | "Sub") if linear_ok => {
                let Some((pos, o)) = other_operand(next, cur) else {
                    return false;
                };
                if let Some((shape, v)) = const_f32(g, o) {
                    let Some(v) = per_axis(&shape, &v, 4, 1, m) else {
                        stats.bump(format!("refused {op}: constant not per-channel"));
                        return false;
                    };
                    match (op, pos) {
                        ("Mul", _) => self.scale(&v),
                        ("Div", 1) => self.scale(&v.iter().map(|x| 1.0 / x).collect::<Vec<_>>()),
                        ("Add", _) => self.shift(&v),
                        ("Sub", 1) => self.shift(&v.iter().map(|x| -x).collect::<Vec<_>>()),
                        _ => return false,
                    }
                    stats.bump(format!("folded constant {op}"));
                    true
                } else if op == "Add" {
                    if self.paths.other_hosts(cur, o) {
                        stats.bump("refused residual Add: left to the longer branch");
                        return false;
                    }
                    if !fits_residual(g, o, self.out_shape.as_ref()) {
                        stats.bump("refused residual Add: shapes differ or unknown");
                        return false;
                    }
                    self.residual = Some(o);
                    stats.bump("fused residual Add");
                    true
                } else {
                    false
                }
            }
            _ => absorb_activation(g, next, cur, &mut self.act, stats),
        };
        if ok {
            self.names.push(next.name.clone());
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{op, rnd};
    use millrace_core::Tensor;
    use millrace_ir::{Attr, ValueType};

    /// conv -> BN -> Add(skip) -> Relu, with a second reader of the skip input.
    fn resnet_block() -> Graph {
        let mut g = Graph::new("t");
        let x = g.add_value("x", ValueType::concrete(DType::F32, &[1, 4, 6, 6]));
        g.inputs.push(x);
        let w = g.add_constant(
            "w",
            Tensor::from_vec(vec![4, 4, 3, 3], rnd(144, 1)).unwrap(),
        );
        let b = g.add_constant("b", Tensor::from_vec(vec![4], rnd(4, 2)).unwrap());
        let bn: Vec<ValueId> = (0..4)
            .map(|i| {
                let mut v = rnd(4, 10 + i);
                if i == 3 {
                    v.iter_mut().for_each(|x| *x = x.abs() + 0.5);
                }
                g.add_constant(format!("bn{i}"), Tensor::from_vec(vec![4], v).unwrap())
            })
            .collect();
        let c = g.add_value("c", ValueType::unknown());
        let n = g.add_value("n", ValueType::unknown());
        let a = g.add_value("a", ValueType::unknown());
        let y = g.add_value("y", ValueType::unknown());
        g.add_node(
            "conv",
            op(
                "Conv",
                vec![
                    ("kernel_shape", Attr::Ints(vec![3, 3])),
                    ("pads", Attr::Ints(vec![1, 1, 1, 1])),
                ],
            ),
            vec![Some(x), Some(w), Some(b)],
            vec![c],
        );
        g.add_node(
            "bn",
            op("BatchNormalization", vec![("epsilon", Attr::Float(1e-3))]),
            vec![Some(c), Some(bn[0]), Some(bn[1]), Some(bn[2]), Some(bn[3])],
            vec![n],
        );
        g.add_node("add", op("Add", vec![]), vec![Some(n), Some(x)], vec![a]);
        g.add_node("relu", op("Relu", vec![]), vec![Some(a)], vec![y]);
        g.outputs.push(y);
        g.infer_types().unwrap();
        g
    }

    #[test]
    fn fuses_bn_residual_and_relu_with_equal_results() {
        let g0 = resnet_block();
        let mut g = g0.clone();
        let mut stats = PassStats::default();
        assert!(FuseConv.run(&mut g, &mut stats).unwrap());
        millrace_ir::verify(&g).unwrap();
        g.infer_types().unwrap();
        assert_eq!(g.nodes.len(), 1, "{:?}", g.nodes);
        assert_eq!(g.nodes[0].op.name(), "FusedConv");
        assert!(g.constants.is_empty(), "folded weights leave the graph");
        let d = g.nodes[0].op.describe();
        assert!(d.contains("+residual") && d.contains("+relu"), "{d}");
        let x = Tensor::from_vec(vec![1, 4, 6, 6], rnd(144, 7)).unwrap();
        let want = g0.eval(&[&x], &[]).unwrap();
        let got = g.eval(&[&x], &[]).unwrap();
        let (w, v) = (want[0].to_f32_vec().unwrap(), got[0].to_f32_vec().unwrap());
        for (a, b) in w.iter().zip(&v) {
            assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }

    /// A projection block whose shortcut conv comes first in node order: the Add must go
    /// to the main branch's last conv (the longer path), so the shortcut stays free to
    /// run beside the main branch.
    #[test]
    fn the_residual_add_goes_to_the_longer_branch() {
        let mut g = Graph::new("t");
        let x = g.add_value("x", ValueType::concrete(DType::F32, &[1, 4, 5, 5]));
        g.inputs.push(x);
        let conv = |g: &mut Graph, name: &str, input: ValueId, seed: u32| {
            let w = g.add_constant(
                format!("{name}.w"),
                Tensor::from_vec(vec![4, 4, 1, 1], rnd(16, seed)).unwrap(),
            );
            let o = g.add_value(name, ValueType::unknown());
            g.add_node(
                name,
                op("Conv", vec![]),
                vec![Some(input), Some(w)],
                vec![o],
            );
            o
        };
        let short = conv(&mut g, "shortcut", x, 1);
        let m1 = conv(&mut g, "main1", x, 2);
        let m2 = conv(&mut g, "main2", m1, 3);
        let a = g.add_value("a", ValueType::unknown());
        g.add_node(
            "add",
            op("Add", vec![]),
            vec![Some(short), Some(m2)],
            vec![a],
        );
        g.outputs.push(a);
        g.infer_types().unwrap();
        let g0 = g.clone();
        let mut stats = PassStats::default();
        assert!(FuseConv.run(&mut g, &mut stats).unwrap());
        assert_eq!(
            stats.counters["refused residual Add: left to the longer branch"],
            1
        );
        let host = g.nodes.iter().find(|n| n.outputs[0] == a).unwrap();
        assert_eq!(host.name, "main2");
        assert_eq!(host.inputs, vec![Some(m1), Some(short)]);
        let xs = Tensor::from_vec(vec![1, 4, 5, 5], rnd(100, 9)).unwrap();
        let run = |g: &Graph| {
            let out = g
                .eval_args(&[millrace_ir::ArgRef::Tensor(&xs)], &[])
                .unwrap();
            out[0].as_tensor().unwrap().to_f64_vec().unwrap()
        };
        let (want, got) = (run(&g0), run(&g));
        for (w, v) in want.iter().zip(&got) {
            assert!((w - v).abs() <= 1e-5 * (1.0 + w.abs()), "{w} vs {v}");
        }
    }

    #[test]
    fn a_second_reader_stops_the_chain() {
        let mut g = resnet_block();
        // Make the BN output a graph output too: only the conv itself may fuse.
        let n = g.find_value("n").unwrap();
        g.outputs.push(n);
        let mut stats = PassStats::default();
        FuseConv.run(&mut g, &mut stats).unwrap();
        millrace_ir::verify(&g).unwrap();
        let names: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
        assert_eq!(names, ["FusedConv", "Add", "Relu"]);
    }
}
