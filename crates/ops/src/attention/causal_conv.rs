//! CausalConvWithState (ONNX opset 27): depthwise causal 1-D convolution over
//! `input` `[B, C, L]` with `weight` `[C, 1, k]`, left-padded by `past_state`
//! `[B, C, k-1]` (zeros when absent), plus an optional per-channel `bias` and an optional
//! fused SiLU (`activation` = "silu" or "swish"). `present_state` is the last k-1 positions
//! of the padded sequence. Computes in f32; the convolution result is rounded to the input
//! dtype before the activation, as the reference does.
use crate::util::output;
use millrace_core::{bf16, f16, DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "CausalConvWithState";

#[derive(Clone, Debug, PartialEq)]
pub struct CausalConvWithState {
    pub silu: bool,
}

impl CausalConvWithState {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let silu = match attrs.string_or("activation", "none")?.as_str() {
            "none" => false,
            "silu" | "swish" => true,
            a => {
                return Err(OpError::attribute(
                    NAME,
                    "activation",
                    format!("must be none, silu or swish, got {a}"),
                ))
            }
        };
        Ok(Arc::new(CausalConvWithState { silu }))
    }
}

fn bad(msg: impl Into<String>) -> OpError {
    OpError::invalid(NAME, msg)
}

fn rounder(dtype: DType) -> Result<fn(f32) -> f32, OpError> {
    Ok(match dtype {
        DType::F32 => |v| v,
        DType::F16 => |v| f16::from_f32(v).to_f32(),
        DType::BF16 => |v| bf16::from_f32(v).to_f32(),
        d => return Err(OpError::unsupported(NAME, format!("dtype {d}"))),
    })
}

fn out(dtype: DType, shape: Vec<usize>, v: Vec<f32>) -> Result<Tensor, OpError> {
    match dtype {
        DType::F32 => output(NAME, shape, v),
        DType::F16 => output(NAME, shape, v.into_iter().map(f16::from_f32).collect()),
        DType::BF16 => output(NAME, shape, v.into_iter().map(bf16::from_f32).collect()),
        d => Err(OpError::unsupported(NAME, format!("dtype {d}"))),
    }
}

fn f32s(t: &Tensor) -> Result<Vec<f32>, OpError> {
    t.to_f32_vec().map_err(|e| OpError::tensor(NAME, e))
}

impl CausalConvWithState {
    fn run(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x_t = inputs.req(0)?;
        let w_t = inputs.req(1)?;
        let dtype = x_t.dtype();
        let round = rounder(dtype)?;
        let (b, c, l) = match *x_t.shape() {
            [b, c, l] => (b, c, l),
            _ => return Err(bad(format!("input must be 3-D, got {:?}", x_t.shape()))),
        };
        let k = match *w_t.shape() {
            [wc, 1, k] if wc == c && k >= 1 => k,
            _ => {
                return Err(bad(format!(
                    "weight must be [{c}, 1, k>=1], got {:?}",
                    w_t.shape()
                )))
            }
        };
        for (i, what) in [(1, "weight"), (2, "bias"), (3, "past_state")] {
            if let Some(t) = inputs.opt(i) {
                if t.dtype() != dtype {
                    return Err(bad(format!("{what} is {}, input is {dtype}", t.dtype())));
                }
            }
        }
        let bias = match inputs.opt(2) {
            Some(t) if t.shape() == [c] => Some(f32s(t)?),
            Some(t) => return Err(bad(format!("bias must be [{c}], got {:?}", t.shape()))),
            None => None,
        };
        let kp = k - 1;
        let past = match inputs.opt(3) {
            Some(t) if t.shape() == [b, c, kp] => f32s(t)?,
            Some(t) => {
                return Err(bad(format!(
                    "past_state must be [{b}, {c}, {kp}], got {:?}",
                    t.shape()
                )))
            }
            None => vec![0.0; b * c * kp],
        };
        let x = f32s(x_t)?;
        let w = f32s(w_t)?;
        let n = l + kp;
        let mut y = Vec::with_capacity(b * c * l);
        let mut present = Vec::with_capacity(b * c * kp);
        let mut padded = vec![0f32; n];
        for bc in 0..b * c {
            let ch = bc % c;
            padded[..kp].copy_from_slice(&past[bc * kp..(bc + 1) * kp]);
            padded[kp..].copy_from_slice(&x[bc * l..(bc + 1) * l]);
            let wk = &w[ch * k..(ch + 1) * k];
            for t in 0..l {
                let mut acc: f32 = padded[t..t + k].iter().zip(wk).map(|(a, b)| a * b).sum();
                if let Some(bias) = &bias {
                    acc += bias[ch];
                }
                let mut v = round(acc);
                if self.silu {
                    v = round(v * (1.0 / (1.0 + (-v).exp())));
                }
                y.push(v);
            }
            present.extend_from_slice(&padded[n - kp..]);
        }
        Ok(vec![
            out(dtype, vec![b, c, l], y)?,
            out(dtype, vec![b, c, kp], present)?,
        ])
    }
}

impl Op for CausalConvWithState {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let w = ctx.input(1)?;
        let state = match (&x.shape, &w.shape) {
            (Some(xs), Some(ws)) if xs.len() == 3 && ws.len() == 3 => {
                let kp = match ws[2].known() {
                    Some(k) if k >= 1 => Dim::Known(k - 1),
                    _ => Dim::Sym("CausalConvWithState_k-1".into()),
                };
                Some(vec![xs[0].clone(), xs[1].clone(), kp])
            }
            _ => None,
        };
        Ok(vec![
            x.clone(),
            ValueType {
                dtype: x.dtype,
                shape: state,
            },
        ])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let k = inputs
            .get(1)
            .and_then(|t| t.concrete_shape())
            .and_then(|s| s.last().copied())
            .unwrap_or(1) as u64;
        let mut c = Cost::movement(inputs, outputs);
        c.flops = outputs.first().and_then(|t| t.numel()).unwrap_or(0) as u64 * 2 * k;
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        self.run(inputs)
    }

    fn describe(&self) -> String {
        if self.silu {
            "activation=silu".into()
        } else {
            String::new()
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convolves_causally_and_carries_state() {
        // One channel, k = 2, weight [1, 10]: y[t] = x[t-1] + 10 x[t], past = [5].
        let x = Tensor::from_vec(vec![1, 1, 3], vec![1.0f32, 2.0, 3.0]).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 2], vec![1.0f32, 10.0]).unwrap();
        let b = Tensor::from_vec(vec![1], vec![0.5f32]).unwrap();
        let p = Tensor::from_vec(vec![1, 1, 1], vec![5.0f32]).unwrap();
        let op = CausalConvWithState { silu: false };
        let out = op
            .eval(&Inputs::new(
                NAME,
                &[Some(&x), Some(&w), Some(&b), Some(&p)],
            ))
            .unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[15.5, 21.5, 32.5]);
        assert_eq!(out[1].as_slice::<f32>().unwrap(), &[3.0]);
        let out = op.eval(&Inputs::new(NAME, &[Some(&x), Some(&w)])).unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[10.0, 21.0, 32.0]);
    }

    #[test]
    fn silu_is_applied() {
        let x = Tensor::from_vec(vec![1, 1, 1], vec![0.0f32]).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 1], vec![1.0f32]).unwrap();
        let op = CausalConvWithState { silu: true };
        let out = op.eval(&Inputs::new(NAME, &[Some(&x), Some(&w)])).unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[0.0]);
        assert_eq!(out[1].shape(), &[1, 1, 0]);
    }
}
