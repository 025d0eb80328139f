//! RotaryEmbedding (ONNX opset 23): rotates the first `rotary_embedding_dim` features of
//! each head (all of them by default) by position-dependent angles, pairing either the two
//! halves of the rotated block or (`interleaved`) adjacent features:
//! `real = cos*x1 - sin*x2`, `imag = sin*x1 + cos*x2`.
//!
//! X is `[B, H, S, D]`, or `[B, S, H*D]` with the `num_heads` attribute. With
//! `position_ids` (`[B, S]`) the caches are `[max_pos, rd/2]` tables indexed by position;
//! without, they are `[B, S, rd/2]`. Computes in f32; for f16/bf16 every product and sum
//! is rounded to the input type, as the reference does.
use crate::util::{ints_of, output};
use millrace_core::{bf16, f16, DType, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "RotaryEmbedding";

#[derive(Clone, Debug, PartialEq)]
pub struct RotaryEmbedding {
    pub interleaved: bool,
    /// 0: the whole head.
    pub rotary_dim: usize,
    /// 0: not given.
    pub num_heads: usize,
}

impl RotaryEmbedding {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let interleaved = match attrs.int_or("interleaved", 0)? {
            0 => false,
            1 => true,
            v => {
                return Err(OpError::attribute(
                    NAME,
                    "interleaved",
                    format!("must be 0 or 1, got {v}"),
                ))
            }
        };
        let nn = |a: &str| -> Result<usize, OpError> {
            let v = attrs.int_or(a, 0)?;
            usize::try_from(v)
                .map_err(|_| OpError::attribute(NAME, a, format!("negative value {v}")))
        };
        Ok(Arc::new(RotaryEmbedding {
            interleaved,
            rotary_dim: nn("rotary_embedding_dim")?,
            num_heads: nn("num_heads")?,
        }))
    }
}

fn bad(msg: impl Into<String>) -> OpError {
    OpError::invalid(NAME, msg)
}

fn to_f32(op: &str, t: &Tensor) -> Result<Vec<f32>, OpError> {
    match t.dtype() {
        DType::F32 | DType::F16 | DType::BF16 => t.to_f32_vec().map_err(|e| OpError::tensor(op, e)),
        d => Err(OpError::unsupported(op, format!("dtype {d}"))),
    }
}

impl RotaryEmbedding {
    fn run(&self, inputs: &Inputs<'_>) -> Result<Tensor, OpError> {
        let x_t = inputs.req(0)?;
        let (cos_t, sin_t) = (inputs.req(1)?, inputs.req(2)?);
        let dtype = x_t.dtype();
        if cos_t.dtype() != dtype || sin_t.dtype() != dtype {
            return Err(bad("cos_cache and sin_cache must have the dtype of X"));
        }
        let xs = x_t.shape();
        // (B, S, H, D) and whether the layout is [B, H, S, D].
        let (b, s, h, d, bhsd) = match *xs {
            [b, h, s, d] => {
                if self.num_heads != 0 && self.num_heads != h {
                    return Err(OpError::unsupported(
                        NAME,
                        format!("num_heads {} with a 4-D input of {h} heads", self.num_heads),
                    ));
                }
                (b, s, h, d, true)
            }
            [b, s, hidden] => {
                let h = self.num_heads;
                if h == 0 || hidden % h != 0 {
                    return Err(bad(format!(
                        "a 3-D input needs num_heads dividing the hidden size {hidden}"
                    )));
                }
                (b, s, h, hidden / h, false)
            }
            _ => return Err(bad(format!("X must be 3-D or 4-D, got {xs:?}"))),
        };
        let rd = if self.rotary_dim == 0 {
            d
        } else {
            self.rotary_dim
        };
        if rd > d || rd % 2 != 0 {
            return Err(bad(format!(
                "rotary_embedding_dim {rd} must be even and at most the head size {d}"
            )));
        }
        let half = rd / 2;
        let cos = to_f32(NAME, cos_t)?;
        let sin = to_f32(NAME, sin_t)?;
        if cos_t.shape() != sin_t.shape() {
            return Err(bad("cos_cache and sin_cache shapes differ"));
        }
        let cs = cos_t.shape();
        // For each (b, s): the row of the caches to use.
        let rows: Vec<usize> = match inputs.opt(3) {
            Some(p) => {
                if p.shape() != [b, s] {
                    return Err(bad(format!(
                        "position_ids must be [{b}, {s}], got {:?}",
                        p.shape()
                    )));
                }
                let [max_pos, w] = *cs else {
                    return Err(bad(format!(
                        "with position_ids the caches must be 2-D, got {cs:?}"
                    )));
                };
                if w != half {
                    return Err(bad(format!("cache width {w} is not rotary_dim/2 {half}")));
                }
                ints_of(NAME, p)?
                    .into_iter()
                    .map(|i| {
                        usize::try_from(i)
                            .ok()
                            .filter(|&i| i < max_pos)
                            .ok_or_else(|| bad(format!("position id {i} outside [0, {max_pos})")))
                    })
                    .collect::<Result<_, _>>()?
            }
            None => {
                if cs != [b, s, half] {
                    return Err(bad(format!(
                        "without position_ids the caches must be [{b}, {s}, {half}], got {cs:?}"
                    )));
                }
                (0..b * s).collect()
            }
        };
        let round: fn(f32) -> f32 = match dtype {
            DType::F16 => |v| f16::from_f32(v).to_f32(),
            DType::BF16 => |v| bf16::from_f32(v).to_f32(),
            _ => |v| v,
        };
        let x = to_f32(NAME, x_t)?;
        let mut y = x.clone();
        for bi in 0..b {
            for si in 0..s {
                let r = rows[bi * s + si];
                let (c, sn) = (
                    &cos[r * half..(r + 1) * half],
                    &sin[r * half..(r + 1) * half],
                );
                for hi in 0..h {
                    let base = if bhsd {
                        ((bi * h + hi) * s + si) * d
                    } else {
                        ((bi * s + si) * h + hi) * d
                    };
                    let (xr, yr) = (&x[base..base + d], &mut y[base..base + d]);
                    for k in 0..half {
                        let (i1, i2) = if self.interleaved {
                            (2 * k, 2 * k + 1)
                        } else {
                            (k, k + half)
                        };
                        let (x1, x2) = (xr[i1], xr[i2]);
                        yr[i1] = round(round(c[k] * x1) - round(sn[k] * x2));
                        yr[i2] = round(round(sn[k] * x1) + round(c[k] * x2));
                    }
                }
            }
        }
        let shape = xs.to_vec();
        match dtype {
            DType::F32 => output(NAME, shape, y),
            DType::F16 => output(NAME, shape, y.into_iter().map(f16::from_f32).collect()),
            DType::BF16 => output(NAME, shape, y.into_iter().map(bf16::from_f32).collect()),
            d => Err(OpError::unsupported(NAME, format!("dtype {d}"))),
        }
    }
}

impl Op for RotaryEmbedding {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 3)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        Ok(vec![self.run(inputs)?])
    }

    fn describe(&self) -> String {
        format!(
            "interleaved={} rotary_embedding_dim={} num_heads={}",
            self.interleaved as u8, self.rotary_dim, self.num_heads
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape, v).unwrap()
    }

    #[test]
    fn quarter_turn_rotates_pairs() {
        // One head of size 4, cos = 0, sin = 1: (x1, x2) -> (-x2, x1).
        let x = t(vec![1, 1, 1, 4], vec![1.0, 2.0, 3.0, 4.0]);
        let cos = t(vec![1, 1, 2], vec![0.0, 0.0]);
        let sin = t(vec![1, 1, 2], vec![1.0, 1.0]);
        let op = RotaryEmbedding {
            interleaved: false,
            rotary_dim: 0,
            num_heads: 0,
        };
        let y = op
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&cos), Some(&sin)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[-3.0, -4.0, 1.0, 2.0]);
        let op = RotaryEmbedding {
            interleaved: true,
            ..op
        };
        let y = op
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&cos), Some(&sin)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[-2.0, 1.0, -4.0, 3.0]);
    }

    #[test]
    fn partial_rotation_with_position_ids() {
        // 3-D input, 1 head of size 4, rotate only the first 2 features; position 1.
        let x = t(vec![1, 1, 4], vec![1.0, 2.0, 3.0, 4.0]);
        let cos = t(vec![2, 1], vec![1.0, 0.0]);
        let sin = t(vec![2, 1], vec![0.0, 1.0]);
        let pos = Tensor::from_vec(vec![1, 1], vec![1i64]).unwrap();
        let op = RotaryEmbedding {
            interleaved: false,
            rotary_dim: 2,
            num_heads: 1,
        };
        let y = op
            .eval(&Inputs::new(
                NAME,
                &[Some(&x), Some(&cos), Some(&sin), Some(&pos)],
            ))
            .unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[-2.0, 1.0, 3.0, 4.0]);
        let bad_pos = Tensor::from_vec(vec![1, 1], vec![2i64]).unwrap();
        assert!(op
            .eval(&Inputs::new(
                NAME,
                &[Some(&x), Some(&cos), Some(&sin), Some(&bad_pos)],
            ))
            .is_err());
    }
}
