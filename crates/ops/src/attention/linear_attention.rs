//! LinearAttention (ONNX opset 27): the recurrent linear-attention family over packed
//! `[B, T, H*D]` query/key/value, with a per-KV-head state `[B, H_kv, d_k, d_v]`:
//! - linear:      S = S + k v^T
//! - gated:       S = exp(g) S + k v^T
//! - delta:       S = S + k (beta (v - S^T k))^T
//! - gated_delta: S = exp(g) S + k (beta (v - exp(g) S^T k))^T
//!
//! and `o_t = scale * q_t^T S_t`, KV heads shared by `q_num_heads / kv_num_heads` query
//! heads. `decay` is `[B, T, H_kv]` (per head) or `[B, T, H_kv*d_k]` (per key feature);
//! `beta` is `[B, T, H_kv]` or `[B, T, 1]`. Runs the recurrence token by token in f32 (as
//! the reference does for every dtype); `present_state` takes the dtype of `past_state`,
//! else of `query`. `chunk_size` is a tuning hint with no effect on the result.
use super::common::unpack_heads;
use crate::util::output;
use millrace_core::{bf16, f16, DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "LinearAttention";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    Linear,
    Gated,
    Delta,
    GatedDelta,
}

impl Rule {
    fn gating(self) -> bool {
        matches!(self, Rule::Gated | Rule::GatedDelta)
    }
    fn delta(self) -> bool {
        matches!(self, Rule::Delta | Rule::GatedDelta)
    }
    fn as_str(self) -> &'static str {
        match self {
            Rule::Linear => "linear",
            Rule::Gated => "gated",
            Rule::Delta => "delta",
            Rule::GatedDelta => "gated_delta",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LinearAttention {
    pub rule: Rule,
    pub q_num_heads: usize,
    pub kv_num_heads: usize,
    /// 0: `1/sqrt(d_k)`.
    pub scale: f32,
    pub chunk_size: i64,
}

impl LinearAttention {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let rule = match attrs.string_or("update_rule", "gated_delta")?.as_str() {
            "linear" => Rule::Linear,
            "gated" => Rule::Gated,
            "delta" => Rule::Delta,
            "gated_delta" => Rule::GatedDelta,
            r => {
                return Err(OpError::attribute(
                    NAME,
                    "update_rule",
                    format!("must be linear, gated, delta or gated_delta, got {r}"),
                ))
            }
        };
        let heads = |a: &str| -> Result<usize, OpError> {
            let v = attrs.req_int(a)?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| OpError::attribute(NAME, a, format!("must be positive, got {v}")))
        };
        let q_num_heads = heads("q_num_heads")?;
        let kv_num_heads = heads("kv_num_heads")?;
        if q_num_heads % kv_num_heads != 0 {
            return Err(OpError::attribute(
                NAME,
                "q_num_heads",
                format!("{q_num_heads} is not a multiple of kv_num_heads {kv_num_heads}"),
            ));
        }
        let scale = attrs.float_or("scale", 0.0)?;
        if scale.is_nan() {
            return Err(OpError::attribute(NAME, "scale", "is NaN"));
        }
        Ok(Arc::new(LinearAttention {
            rule,
            q_num_heads,
            kv_num_heads,
            scale,
            chunk_size: attrs.int_or("chunk_size", 64)?,
        }))
    }
}

fn bad(msg: impl Into<String>) -> OpError {
    OpError::invalid(NAME, msg)
}

fn f32s(t: &Tensor, what: &str) -> Result<Vec<f32>, OpError> {
    match t.dtype() {
        DType::F32 | DType::F16 | DType::BF16 => {
            t.to_f32_vec().map_err(|e| OpError::tensor(NAME, e))
        }
        d => Err(OpError::unsupported(NAME, format!("{what} of dtype {d}"))),
    }
}

fn out(dtype: DType, shape: Vec<usize>, v: Vec<f32>) -> Result<Tensor, OpError> {
    match dtype {
        DType::F32 => output(NAME, shape, v),
        DType::F16 => output(NAME, shape, v.into_iter().map(f16::from_f32).collect()),
        DType::BF16 => output(NAME, shape, v.into_iter().map(bf16::from_f32).collect()),
        d => Err(OpError::unsupported(NAME, format!("dtype {d}"))),
    }
}

/// A 3-D `[B, T, W]` side input, checked against B and T; returns its last dim.
fn side(t: &Tensor, b: usize, tl: usize, what: &str) -> Result<usize, OpError> {
    match *t.shape() {
        [tb, tt, w] if tb == b && tt == tl => Ok(w),
        _ => Err(bad(format!(
            "{what} must be [{b}, {tl}, _], got {:?}",
            t.shape()
        ))),
    }
}

impl LinearAttention {
    fn run(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let (q_t, k_t, v_t) = (inputs.req(0)?, inputs.req(1)?, inputs.req(2)?);
        let (hq, hk) = (self.q_num_heads, self.kv_num_heads);
        let group = hq / hk;
        let (b, tl, qw) = match *q_t.shape() {
            [b, t, w] => (b, t, w),
            _ => return Err(bad(format!("query must be 3-D, got {:?}", q_t.shape()))),
        };
        let kw = side(k_t, b, tl, "key")?;
        let vw = side(v_t, b, tl, "value")?;
        if qw % hq != 0 || vw % hk != 0 {
            return Err(bad("query/value widths do not divide by the head counts"));
        }
        let dk = qw / hq;
        let dv = vw / hk;
        if kw != hk * dk {
            return Err(bad(format!("key width {kw} is not {hk} * {dk}")));
        }
        let decay = inputs.opt(4);
        let beta = inputs.opt(5);
        if self.rule.gating() != decay.is_some() {
            return Err(bad(format!(
                "update_rule {} {} the decay input",
                self.rule.as_str(),
                if self.rule.gating() {
                    "needs"
                } else {
                    "forbids"
                }
            )));
        }
        if self.rule.delta() != beta.is_some() {
            return Err(bad(format!(
                "update_rule {} {} the beta input",
                self.rule.as_str(),
                if self.rule.delta() {
                    "needs"
                } else {
                    "forbids"
                }
            )));
        }
        // Decay as [B, Hkv, T, gw] with gw = 1 (per head) or dk (per key feature).
        let (g, gw) = match decay {
            Some(t) => {
                let w = side(t, b, tl, "decay")?;
                let gw = if w == hk {
                    1
                } else if w == hk * dk {
                    dk
                } else {
                    return Err(bad(format!(
                        "decay width {w} is neither {hk} nor {}",
                        hk * dk
                    )));
                };
                (unpack_heads(&f32s(t, "decay")?, b, tl, hk, gw), gw)
            }
            None => (Vec::new(), 1),
        };
        // Beta as [B, Hb, T] with Hb = Hkv or 1.
        let (beta, bh) = match beta {
            Some(t) => {
                let w = side(t, b, tl, "beta")?;
                if w != hk && w != 1 {
                    return Err(bad(format!("beta width {w} is neither {hk} nor 1")));
                }
                (unpack_heads(&f32s(t, "beta")?, b, tl, w, 1), w)
            }
            None => (Vec::new(), 1),
        };
        let q = unpack_heads(&f32s(q_t, "query")?, b, tl, hq, dk);
        let k = unpack_heads(&f32s(k_t, "key")?, b, tl, hk, dk);
        let v = unpack_heads(&f32s(v_t, "value")?, b, tl, hk, dv);
        let sd = dk * dv;
        let (state0, state_dtype) = match inputs.opt(3) {
            Some(p) => {
                if p.shape() != [b, hk, dk, dv] {
                    return Err(bad(format!(
                        "past_state must be [{b}, {hk}, {dk}, {dv}], got {:?}",
                        p.shape()
                    )));
                }
                (f32s(p, "past_state")?, p.dtype())
            }
            None => (vec![0.0; b * hk * sd], q_t.dtype()),
        };
        let scale = if self.scale == 0.0 {
            1.0 / (dk as f32).sqrt()
        } else {
            self.scale
        };
        let rule = self.rule;
        // One KV head at a time: its final state and the outputs [group, T, dv] of its
        // query heads.
        let per_head = |bk: usize| -> (Vec<f32>, Vec<f32>) {
            let (bi, hi) = (bk / hk, bk % hk);
            let mut s = state0[bk * sd..(bk + 1) * sd].to_vec();
            let mut o = vec![0f32; group * tl * dv];
            let mut vt = vec![0f32; dv];
            for t in 0..tl {
                let kt = &k[(bk * tl + t) * dk..(bk * tl + t + 1) * dk];
                vt.copy_from_slice(&v[(bk * tl + t) * dv..(bk * tl + t + 1) * dv]);
                if rule.gating() {
                    let gt = &g[(bk * tl + t) * gw..(bk * tl + t + 1) * gw];
                    for d in 0..dk {
                        let e = gt[if gw == 1 { 0 } else { d }].exp();
                        for x in &mut s[d * dv..(d + 1) * dv] {
                            *x *= e;
                        }
                    }
                }
                if rule.delta() {
                    let bt = beta[(bi * bh + if bh == 1 { 0 } else { hi }) * tl + t];
                    for (m, x) in vt.iter_mut().enumerate() {
                        let mut r = 0f32;
                        for d in 0..dk {
                            r += s[d * dv + m] * kt[d];
                        }
                        *x = bt * (*x - r);
                    }
                }
                for d in 0..dk {
                    for m in 0..dv {
                        s[d * dv + m] += kt[d] * vt[m];
                    }
                }
                for r in 0..group {
                    let qh = bi * hq + hi * group + r;
                    let qt = &q[(qh * tl + t) * dk..(qh * tl + t + 1) * dk];
                    let ot = &mut o[(r * tl + t) * dv..(r * tl + t + 1) * dv];
                    for (m, x) in ot.iter_mut().enumerate() {
                        let mut acc = 0f32;
                        for d in 0..dk {
                            acc += qt[d] * s[d * dv + m];
                        }
                        *x = scale * acc;
                    }
                }
            }
            (s, o)
        };
        let results: Vec<(Vec<f32>, Vec<f32>)> =
            (0..b * hk).into_par_iter().map(per_head).collect();
        let mut state = Vec::with_capacity(b * hk * sd);
        let mut o4 = Vec::with_capacity(b * hq * tl * dv);
        for (s, o) in results {
            state.extend_from_slice(&s);
            o4.extend_from_slice(&o);
        }
        // o4 is [B, Hq, T, dv] (query heads of one KV head are consecutive).
        let mut y = Vec::with_capacity(o4.len());
        for bi in 0..b {
            for t in 0..tl {
                for h in 0..hq {
                    let base = ((bi * hq + h) * tl + t) * dv;
                    y.extend_from_slice(&o4[base..base + dv]);
                }
            }
        }
        Ok(vec![
            out(q_t.dtype(), vec![b, tl, hq * dv], y)?,
            out(state_dtype, vec![b, hk, dk, dv], state)?,
        ])
    }
}

impl Op for LinearAttention {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let q = ctx.input(0)?;
        let v = ctx.input(2)?;
        let sym = |s: &str| Dim::Sym(format!("LinearAttention_{s}"));
        let (qs, vs) = (q.shape.as_deref(), v.shape.as_deref());
        let get = |s: Option<&[Dim]>, i: usize| s.and_then(|s| s.get(i)).and_then(Dim::known);
        let dv = get(vs, 2).map(|w| w / self.kv_num_heads);
        let dk = get(qs, 2).map(|w| w / self.q_num_heads);
        let or = |d: Option<usize>, s: &str| d.map(Dim::Known).unwrap_or_else(|| sym(s));
        let bdim = qs
            .and_then(|s| s.first().cloned())
            .unwrap_or_else(|| sym("B"));
        let tdim = qs
            .and_then(|s| s.get(1).cloned())
            .unwrap_or_else(|| sym("T"));
        let y = ValueType {
            dtype: q.dtype,
            shape: Some(vec![
                bdim.clone(),
                tdim,
                or(dv.map(|d| d * self.q_num_heads), "Hdv"),
            ]),
        };
        let state_dtype = match ctx.opt_input(3) {
            Some(p) => p.dtype,
            None => q.dtype,
        };
        let st = ValueType {
            dtype: state_dtype,
            shape: Some(vec![
                bdim,
                Dim::Known(self.kv_num_heads),
                or(dk, "dk"),
                or(dv, "dv"),
            ]),
        };
        Ok(vec![y, st])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let mut c = Cost::movement(inputs, outputs);
        let state = outputs.get(1).and_then(|t| t.numel()).unwrap_or(0) as u64;
        let t = inputs
            .first()
            .and_then(|t| t.concrete_shape())
            .and_then(|s| s.get(1).copied())
            .unwrap_or(1) as u64;
        let group = (self.q_num_heads / self.kv_num_heads) as u64;
        c.flops = state * t * (6 + 2 * group);
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        self.run(inputs)
    }

    fn describe(&self) -> String {
        format!(
            "update_rule={} q_num_heads={} kv_num_heads={} scale={}",
            self.rule.as_str(),
            self.q_num_heads,
            self.kv_num_heads,
            self.scale
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(rule: Rule) -> LinearAttention {
        LinearAttention {
            rule,
            q_num_heads: 1,
            kv_num_heads: 1,
            scale: 1.0,
            chunk_size: 64,
        }
    }

    fn t(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape, v).unwrap()
    }

    #[test]
    fn linear_rule_accumulates_outer_products() {
        // d_k = d_v = 1, T = 2: S = k1 v1 + k2 v2, o_t = q_t S_t.
        let q = t(vec![1, 2, 1], vec![1.0, 2.0]);
        let k = t(vec![1, 2, 1], vec![3.0, 4.0]);
        let v = t(vec![1, 2, 1], vec![5.0, 6.0]);
        let out = op(Rule::Linear)
            .eval(&Inputs::new(NAME, &[Some(&q), Some(&k), Some(&v)]))
            .unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[15.0, 78.0]);
        assert_eq!(out[1].as_slice::<f32>().unwrap(), &[39.0]);
        assert_eq!(out[1].shape(), &[1, 1, 1, 1]);
    }

    #[test]
    fn gated_delta_decays_then_corrects() {
        // S0 = 2, g = ln 0.5 -> decayed 1; beta 0.5, k = 1, v = 3: S = 1 + 0.5 (3 - 1) = 2.
        let q = t(vec![1, 1, 1], vec![1.0]);
        let k = t(vec![1, 1, 1], vec![1.0]);
        let v = t(vec![1, 1, 1], vec![3.0]);
        let s0 = t(vec![1, 1, 1, 1], vec![2.0]);
        let g = t(vec![1, 1, 1], vec![0.5f32.ln()]);
        let b = t(vec![1, 1, 1], vec![0.5]);
        let out = op(Rule::GatedDelta)
            .eval(&Inputs::new(
                NAME,
                &[Some(&q), Some(&k), Some(&v), Some(&s0), Some(&g), Some(&b)],
            ))
            .unwrap();
        assert!((out[1].as_slice::<f32>().unwrap()[0] - 2.0).abs() < 1e-6);
        // The rule needs decay and beta.
        assert!(op(Rule::GatedDelta)
            .eval(&Inputs::new(NAME, &[Some(&q), Some(&k), Some(&v)]))
            .is_err());
    }
}
