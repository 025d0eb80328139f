//! Lowering: the optimized graph's nodes into per-unit command queues with dependency tokens.
//!
//! # What goes where
//!
//! * **Matrix unit** (as GEMM tiles): `Conv`, `FusedConv`, `MatMul`, `FusedMatMul`, `Gemm`,
//!   `FusedAttention`. A convolution is mapped as SCALE-Sim maps it: `M` = output pixels
//!   (batch x oh x ow), `K` = kh x kw x cin/group, `N` = cout (per group; a grouped conv is
//!   `group` GEMMs of `N = cout/group`). A batched `MatMul` of two activations is one GEMM per
//!   batch entry. `FusedAttention` is modelled as its equivalent GEMM work (`Q K^T` and `P V`
//!   folded into one `M x K x N` with `K` from its FLOP count) plus a softmax on the vector
//!   unit: an approximation, said so in its label.
//! * **Depthwise convolutions** go to the **vector unit**: each output is a kh x kw dot
//!   product over one channel, with no reuse across channels, so a systolic array would
//!   use one column of its `cols` (SCALE-Sim maps them per channel with `N = 1`). On a
//!   `lanes`-wide vector unit they run at `2 kh kw` operations per output at full width.
//! * **Epilogues** (bias, residual Add, activation) of matrix nodes run on the vector unit,
//!   tile by tile, while the matrix unit works on the next tile. Folded BatchNorm costs
//!   nothing (it is in the weights).
//! * **Vector unit**: elementwise ops, pooling, softmax, normalizations, reductions,
//!   `FusedElementwise`, activations.
//! * **DMA only**: data movement (`Transpose`, `Concat` that is not free, `Slice`, `Pad`,
//!   `Gather`, `Expand`, `Tile`, ...): a load and a store, no compute.
//! * **Free**: aliases (`Reshape`, `Flatten`, `Squeeze`, `Unsqueeze`, `Identity`, `Dropout`),
//!   `Split` into views and `Concat` whose inputs are laid end to end (their producers
//!   store straight into its pieces).
//! * **Host**: anything else, anything on non-float data other than data movement, and any
//!   node with unknown shapes. Its device-resident inputs cross the host link to the host,
//!   the host computes it (`host.gflops`), and its outputs cross back when a device node
//!   reads them. These are reported as fall-backs.
//!
//! # Memory model
//!
//! Activations live in the card's DRAM between nodes: a node loads its inputs by DMA into
//! SRAM tile buffers and stores its outputs back. Graph inputs start on the host and cross
//! the host link once; graph outputs cross back at the end. Weights are loaded from DRAM
//! per inference unless they are *resident* (chosen by the weight-residency knapsack of
//! `millrace_memory::residency`), in which case they are loaded once, in the first
//! inference, and stay in SRAM.
//!
//! # Tiling
//!
//! A node's output is cut into `N` tiles along one axis: output rows `M` (the weights are
//! loaded once and stay while the input and output tiles stream through) or output columns
//! `N` (the input is loaded once and weight slices stream, for layers whose weights do not
//! fit, such as VGG's FC1). Each tile's buffers are double-buffered (ping-pong): the DMA
//! loads tile `i+1` while the matrix unit computes tile `i` and the vector unit runs tile
//! `i-1`'s epilogue. A buffer slot is reused only when the command that last read it is done
//! (tokens). The compiler tries `N` = 1, 2, 4, ... (both axes) and keeps the fastest whose
//! SRAM need fits its share (`(SRAM - resident weights) / matrix units`), timing each
//! candidate by *simulating the node alone* with the same simulator ([`choose_tiling`]):
//! more tiles hide more load/store time behind compute but pay per-command overhead, DMA
//! latency and array fill/drain per tile, so the best `N` is a real trade-off.
use crate::config::NpuConfig;
use crate::systolic::gemm_cycles;
use millrace_core::DType;
use millrace_ir::{Graph, Node, ValueId, ValueType};
use millrace_kernels::activation::Activation;
use millrace_ops::nn::{fused_conv::FusedConv, fused_matmul::FusedMatMul};
use std::collections::{HashMap, HashSet};

/// A hardware unit with its own in-order command queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// DMA from the card's DRAM into SRAM.
    DmaIn,
    /// Matrix unit `k`.
    Matrix(usize),
    /// The vector unit.
    Vector,
    /// DMA from SRAM back to DRAM.
    DmaOut,
    /// The host link (PCIe), both directions.
    HostLink,
    /// The host CPU (fall-back ops).
    Host,
}

impl Unit {
    /// The track name in reports and traces.
    pub fn name(self) -> String {
        match self {
            Unit::DmaIn => "DMA in".into(),
            Unit::Matrix(k) => format!("matrix {k}"),
            Unit::Vector => "vector".into(),
            Unit::DmaOut => "DMA out".into(),
            Unit::HostLink => "host link".into(),
            Unit::Host => "host CPU".into(),
        }
    }
}

/// One command: it starts when its unit has finished the previous command of its queue and
/// every command in `waits` (tokens) has finished.
#[derive(Clone, Debug)]
pub struct Command {
    pub unit: Unit,
    /// Duration in cycles, per-command overhead included.
    pub cycles: u64,
    /// Commands (indices into [`Program::commands`]) that must finish first.
    pub waits: Vec<usize>,
    /// The graph node it belongs to, if any.
    pub node: Option<usize>,
    /// Which inference (0-based) it belongs to.
    pub inference: usize,
    /// A label for traces (`conv1 tile 3/8`).
    pub label: String,
    /// Bytes moved (DMA and host link), 0 for compute.
    pub bytes: u64,
}

/// An SRAM buffer: allocated when `alloc` starts, freed when `free` ends (never: resident).
#[derive(Clone, Debug)]
pub struct Buffer {
    pub bytes: u64,
    pub alloc: usize,
    pub free: Option<usize>,
}

/// The axis a node's output is cut along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Output rows (pixels / tokens): weights loaded once, input and output tiles stream.
    M,
    /// Output columns (channels): input loaded once, weight slices stream.
    N,
}

/// How one node is tiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiling {
    pub tiles: u64,
    pub axis: Axis,
}

/// What a node is on the NPU.
#[derive(Clone, Debug, PartialEq)]
pub enum Work {
    /// `batch` GEMMs of `M x K x N` (a grouped conv: `batch` = groups), then an epilogue of
    /// `epilogue_ops` vector operations per output element.
    Matrix {
        batch: u64,
        m: u64,
        k: u64,
        n: u64,
        epilogue_ops: u64,
        /// Extra vector ops per output element that are not per-tile epilogue (attention's
        /// softmax), folded into the epilogue.
        approx: bool,
    },
    /// `ops` element operations on the vector unit.
    Vector { ops: u64 },
    /// Data movement only: a DMA load and store.
    Copy,
    /// Nothing to do (aliases, views).
    Free,
    /// Runs on the host CPU.
    Host { reason: String },
}

/// One node as lowered: its work and its byte sizes at the configured dtypes.
#[derive(Clone, Debug)]
pub struct NodeWork {
    pub name: String,
    pub op: &'static str,
    pub work: Work,
    /// Activation inputs read from DRAM (bytes), the residual excluded.
    pub in_bytes: u64,
    /// The residual input added in the epilogue (bytes), 0 if none.
    pub residual_bytes: u64,
    /// Weight bytes at the weight dtype (constants and prepacked weights, logical size).
    pub weight_bytes: u64,
    /// Output bytes at the activation dtype.
    pub out_bytes: u64,
    /// FLOPs (from the op's cost model), for host fall-back time.
    pub flops: u64,
}

/// Lowered commands for a number of inferences.
#[derive(Clone, Debug, Default)]
pub struct Program {
    pub commands: Vec<Command>,
    pub buffers: Vec<Buffer>,
    /// Per node, its tiling (matrix and vector nodes).
    pub tilings: Vec<Option<Tiling>>,
    /// Per node, the matrix unit it runs on.
    pub matrix_unit: Vec<Option<usize>>,
    /// Per node, what it is.
    pub works: Vec<NodeWork>,
    /// Resident weight bytes.
    pub resident_bytes: u64,
    /// Which nodes' weights are resident.
    pub resident: Vec<bool>,
    /// Per inference, the commands that deliver its outputs to the host (or produce them).
    pub output_cmds: Vec<Vec<usize>>,
}

fn elem_bytes(dt: Option<DType>, act: u64) -> u64 {
    match dt {
        Some(DType::F32) | Some(DType::F16) | Some(DType::BF16) | Some(DType::F64) | None => act,
        Some(d) => d.size_bytes() as u64,
    }
}

/// Bytes value `v` of `g` occupies on the card and on the host link (activations at the
/// configured activation dtype; integer and boolean data at their own size).
pub fn value_bytes(g: &Graph, v: ValueId, cfg: &NpuConfig) -> u64 {
    let t = &g.value(v).ty;
    numel(t).unwrap_or(0) * elem_bytes(t.dtype, cfg.activation_dtype.bytes())
}

fn numel(t: &ValueType) -> Option<u64> {
    t.numel().map(|n| n as u64)
}

fn shape(t: &ValueType) -> Option<Vec<u64>> {
    t.concrete_shape()
        .map(|s| s.into_iter().map(|d| d as u64).collect())
}

/// Vector operations per element of a fused epilogue: 1 per bias and residual add, plus
/// the activation's cost as the standalone op's in [`VECTOR_OPS`] (ReLU, Clip, LeakyReLU 1;
/// HardSigmoid 2; HardSwish 3; one that needs a transcendental, evaluated by polynomial or
/// table on the vector unit, 4).
fn epilogue_ops(bias: bool, residual: bool, act: Activation) -> u64 {
    let act = match act {
        Activation::None => 0,
        Activation::Relu | Activation::Clip { .. } | Activation::LeakyRelu { .. } => 1,
        Activation::HardSigmoid { .. } => 2,
        Activation::HardSwish => 3,
        Activation::Sigmoid
        | Activation::Silu
        | Activation::Tanh
        | Activation::Gelu
        | Activation::GeluTanh => 4,
    };
    u64::from(bias) + u64::from(residual) + act
}

const ALIAS_OPS: &[&str] = &[
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Dropout",
];
const COPY_OPS: &[&str] = &[
    "Transpose",
    "Concat",
    "Split",
    "Slice",
    "Pad",
    "Gather",
    "Expand",
    "Tile",
    "DepthToSpace",
    "SpaceToDepth",
    "Resize",
    "Upsample",
    "Cast",
    "CastLike",
];
/// Vector ops and their operations per output element (at least; the op's FLOP count wins
/// when larger).
const VECTOR_OPS: &[(&str, u64)] = &[
    ("Add", 1),
    ("Sub", 1),
    ("Mul", 1),
    ("Div", 1),
    ("Neg", 1),
    ("Abs", 1),
    ("Max", 1),
    ("Min", 1),
    ("Sum", 1),
    ("Mean", 1),
    ("Relu", 1),
    ("LeakyRelu", 1),
    ("PRelu", 1),
    ("Clip", 1),
    ("Sqrt", 4),
    ("Reciprocal", 4),
    ("Pow", 4),
    ("Exp", 4),
    ("Log", 4),
    ("Erf", 4),
    ("Tanh", 4),
    ("Sigmoid", 4),
    ("HardSigmoid", 2),
    ("HardSwish", 3),
    ("Gelu", 4),
    ("Softplus", 4),
    ("Elu", 4),
    ("Selu", 4),
    ("Mish", 4),
    ("Where", 1),
    ("Softmax", 4),
    ("LogSoftmax", 5),
    ("LayerNormalization", 5),
    ("BatchNormalization", 2),
    ("InstanceNormalization", 5),
    ("GroupNormalization", 5),
    ("LpNormalization", 3),
    ("LRN", 6),
    ("MaxPool", 1),
    ("AveragePool", 1),
    ("GlobalAveragePool", 1),
    ("GlobalMaxPool", 1),
    ("ReduceMean", 1),
    ("ReduceSum", 1),
    ("ReduceMax", 1),
    ("ReduceMin", 1),
    ("ReduceL2", 2),
    ("ReduceSumSquare", 2),
    ("FusedElementwise", 1),
];

/// Classifies one node and sizes its traffic. `act` and `wt` are the activation and weight
/// element sizes in bytes.
pub fn node_work(g: &Graph, node: &Node, cfg: &NpuConfig) -> NodeWork {
    let act = cfg.activation_dtype.bytes();
    let wt = cfg.weight_dtype.bytes();
    let op = node.op.name();
    let (ins, outs) = g.node_types(node);
    let cost = node.op.cost(&ins, &outs);
    let is_const = |v: &Option<ValueId>| v.is_some_and(|v| g.constant(v).is_some());
    let mut in_bytes = 0;
    let mut weight_elems = 0u64;
    let mut unknown = false;
    let mut non_float = false;
    for (v, t) in node.inputs.iter().zip(&ins) {
        if v.is_none() {
            continue;
        }
        if is_const(v) {
            if t.dtype.is_some_and(|d| d.is_float()) && numel(t).unwrap_or(0) > 1 {
                weight_elems += numel(t).unwrap_or(0);
            }
            continue;
        }
        match numel(t) {
            Some(n) => in_bytes += n * elem_bytes(t.dtype, act),
            None => unknown = true,
        }
        if !t.dtype.is_some_and(|d| d.is_float()) {
            non_float = true;
        }
    }
    let mut out_bytes = 0;
    for t in &outs {
        match numel(t) {
            Some(n) => out_bytes += n * elem_bytes(t.dtype, act),
            None => unknown = true,
        }
        if !t.dtype.is_some_and(|d| d.is_float()) {
            non_float = true;
        }
    }
    let fused_conv = node.op.as_any().downcast_ref::<FusedConv>();
    let fused_matmul = node.op.as_any().downcast_ref::<FusedMatMul>();
    let out_shape = outs.first().and_then(shape);
    let out_elems = outs.first().and_then(numel).unwrap_or(0);
    let mut residual_bytes = 0;
    let host = |reason: String| Work::Host { reason };
    let work = if unknown {
        host("shapes unknown at compile time".into())
    } else if ALIAS_OPS.contains(&op)
        || (op == "Split" && node.op.output_pieces(&ins, &outs).is_some())
        || (op == "Concat" && node.op.input_pieces(&ins, &outs).is_some())
    {
        Work::Free
    } else if COPY_OPS.contains(&op) {
        Work::Copy
    } else if non_float {
        host(format!("{op} on non-float data"))
    } else {
        match op {
            "FusedConv" | "Conv" => {
                let w: Option<Vec<u64>> = if let Some(fc) = fused_conv {
                    Some(fc.weight_shape().iter().map(|&d| d as u64).collect())
                } else if op == "FusedConv" {
                    None
                } else {
                    node.inputs
                        .get(1)
                        .copied()
                        .flatten()
                        .and_then(|v| g.constant(v))
                        .map(|t| t.shape().iter().map(|&d| d as u64).collect())
                };
                let x = ins.first().and_then(shape);
                match (w.as_deref(), x.as_deref(), out_shape.as_deref()) {
                    (Some(&[cout, cg, kh, kw]), Some(&[_, cin, _, _]), Some(&[b, _, oh, ow]))
                        if cg > 0 && cin % cg == 0 =>
                    {
                        if let Some(fc) = fused_conv {
                            weight_elems += cout * cg * kh * kw;
                            if fc.has_bias() {
                                weight_elems += cout;
                            }
                        }
                        let group = cin / cg;
                        let epi = if let Some(fc) = fused_conv {
                            epilogue_ops(fc.has_bias(), fc.has_residual(), fc.activation())
                        } else {
                            u64::from(node.inputs.get(2).copied().flatten().is_some())
                        };
                        if fused_conv.is_some() && node.inputs.get(1).copied().flatten().is_some() {
                            residual_bytes = ins.get(1).and_then(numel).unwrap_or(0) * act;
                            in_bytes = in_bytes.saturating_sub(residual_bytes);
                        }
                        if cg == 1 && group == cout && group > 1 {
                            // Depthwise: on the vector unit (see the module doc).
                            Work::Vector {
                                ops: out_elems * (2 * kh * kw + epi),
                            }
                        } else {
                            Work::Matrix {
                                batch: group,
                                m: b * oh * ow,
                                k: cg * kh * kw,
                                n: cout / group.max(1),
                                epilogue_ops: epi,
                                approx: false,
                            }
                        }
                    }
                    _ => host("convolution that is not 2-D with known shapes".into()),
                }
            }
            "FusedMatMul" | "MatMul" | "Gemm" => {
                let a = ins.first().and_then(shape).unwrap_or_default();
                let o = out_shape.clone().unwrap_or_default();
                if o.is_empty() || a.is_empty() {
                    host("matrix product with a scalar or 1-D output".into())
                } else {
                    let n = o[o.len() - 1];
                    let b_const = is_const(&node.inputs.get(1).copied().flatten());
                    let (batch, m, k) = if op == "Gemm" {
                        let mm = o[0];
                        let k = if a.len() == 2 && a[0] == mm {
                            a[1]
                        } else {
                            a[0]
                        };
                        (1, mm, k)
                    } else if op == "FusedMatMul" || b_const || o.len() <= 2 {
                        (1, out_elems / n.max(1), a[a.len() - 1])
                    } else {
                        let mm = o[o.len() - 2];
                        (out_elems / (mm * n).max(1), mm, a[a.len() - 1])
                    };
                    let epi = if let Some(fm) = fused_matmul {
                        weight_elems += k * n;
                        if fm.has_bias() {
                            weight_elems += n;
                        }
                        if node.inputs.get(1).copied().flatten().is_some() {
                            residual_bytes = ins.get(1).and_then(numel).unwrap_or(0) * act;
                            in_bytes = in_bytes.saturating_sub(residual_bytes);
                        }
                        epilogue_ops(fm.has_bias(), fm.has_residual(), fm.activation())
                    } else if op == "Gemm" {
                        u64::from(node.inputs.get(2).copied().flatten().is_some())
                    } else {
                        0
                    };
                    Work::Matrix {
                        batch,
                        m,
                        k,
                        n,
                        epilogue_ops: epi,
                        approx: false,
                    }
                }
            }
            "FusedAttention" => match out_shape.as_deref() {
                Some(o) if !o.is_empty() && out_elems > 0 => {
                    let n = o[o.len() - 1];
                    let k = (cost.flops / (2 * out_elems)).max(1);
                    Work::Matrix {
                        batch: 1,
                        m: out_elems / n.max(1),
                        k,
                        n,
                        epilogue_ops: 5,
                        approx: true,
                    }
                }
                _ => host("attention with unknown shapes".into()),
            },
            _ => match VECTOR_OPS.iter().find(|(n, _)| *n == op) {
                Some(&(_, per)) => {
                    let in_elems: u64 = ins.iter().filter_map(numel).max().unwrap_or(0);
                    Work::Vector {
                        ops: cost.flops.max(per * out_elems.max(in_elems)),
                    }
                }
                None => host(format!("{op} is not supported on the NPU")),
            },
        }
    };
    NodeWork {
        name: node.name.clone(),
        op,
        work,
        in_bytes,
        residual_bytes,
        weight_bytes: weight_elems * wt,
        out_bytes,
        flops: cost.flops,
    }
}

/// Per-tile sizes and cycles of a node under a tiling.
#[derive(Clone, Copy, Debug)]
pub struct TileShape {
    /// Bytes loaded once before the first tile (weights for axis M, input for axis N).
    pub once_bytes: u64,
    /// Bytes loaded per tile (input slice for M, weight slice for N), residual excluded.
    pub in_t: u64,
    pub res_t: u64,
    pub out_t: u64,
    pub matrix_cycles: u64,
    pub vector_cycles: u64,
    /// SRAM need with ping-pong buffers (the once-loaded part once, the tile parts twice).
    pub sram_need: u64,
}

/// Sizes one tile of `w` cut by `t`. `weights_loaded` is false when the weights are resident
/// and already in SRAM (they still count toward SRAM through the resident total).
pub fn tile_shape(w: &NodeWork, t: Tiling, cfg: &NpuConfig, weights_loaded: bool) -> TileShape {
    tile_shape_at(w, t, cfg, weights_loaded, 0)
}

/// Tile `i` of `t` (tile 0 is the largest). The axis is split at whole array folds (see
/// [`fold_units`]) as evenly as possible: with `F` folds in `N` tiles, the first `F mod N`
/// tiles get one fold more, so the total matrix work does not grow with `N`.
pub fn tile_shape_at(
    w: &NodeWork,
    t: Tiling,
    cfg: &NpuConfig,
    weights_loaded: bool,
    i: u64,
) -> TileShape {
    let nt = t.tiles.max(1);
    let wb = if weights_loaded { w.weight_bytes } else { 0 };
    let (um, un) = fold_units(cfg);
    // (length of the cut axis, its fold unit)
    let (len, unit) = match (&w.work, t.axis) {
        (Work::Matrix { m, .. }, Axis::M) => (*m, um),
        (Work::Matrix { n, .. }, Axis::N) => (*n, un),
        _ => (w.out_bytes.max(1), 1),
    };
    let folds = len.div_ceil(unit.max(1));
    let (base, rem) = (folds / nt, folds % nt);
    let mine = base + u64::from(i < rem);
    let first = i * base + i.min(rem);
    let piece = (mine * unit).min(len.saturating_sub(first * unit));
    let frac = |bytes: u64| (bytes as u128 * piece as u128).div_ceil(len.max(1) as u128) as u64;
    let (once, in_t) = match t.axis {
        Axis::M => (wb, frac(w.in_bytes)),
        Axis::N => (w.in_bytes, frac(wb)),
    };
    let res_t = frac(w.residual_bytes);
    let out_t = frac(w.out_bytes);
    let (matrix_cycles, vector_cycles) = match &w.work {
        Work::Matrix {
            batch,
            m,
            k,
            n,
            epilogue_ops,
            ..
        } => {
            let (mt, ntl) = match t.axis {
                Axis::M => (piece, *n),
                Axis::N => (*m, piece),
            };
            let mc = batch * gemm_cycles(&cfg.array, mt, *k, ntl);
            let vc = cfg.vector_cycles(batch * mt * ntl * epilogue_ops);
            (mc, vc)
        }
        Work::Vector { ops } => (0, cfg.vector_cycles(frac(*ops))),
        _ => (0, 0),
    };
    TileShape {
        once_bytes: once,
        in_t,
        res_t,
        out_t,
        matrix_cycles,
        vector_cycles,
        sram_need: once + 2 * (in_t + res_t + out_t),
    }
}

/// The granularity, in rows of M and columns of N, at which a GEMM tile boundary does not
/// waste array folds: the array dimension the axis is mapped on (output stationary: M on
/// rows, N on columns; weight stationary: N on columns, M streamed; input stationary: M on
/// columns, N streamed).
pub fn fold_units(cfg: &NpuConfig) -> (u64, u64) {
    use crate::systolic::Dataflow;
    let a = &cfg.array;
    match a.dataflow {
        Dataflow::OutputStationary => (a.rows, a.cols),
        Dataflow::WeightStationary => (1, a.cols),
        Dataflow::InputStationary => (a.cols, 1),
    }
}

/// The candidate tilings of a node: `N` = 1, 2, 4, ... up to the number of array folds
/// along the axis (at most 1024 tiles), along M, and along N for matrix nodes.
pub fn candidates(w: &NodeWork, cfg: &NpuConfig) -> Vec<Tiling> {
    let (um, un) = fold_units(cfg);
    let (m_len, n_len) = match &w.work {
        Work::Matrix { m, n, .. } => (m.div_ceil(um), Some(n.div_ceil(un))),
        Work::Vector { .. } | Work::Copy => (w.out_bytes.max(1), None),
        _ => return vec![],
    };
    let mut v = Vec::new();
    let mut push = |len: u64, axis: Axis| {
        let mut t = 1;
        while t <= len.min(1024) {
            v.push(Tiling { tiles: t, axis });
            t *= 2;
        }
    };
    push(m_len, Axis::M);
    if let Some(n) = n_len {
        push(n, Axis::N);
    }
    v
}

/// Where a value is and which command makes it available there.
#[derive(Clone, Copy, Debug, Default)]
struct Loc {
    /// On the card's DRAM: ready after this command (None: ready at the start).
    device: Option<Option<usize>>,
    /// On the host.
    host: Option<Option<usize>>,
}

/// Options for lowering.
#[derive(Clone, Debug)]
pub struct LowerOptions {
    /// Back-to-back inferences to emit (the first loads resident weights, later ones skip them).
    pub inferences: usize,
    /// Per node: weights resident in SRAM (loaded once).
    pub resident: Vec<bool>,
    /// Per node: a forced tiling (tests, what-if); `None` lets the compiler choose.
    pub force_tiling: Vec<Option<Tiling>>,
    /// Treat graph inputs as already in the card's DRAM (no host link), as when timing a
    /// node alone.
    pub inputs_on_device: bool,
    /// Skip the final device-to-host transfer of outputs.
    pub outputs_stay: bool,
}

impl LowerOptions {
    /// Defaults for `n` nodes: one inference, nothing resident, compiler-chosen tilings.
    pub fn new(n: usize) -> LowerOptions {
        LowerOptions {
            inferences: 1,
            resident: vec![false; n],
            force_tiling: vec![None; n],
            inputs_on_device: false,
            outputs_stay: false,
        }
    }
}

struct Builder<'a> {
    cfg: &'a NpuConfig,
    p: Program,
    inference: usize,
}

impl Builder<'_> {
    fn cmd(
        &mut self,
        unit: Unit,
        work_cycles: u64,
        waits: Vec<usize>,
        node: Option<usize>,
        label: String,
        bytes: u64,
    ) -> usize {
        let mut waits = waits;
        waits.sort_unstable();
        waits.dedup();
        self.p.commands.push(Command {
            unit,
            cycles: work_cycles + self.cfg.command_overhead,
            waits,
            node,
            inference: self.inference,
            label,
            bytes,
        });
        self.p.commands.len() - 1
    }

    fn buffer(&mut self, bytes: u64, alloc: usize, free: Option<usize>) {
        if bytes > 0 {
            self.p.buffers.push(Buffer { bytes, alloc, free });
        }
    }
}

/// Emits the commands of one DMA/matrix/vector node under `tiling`. `deps`: commands its
/// inputs wait on. `weights`: whether to load the weights (false when resident and loaded).
/// Returns the command whose end
/// makes the outputs available in DRAM.
#[allow(clippy::too_many_arguments)]
fn emit_tiled(
    b: &mut Builder<'_>,
    ni: usize,
    w: &NodeWork,
    tiling: Tiling,
    unit: Unit,
    deps: &[usize],
    weights: bool,
    gate: Option<usize>,
) -> usize {
    let cfg = b.cfg;
    let ts = tile_shape(w, tiling, cfg, weights);
    let nt = tiling.tiles.max(1);
    let name = &w.name;
    let mut once = None;
    if ts.once_bytes > 0 {
        let mut waits = deps.to_vec();
        if tiling.axis == Axis::M {
            // Weights do not wait for the producers: they prefetch, unless SRAM is short.
            waits = gate.into_iter().collect();
        }
        let what = if tiling.axis == Axis::M {
            "weights"
        } else {
            "input"
        };
        let c = b.cmd(
            Unit::DmaIn,
            cfg.dma_cycles(ts.once_bytes),
            waits,
            Some(ni),
            format!("{name} {what}"),
            ts.once_bytes,
        );
        once = Some(c);
    }
    let mut mat = Vec::new();
    let mut vec_c = Vec::new();
    let mut out = Vec::new();
    for i in 0..nt as usize {
        let ts = tile_shape_at(w, tiling, cfg, weights, i as u64);
        let label = format!("{name} tile {}/{nt}", i + 1);
        let mut waits = deps.to_vec();
        if i >= 2 {
            waits.push(if ts.matrix_cycles > 0 {
                mat[i - 2]
            } else if ts.vector_cycles > 0 {
                vec_c[i - 2]
            } else {
                out[i - 2]
            });
        }
        let in_bytes = ts.in_t + ts.res_t;
        let load = b.cmd(
            Unit::DmaIn,
            cfg.dma_cycles(in_bytes),
            waits,
            Some(ni),
            label.clone(),
            in_bytes,
        );
        let mut last = load;
        let mut input_reader = load;
        if ts.matrix_cycles > 0 {
            let mut waits = vec![load];
            waits.extend(once);
            if i >= 2 {
                waits.push(if ts.vector_cycles > 0 {
                    vec_c[i - 2]
                } else {
                    out[i - 2]
                });
            }
            let c = b.cmd(unit, ts.matrix_cycles, waits, Some(ni), label.clone(), 0);
            mat.push(c);
            last = c;
            input_reader = c;
        }
        let mut res_reader = last;
        if ts.vector_cycles > 0 {
            let mut waits = vec![last];
            waits.extend(once);
            if i >= 2 {
                waits.push(out[i - 2]);
            }
            let c = b.cmd(
                Unit::Vector,
                ts.vector_cycles,
                waits,
                Some(ni),
                label.clone(),
                0,
            );
            vec_c.push(c);
            last = c;
            res_reader = c;
            if ts.matrix_cycles == 0 {
                input_reader = c;
            }
        }
        let store = b.cmd(
            Unit::DmaOut,
            cfg.dma_cycles(ts.out_t),
            vec![last],
            Some(ni),
            label,
            ts.out_t,
        );
        out.push(store);
        b.buffer(ts.in_t, load, Some(input_reader));
        b.buffer(ts.res_t, load, Some(res_reader));
        let first_out = if ts.matrix_cycles > 0 {
            mat[i]
        } else if ts.vector_cycles > 0 {
            vec_c[i]
        } else {
            load
        };
        b.buffer(ts.out_t, first_out, Some(store));
    }
    if let Some(o) = once {
        let last_reader = mat.last().or(vec_c.last()).copied().unwrap_or(o);
        b.buffer(ts.once_bytes, o, Some(last_reader));
    }
    *out.last().unwrap_or(&0)
}

/// The SRAM left for tile buffers per matrix unit, resident weights taken out.
pub fn tile_budget(cfg: &NpuConfig, resident_bytes: u64) -> u64 {
    cfg.sram_bytes.saturating_sub(resident_bytes) / cfg.matrix_units as u64
}

/// Simulated cycles of node `w` alone under `t` (inputs in DRAM at time 0, outputs stored).
pub fn node_alone_cycles(w: &NodeWork, t: Tiling, cfg: &NpuConfig, load_weights: bool) -> u64 {
    let mut b = Builder {
        cfg,
        p: Program::default(),
        inference: 0,
    };
    emit_tiled(&mut b, 0, w, t, Unit::Matrix(0), &[], load_weights, None);
    crate::sim::run_commands(&b.p.commands).makespan
}

/// The compiler's choice for one node: the fastest candidate (simulated alone) whose SRAM
/// need fits `budget`; ties go to fewer tiles. `None` when nothing fits.
pub fn choose_tiling(
    w: &NodeWork,
    cfg: &NpuConfig,
    budget: u64,
    load_weights: bool,
) -> Option<(Tiling, u64)> {
    let mut best: Option<(Tiling, u64)> = None;
    for t in candidates(w, cfg) {
        if tile_shape(w, t, cfg, load_weights).sram_need > budget {
            continue;
        }
        let c = node_alone_cycles(w, t, cfg, load_weights);
        if best.is_none_or(|(_, bc)| c < bc) {
            best = Some((t, c));
        }
    }
    best
}

/// Why lowering failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LowerError {
    #[error(
        "node `{node}` ({op}): no tiling fits in {budget} bytes of SRAM (needs at least {need})"
    )]
    NoTiling {
        node: String,
        op: String,
        budget: u64,
        need: u64,
    },
    #[error("the model's weights ({weights} bytes at {dtype}) do not fit in the card's DRAM ({dram} bytes)")]
    DramTooSmall {
        weights: u64,
        dtype: String,
        dram: u64,
    },
    #[error("options are for {got} nodes, the graph has {want}")]
    Options { got: usize, want: usize },
}

/// Lowers the whole graph.
pub fn lower(g: &Graph, cfg: &NpuConfig, opts: &LowerOptions) -> Result<Program, LowerError> {
    let n = g.nodes.len();
    if opts.resident.len() != n || opts.force_tiling.len() != n {
        return Err(LowerError::Options {
            got: opts.resident.len().min(opts.force_tiling.len()),
            want: n,
        });
    }
    let works: Vec<NodeWork> = g.nodes.iter().map(|nd| node_work(g, nd, cfg)).collect();
    let total_w: u64 = works.iter().map(|w| w.weight_bytes).sum();
    if total_w > cfg.dram_bytes {
        return Err(LowerError::DramTooSmall {
            weights: total_w,
            dtype: cfg.weight_dtype.name().into(),
            dram: cfg.dram_bytes,
        });
    }
    let resident_bytes: u64 = works
        .iter()
        .zip(&opts.resident)
        .filter(|(_, r)| **r)
        .map(|(w, _)| w.weight_bytes)
        .sum();
    let budget = tile_budget(cfg, resident_bytes);
    // Tilings and isolated times, with weights loaded (first inference, or streamed).
    let mut tilings = vec![None; n];
    let mut est = vec![0u64; n];
    for (i, w) in works.iter().enumerate() {
        if !matches!(
            w.work,
            Work::Matrix { .. } | Work::Vector { .. } | Work::Copy
        ) {
            est[i] = match &w.work {
                Work::Host { .. } => cfg.cycles(w.flops as f64 / cfg.host_flops),
                _ => 0,
            };
            continue;
        }
        let load = !opts.resident[i];
        let chosen = match opts.force_tiling[i] {
            Some(t) => Some((t, node_alone_cycles(w, t, cfg, load))),
            None => choose_tiling(w, cfg, budget, load),
        };
        let Some((t, c)) = chosen else {
            let need = candidates(w, cfg)
                .into_iter()
                .map(|t| tile_shape(w, t, cfg, load).sram_need)
                .min()
                .unwrap_or(0);
            return Err(LowerError::NoTiling {
                node: w.name.clone(),
                op: w.op.to_string(),
                budget,
                need,
            });
        };
        tilings[i] = Some(t);
        est[i] = c;
    }
    // Matrix units: list scheduling on the estimates over the DAG (independent branches go
    // to different units when there are several).
    let dag = millrace_schedule::Dag::build(g);
    let units = cfg.matrix_units;
    let mut mu = vec![None; n];
    let mut finish = vec![0u64; n];
    let mut mu_free = vec![0u64; units];
    for i in 0..n {
        let ready = dag.preds(i).iter().map(|&p| finish[p]).max().unwrap_or(0);
        if matches!(works[i].work, Work::Matrix { .. }) {
            let (u, &free) = mu_free
                .iter()
                .enumerate()
                .min_by_key(|(_, f)| (**f).max(ready))
                .unwrap_or((0, &0));
            mu[i] = Some(u);
            finish[i] = free.max(ready) + est[i];
            mu_free[u] = finish[i];
        } else {
            finish[i] = ready + est[i];
        }
    }
    let mut b = Builder {
        cfg,
        p: Program {
            tilings: tilings.clone(),
            matrix_unit: mu.clone(),
            resident_bytes,
            resident: opts.resident.clone(),
            ..Program::default()
        },
        inference: 0,
    };
    let producers = g.producers();
    for inf in 0..opts.inferences.max(1) {
        b.inference = inf;
        let mut loc: HashMap<ValueId, Loc> = HashMap::new();
        for v in g.runtime_inputs() {
            let l = if opts.inputs_on_device {
                Loc {
                    device: Some(None),
                    host: None,
                }
            } else {
                Loc {
                    device: None,
                    host: Some(None),
                }
            };
            loc.insert(v, l);
        }
        // Per matrix unit: the last matrix node's last command and its SRAM need.
        let mut last_on_mu: Vec<Option<(usize, u64)>> = vec![None; units];
        for (i, node) in g.nodes.iter().enumerate() {
            let w = &works[i];
            let acts: Vec<ValueId> = node
                .inputs
                .iter()
                .flatten()
                .copied()
                .filter(|v| g.constant(*v).is_none())
                .collect();
            let on_host = matches!(w.work, Work::Host { .. });
            // Bring inputs to where the node runs.
            let mut deps = Vec::new();
            for v in &acts {
                let l = loc.get(v).copied().unwrap_or_default();
                let (have, other, to_dev) = if on_host {
                    (l.host, l.device, false)
                } else {
                    (l.device, l.host, true)
                };
                match (have, other) {
                    (Some(tok), _) => deps.extend(tok),
                    (None, Some(tok)) => {
                        let t = &g.value(*v).ty;
                        let bytes = numel(t).unwrap_or(0)
                            * elem_bytes(t.dtype, cfg.activation_dtype.bytes());
                        let dir = if to_dev { "to NPU" } else { "to host" };
                        let c = b.cmd(
                            Unit::HostLink,
                            cfg.link_cycles(bytes),
                            tok.into_iter().collect(),
                            Some(i),
                            format!("{} {dir}", g.value(*v).name),
                            bytes,
                        );
                        let e = loc.entry(*v).or_default();
                        if to_dev {
                            e.device = Some(Some(c));
                        } else {
                            e.host = Some(Some(c));
                        }
                        deps.push(c);
                    }
                    (None, None) => {}
                }
            }
            let done: Option<usize> = match &w.work {
                Work::Free => None,
                Work::Host { .. } => {
                    Some(b.cmd(Unit::Host, est[i], deps.clone(), Some(i), w.name.clone(), 0))
                }
                _ => {
                    let Some(t) = tilings[i] else { continue };
                    let unit = mu[i].map_or(Unit::Matrix(0), Unit::Matrix);
                    let resident = opts.resident[i];
                    let load_w = !resident || inf == 0;
                    let mut gate = None;
                    let ts = tile_shape(w, t, cfg, load_w);
                    if let (Some(u), Work::Matrix { .. }) = (mu[i], &w.work) {
                        if let Some((c, need)) = last_on_mu[u] {
                            if need + ts.once_bytes > budget {
                                gate = Some(c);
                            }
                        }
                    }
                    let first_cmd = b.p.commands.len();
                    let store = emit_tiled(&mut b, i, w, t, unit, &deps, load_w, gate);
                    if resident && inf == 0 && first_cmd < b.p.commands.len() {
                        // Resident weights occupy SRAM from their first load on, for good
                        // (the tile buffers that load them are counted separately).
                        b.buffer(w.weight_bytes, first_cmd, None);
                    }
                    if let (Some(u), Work::Matrix { .. }) = (mu[i], &w.work) {
                        let last_mat =
                            b.p.commands
                                .iter()
                                .rposition(|c| c.unit == unit && c.node == Some(i));
                        if let Some(c) = last_mat {
                            last_on_mu[u] = Some((c, ts.sram_need));
                        }
                    }
                    Some(store)
                }
            };
            for v in &node.outputs {
                let l = match &w.work {
                    // Aliases and views live where their input lives.
                    Work::Free => acts
                        .first()
                        .and_then(|a| loc.get(a).copied())
                        .unwrap_or(Loc {
                            device: Some(deps.iter().max().copied()),
                            host: None,
                        }),
                    Work::Host { .. } => Loc {
                        device: None,
                        host: Some(done),
                    },
                    _ => Loc {
                        device: Some(done),
                        host: None,
                    },
                };
                // A free node over several inputs (Concat in pieces) waits for all of them.
                let l = if matches!(w.work, Work::Free) && acts.len() > 1 {
                    Loc {
                        device: Some(deps.iter().max().copied()),
                        host: None,
                    }
                } else {
                    l
                };
                loc.insert(*v, l);
            }
        }
        // Outputs to the host.
        let mut outs = Vec::new();
        for v in &g.outputs {
            let l = loc.get(v).copied().unwrap_or_default();
            match (l.host, l.device) {
                (Some(tok), _) => outs.extend(tok),
                (None, Some(tok)) if !opts.outputs_stay => {
                    let t = &g.value(*v).ty;
                    let bytes =
                        numel(t).unwrap_or(0) * elem_bytes(t.dtype, cfg.activation_dtype.bytes());
                    let node = producers.get(v).map(|(n, _)| n.index());
                    let c = b.cmd(
                        Unit::HostLink,
                        cfg.link_cycles(bytes),
                        tok.into_iter().collect(),
                        node,
                        format!("{} to host", g.value(*v).name),
                        bytes,
                    );
                    outs.push(c);
                }
                (None, Some(tok)) => outs.extend(tok),
                (None, None) => {}
            }
        }
        b.p.output_cmds.push(outs);
    }
    b.p.works = works;
    if units > 1 {
        let start: Vec<u64> = (0..n).map(|i| finish[i] - est[i]).collect();
        let span = finish.iter().copied().max().unwrap_or(0);
        reorder(&mut b.p, &start, span);
    }
    Ok(b.p)
}

/// Orders the queues as the list schedule expects the nodes to run, so that independent
/// nodes on different matrix units interleave their DMA and vector commands instead of one
/// branch's whole command stream blocking the other's at the head of an in-order queue.
///
/// Each command's key is its node's estimated start (list schedule over the DAG) plus the
/// command's start when the node is simulated alone; commands are sorted by key (ties keep
/// emission order). Every token still names an earlier command (a producer's commands end
/// before its consumers' estimated start); if one would not, the emission order is kept.
fn reorder(p: &mut Program, est_start: &[u64], est_span: u64) {
    let cmds = &p.commands;
    let m = cmds.len();
    // Local starts per (inference, node) group, simulated alone.
    let mut local = vec![0u64; m];
    let mut groups: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
    for (i, c) in cmds.iter().enumerate() {
        // Host-link transfers are keyed by their node's start and left out of its local
        // simulation, which is then exactly the node's alone time used by the estimate.
        if let (Some(nd), false) = (c.node, c.unit == Unit::HostLink) {
            groups.entry((c.inference, nd)).or_default().push(i);
        }
    }
    for members in groups.values() {
        let pos: HashMap<usize, usize> = members.iter().enumerate().map(|(k, &i)| (i, k)).collect();
        let sub: Vec<Command> = members
            .iter()
            .map(|&i| {
                let mut c = cmds[i].clone();
                c.waits = c.waits.iter().filter_map(|w| pos.get(w).copied()).collect();
                c
            })
            .collect();
        let tl = crate::sim::run_commands(&sub);
        for (k, &i) in members.iter().enumerate() {
            local[i] = tl.start[k];
        }
    }
    let finals: HashSet<usize> = p.output_cmds.iter().flatten().copied().collect();
    let mut keys = vec![0u64; m];
    let mut prev = 0;
    for (i, c) in cmds.iter().enumerate() {
        keys[i] = match c.node {
            Some(nd) if !finals.contains(&i) => {
                let base = (c.inference as u64) * (est_span + 1);
                let local = if c.unit == Unit::HostLink {
                    0
                } else {
                    local[i]
                };
                base + est_start.get(nd).copied().unwrap_or(0) + local
            }
            // Final output transfers (and anything without a node) go after what precedes.
            _ => prev,
        };
        prev = prev.max(keys[i]);
    }
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by_key(|&i| (keys[i], i));
    let mut new_pos = vec![0usize; m];
    for (k, &i) in order.iter().enumerate() {
        new_pos[i] = k;
    }
    let ok = cmds
        .iter()
        .enumerate()
        .all(|(i, c)| c.waits.iter().all(|&w| new_pos[w] < new_pos[i]));
    if !ok {
        return;
    }
    let mut new_cmds: Vec<Command> = order.iter().map(|&i| cmds[i].clone()).collect();
    for c in &mut new_cmds {
        for w in &mut c.waits {
            *w = new_pos[*w];
        }
    }
    p.commands = new_cmds;
    for b in &mut p.buffers {
        b.alloc = new_pos[b.alloc];
        b.free = b.free.map(|f| new_pos[f]);
    }
    for o in &mut p.output_cmds {
        for c in o.iter_mut() {
            *c = new_pos[*c];
        }
    }
}

/// Picks resident weights with the residency knapsack: per node, its weight bytes at the
/// weight dtype, worth the bytes it saves per inference; the capacity is the SRAM minus the
/// largest SRAM need of any node's cheapest tiling (so every node still has tile buffers).
pub fn choose_resident(g: &Graph, cfg: &NpuConfig) -> Vec<bool> {
    let works: Vec<NodeWork> = g.nodes.iter().map(|nd| node_work(g, nd, cfg)).collect();
    // Reserve: the smallest need over tilings with weights resident, max over nodes, per unit.
    let reserve: u64 = works
        .iter()
        .map(|w| {
            candidates(w, cfg)
                .into_iter()
                .map(|t| tile_shape(w, t, cfg, false).sram_need)
                .min()
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0)
        * cfg.matrix_units as u64;
    // Leave room for ping-pong with some depth: twice the minimal reserve.
    let capacity = cfg.sram_bytes.saturating_sub(2 * reserve);
    let sizes: Vec<u64> = works.iter().map(|w| w.weight_bytes).collect();
    let values: Vec<u64> = sizes.clone();
    let mut chosen = millrace_memory::residency::knapsack(&sizes, &values, capacity, 1 << 16);
    for (c, s) in chosen.iter_mut().zip(&sizes) {
        if *s == 0 {
            *c = false;
        }
    }
    chosen
}

/// Names of values the host must feed, in order (for reports).
pub fn fallbacks(p: &Program) -> Vec<(String, &'static str, String)> {
    p.works
        .iter()
        .filter_map(|w| match &w.work {
            Work::Host { reason } => Some((w.name.clone(), w.op, reason.clone())),
            _ => None,
        })
        .collect()
}
