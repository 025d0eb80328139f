//! The static memory plan: which activations live in the run's arena, at what offset, and
//! which nodes run in place or only rename a buffer.
//!
//! Every f32 value whose producer can write into a given buffer ([`millrace_ir::Op::writes_into`]) and
//! whose shape is known at compile time gets a *buffer*; values that are the same bytes
//! share one: a reshape-like node ([`millrace_ir::Op::is_alias`]) renames its input's buffer, and an
//! elementwise node may overwrite an input that dies at it ([`millrace_ir::Op::inplace_input`]). Two
//! buffers may share arena bytes when they are never alive together:
//!
//! - sequential schedule: their live intervals (first write .. last read, in step order)
//!   do not overlap;
//! - parallel schedule: every access of one is ordered before the other's first write by
//!   the dependency DAG (so no interleaving of concurrent branches can make them meet).
//!
//! Offsets come from [`millrace_memory::arena::plan`] (greedy by size). Graph outputs,
//! values of unknown shape and values made by ops without the planned-buffer path stay
//! *owned* tensors, allocated by the op and freed after their last reader, as before.
//!
//! ```text
//! conv1 -> relu -> reshape -> fc            sizes: conv1 out 64 KB, fc out 4 KB (graph output)
//! buffers: b0 = {conv1.out, relu.out (in place), reshape.out (alias)}; fc.out owned
//! ```
use millrace_ir::{Graph, ValueType};
use millrace_schedule::Dag;

/// Floats per arena alignment unit: 64 bytes, a cache line and an AVX-512 register.
pub(crate) const ALIGN: usize = 16;

/// How a step computes its output(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exec {
    /// [`millrace_ir::invoke`]: the op allocates its outputs (arena inputs are copied out).
    Call,
    /// [`millrace_ir::Op::eval_into`] into the output's arena slot, or into a fresh buffer when the
    /// output is owned (a graph output).
    Into,
    /// [`millrace_ir::Op::eval_inplace`] over the arena slot of input `index`.
    InPlace { index: usize },
    /// Output 0 is input 0's buffer under a new shape: nothing to compute.
    Alias,
}

/// Where a value lives during a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Storage {
    /// A tensor owned by the run (graph inputs and constants are looked up, not stored).
    Owned,
    /// `len` floats at `offset` in the arena, with this shape.
    Arena {
        offset: usize,
        len: usize,
        shape: Vec<usize>,
    },
}

/// What the memory plan decided, for `millrace plan` and the docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryReport {
    /// Bytes of the arena one run uses (allocated once per concurrent run, then reused).
    pub arena_bytes: u64,
    /// Bytes the arena's values would take with one allocation each.
    pub naive_bytes: u64,
    /// Values in the arena.
    pub arena_values: usize,
    /// Distinct buffers among them (aliases and in-place outputs share one).
    pub buffers: usize,
    /// Nodes that overwrite an input that dies at them.
    pub in_place: usize,
    /// Reshape-like nodes that only rename a buffer.
    pub aliases: usize,
    /// Intermediate values the ops allocate themselves (no planned-buffer path, unknown
    /// shape, or not f32), and their bytes where known.
    pub owned_values: usize,
    pub owned_bytes: u64,
    /// Arena values copied out for an op that has no planned-buffer path.
    pub copies: usize,
    /// Whether the plan was made for the parallel schedule.
    pub parallel: bool,
}

pub(crate) struct MemPlan {
    pub exec: Vec<Exec>,
    pub storage: Vec<Storage>,
    /// Arena length in floats.
    pub arena_len: usize,
    pub report: MemoryReport,
}

fn numel(shape: &Option<Vec<usize>>) -> Option<usize> {
    shape.as_ref().map(|s| s.iter().product())
}

fn f32_shape(ty: &ValueType) -> Option<Vec<usize>> {
    (ty.dtype == Some(millrace_core::DType::F32))
        .then(|| ty.concrete_shape())
        .flatten()
}

/// Plans `g`'s activations. With `dag`, for the parallel schedule.
pub(crate) fn plan(g: &Graph, dag: Option<&Dag>) -> MemPlan {
    let n_values = g.values.len();
    let n_steps = g.nodes.len();
    let mut is_output = vec![false; n_values];
    for o in &g.outputs {
        is_output[o.index()] = true;
    }
    let mut external = vec![false; n_values];
    for v in g.constants.keys().chain(g.inputs.iter()) {
        external[v.index()] = true;
    }
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); n_values];
    for (s, node) in g.nodes.iter().enumerate() {
        for v in node.inputs.iter().flatten() {
            if readers[v.index()].last() != Some(&s) {
                readers[v.index()].push(s);
            }
        }
    }

    // buffer_of[value] for arena values; per buffer: size, member values, producer steps.
    let mut buffer_of: Vec<Option<usize>> = vec![None; n_values];
    let mut shapes: Vec<Option<Vec<usize>>> = vec![None; n_values];
    let mut buf_len: Vec<usize> = Vec::new();
    let mut buf_members: Vec<Vec<usize>> = Vec::new();
    let mut buf_defs: Vec<Vec<usize>> = Vec::new();
    let mut exec = vec![Exec::Call; n_steps];
    let mut report = MemoryReport {
        parallel: dag.is_some(),
        ..MemoryReport::default()
    };

    // Every step that touches buffer `b`: its producers and the readers of its members.
    let accesses = |b: usize, members: &[Vec<usize>], defs: &[Vec<usize>]| -> Vec<usize> {
        let mut a: Vec<usize> = defs[b].clone();
        for &v in &members[b] {
            a.extend_from_slice(&readers[v]);
        }
        a.sort_unstable();
        a.dedup();
        a
    };

    // Concat elimination: a Concat whose inputs are laid end to end in its output, each
    // input made by a node with the planned path and read by the Concat alone, becomes a
    // no-op: each producer writes straight into its piece of the Concat's buffer.
    let producer: Vec<Option<usize>> = {
        let mut p = vec![None; n_values];
        for (s, node) in g.nodes.iter().enumerate() {
            for o in &node.outputs {
                p[o.index()] = Some(s);
            }
        }
        p
    };
    let mut piece_of: Vec<Option<(usize, usize)>> = vec![None; n_values];
    let mut concat_buf: Vec<Option<usize>> = vec![None; n_steps];
    let mut is_concat = vec![false; n_steps];
    for (s, node) in g.nodes.iter().enumerate() {
        let [out] = node.outputs.as_slice() else {
            continue;
        };
        if is_output[out.index()] || f32_shape(&g.value(*out).ty).is_none() {
            continue;
        }
        let (ins, outs) = g.node_types(node);
        let Some(offs) = node.op.input_pieces(&ins, &outs) else {
            continue;
        };
        let mut claims = Vec::with_capacity(node.inputs.len());
        let ok = offs.len() == node.inputs.len()
            && node.inputs.iter().zip(&offs).all(|(v, &off)| {
                let Some(v) = v else { return false };
                let vi = v.index();
                let Some(p) = producer[vi] else { return false };
                let pn = &g.nodes[p];
                let (p_ins, p_outs) = g.node_types(pn);
                let fresh = !claims.iter().any(|&(w, _)| w == vi);
                claims.push((vi, off));
                fresh
                    && !is_output[vi]
                    && !external[vi]
                    && readers[vi] == [s]
                    && piece_of[vi].is_none()
                    && !is_concat[p]
                    && pn.outputs.len() == 1
                    && !pn.op.is_alias()
                    && f32_shape(&g.value(*v).ty).is_some()
                    && pn.op.writes_into(&p_ins, &p_outs)
            });
        if ok {
            for (vi, off) in claims {
                piece_of[vi] = Some((s, off));
            }
            is_concat[s] = true;
        }
    }

    // Element offset of each arena value inside its buffer (pieces of a Split or Concat).
    let mut sub: Vec<usize> = vec![0; n_values];
    for (s, node) in g.nodes.iter().enumerate() {
        if is_concat[s] {
            // Every input already sits in its piece of this buffer.
            let out = node.outputs[0].index();
            let Some(b) = concat_buf[s] else { continue };
            buffer_of[out] = Some(b);
            sub[out] = 0;
            shapes[out] = f32_shape(&g.value(node.outputs[0]).ty);
            buf_members[b].push(out);
            exec[s] = Exec::Alias;
            report.aliases += 1;
            continue;
        }
        if let Some(out) = node.outputs.first().map(|o| o.index()) {
            if let Some((c, off)) = piece_of[out] {
                let b = match concat_buf[c] {
                    Some(b) => b,
                    None => {
                        let total: usize = f32_shape(&g.value(g.nodes[c].outputs[0]).ty)
                            .map_or(0, |s| s.iter().product());
                        buf_len.push(total.div_ceil(ALIGN) * ALIGN);
                        buf_members.push(Vec::new());
                        buf_defs.push(Vec::new());
                        concat_buf[c] = Some(buf_len.len() - 1);
                        buf_len.len() - 1
                    }
                };
                exec[s] = Exec::Into;
                buffer_of[out] = Some(b);
                sub[out] = off;
                shapes[out] = f32_shape(&g.value(node.outputs[0]).ty);
                buf_members[b].push(out);
                buf_defs[b].push(s);
                continue;
            }
        }
        if node.outputs.len() > 1 {
            // Outputs that are contiguous pieces of an arena input become views of it.
            let first = node.inputs.first().copied().flatten().map(|v| v.index());
            let Some((i, b)) = first.and_then(|i| buffer_of[i].map(|b| (i, b))) else {
                continue;
            };
            let (ins, outs) = g.node_types(node);
            let shapes_out: Option<Vec<Vec<usize>>> = outs.iter().map(f32_shape).collect();
            let (Some(offs), Some(shapes_out)) = (node.op.output_pieces(&ins, &outs), shapes_out)
            else {
                continue;
            };
            let ok = offs.len() == node.outputs.len()
                && node
                    .outputs
                    .iter()
                    .all(|o| !is_output[o.index()] && !external[o.index()]);
            if !ok {
                continue;
            }
            for ((o, off), shape) in node.outputs.iter().zip(offs).zip(shapes_out) {
                let o = o.index();
                buffer_of[o] = Some(b);
                sub[o] = sub[i] + off;
                shapes[o] = Some(shape);
                buf_members[b].push(o);
            }
            exec[s] = Exec::Alias;
            report.aliases += 1;
            continue;
        }
        let [out] = node.outputs.as_slice() else {
            continue;
        };
        let out = out.index();
        if is_output[out] || external[out] {
            // Graph outputs are returned to the caller: owned. Still computed in place of
            // an allocation-free path when the op offers one.
            let (ins, outs) = g.node_types(node);
            if f32_shape(&outs[0]).is_some() && node.op.writes_into(&ins, &outs) {
                exec[s] = Exec::Into;
            }
            continue;
        }
        let Some(shape) = f32_shape(&g.value(node.outputs[0]).ty) else {
            continue;
        };
        let len: usize = shape.iter().product();
        let first = node.inputs.first().copied().flatten().map(|v| v.index());
        // Alias: same bytes, new shape.
        if node.op.is_alias() {
            if let Some((i, b)) = first.and_then(|i| buffer_of[i].map(|b| (i, b))) {
                if numel(&shapes[i]) == Some(len) {
                    exec[s] = Exec::Alias;
                    buffer_of[out] = Some(b);
                    sub[out] = sub[i];
                    shapes[out] = Some(shape);
                    buf_members[b].push(out);
                    report.aliases += 1;
                    continue;
                }
            }
        }
        let (ins, outs) = g.node_types(node);
        if !node.op.writes_into(&ins, &outs) {
            continue;
        }
        // In place: the input's buffer must die here.
        if let Some(k) = node.op.inplace_input(&ins, &outs) {
            let cand = node.inputs.get(k).copied().flatten().map(|v| v.index());
            if let Some((v, b)) = cand.and_then(|v| buffer_of[v].map(|b| (v, b))) {
                let same_size = numel(&shapes[v]) == Some(len);
                // No other input of this node may read the same buffer.
                let sole = node
                    .inputs
                    .iter()
                    .enumerate()
                    .all(|(j, w)| j == k || w.is_none_or(|w| buffer_of[w.index()] != Some(b)));
                let acc = accesses(b, &buf_members, &buf_defs);
                let dies_here = match dag {
                    None => acc.iter().all(|&a| a <= s),
                    Some(d) => acc.iter().all(|&a| a == s || d.before(a, s)),
                };
                if same_size && sole && dies_here {
                    exec[s] = Exec::InPlace { index: k };
                    buffer_of[out] = Some(b);
                    sub[out] = sub[v];
                    shapes[out] = Some(shape);
                    buf_members[b].push(out);
                    buf_defs[b].push(s);
                    report.in_place += 1;
                    continue;
                }
            }
        }
        exec[s] = Exec::Into;
        buffer_of[out] = Some(buf_len.len());
        shapes[out] = Some(shape);
        buf_len.push(len.div_ceil(ALIGN) * ALIGN);
        buf_members.push(vec![out]);
        buf_defs.push(vec![s]);
    }

    // Conflicts between buffers.
    let nb = buf_len.len();
    let acc: Vec<Vec<usize>> = (0..nb)
        .map(|b| accesses(b, &buf_members, &buf_defs))
        .collect();
    let first_def: Vec<usize> = (0..nb)
        .map(|b| buf_defs[b].iter().copied().min().unwrap_or(0))
        .collect();
    let span: Vec<(usize, usize)> = acc
        .iter()
        .map(|a| {
            (
                a.first().copied().unwrap_or(0),
                a.last().copied().unwrap_or(0),
            )
        })
        .collect();
    let conflicts = |i: usize, j: usize| -> bool {
        match dag {
            None => span[i].0 <= span[j].1 && span[j].0 <= span[i].1,
            Some(d) => {
                let before = |x: usize, y: usize| acc[x].iter().all(|&a| d.before(a, first_def[y]));
                !before(i, j) && !before(j, i)
            }
        }
    };
    let arena = millrace_memory::arena::plan(&buf_len, ALIGN, conflicts);

    let mut storage = vec![Storage::Owned; n_values];
    for v in 0..n_values {
        if let (Some(b), Some(shape)) = (buffer_of[v], shapes[v].take()) {
            storage[v] = Storage::Arena {
                offset: arena.offsets[b] + sub[v],
                len: shape.iter().product(),
                shape,
            };
            report.arena_values += 1;
        }
    }
    report.buffers = nb;
    report.arena_bytes = arena.size as u64 * 4;
    report.naive_bytes = g
        .values
        .iter()
        .enumerate()
        .filter(|(v, _)| buffer_of[*v].is_some())
        .filter_map(|(_, info)| info.ty.size_bytes())
        .sum::<usize>() as u64;
    for node in &g.nodes {
        for o in &node.outputs {
            let o = o.index();
            if buffer_of[o].is_none() && !is_output[o] {
                report.owned_values += 1;
                report.owned_bytes += g.values[o].ty.size_bytes().unwrap_or(0) as u64;
            }
        }
    }
    for (s, node) in g.nodes.iter().enumerate() {
        if exec[s] == Exec::Call {
            report.copies += node
                .inputs
                .iter()
                .flatten()
                .filter(|v| buffer_of[v.index()].is_some())
                .count();
        }
    }
    MemPlan {
        exec,
        storage,
        arena_len: arena.size,
        report,
    }
}
