//! FusedAttention (millrace): scaled dot-product attention in one node,
//! `Y = softmax(scale * Q K^T + mask) V` along the last axis, never materializing the whole
//! `[..., Sq, Skv]` score tensor.
//!
//! Built only by the `fuse-attention` pass (never from ONNX). Inputs: `Q`, `K`, `V` and an
//! optional f32 `mask` that broadcasts to the scores `[..., Sq, Skv]`. Each of `Q`, `K`, `V`
//! is read through a permutation of its axes (`perm`, as ONNX `Transpose` gives it): the
//! logical operand is `Transpose(input, perm)`, with logical shapes `Q: [..., Sq, D]`,
//! `K: [..., Skv, D]`, `V: [..., Skv, Dv]` and identical leading dimensions. So the
//! `Transpose` nodes that split heads (`[B, S, H, Dh] -> [B, H, S, Dh]`) and the transposed
//! `K` are read in place through strides. With `out_swap`, the output is written with its
//! last leading axis and `Sq` swapped (`[B, Sq, H, Dv]` rather than `[B, H, Sq, Dv]`), the
//! layout the following `Transpose` back to tokens would produce.
//!
//! `K` and `V` of each leading index are packed once, as the GEMM's right-hand panels
//! (for groups of leading indices whose packs fit [`PACK_BUDGET`] at a time). Per leading
//! index and block of query rows: the score block `scale * Q K^T + mask` comes out of the packed GEMM
//! (the scale as its alpha, the mask as its residual, read through broadcast strides),
//! each row gets a numerically stable softmax (max subtraction, vectorized `exp`), and the
//! block is multiplied by the packed `V` straight into the output. Blocks run in parallel
//! on the rayon pool; a block is small enough that its GEMMs stay on one thread.
//! The packs are made in parallel before the blocks run, into memory kept per thread from
//! the last call; before, every block of 31 rows packed its own copies, and bert_small's
//! attention took 5-10% more time (Zen 3, 2 threads).
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Cost, F32View, InferCtx, Inputs, Op, OpError, ValueType};
use millrace_kernels::gemm::{gemm_ex, Epilogue, Kernel, Lhs, Out, Packed, Rhs, Strided, View};
use millrace_kernels::vmath::{self, Func};
use rayon::prelude::*;
use std::any::Any;
use std::cell::RefCell;

const NAME: &str = "FusedAttention";

/// The most floats of packed `K` and `V` held at once (64 MiB): leading indices are
/// packed in groups that fit.
const PACK_BUDGET: usize = 1 << 24;

/// The most bytes of packs a thread keeps between calls (8 MiB: BERT-base's 12 heads at
/// 1024 tokens).
const KEEP_BYTES: usize = 8 << 20;

thread_local! {
    /// Packed `K` and `V` from this thread's last call, whose memory the next call packs
    /// into, so a steady-state run allocates nothing for them.
    static KV: RefCell<Vec<(Packed, Packed)>> = const { RefCell::new(Vec::new()) };
}

#[derive(Clone, Debug, PartialEq)]
pub struct FusedAttention {
    /// Multiplies `Q K^T` before the mask is added.
    pub scale: f32,
    /// Logical `Q = Transpose(input 0, q_perm)`, likewise for `K` and `V`.
    pub q_perm: Vec<usize>,
    pub k_perm: Vec<usize>,
    pub v_perm: Vec<usize>,
    /// Write the output with its last leading axis and `Sq` swapped.
    pub out_swap: bool,
    /// Names of the nodes this one replaces, for dumps.
    pub fused: Vec<String>,
}

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Where things are for one evaluation: logical shapes and strides of every operand.
struct Geometry {
    /// Leading dimensions (shared by Q, K, V and the output).
    lead: Vec<usize>,
    sq: usize,
    skv: usize,
    d: usize,
    dv: usize,
    /// Logical strides (leading..., row, column) of Q, K, V and the mask.
    qs: Vec<usize>,
    ks: Vec<usize>,
    vs: Vec<usize>,
    ms: Option<Vec<usize>>,
    out_shape: Vec<usize>,
}

fn permuted(
    shape: &[usize],
    perm: &[usize],
    what: &str,
) -> Result<(Vec<usize>, Vec<usize>), OpError> {
    if perm.len() != shape.len() {
        return Err(OpError::invalid(
            NAME,
            format!("{what} has rank {}, its permutation {perm:?}", shape.len()),
        ));
    }
    let mut seen = vec![false; perm.len()];
    for &p in perm {
        if p >= perm.len() || std::mem::replace(&mut seen[p], true) {
            return Err(OpError::invalid(
                NAME,
                format!("{what}: bad permutation {perm:?}"),
            ));
        }
    }
    let st = strides(shape);
    Ok((
        perm.iter().map(|&p| shape[p]).collect(),
        perm.iter().map(|&p| st[p]).collect(),
    ))
}

impl FusedAttention {
    fn geometry(
        &self,
        q: &[usize],
        k: &[usize],
        v: &[usize],
        mask: Option<&[usize]>,
    ) -> Result<Geometry, OpError> {
        let (qd, qs) = permuted(q, &self.q_perm, "Q")?;
        let (kd, ks) = permuted(k, &self.k_perm, "K")?;
        let (vd, vs) = permuted(v, &self.v_perm, "V")?;
        let r = qd.len();
        if r < 2 || kd.len() != r || vd.len() != r {
            return Err(OpError::invalid(NAME, "Q, K, V need one rank >= 2"));
        }
        let lead = qd[..r - 2].to_vec();
        if kd[..r - 2] != lead[..] || vd[..r - 2] != lead[..] {
            return Err(OpError::unsupported(
                NAME,
                format!("leading dimensions differ: Q {qd:?}, K {kd:?}, V {vd:?}"),
            ));
        }
        let (sq, d, skv, dv) = (qd[r - 2], qd[r - 1], kd[r - 2], vd[r - 1]);
        if kd[r - 1] != d || vd[r - 2] != skv {
            return Err(OpError::invalid(
                NAME,
                format!("shapes do not chain: Q {qd:?}, K {kd:?}, V {vd:?}"),
            ));
        }
        if self.out_swap && r < 3 {
            return Err(OpError::invalid(NAME, "out_swap needs rank >= 3"));
        }
        let ms = match mask {
            None => None,
            Some(m) => {
                let mut scores = lead.clone();
                scores.extend([sq, skv]);
                if m.len() > r {
                    return Err(OpError::invalid(NAME, "mask rank exceeds the scores'"));
                }
                let st = strides(m);
                let off = r - m.len();
                let mut out = vec![0; r];
                for (i, &dm) in m.iter().enumerate() {
                    if dm == scores[i + off] {
                        out[i + off] = if dm == 1 { 0 } else { st[i] };
                    } else if dm != 1 {
                        return Err(OpError::invalid(
                            NAME,
                            format!("mask {m:?} does not broadcast to scores {scores:?}"),
                        ));
                    }
                }
                Some(out)
            }
        };
        let mut out_shape = lead.clone();
        out_shape.extend([sq, dv]);
        if self.out_swap {
            out_shape.swap(r - 3, r - 2);
        }
        Ok(Geometry {
            lead,
            sq,
            skv,
            d,
            dv,
            qs,
            ks,
            vs,
            ms,
            out_shape,
        })
    }

    /// Computes into `out` (the output's element count, in its layout), holding at most
    /// `budget` floats of packed `K` and `V` at once (at least one outer index's).
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: Option<&[f32]>,
        g: &Geometry,
        out: &mut [f32],
        budget: usize,
    ) -> Result<(), OpError> {
        let outer: usize = g.lead.iter().product();
        let (sq, skv, dv) = (g.sq, g.skv, g.dv);
        if out.len() != outer * sq * dv {
            return Err(OpError::invalid(NAME, "output buffer has the wrong size"));
        }
        if out.is_empty() {
            return Ok(());
        }
        let nl = g.lead.len();
        // Offset of leading index `b` (flattened) in an operand with logical strides `st`.
        let base = |mut b: usize, st: &[usize]| {
            let mut off = 0;
            for i in (0..nl).rev() {
                off += (b % g.lead[i]) * st[i];
                b /= g.lead[i];
            }
            off
        };
        // Query rows per block: its GEMMs stay below the GEMM's fork threshold.
        let work = skv * g.d.max(dv).max(1);
        let rb = ((1usize << 18) / work.max(1))
            .saturating_sub(1)
            .clamp(8, 64)
            .min(sq);
        let kernel = Kernel::detect();
        let r = nl + 2;
        // `K` and `V` of leading index `b`, packed as the right-hand operands of the two
        // products into `kv` (memory reused from an earlier run): every block of query rows
        // of that index reads the same packs.
        let pack_kv = |b: usize, kv: &mut (Packed, Packed)| -> Result<(), OpError> {
            let (ko, vo) = (base(b, &g.ks), base(b, &g.vs));
            let kb = Strided::new(
                k.get(ko..).unwrap_or(&[]),
                skv,
                g.d,
                g.ks[r - 2],
                g.ks[r - 1],
            )
            .ok_or_else(|| OpError::invalid(NAME, "K smaller than its shape"))?;
            let vb = Strided::new(
                v.get(vo..).unwrap_or(&[]),
                dv,
                skv,
                g.vs[r - 1],
                g.vs[r - 2],
            )
            .ok_or_else(|| OpError::invalid(NAME, "V smaller than its shape"))?;
            kv.0.repack(&kb);
            kv.1.repack(&vb);
            Ok(())
        };
        // One block: leading index `b` (its `K` and `V` packed in `kv`), rows
        // `r0..r0+rows`, writing output row `i` at `dst[i * ors..]`.
        let block = |b: usize,
                     kv: &(Packed, Packed),
                     r0: usize,
                     rows: usize,
                     dst: &mut [f32],
                     ors: usize| {
            let mut s = vec![0f32; rows * skv];
            let qo = base(b, &g.qs);
            let qa = Strided::new(
                q.get(qo + r0 * g.qs[r - 2]..).unwrap_or(&[]),
                rows,
                g.d,
                g.qs[r - 2],
                g.qs[r - 1],
            )
            .ok_or_else(|| OpError::invalid(NAME, "Q smaller than its shape"))?;
            let residual = match (mask, &g.ms) {
                (Some(m), Some(ms)) => {
                    let mo = base(b, ms) + r0 * ms[r - 2];
                    Some(View {
                        data: m.get(mo..).unwrap_or(&[]),
                        rs: ms[r - 2],
                        cs: ms[r - 1],
                    })
                }
                _ => None,
            };
            let epi = Epilogue {
                alpha: self.scale,
                residual,
                ..Epilogue::default()
            };
            let c = Out {
                data: &mut s,
                rs: skv,
                cs: 1,
            };
            gemm_ex(kernel, Lhs::Source(&qa), Rhs::Packed(&kv.0), c, &epi)
                .map_err(|e| OpError::invalid(NAME, e.to_string()))?;
            if skv > 0 {
                let mut e = vec![0f32; skv];
                for row in s.chunks_mut(skv) {
                    // A NaN (or an all -inf row) gives NaN, as the unfused Softmax does.
                    let m = vmath::max(row);
                    let sum = vmath::exp_shift_sum(row, &mut e, m);
                    vmath::map(
                        Func::Affine {
                            a: 1.0 / sum,
                            b: 0.0,
                        },
                        &e,
                        row,
                    );
                }
            }
            let pa = Strided::rows(&s, rows, skv)
                .ok_or_else(|| OpError::invalid(NAME, "score block has the wrong size"))?;
            let c = Out {
                data: dst,
                rs: ors,
                cs: 1,
            };
            gemm_ex(
                kernel,
                Lhs::Source(&pa),
                Rhs::Packed(&kv.1),
                c,
                &Epilogue::default(),
            )
            .map_err(|e| OpError::invalid(NAME, e.to_string()))
        };
        let nblk = sq.div_ceil(rb);
        // Output slices, one per outer index: `heads` leading indices each (1, or with
        // `out_swap` the heads that share a row of the output).
        let heads = if self.out_swap { g.lead[nl - 1] } else { 1 };
        let row = heads * dv;
        // Outer indices whose packs are made at once: all of them unless their packs
        // would pass PACK_BUDGET floats.
        let per_outer = heads * (skv * g.d + skv * dv).max(1);
        let group = (budget / per_outer).max(1);
        // The packs' memory from this thread's last call (taken, not borrowed: a thread
        // waiting for this call's blocks may run another attention node meanwhile).
        let mut packs = KV.with_borrow_mut(std::mem::take);
        for (gi, outs) in out.chunks_mut(group * sq * row).enumerate() {
            let o0 = gi * group;
            let n_outer = outs.len() / (sq * row);
            let need = n_outer * heads;
            while packs.len() < need {
                let empty =
                    Strided::rows(&[], 0, 0).ok_or_else(|| OpError::invalid(NAME, "empty pack"))?;
                let p = Packed::with_kernel(&empty, kernel);
                packs.push((p.clone(), p));
            }
            packs[..need]
                .par_iter_mut()
                .enumerate()
                .try_for_each(|(j, kv)| pack_kv(o0 * heads + j, kv))?;
            let packs = &packs[..need];
            let chunks: Vec<(usize, &mut [f32])> = outs
                .chunks_mut(sq * row)
                .enumerate()
                .flat_map(|(i, o)| o.chunks_mut(rb * row).map(move |c| (i, c)))
                .collect();
            chunks
                .into_par_iter()
                .enumerate()
                .try_for_each(|(ci, (i, c))| {
                    let r0 = (ci % nblk) * rb;
                    let rows = c.len() / row;
                    for hh in 0..heads {
                        let kv = &packs[i * heads + hh];
                        block((o0 + i) * heads + hh, kv, r0, rows, &mut c[hh * dv..], row)?;
                    }
                    Ok(())
                })?;
        }
        // Kept for this thread's next call unless large (a long sequence's are let go).
        if packs
            .iter()
            .map(|(k, v)| k.bytes() + v.bytes())
            .sum::<usize>()
            <= KEEP_BYTES
        {
            KV.with_borrow_mut(|kept| *kept = packs);
        }
        Ok(())
    }

    fn shape_of(t: &ValueType) -> Option<Vec<usize>> {
        t.concrete_shape()
    }
}

fn view_shape<'a>(v: &Option<F32View<'a>>) -> Option<&'a [usize]> {
    v.as_ref().map(|v| v.shape)
}

impl Op for FusedAttention {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        for i in 0..3 {
            if let Some(dt) = ctx.input(i)?.dtype {
                if dt != DType::F32 {
                    return Err(OpError::unsupported(NAME, format!("input {i} is {dt:?}")));
                }
            }
        }
        let (q, k, v) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
        let conc = |t: &ValueType| Self::shape_of(t);
        let mask = ctx.opt_input(3);
        let shape = match (conc(q), conc(k), conc(v)) {
            (Some(q), Some(k), Some(v)) => {
                let m = mask.map(conc);
                let ms = match &m {
                    Some(Some(s)) => Some(s.as_slice()),
                    _ => None,
                };
                let g = self.geometry(&q, &k, &v, ms)?;
                Some(g.out_shape.iter().map(|&d| Dim::Known(d)).collect())
            }
            _ => None,
        };
        Ok(vec![ValueType {
            dtype: Some(DType::F32),
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let mut c = Cost::movement(inputs, outputs);
        let shapes: Vec<Option<Vec<usize>>> = inputs.iter().map(Self::shape_of).collect();
        if let (Some(Some(q)), Some(Some(k)), Some(Some(v))) =
            (shapes.first(), shapes.get(1), shapes.get(2))
        {
            if let Ok(g) = self.geometry(q, k, v, None) {
                let outer: usize = g.lead.iter().product();
                let scores = (outer * g.sq * g.skv) as u64;
                c.flops = scores * (2 * g.d as u64 + 2 * g.dv as u64 + 5);
            }
        }
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let views: Vec<Option<F32View<'_>>> = (0..inputs.len().max(3))
            .map(|i| {
                inputs.opt(i).map(|t| {
                    F32View::of(t).ok_or_else(|| {
                        OpError::unsupported(NAME, format!("input {i} is {:?}", t.dtype()))
                    })
                })
            })
            .map(Option::transpose)
            .collect::<Result<_, _>>()?;
        let g = self.geometry_of(&views)?;
        let mut out = vec![0f32; g.out_shape.iter().product()];
        self.eval_into(&views, &mut out, &g.out_shape)?;
        Tensor::from_vec(g.out_shape, out)
            .map_err(|e| OpError::tensor(NAME, e))
            .map(|t| vec![t])
    }

    fn writes_into(&self, inputs: &[ValueType], outputs: &[ValueType]) -> bool {
        let f32_known = |t: &ValueType| t.dtype == Some(DType::F32) && t.concrete_shape().is_some();
        inputs.len() >= 3
            && inputs.len() <= 4
            && inputs.iter().all(f32_known)
            && outputs.len() == 1
            && f32_known(&outputs[0])
    }

    fn eval_into(
        &self,
        inputs: &[Option<F32View<'_>>],
        out: &mut [f32],
        out_shape: &[usize],
    ) -> Result<(), OpError> {
        let g = self.geometry_of(inputs)?;
        if g.out_shape != out_shape {
            return Err(OpError::invalid(
                NAME,
                format!("output shape {out_shape:?}, expected {:?}", g.out_shape),
            ));
        }
        let q = F32View::req(inputs, NAME, 0)?;
        let k = F32View::req(inputs, NAME, 1)?;
        let v = F32View::req(inputs, NAME, 2)?;
        let m = inputs.get(3).copied().flatten().map(|m| m.data);
        self.run(q.data, k.data, v.data, m, &g, out, PACK_BUDGET)
    }

    fn describe(&self) -> String {
        let mut s = format!("scale={}", self.scale);
        let id = |p: &[usize]| p.iter().enumerate().all(|(i, &x)| i == x);
        for (n, p) in [
            ("q", &self.q_perm),
            ("k", &self.k_perm),
            ("v", &self.v_perm),
        ] {
            if !id(p) {
                s.push_str(&format!(" {n}_perm={p:?}"));
            }
        }
        if self.out_swap {
            s.push_str(" out_swap");
        }
        if !self.fused.is_empty() {
            s.push_str(&format!(" fused=[{}]", self.fused.join(",")));
        }
        s
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl FusedAttention {
    fn geometry_of(&self, inputs: &[Option<F32View<'_>>]) -> Result<Geometry, OpError> {
        let sh = |i: usize| {
            view_shape(inputs.get(i).unwrap_or(&None)).ok_or(OpError::MissingInput {
                op: NAME.to_string(),
                index: i,
            })
        };
        let mask = inputs.get(3).and_then(view_shape);
        let g = self.geometry(sh(0)?, sh(1)?, sh(2)?, mask)?;
        for (i, n) in [(0, 0usize), (1, 1), (2, 2)] {
            let v = F32View::req(inputs, NAME, i)?;
            if v.data.len() != v.shape.iter().product::<usize>() {
                return Err(OpError::invalid(
                    NAME,
                    format!("input {n}: data and shape differ"),
                ));
            }
        }
        if let Some(m) = inputs.get(3).copied().flatten() {
            if m.data.len() != m.shape.iter().product::<usize>() {
                return Err(OpError::invalid(NAME, "mask: data and shape differ"));
            }
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::matmul::MatMul;
    use crate::nn::softmax::{Kind, Softmax};
    use crate::tensor::transpose::Transpose;

    fn t(shape: &[usize], seed: u64) -> Tensor {
        crate::into_check::rand(shape, seed)
    }

    fn run1(op: &dyn Op, xs: &[&Tensor]) -> Tensor {
        let items: Vec<Option<&Tensor>> = xs.iter().map(|x| Some(*x)).collect();
        op.eval(&Inputs::new(op.name(), &items)).unwrap().remove(0)
    }

    fn transpose(x: &Tensor, perm: &[usize]) -> Tensor {
        let op = Transpose {
            perm: Some(perm.iter().map(|&p| p as i64).collect()),
        };
        run1(&op, &[x])
    }

    fn binary(name: &str, a: &Tensor, b: &Tensor) -> Tensor {
        let (av, bv) = (a.to_f32_vec().unwrap(), b.to_f32_vec().unwrap());
        let shape = millrace_core::broadcast_shapes(a.shape(), b.shape()).unwrap();
        let idx = |s: &[usize], o: &[usize], mut i: usize| {
            let mut off = 0;
            let st = strides(s);
            let d = o.len() - s.len();
            for ax in (0..o.len()).rev() {
                let c = i % o[ax];
                i /= o[ax];
                if ax >= d && s[ax - d] != 1 {
                    off += c * st[ax - d];
                }
            }
            off
        };
        let n: usize = shape.iter().product();
        let v = (0..n)
            .map(|i| {
                let (x, y) = (av[idx(a.shape(), &shape, i)], bv[idx(b.shape(), &shape, i)]);
                if name == "Mul" {
                    x * y
                } else {
                    x + y
                }
            })
            .collect();
        Tensor::from_vec(shape, v).unwrap()
    }

    fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
        assert_eq!(a.shape(), b.shape());
        let (a, b) = (a.to_f32_vec().unwrap(), b.to_f32_vec().unwrap());
        let num: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum();
        let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
        (num / den.max(1e-30)).sqrt()
    }

    /// The unfused graph: Transposes, MatMul, Mul, Add, Softmax, MatMul, Transpose.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        op: &FusedAttention,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> Tensor {
        let q = transpose(q, &op.q_perm);
        let k = transpose(k, &op.k_perm);
        let v = transpose(v, &op.v_perm);
        let r = q.shape().len();
        let mut sw: Vec<usize> = (0..r).collect();
        sw.swap(r - 2, r - 1);
        let kt = transpose(&k, &sw);
        let s = run1(&MatMul, &[&q, &kt]);
        let s = binary("Mul", &s, &Tensor::scalar(op.scale));
        let s = match mask {
            Some(m) => binary("Add", &s, m),
            None => s,
        };
        let sm = Softmax {
            kind: Kind::Softmax,
            axis: -1,
            coerce_2d: false,
        };
        let p = run1(&sm, &[&s]);
        let y = run1(&MatMul, &[&p, &v]);
        if op.out_swap {
            let mut o: Vec<usize> = (0..r).collect();
            o.swap(r - 3, r - 2);
            transpose(&y, &o)
        } else {
            y
        }
    }

    fn check(op: &FusedAttention, q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) {
        let mut xs = vec![q, k, v];
        xs.extend(mask);
        let got = run1(op, &xs);
        let want = reference(op, q, k, v, mask);
        let e = rel_l2(&got, &want);
        assert!(e <= 1e-5, "rel L2 {e} for {op:?}");
    }

    fn plain(r: usize, scale: f32) -> FusedAttention {
        let id: Vec<usize> = (0..r).collect();
        FusedAttention {
            scale,
            q_perm: id.clone(),
            k_perm: id.clone(),
            v_perm: id,
            out_swap: false,
            fused: vec![],
        }
    }

    #[test]
    fn plain_without_and_with_mask() {
        for &(b, h, sq, skv, d, dv) in &[
            (1, 2, 5, 7, 3, 4),
            (2, 3, 70, 33, 16, 8),
            (1, 4, 128, 128, 64, 64),
        ] {
            let op = plain(4, 0.125);
            let q = t(&[b, h, sq, d], 1);
            let k = t(&[b, h, skv, d], 2);
            let v = t(&[b, h, skv, dv], 3);
            check(&op, &q, &k, &v, None);
            let m = t(&[b, 1, 1, skv], 4);
            check(&op, &q, &k, &v, Some(&m));
            let m = t(&[1, h, sq, skv], 5);
            check(&op, &q, &k, &v, Some(&m));
            let m = t(&[sq, 1], 6);
            check(&op, &q, &k, &v, Some(&m));
        }
    }

    /// BERT's layout: Q, V as [B, S, H, D] read as [B, H, S, D]; K as [B, S, H, D] read
    /// as K (the graph's K^T was Transpose(perm [0, 2, 3, 1])); output back to
    /// [B, S, H, Dv].
    fn bert(scale: f32) -> FusedAttention {
        let mut op = plain(4, scale);
        op.q_perm = vec![0, 2, 1, 3];
        op.k_perm = vec![0, 2, 1, 3];
        op.v_perm = vec![0, 2, 1, 3];
        op.out_swap = true;
        op
    }

    #[test]
    fn bert_layout_through_permutations() {
        let (b, s, h, d) = (2, 40, 3, 8);
        let op = bert(0.3);
        let q = t(&[b, s, h, d], 7);
        let k = t(&[b, s, h, d], 8);
        let v = t(&[b, s, h, d], 9);
        let mut m = t(&[b, 1, 1, s], 10).to_f32_vec().unwrap();
        m.iter_mut().step_by(3).for_each(|x| *x = f32::MIN);
        let m = Tensor::from_vec(vec![b, 1, 1, s], m).unwrap();
        check(&op, &q, &k, &v, Some(&m));
        check(&op, &q, &k, &v, None);
        // K given as K^T [B, H, D, S] contiguous.
        let mut op = plain(3, 1.0);
        op.k_perm = vec![0, 2, 1];
        let q = t(&[3, 9, 5], 11);
        let kt = t(&[3, 5, 12], 12);
        let v = t(&[3, 12, 6], 13);
        check(&op, &q, &kt, &v, None);
    }

    /// Packs made one outer index at a time (a budget too small for two) give the same
    /// output as all at once, in both output layouts.
    #[test]
    fn packs_in_groups_match_packs_at_once() {
        let (b, s, h, d) = (2, 70, 3, 8);
        for swap in [false, true] {
            let op = if swap { bert(0.3) } else { plain(4, 0.3) };
            let q = t(&[b, s, h, d], 21);
            let k = t(&[b, s, h, d], 22);
            let v = t(&[b, s, h, d], 23);
            let (qv, kv, vv) = (
                q.to_f32_vec().unwrap(),
                k.to_f32_vec().unwrap(),
                v.to_f32_vec().unwrap(),
            );
            let g = op.geometry(q.shape(), k.shape(), v.shape(), None).unwrap();
            let n: usize = g.out_shape.iter().product();
            let (mut all, mut one) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            op.run(&qv, &kv, &vv, None, &g, &mut all, PACK_BUDGET)
                .unwrap();
            op.run(&qv, &kv, &vv, None, &g, &mut one, 1).unwrap();
            assert_eq!(all, one, "out_swap {swap}");
            assert!(all.iter().all(|x| x.is_finite()));
            let want = run1(&op, &[&q, &k, &v]).to_f32_vec().unwrap();
            assert_eq!(all, want);
        }
    }

    #[test]
    fn eval_into_matches_and_bad_shapes_are_errors() {
        let op = plain(3, 0.5);
        let q = t(&[2, 6, 4], 1);
        let k = t(&[2, 5, 4], 2);
        let v = t(&[2, 5, 3], 3);
        let want = run1(&op, &[&q, &k, &v]);
        let views = vec![F32View::of(&q), F32View::of(&k), F32View::of(&v)];
        let mut out = vec![f32::NAN; 36];
        op.eval_into(&views, &mut out, &[2, 6, 3]).unwrap();
        assert_eq!(out, want.to_f32_vec().unwrap());
        assert!(op.eval_into(&views, &mut out, &[2, 3, 6]).is_err());
        let bad = t(&[2, 5, 7], 4);
        let items = [Some(&q), Some(&bad), Some(&v)];
        assert!(op.eval(&Inputs::new(NAME, &items)).is_err());
        let m = t(&[3, 5], 5);
        let items = [Some(&q), Some(&k), Some(&v), Some(&m)];
        assert!(op.eval(&Inputs::new(NAME, &items)).is_err());
    }
}
