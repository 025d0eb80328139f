//! fuse-matmul: turns `MatMul` with a constant 2-D right operand (or `Gemm` with
//! `transA = 0` and constant `B`, `C`), and the chain that follows it, into one
//! `FusedMatMul` with prepacked weights.
//!
//! Fused: a bias `Add` of a constant that broadcasts along the last axis, one residual
//! `Add` of a same-shaped tensor, then one activation.
//!
//! ```text
//! %m = MatMul(%x, W)                         %y = FusedMatMul[W, +bias, +gelu](%x)
//! %b = Add(%m, bias)                 =>
//! %y = Gelu(%b)
//! ```
use crate::patterns::{
    absorb_activation, const_f32, fits_residual, fuse_chains, other_operand, per_axis, Fused, Grow,
};
use crate::pipeline::{Pass, PassError, PassStats};
use millrace_core::{DType, Tensor};
use millrace_ir::{Graph, Node, ValueId};
use millrace_kernels::activation::Activation;
use millrace_ops::nn::{fused_matmul::FusedMatMul, gemm::Gemm};
use std::sync::Arc;

pub struct FuseMatMul;

impl Pass for FuseMatMul {
    fn name(&self) -> &'static str {
        "fuse-matmul"
    }

    fn summary(&self) -> &'static str {
        "MatMul/Gemm with constant weights + bias + residual Add + activation into one FusedMatMul with prepacked weights"
    }

    fn run(&self, g: &mut Graph, stats: &mut PassStats) -> Result<bool, PassError> {
        Ok(fuse_chains(g, stats, Chain::start))
    }
}

struct Chain {
    /// The first node's op type (`MatMul` or `Gemm`), for the counters.
    first: &'static str,
    x: ValueId,
    k: usize,
    n: usize,
    /// The weights as in the graph: read once, by the packing.
    w: Arc<Tensor>,
    transposed: bool,
    alpha: f32,
    bias: Option<Vec<f32>>,
    residual: Option<ValueId>,
    act: Activation,
    names: Vec<String>,
    out_shape: Option<Vec<usize>>,
}

impl Grow for Chain {
    fn finish(self, _g: &Graph, stats: &mut PassStats) -> Option<Fused> {
        match FusedMatMul::new(
            self.k,
            self.n,
            self.w.as_slice::<f32>().unwrap_or(&[]),
            self.transposed,
            self.alpha,
            self.bias,
            self.act,
            self.residual.is_some(),
            self.names,
        ) {
            Ok(f) => {
                stats.bump(format!("fused {}", self.first));
                let mut inputs = vec![Some(self.x)];
                inputs.extend(self.residual.map(Some));
                Some((Arc::new(f), inputs))
            }
            Err(_) => {
                stats.bump("refused: weights do not fit");
                None
            }
        }
    }

    fn absorb(&mut self, g: &Graph, next: &Node, cur: ValueId, stats: &mut PassStats) -> bool {
        self.absorb_node(g, next, cur, stats)
    }
}

impl Chain {
    fn start(g: &Graph, node: &Node, stats: &mut PassStats) -> Option<Chain> {
        let name = node.op.name();
        if name != "MatMul" && name != "Gemm" {
            return None;
        }
        let x = node.inputs.first().copied().flatten()?;
        let xt = &g.value(x).ty;
        if xt.dtype != Some(DType::F32) {
            stats.bump("refused: not float32");
            return None;
        }
        let Some(w) = node
            .inputs
            .get(1)
            .copied()
            .flatten()
            .and_then(|v| g.constant(v))
            .filter(|t| t.as_slice::<f32>().is_ok())
        else {
            stats.bump(format!("refused {name}: weights not constant"));
            return None;
        };
        let w = Arc::clone(w);
        let ws = w.shape().to_vec();
        if ws.len() != 2 {
            stats.bump(format!("refused {name}: weights not 2-D"));
            return None;
        }
        let (mut alpha, mut transposed, mut bias) = (1.0, false, None);
        if name == "Gemm" {
            let gm = node.op.as_any().downcast_ref::<Gemm>()?;
            if gm.trans_a || xt.rank() != Some(2) {
                stats.bump("refused Gemm: transposed or non-2-D A");
                return None;
            }
            alpha = gm.alpha;
            transposed = gm.trans_b;
            let n = if transposed { ws[0] } else { ws[1] };
            if let Some(cv) = node.inputs.get(2).copied().flatten() {
                let Some(b) = const_f32(g, cv).and_then(|(s, v)| per_axis(&s, &v, 2, 1, n)) else {
                    stats.bump("refused Gemm: C not a constant row");
                    return None;
                };
                bias = Some(b.iter().map(|v| gm.beta * v).collect());
            }
        } else if xt.rank().is_none_or(|r| r < 1) {
            return None;
        }
        let (k, n) = if transposed {
            (ws[1], ws[0])
        } else {
            (ws[0], ws[1])
        };
        Some(Chain {
            first: name,
            x,
            k,
            n,
            w,
            transposed,
            alpha,
            bias,
            residual: None,
            act: Activation::None,
            names: Vec::new(),
            out_shape: g.value(node.outputs[0]).ty.concrete_shape(),
        })
    }

    fn absorb_node(&mut self, g: &Graph, next: &Node, cur: ValueId, stats: &mut PassStats) -> bool {
        let rank = self.out_shape.as_ref().map(Vec::len);
        let ok = match next.op.name() {
            "Add" if self.act.is_none() && self.residual.is_none() => {
                let Some((_, o)) = other_operand(next, cur) else {
                    return false;
                };
                if let Some((s, v)) = const_f32(g, o) {
                    let Some(r) = rank else { return false };
                    let Some(v) = per_axis(&s, &v, r, r - 1, self.n) else {
                        stats.bump("refused Add: constant not per-column");
                        return false;
                    };
                    let b = self.bias.get_or_insert_with(|| vec![0.0; self.n]);
                    b.iter_mut().zip(&v).for_each(|(b, v)| *b += v);
                    stats.bump("folded bias Add");
                    true
                } else if fits_residual(g, o, self.out_shape.as_ref()) {
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
