//! Attention (ONNX opsets 23, 24): scaled dot-product attention over Q, K, V in 4-D
//! `[B, H, S, D]` or 3-D `[B, S, H*D]` layout (with `q_num_heads`/`kv_num_heads`), with an
//! optional bool or float `attn_mask` (broadcast; from opset 24 its last axis may be
//! shorter than the total sequence and is padded with -inf), an optional KV cache
//! (`past_key`/`past_value` concatenated into `present_key`/`present_value`), an optional
//! `nonpad_kv_seqlen` padding mask (opset 24), `is_causal`, `scale`, `softcap`,
//! grouped-query attention, and the optional `qk_matmul_output` (mode 0: raw scaled QK,
//! 1: after softcap, 2: after softcap and mask, 3: after softmax).
//!
//! Computes in f32 (f16/bf16 through f32) or f64; the softmax subtracts the row maximum.
//! A row whose every score is -inf yields NaN, as the spec's own Softmax does.
use super::common::{dim_or, known, load, pack_heads, unpack_heads};
use crate::nn::common::Float;
use crate::util::output;
use millrace_core::{bf16, f16};
use millrace_core::{DType, Dim, Tensor, TensorData};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "Attention";

#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    pub is_causal: bool,
    pub q_num_heads: Option<usize>,
    pub kv_num_heads: Option<usize>,
    pub scale: Option<f32>,
    pub softcap: f32,
    pub qk_mode: i64,
    /// The node declares the 4th output (`qk_matmul_output`).
    pub want_qk: bool,
    /// Opset 24 pads a mask whose last axis is shorter than the total sequence.
    pub pad_mask: bool,
}

impl Attention {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let is_causal = match attrs.int_or("is_causal", 0)? {
            0 => false,
            1 => true,
            v => {
                return Err(OpError::attribute(
                    NAME,
                    "is_causal",
                    format!("must be 0 or 1, got {v}"),
                ))
            }
        };
        let heads = |a: &str| -> Result<Option<usize>, OpError> {
            match attrs.int(a)? {
                None => Ok(None),
                Some(v) if v > 0 => Ok(Some(v as usize)),
                Some(v) => Err(OpError::attribute(
                    NAME,
                    a,
                    format!("must be positive, got {v}"),
                )),
            }
        };
        let q_num_heads = heads("q_num_heads")?;
        let kv_num_heads = heads("kv_num_heads")?;
        let scale = attrs.float("scale")?;
        if let Some(s) = scale {
            if s.is_nan() || s < 0.0 {
                return Err(OpError::unsupported(NAME, format!("scale {s}")));
            }
        }
        let softcap = attrs.float_or("softcap", 0.0)?;
        if softcap.is_nan() || softcap < 0.0 {
            return Err(OpError::unsupported(NAME, format!("softcap {softcap}")));
        }
        if let Some(p) = attrs.int("softmax_precision")? {
            // Softmax runs in f32 (f64 for f64 inputs); a half-precision softmax would
            // round differently.
            if !matches!(
                DType::from_onnx_code(p as i32),
                Some(DType::F32 | DType::F64)
            ) {
                return Err(OpError::unsupported(NAME, format!("softmax_precision {p}")));
            }
        }
        let qk_mode = attrs.int_or("qk_matmul_output_mode", 0)?;
        if !(0..=3).contains(&qk_mode) {
            return Err(OpError::attribute(
                NAME,
                "qk_matmul_output_mode",
                format!("must be 0..=3, got {qk_mode}"),
            ));
        }
        Ok(Arc::new(Attention {
            is_causal,
            q_num_heads,
            kv_num_heads,
            scale,
            softcap,
            qk_mode,
            want_qk: attrs.node_outputs() >= 4,
            pad_mask: opset >= 24,
        }))
    }
}

/// Sizes of one evaluation, all in the 4-D `[B, H, S, D]` view.
#[derive(Clone, Copy, Debug)]
struct Dims {
    b: usize,
    qh: usize,
    kvh: usize,
    sq: usize,
    skv: usize,
    past: usize,
    d: usize,
    dv: usize,
    three_d: bool,
}

impl Dims {
    fn total(&self) -> usize {
        self.past + self.skv
    }
}

fn bad(msg: impl Into<String>) -> OpError {
    OpError::invalid(NAME, msg)
}

/// A mask broadcast to `[B, Hq, Sq, L]` (L <= total), in compute type, with -inf for False.
struct Mask<F> {
    v: Vec<F>,
    /// Strides over (b, h, i, j); 0 where broadcast.
    st: [usize; 4],
    len: usize,
}

fn load_mask<F: Float>(a: &Attention, t: &Tensor, dm: &Dims) -> Result<Mask<F>, OpError> {
    let shape = t.shape();
    let r = shape.len();
    if r == 0 || r > 4 {
        return Err(OpError::unsupported(NAME, format!("attn_mask of rank {r}")));
    }
    let mut s4 = [1usize; 4];
    s4[4 - r..].copy_from_slice(shape);
    let total = dm.total();
    let len = s4[3];
    if len != total && !(a.pad_mask && len < total) {
        return Err(OpError::unsupported(
            NAME,
            format!("attn_mask last axis {len} for total sequence length {total}"),
        ));
    }
    let want = [dm.b, dm.qh, dm.sq];
    for k in 0..3 {
        if s4[k] != 1 && s4[k] != want[k] {
            return Err(bad(format!(
                "attn_mask shape {shape:?} does not broadcast to [{}, {}, {}, {total}]",
                dm.b, dm.qh, dm.sq
            )));
        }
    }
    let v: Vec<F> = match t.data() {
        TensorData::Bool(b) => b
            .iter()
            .map(|&x| if x { F::ZERO } else { F::NEG_INF })
            .collect(),
        _ if t.dtype().is_float() => load::<F>(NAME, t, "attn_mask")?,
        _ => {
            return Err(OpError::unsupported(
                NAME,
                format!("attn_mask of dtype {}", t.dtype()),
            ))
        }
    };
    let mut st = [0usize; 4];
    let mut acc = 1;
    for k in (0..4).rev() {
        if s4[k] != 1 {
            st[k] = acc;
        }
        acc *= s4[k];
    }
    // The last axis is never broadcast (it is padded instead).
    st[3] = 1;
    Ok(Mask { v, st, len })
}

/// Builds an output of any float `dtype` from compute-type values.
fn float_out<F: Float>(dtype: DType, shape: Vec<usize>, v: Vec<F>) -> Result<Tensor, OpError> {
    match dtype {
        DType::F32 => output(NAME, shape, v.into_iter().map(|x| x.to_f32()).collect()),
        DType::F64 => output(NAME, shape, v.into_iter().map(|x| x.to_f64()).collect()),
        DType::F16 => output(
            NAME,
            shape,
            v.into_iter().map(|x| f16::from_f32(x.to_f32())).collect(),
        ),
        DType::BF16 => output(
            NAME,
            shape,
            v.into_iter().map(|x| bf16::from_f32(x.to_f32())).collect(),
        ),
        d => Err(OpError::unsupported(NAME, format!("dtype {d}"))),
    }
}

struct Head<F> {
    y: Vec<F>,
    qk: Vec<F>,
}

fn eval_as<F: Float>(a: &Attention, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
    let (q_t, k_t, v_t) = (inputs.req(0)?, inputs.req(1)?, inputs.req(2)?);
    if k_t.dtype() != q_t.dtype() {
        return Err(bad(format!(
            "Q is {} but K is {}",
            q_t.dtype(),
            k_t.dtype()
        )));
    }
    let rank = q_t.rank();
    if k_t.rank() != rank || v_t.rank() != rank || !(rank == 3 || rank == 4) {
        return Err(bad(format!(
            "Q, K, V must all be 3-D or all 4-D, got ranks {}, {}, {}",
            rank,
            k_t.rank(),
            v_t.rank()
        )));
    }
    let (qs, ks, vs) = (q_t.shape(), k_t.shape(), v_t.shape());
    let mut dm = if rank == 3 {
        let (Some(qh), Some(kvh)) = (a.q_num_heads, a.kv_num_heads) else {
            return Err(bad("3-D inputs need q_num_heads and kv_num_heads"));
        };
        if qs[2] % qh != 0 || ks[2] % kvh != 0 || vs[2] % kvh != 0 {
            return Err(bad(format!(
                "hidden sizes {}, {}, {} do not divide by heads {qh}, {kvh}",
                qs[2], ks[2], vs[2]
            )));
        }
        Dims {
            b: qs[0],
            qh,
            kvh,
            sq: qs[1],
            skv: ks[1],
            past: 0,
            d: qs[2] / qh,
            dv: vs[2] / kvh,
            three_d: true,
        }
    } else {
        if a.q_num_heads.is_some_and(|h| h != qs[1]) || a.kv_num_heads.is_some_and(|h| h != ks[1]) {
            return Err(bad("q_num_heads/kv_num_heads disagree with the 4-D inputs"));
        }
        Dims {
            b: qs[0],
            qh: qs[1],
            kvh: ks[1],
            sq: qs[2],
            skv: ks[2],
            past: 0,
            d: qs[3],
            dv: vs[3],
            three_d: false,
        }
    };
    // K's head size must match Q's; V must agree with K on batch, heads and length.
    let k_d = if rank == 3 { ks[2] / dm.kvh } else { ks[3] };
    let (v_b, v_s) = (vs[0], if rank == 3 { vs[1] } else { vs[2] });
    let v_h = if rank == 3 { dm.kvh } else { vs[1] };
    if ks[0] != dm.b || v_b != dm.b || k_d != dm.d || v_s != dm.skv || v_h != dm.kvh {
        return Err(bad(format!(
            "incompatible shapes Q {qs:?}, K {ks:?}, V {vs:?}"
        )));
    }
    if dm.kvh == 0 || dm.qh % dm.kvh != 0 {
        return Err(bad(format!(
            "q heads {} are not a multiple of kv heads {}",
            dm.qh, dm.kvh
        )));
    }
    let group = dm.qh / dm.kvh;

    // K and V in [B, kvH, S, D], then the cache concatenation.
    let mut k: Vec<F> = load(NAME, k_t, "K")?;
    let mut v: Vec<F> = load(NAME, v_t, "V")?;
    let q_raw: Vec<F> = load(NAME, q_t, "Q")?;
    let q = if dm.three_d {
        k = unpack_heads(&k, dm.b, dm.skv, dm.kvh, dm.d);
        v = unpack_heads(&v, dm.b, dm.skv, dm.kvh, dm.dv);
        unpack_heads(&q_raw, dm.b, dm.sq, dm.qh, dm.d)
    } else {
        q_raw
    };
    let (pk, pv) = (inputs.opt(4), inputs.opt(5));
    let (k, v) = match (pk, pv) {
        (None, None) => (k, v),
        (Some(pk), Some(pv)) => {
            if pk.dtype() != k_t.dtype() || pv.dtype() != v_t.dtype() {
                return Err(bad("past_key/past_value dtypes differ from K/V"));
            }
            let (pks, pvs) = (pk.shape(), pv.shape());
            if pks.len() != 4
                || pvs.len() != 4
                || pks[0] != dm.b
                || pks[1] != dm.kvh
                || pks[3] != dm.d
                || pvs[0] != dm.b
                || pvs[1] != dm.kvh
                || pvs[2] != pks[2]
                || pvs[3] != dm.dv
            {
                return Err(bad(format!(
                    "past_key {pks:?} / past_value {pvs:?} do not match K/V"
                )));
            }
            dm.past = pks[2];
            let pkv: Vec<F> = load(NAME, pk, "past_key")?;
            let pvv: Vec<F> = load(NAME, pv, "past_value")?;
            let cat = |p: &[F], x: &[F], w: usize| -> Vec<F> {
                let mut out = Vec::with_capacity(p.len() + x.len());
                for bh in 0..dm.b * dm.kvh {
                    out.extend_from_slice(&p[bh * dm.past * w..(bh + 1) * dm.past * w]);
                    out.extend_from_slice(&x[bh * dm.skv * w..(bh + 1) * dm.skv * w]);
                }
                out
            };
            (cat(&pkv, &k, dm.d), cat(&pvv, &v, dm.dv))
        }
        _ => {
            return Err(bad("past_key and past_value must be given together"));
        }
    };
    let total = dm.total();

    let mask = match inputs.opt(3) {
        Some(m) => Some(load_mask::<F>(a, m, &dm)?),
        None => None,
    };
    let nonpad: Option<Vec<i64>> = match inputs.opt(6) {
        Some(t) => {
            if t.dtype() != DType::I64 || t.shape() != [dm.b] {
                return Err(bad(format!(
                    "nonpad_kv_seqlen must be i64 of shape [{}], got {} {:?}",
                    dm.b,
                    t.dtype(),
                    t.shape()
                )));
            }
            Some(crate::util::ints_of(NAME, t)?)
        }
        None => None,
    };
    let scale = match a.scale {
        Some(s) => F::from_f32(s),
        None => F::ONE / F::from_f64(dm.d as f64).sqrt(),
    };
    let softcap = F::from_f32(a.softcap);
    let want_qk = a.want_qk;
    let mode = a.qk_mode;
    let causal = a.is_causal;

    let run_head = |bh: usize| -> Head<F> {
        let (bi, hi) = (bh / dm.qh, bh % dm.qh);
        let kvi = bi * dm.kvh + hi / group;
        let qm = &q[bh * dm.sq * dm.d..(bh + 1) * dm.sq * dm.d];
        let km = &k[kvi * total * dm.d..(kvi + 1) * total * dm.d];
        let vm = &v[kvi * total * dm.dv..(kvi + 1) * total * dm.dv];
        let mut s = vec![F::ZERO; dm.sq * total];
        F::gemm(
            dm.sq,
            dm.d,
            total,
            scale,
            qm,
            dm.d as isize,
            1,
            km,
            1,
            dm.d as isize,
            F::ZERO,
            &mut s,
            total as isize,
            1,
        );
        let mut qk = Vec::new();
        if want_qk && mode == 0 {
            qk = s.clone();
        }
        if a.softcap > 0.0 {
            for x in s.iter_mut() {
                *x = F::from_f64((*x / softcap).to_f64().tanh()) * softcap;
            }
        }
        if want_qk && mode == 1 {
            qk = s.clone();
        }
        let npad = nonpad.as_ref().and_then(|n| n.get(bi).copied());
        for i in 0..dm.sq {
            let row = &mut s[i * total..(i + 1) * total];
            for (j, x) in row.iter_mut().enumerate() {
                let mut bias = F::ZERO;
                if let Some(m) = &mask {
                    bias = if j < m.len {
                        m.v[bi * m.st[0] + hi * m.st[1] + i * m.st[2] + j]
                    } else {
                        F::NEG_INF
                    };
                }
                if causal && j > i + dm.past {
                    bias += F::NEG_INF;
                }
                if let Some(n) = npad {
                    if (j as i64) >= n {
                        bias += F::NEG_INF;
                    }
                }
                *x += bias;
            }
        }
        if want_qk && mode == 2 {
            qk = s.clone();
        }
        for row in s.chunks_mut(total.max(1)) {
            let mut m = F::NEG_INF;
            for &x in row.iter() {
                if x > m {
                    m = x;
                }
            }
            let mut sum = F::ZERO;
            for x in row.iter_mut() {
                *x = (*x - m).exp();
                sum += *x;
            }
            for x in row.iter_mut() {
                *x = *x / sum;
            }
        }
        if want_qk && mode == 3 {
            qk = s.clone();
        }
        let mut y = vec![F::ZERO; dm.sq * dm.dv];
        F::gemm(
            dm.sq,
            total,
            dm.dv,
            F::ONE,
            &s,
            total as isize,
            1,
            vm,
            dm.dv as isize,
            1,
            F::ZERO,
            &mut y,
            dm.dv as isize,
            1,
        );
        Head { y, qk }
    };
    let heads: Vec<Head<F>> = (0..dm.b * dm.qh).into_par_iter().map(run_head).collect();
    let mut y = Vec::with_capacity(dm.b * dm.qh * dm.sq * dm.dv);
    let mut qk = Vec::new();
    for h in heads {
        y.extend_from_slice(&h.y);
        qk.extend_from_slice(&h.qk);
    }
    let (y_shape, y) = if dm.three_d {
        (
            vec![dm.b, dm.sq, dm.qh * dm.dv],
            pack_heads(&y, dm.b, dm.qh, dm.sq, dm.dv),
        )
    } else {
        (vec![dm.b, dm.qh, dm.sq, dm.dv], y)
    };
    let mut outs = vec![
        float_out(q_t.dtype(), y_shape, y)?,
        float_out(k_t.dtype(), vec![dm.b, dm.kvh, total, dm.d], k)?,
        float_out(v_t.dtype(), vec![dm.b, dm.kvh, total, dm.dv], v)?,
    ];
    if want_qk {
        outs.push(float_out(q_t.dtype(), vec![dm.b, dm.qh, dm.sq, total], qk)?);
    }
    Ok(outs)
}

impl Op for Attention {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let q = ctx.input(0)?;
        let k = ctx.input(1)?;
        let v = ctx.input(2)?;
        let (qs, ks, vs) = (q.shape.as_deref(), k.shape.as_deref(), v.shape.as_deref());
        let past = ctx.opt_input(4).map(|t| known(t.shape.as_deref(), 2));
        let rank = q.rank().or(k.rank()).or(v.rank());
        let sym = |s: &str| format!("Attention_{s}");
        let dim = |s: Option<&[Dim]>, i: usize, name: &str| -> Dim {
            match s.and_then(|s| s.get(i)) {
                Some(d) => d.clone(),
                None => Dim::Sym(sym(name)),
            }
        };
        let (y, pk, pv, qk) = match rank {
            Some(3) => {
                let qh = self.q_num_heads;
                let kvh = self.kv_num_heads;
                let dv = known(vs, 2).zip(kvh).map(|(h, n)| h / n.max(1));
                let d = known(ks, 2).zip(kvh).map(|(h, n)| h / n.max(1));
                let skv = known(ks, 1);
                let total = match past {
                    None => skv,
                    Some(p) => p.zip(skv).map(|(p, s)| p + s),
                };
                let y = vec![
                    dim(qs, 0, "B"),
                    dim(qs, 1, "Sq"),
                    dim_or(qh.zip(dv).map(|(h, d)| h * d), &sym("Yhidden")),
                ];
                let kv = |w: Option<usize>, n: &str| {
                    vec![
                        dim(qs, 0, "B"),
                        dim_or(kvh, &sym("kvH")),
                        dim_or(total, &sym("T")),
                        dim_or(w, &sym(n)),
                    ]
                };
                let qk = vec![
                    dim(qs, 0, "B"),
                    dim_or(qh, &sym("qH")),
                    dim(qs, 1, "Sq"),
                    dim_or(total, &sym("T")),
                ];
                (Some(y), Some(kv(d, "D")), Some(kv(dv, "Dv")), Some(qk))
            }
            Some(4) => {
                let skv = known(ks, 2);
                let total = match past {
                    None => skv,
                    Some(p) => p.zip(skv).map(|(p, s)| p + s),
                };
                let y = vec![
                    dim(qs, 0, "B"),
                    dim(qs, 1, "qH"),
                    dim(qs, 2, "Sq"),
                    dim(vs, 3, "Dv"),
                ];
                let t = dim_or(total, &sym("T"));
                let pk = vec![
                    dim(ks, 0, "B"),
                    dim(ks, 1, "kvH"),
                    t.clone(),
                    dim(ks, 3, "D"),
                ];
                let pv = vec![
                    dim(vs, 0, "B"),
                    dim(vs, 1, "kvH"),
                    t.clone(),
                    dim(vs, 3, "Dv"),
                ];
                let qk = vec![dim(qs, 0, "B"), dim(qs, 1, "qH"), dim(qs, 2, "Sq"), t];
                (Some(y), Some(pk), Some(pv), Some(qk))
            }
            _ => (None, None, None, None),
        };
        let ty = |dt: Option<DType>, s: Option<Vec<Dim>>| ValueType {
            dtype: dt,
            shape: s,
        };
        let mut out = vec![ty(q.dtype, y), ty(k.dtype, pk), ty(v.dtype, pv)];
        if self.want_qk {
            out.push(ty(q.dtype, qk));
        }
        Ok(out)
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        // 2 flops per multiply-add in both products, per (b, h, i, j).
        let qk = outputs.get(3).and_then(|t| t.numel()).unwrap_or_default() as u64;
        let mut c = Cost::movement(inputs, outputs);
        let d = inputs
            .first()
            .and_then(|t| t.concrete_shape())
            .and_then(|s| s.last().copied())
            .unwrap_or_default() as u64;
        c.flops = qk * 4 * d.max(1);
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let q = inputs.req(0)?;
        // Compute in f64 when Q or V is f64, so that no f64 output is rounded through f32.
        let dt = match inputs.opt(2) {
            Some(v) if v.dtype() == DType::F64 && q.dtype().is_float() => DType::F64,
            _ => q.dtype(),
        };
        crate::float_run!(NAME, dt, eval_as(self, inputs))
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(h) = self.q_num_heads {
            s += &format!("q_num_heads={h} ");
        }
        if let Some(h) = self.kv_num_heads {
            s += &format!("kv_num_heads={h} ");
        }
        if self.is_causal {
            s += "causal ";
        }
        if let Some(x) = self.scale {
            s += &format!("scale={x} ");
        }
        if self.softcap > 0.0 {
            s += &format!("softcap={} ", self.softcap);
        }
        if self.want_qk {
            s += &format!("qk_matmul_output_mode={}", self.qk_mode);
        }
        s.trim_end().to_string()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(causal: bool) -> Attention {
        Attention {
            is_causal: causal,
            q_num_heads: None,
            kv_num_heads: None,
            scale: None,
            softcap: 0.0,
            qk_mode: 0,
            want_qk: true,
            pad_mask: true,
        }
    }

    fn t(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape, v).unwrap()
    }

    fn run(a: &Attention, ins: &[Option<&Tensor>]) -> Vec<Tensor> {
        a.eval(&Inputs::new(NAME, ins)).unwrap()
    }

    #[test]
    fn softmax_weights_values() {
        // scores [0, ln 3] -> weights [1/4, 3/4] -> y = 4/4 + 3*8/4 = 7.
        let q = t(vec![1, 1, 1, 1], vec![1.0]);
        let k = t(vec![1, 1, 2, 1], vec![0.0, 3f32.ln()]);
        let v = t(vec![1, 1, 2, 1], vec![4.0, 8.0]);
        let out = run(&op(false), &[Some(&q), Some(&k), Some(&v)]);
        assert!((out[0].as_slice::<f32>().unwrap()[0] - 7.0).abs() < 1e-5);
        assert_eq!(out[1], k);
        let qk = out[3].as_slice::<f32>().unwrap();
        assert!((qk[1] - 3f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn causal_and_bool_mask_hide_later_keys() {
        let q = t(vec![1, 1, 2, 1], vec![1.0, 1.0]);
        let k = t(vec![1, 1, 2, 1], vec![0.0, 3f32.ln()]);
        let v = t(vec![1, 1, 2, 1], vec![4.0, 8.0]);
        let y = &run(&op(true), &[Some(&q), Some(&k), Some(&v)])[0];
        let y = y.as_slice::<f32>().unwrap();
        assert!((y[0] - 4.0).abs() < 1e-5 && (y[1] - 7.0).abs() < 1e-5);
        let m = Tensor::from_vec(vec![2], vec![true, false]).unwrap();
        let y = &run(&op(false), &[Some(&q), Some(&k), Some(&v), Some(&m)])[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[4.0, 4.0]);
    }

    #[test]
    fn fully_masked_row_is_nan() {
        let q = t(vec![1, 1, 1, 1], vec![1.0]);
        let k = t(vec![1, 1, 1, 1], vec![1.0]);
        let v = t(vec![1, 1, 1, 1], vec![1.0]);
        let m = t(vec![1, 1], vec![f32::NEG_INFINITY]);
        let y = &run(&op(false), &[Some(&q), Some(&k), Some(&v), Some(&m)])[0];
        assert!(y.as_slice::<f32>().unwrap()[0].is_nan());
    }

    #[test]
    fn grouped_query_heads_share_kv_and_3d_matches_4d() {
        let q4 = t(vec![1, 2, 1, 2], vec![1.0, 0.0, 0.0, 1.0]);
        let k4 = t(vec![1, 1, 2, 2], vec![1.0, 0.0, 0.0, 1.0]);
        let v4 = t(vec![1, 1, 2, 1], vec![1.0, 3.0]);
        let y4 = run(&op(false), &[Some(&q4), Some(&k4), Some(&v4)]);
        let y = y4[0].as_slice::<f32>().unwrap();
        // Head 0 favours key 0, head 1 key 1, symmetrically: y0 + y1 = 4.
        assert!(y[0] < 2.0 && y[1] > 2.0 && (y[0] + y[1] - 4.0).abs() < 1e-5);
        let mut a3 = op(false);
        a3.q_num_heads = Some(2);
        a3.kv_num_heads = Some(1);
        let q3 = t(vec![1, 1, 4], vec![1.0, 0.0, 0.0, 1.0]);
        let k3 = t(vec![1, 2, 2], vec![1.0, 0.0, 0.0, 1.0]);
        let v3 = t(vec![1, 2, 1], vec![1.0, 3.0]);
        let y3 = run(&a3, &[Some(&q3), Some(&k3), Some(&v3)]);
        assert_eq!(y3[0].shape(), &[1, 1, 2]);
        assert_eq!(y3[0].as_slice::<f32>().unwrap(), y);
    }

    #[test]
    fn past_is_concatenated_into_present() {
        let q = t(vec![1, 1, 1, 1], vec![0.0]);
        let k = t(vec![1, 1, 1, 1], vec![2.0]);
        let v = t(vec![1, 1, 1, 1], vec![6.0]);
        let pk = t(vec![1, 1, 1, 1], vec![1.0]);
        let pv = t(vec![1, 1, 1, 1], vec![2.0]);
        let out = run(
            &op(true),
            &[Some(&q), Some(&k), Some(&v), None, Some(&pk), Some(&pv)],
        );
        // Zero query: uniform weights over past and new -> (2 + 6) / 2.
        assert!((out[0].as_slice::<f32>().unwrap()[0] - 4.0).abs() < 1e-6);
        assert_eq!(out[1].as_slice::<f32>().unwrap(), &[1.0, 2.0]);
        assert_eq!(out[2].as_slice::<f32>().unwrap(), &[2.0, 6.0]);
    }
}
