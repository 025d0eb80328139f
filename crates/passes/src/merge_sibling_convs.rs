//! merge-sibling-convs: horizontal merge of 2-D convolutions that read the same input with
//! the same window into one wider convolution followed by a `Split` along channels
//! (GoogLeNet's inception branches: 1x1, 3x3-reduce and 5x5-reduce on one input).
//!
//! ```text
//! %a = Conv[k, s, p, d](%x, Wa, ba)           %m = Conv[k, s, p, d](%x, [Wa;Wb], [ba;bb])
//! %b = Conv[k, s, p, d](%x, Wb, bb)    =>     %r = Relu(%m)              (when both had one)
//! %ra = Relu(%a)                              %ra, %rb = Split[axis=1]( %r, [Ca, Cb])
//! %rb = Relu(%b)
//! ```
//! Merged: `group = 1`, constant f32 4-D weights (and constant biases, absent ones taken
//! as zero), equal kernel size, strides, pads, dilations and `auto_pad`. When every merged
//! branch is followed by a `Relu` that is its only reader, one `Relu` runs on the merged
//! output before the `Split`, so `fuse-conv` folds it into the convolution's epilogue.
//! A `BatchNormalization` (constant statistics) right after a sibling is folded into its
//! weights and bias first, so the merged conv carries it and the Relu can still move.
//! The merged nodes sit where the first of the siblings was, so everything they read is
//! computed before them and every reader of their outputs comes after.
use crate::patterns::{const_f32, Uses};
use crate::pipeline::{Pass, PassError, PassStats};
use millrace_core::{DType, Tensor};
use millrace_ir::{Graph, Node, NodeId, ValueId, ValueType};
use millrace_ops::elementwise::relu::Relu;
use millrace_ops::nn::batch_norm::BatchNormalization;
use millrace_ops::nn::common::AutoPad;
use millrace_ops::nn::conv::Conv;
use millrace_ops::tensor::split::Split;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

pub struct MergeSiblingConvs;

impl Pass for MergeSiblingConvs {
    fn name(&self) -> &'static str {
        "merge-sibling-convs"
    }

    fn summary(&self) -> &'static str {
        "2-D Convs with one input and one window into one wider Conv + Split along channels"
    }

    fn run(&self, g: &mut Graph, stats: &mut PassStats) -> Result<bool, PassError> {
        let uses = Uses::new(g);
        // Convs by the input they read, in node order.
        let mut by_input: BTreeMap<ValueId, Vec<usize>> = BTreeMap::new();
        for (ni, n) in g.nodes.iter().enumerate() {
            if n.op.name() == "Conv" {
                if let Some(x) = n.inputs.first().copied().flatten() {
                    by_input.entry(x).or_default().push(ni);
                }
            }
        }
        let mut removed: HashSet<usize> = HashSet::new();
        let mut inserted: HashMap<usize, Vec<Node>> = HashMap::new();
        for (x, convs) in by_input {
            if convs.len() < 2 {
                continue;
            }
            let mut groups: Vec<Vec<Branch>> = Vec::new();
            for &ni in &convs {
                let b = match Branch::of(g, &uses, ni) {
                    Ok(b) => b,
                    Err(why) => {
                        stats.bump(format!("refused: {why}"));
                        continue;
                    }
                };
                match groups.iter_mut().find(|gr| gr[0].key == b.key) {
                    Some(gr) => gr.push(b),
                    None => groups.push(vec![b]),
                }
            }
            groups.sort_by_key(|gr| std::cmp::Reverse(gr.len()));
            if let Some(first) = groups.first() {
                let rep = &first[0].key;
                for gr in &groups[1..] {
                    for _ in gr {
                        stats.bump(format!("refused: {}", rep.difference(&gr[0].key)));
                    }
                }
            }
            for gr in groups.into_iter().filter(|gr| gr.len() >= 2) {
                let at = gr.iter().map(|b| b.node).min().unwrap_or(0);
                let Some(nodes) = merge(g, x, &gr, stats) else {
                    continue;
                };
                let all_relu = gr.iter().all(|b| b.relu.is_some());
                for b in &gr {
                    removed.insert(b.node);
                    removed.extend(b.bn);
                    if all_relu {
                        removed.extend(b.relu);
                    }
                }
                inserted.insert(at, nodes);
            }
        }
        let changed = !inserted.is_empty();
        let old = std::mem::take(&mut g.nodes);
        for (i, n) in old.into_iter().enumerate() {
            if let Some(new) = inserted.remove(&i) {
                g.nodes.extend(new);
            }
            if !removed.contains(&i) {
                g.nodes.push(n);
            }
        }
        if changed {
            g.remove_dead();
        }
        Ok(changed)
    }
}

/// What must agree for two convolutions to merge.
#[derive(Clone, Debug, PartialEq)]
struct Key {
    cin: usize,
    kernel: Vec<usize>,
    strides: Vec<usize>,
    pads: Vec<usize>,
    dilations: Vec<usize>,
    auto_pad: AutoPad,
    /// Whether the branch ends in a Relu that is its only reader. Branches that end
    /// differently are not merged: the Relu could then not move before the Split (one
    /// Relu node per branch would stay unfused), and the merge would tie a shortcut
    /// branch (ResNet's projection) to the main branch it should run beside.
    relu: bool,
}

impl Key {
    fn difference(&self, o: &Key) -> &'static str {
        if self.kernel != o.kernel {
            "different kernel size"
        } else if self.strides != o.strides {
            "different stride"
        } else if self.pads != o.pads {
            "different pads"
        } else if self.dilations != o.dilations {
            "different dilation"
        } else if self.auto_pad != o.auto_pad {
            "different auto_pad"
        } else if self.relu != o.relu {
            "different activation"
        } else {
            "different input channels"
        }
    }
}

/// One sibling: its node, weights, bias and the Relu it may bring along.
struct Branch {
    node: usize,
    key: Key,
    conv: Conv,
    cout: usize,
    /// The weights as in the model: copied once, into the merged tensor.
    w: Arc<Tensor>,
    b: Option<Vec<f32>>,
    out: ValueId,
    /// A BatchNormalization to fold into the weights and bias as they are merged
    /// (removed with the conv).
    bn: Option<usize>,
    fold: Option<BnFold>,
    relu: Option<usize>,
}

impl Branch {
    fn of(g: &Graph, uses: &Uses, ni: usize) -> Result<Branch, &'static str> {
        let n = &g.nodes[ni];
        let conv = n.op.as_any().downcast_ref::<Conv>().ok_or("not a Conv")?;
        if conv.group != 1 {
            return Err("grouped convolution");
        }
        let wv = n.inputs.get(1).copied().flatten().ok_or("no weights")?;
        let wt = g
            .constant(wv)
            .filter(|t| t.as_slice::<f32>().is_ok())
            .ok_or("weights not constant f32")?;
        let ws = wt.shape();
        if ws.len() != 4 || n.outputs.len() != 1 {
            return Err("not 2-D");
        }
        let b = match n.inputs.get(2).copied().flatten() {
            None => None,
            Some(bv) => {
                let t = g
                    .constant(bv)
                    .filter(|t| t.dtype() == DType::F32 && t.len() == ws[0])
                    .ok_or("bias not constant f32")?;
                Some(t.to_f32_vec().map_err(|_| "bias not constant f32")?)
            }
        };
        let win = &conv.window;
        let kernel = ws[2..].to_vec();
        if win.kernel.as_ref().is_some_and(|k| *k != kernel) {
            return Err("kernel_shape differs from the weights");
        }
        let mut out = n.outputs[0];
        // A BatchNormalization right after the conv is folded into its weights now: after
        // the merge it would sit behind the Split, where fuse-conv cannot fold it.
        let bn = uses.sole_consumer(out).map(NodeId::index).filter(|&i| {
            let m = &g.nodes[i];
            m.outputs.len() == 1 && m.inputs.first().copied().flatten() == Some(out)
        });
        let (bn, fold) = match bn.and_then(|i| BnFold::of(g, i, ws[0]).map(|f| (i, f))) {
            Some((i, f)) => {
                out = g.nodes[i].outputs[0];
                (Some(i), Some(f))
            }
            None => (None, None),
        };
        let relu = uses
            .sole_consumer(out)
            .map(NodeId::index)
            .filter(|&r| g.nodes[r].op.name() == "Relu" && g.nodes[r].outputs.len() == 1);
        Ok(Branch {
            node: ni,
            key: Key {
                cin: ws[1],
                kernel,
                strides: win.strides.clone().unwrap_or(vec![1, 1]),
                pads: win.pads.clone().unwrap_or(vec![0; 4]),
                dilations: win.dilations.clone().unwrap_or(vec![1, 1]),
                auto_pad: win.auto_pad,
                relu: relu.is_some(),
            },
            conv: conv.clone(),
            cout: ws[0],
            w: Arc::clone(wt),
            b,
            out,
            bn,
            fold,
            relu,
        })
    }
}

/// An inference-mode `BatchNormalization` (constant scale, shift, mean and variance of
/// `cout` channels) as per-channel factors for the conv before it:
/// `w' = w * f`, `b' = b * f + add` with `f = s / sqrt(var + eps)`, `add = shift - mean * f`.
struct BnFold {
    f: Vec<f32>,
    add: Vec<f32>,
}

impl BnFold {
    /// `None` when node `i` is not such a BatchNormalization.
    fn of(g: &Graph, i: usize, cout: usize) -> Option<BnFold> {
        let n = &g.nodes[i];
        let op = n.op.as_any().downcast_ref::<BatchNormalization>()?;
        if n.inputs.len() != 5 {
            return None;
        }
        let mut p = Vec::with_capacity(4);
        for v in &n.inputs[1..] {
            let (_, data) = const_f32(g, (*v)?)?;
            if data.len() != cout {
                return None;
            }
            p.push(data);
        }
        let (scale, shift, mean, var) = (&p[0], &p[1], &p[2], &p[3]);
        let f: Vec<f32> = (0..cout)
            .map(|c| scale[c] / (var[c] + op.epsilon).sqrt())
            .collect();
        let add = (0..cout).map(|c| shift[c] - mean[c] * f[c]).collect();
        Some(BnFold { f, add })
    }

    /// Folds into one conv's weights `w` (`cout` rows) and bias `b`.
    fn apply(&self, w: &mut [f32], b: &mut [f32]) {
        let per = w.len() / self.f.len().max(1);
        for (c, row) in w
            .chunks_exact_mut(per.max(1))
            .enumerate()
            .take(self.f.len())
        {
            for x in row {
                *x *= self.f[c];
            }
            b[c] = b[c] * self.f[c] + self.add[c];
        }
    }
}

/// The merged Conv, the optional Relu and the Split, giving each branch's output.
fn merge(g: &mut Graph, x: ValueId, gr: &[Branch], stats: &mut PassStats) -> Option<Vec<Node>> {
    let first = &gr[0];
    let cout: usize = gr.iter().map(|b| b.cout).sum();
    let k = &first.key;
    // One copy of each branch's weights, straight into the merged tensor, BatchNorm folded
    // in place: the weights are most of what a compile writes.
    let mut w: Vec<f32> = Vec::with_capacity(gr.iter().map(|b| b.w.len()).sum());
    let mut bias: Vec<f32> = Vec::with_capacity(cout);
    for b in gr {
        let (w0, b0) = (w.len(), bias.len());
        w.extend_from_slice(b.w.as_slice::<f32>().ok()?);
        match &b.b {
            Some(v) => bias.extend_from_slice(v),
            None => bias.resize(b0 + b.cout, 0.0),
        }
        if let Some(fold) = &b.fold {
            fold.apply(&mut w[w0..], &mut bias[b0..]);
        }
    }
    let has_bias = gr.iter().any(|b| b.b.is_some() || b.fold.is_some());
    let base = g.nodes[first.node].name.clone();
    let wshape = vec![cout, k.cin, k.kernel[0], k.kernel[1]];
    let sizes: Vec<i64> = gr.iter().map(|b| b.cout as i64).collect();
    // The lengths agree by construction (each branch's weights are a whole tensor).
    let (Ok(wt), Ok(bt), Ok(st)) = (
        Tensor::from_vec(wshape, w),
        Tensor::from_vec(vec![cout], bias),
        Tensor::from_vec(vec![sizes.len()], sizes),
    ) else {
        stats.bump("refused: merged weights inconsistent");
        return None;
    };
    let mut inputs = vec![
        Some(x),
        Some(g.add_constant(format!("{base}.merged.W"), wt)),
    ];
    if has_bias {
        inputs.push(Some(g.add_constant(format!("{base}.merged.B"), bt)));
    }
    let merged = g.add_value(format!("{base}.merged"), ValueType::of_dtype(DType::F32));
    let mut nodes = vec![Node {
        name: format!("{base}.merged"),
        op: Arc::new(first.conv.clone()),
        inputs,
        outputs: vec![merged],
    }];
    let all_relu = gr.iter().all(|b| b.relu.is_some());
    let mut split_in = merged;
    let outputs: Vec<ValueId> = if all_relu {
        let r = g.add_value(
            format!("{base}.merged.relu"),
            ValueType::of_dtype(DType::F32),
        );
        nodes.push(Node {
            name: format!("{base}.merged.Relu"),
            op: Arc::new(Relu),
            inputs: vec![Some(merged)],
            outputs: vec![r],
        });
        split_in = r;
        stats.bump("moved Relu before the Split");
        gr.iter()
            .map(|b| b.relu.map_or(b.out, |ri| g.nodes[ri].outputs[0]))
            .collect()
    } else {
        gr.iter().map(|b| b.out).collect()
    };
    let sv = g.add_constant(format!("{base}.merged.split"), st);
    nodes.push(Node {
        name: format!("{base}.merged.Split"),
        op: Arc::new(Split {
            axis: 1,
            split_attr: None,
            split_input: true,
            num_outputs: Some(gr.len() as i64),
        }),
        inputs: vec![Some(split_in), Some(sv)],
        outputs,
    });
    stats.bump(format!("merged {} Convs", gr.len()));
    Some(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{op, rnd};
    use millrace_ir::Attr;

    /// An inception-like fan-out: 1x1 (+Relu), 1x1 (+Relu), 1x1 stride 2, 3x3, all on x.
    fn fanout(all_relu: bool) -> Graph {
        let mut g = Graph::new("t");
        let x = g.add_value("x", ValueType::concrete(DType::F32, &[1, 3, 6, 6]));
        g.inputs.push(x);
        let branches: [(usize, usize, i64, bool); 4] = [
            (4, 1, 1, true),
            (5, 1, 1, all_relu),
            (2, 1, 2, true),
            (3, 3, 1, true),
        ];
        for (i, &(cout, k, s, relu)) in branches.iter().enumerate() {
            let w = Tensor::from_vec(vec![cout, 3, k, k], rnd(cout * 3 * k * k, i as u32)).unwrap();
            let w = g.add_constant(format!("w{i}"), w);
            let b = g.add_constant(
                format!("b{i}"),
                Tensor::from_vec(vec![cout], rnd(cout, 9)).unwrap(),
            );
            let c = g.add_value(format!("c{i}"), ValueType::unknown());
            let conv = op(
                "Conv",
                vec![
                    ("kernel_shape", Attr::Ints(vec![k as i64, k as i64])),
                    ("strides", Attr::Ints(vec![s, s])),
                ],
            );
            g.add_node(
                format!("conv{i}"),
                conv,
                vec![Some(x), Some(w), Some(b)],
                vec![c],
            );
            let out = if relu {
                let r = g.add_value(format!("r{i}"), ValueType::unknown());
                g.add_node(
                    format!("relu{i}"),
                    op("Relu", vec![]),
                    vec![Some(c)],
                    vec![r],
                );
                r
            } else {
                c
            };
            g.outputs.push(out);
        }
        g.infer_types().unwrap();
        g
    }

    fn check(all_relu: bool) -> (Graph, PassStats) {
        let g0 = fanout(all_relu);
        let mut g = g0.clone();
        let mut stats = PassStats::default();
        assert!(MergeSiblingConvs.run(&mut g, &mut stats).unwrap());
        millrace_ir::verify(&g).unwrap();
        g.infer_types().unwrap();
        let x = Tensor::from_vec(vec![1, 3, 6, 6], rnd(108, 77)).unwrap();
        let want = g0.eval(&[&x], &[]).unwrap();
        let got = g.eval(&[&x], &[]).unwrap();
        assert_eq!(want.len(), got.len());
        for (w, v) in want.iter().zip(&got) {
            assert_eq!(w.shape(), v.shape());
            for (a, b) in w.to_f32_vec().unwrap().iter().zip(v.to_f32_vec().unwrap()) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
            }
        }
        (g, stats)
    }

    #[test]
    fn merges_the_two_1x1_convs_and_moves_relu() {
        let (g, stats) = check(true);
        let names: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
        assert_eq!(
            names,
            ["Conv", "Relu", "Split", "Conv", "Relu", "Conv", "Relu"]
        );
        assert_eq!(stats.counters.get("merged 2 Convs"), Some(&1));
        assert_eq!(stats.counters.get("moved Relu before the Split"), Some(&1));
        assert_eq!(stats.counters.get("refused: different stride"), Some(&1));
        assert_eq!(
            stats.counters.get("refused: different kernel size"),
            Some(&1)
        );
    }

    /// Two 1x1 convs on one input, each followed by BatchNormalization and Relu (how
    /// torchvision's GoogLeNet looks before BatchNorm is folded).
    fn with_batchnorm() -> Graph {
        let mut g = Graph::new("bn");
        let x = g.add_value("x", ValueType::concrete(DType::F32, &[1, 3, 5, 5]));
        g.inputs.push(x);
        for (i, cout) in [4usize, 6].into_iter().enumerate() {
            let s = i as u32 * 10;
            let w = g.add_constant(
                format!("w{i}"),
                Tensor::from_vec(vec![cout, 3, 1, 1], rnd(cout * 3, s)).unwrap(),
            );
            let c = g.add_value(format!("c{i}"), ValueType::unknown());
            let conv = op("Conv", vec![("kernel_shape", Attr::Ints(vec![1, 1]))]);
            g.add_node(format!("conv{i}"), conv, vec![Some(x), Some(w)], vec![c]);
            let var: Vec<f32> = rnd(cout, s + 4).iter().map(|v| v.abs() + 0.5).collect();
            let params = [rnd(cout, s + 1), rnd(cout, s + 2), rnd(cout, s + 3), var];
            let mut ins = vec![Some(c)];
            for (j, p) in params.into_iter().enumerate() {
                ins.push(Some(g.add_constant(
                    format!("bn{i}_{j}"),
                    Tensor::from_vec(vec![cout], p).unwrap(),
                )));
            }
            let n = g.add_value(format!("n{i}"), ValueType::unknown());
            g.add_node(
                format!("bn{i}"),
                op("BatchNormalization", vec![("epsilon", Attr::Float(1e-3))]),
                ins,
                vec![n],
            );
            let r = g.add_value(format!("r{i}"), ValueType::unknown());
            g.add_node(
                format!("relu{i}"),
                op("Relu", vec![]),
                vec![Some(n)],
                vec![r],
            );
            g.outputs.push(r);
        }
        g.infer_types().unwrap();
        g
    }

    #[test]
    fn folds_batchnorm_before_merging() {
        let g0 = with_batchnorm();
        let mut g = g0.clone();
        let mut stats = PassStats::default();
        assert!(MergeSiblingConvs.run(&mut g, &mut stats).unwrap());
        millrace_ir::verify(&g).unwrap();
        g.infer_types().unwrap();
        let names: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
        assert_eq!(names, ["Conv", "Relu", "Split"]);
        let x = Tensor::from_vec(vec![1, 3, 5, 5], rnd(75, 5)).unwrap();
        let want = g0.eval(&[&x], &[]).unwrap();
        let got = g.eval(&[&x], &[]).unwrap();
        for (w, v) in want.iter().zip(&got) {
            assert_eq!(w.shape(), v.shape());
            for (a, b) in w.to_f32_vec().unwrap().iter().zip(v.to_f32_vec().unwrap()) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn refuses_branches_that_end_differently() {
        let g0 = fanout(false);
        let mut g = g0.clone();
        let mut stats = PassStats::default();
        assert!(!MergeSiblingConvs.run(&mut g, &mut stats).unwrap());
        assert_eq!(g.nodes.len(), g0.nodes.len());
        assert_eq!(
            stats.counters.get("refused: different activation"),
            Some(&1)
        );
    }
}
