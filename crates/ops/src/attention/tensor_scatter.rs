//! TensorScatter (ONNX opset 24): writes `update` into a copy of `past_cache` along the
//! sequence `axis` (default -2, never the batch axis), starting for each batch entry at
//! `write_indices[b]` (0 when absent). `mode="linear"` needs every write in range;
//! `mode="circular"` wraps the sequence index modulo the cache length. Any dtype.
use crate::util::{ints_of, normalize_axis};
use millrace_core::{with_data, DType, Elem, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "TensorScatter";

#[derive(Clone, Debug, PartialEq)]
pub struct TensorScatter {
    pub circular: bool,
    pub axis: i64,
}

impl TensorScatter {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let circular = match attrs.string_or("mode", "linear")?.as_str() {
            "linear" => false,
            "circular" => true,
            m => {
                return Err(OpError::attribute(
                    NAME,
                    "mode",
                    format!("must be linear or circular, got {m}"),
                ))
            }
        };
        Ok(Arc::new(TensorScatter {
            circular,
            axis: attrs.int_or("axis", -2)?,
        }))
    }
}

fn bad(msg: impl Into<String>) -> OpError {
    OpError::invalid(NAME, msg)
}

/// Copies `upd` rows into `out`: `outer` prefixes, each with `seq` rows of `inner`
/// elements going to cache rows `dest(prefix, s)` of a cache with `max` rows per prefix.
fn scatter<T: Elem>(
    past: &[T],
    upd: &Tensor,
    outer: usize,
    seq: usize,
    max: usize,
    inner: usize,
    dest: &dyn Fn(usize, usize) -> usize,
) -> Result<Vec<T>, OpError> {
    let u = upd.as_slice::<T>().map_err(|e| OpError::tensor(NAME, e))?;
    let mut out = past.to_vec();
    for o in 0..outer {
        for s in 0..seq {
            let d = dest(o, s);
            let src = (o * seq + s) * inner;
            let dst = (o * max + d) * inner;
            out[dst..dst + inner].clone_from_slice(&u[src..src + inner]);
        }
    }
    Ok(out)
}

impl Op for TensorScatter {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let past = inputs.req(0)?;
        let upd = inputs.req(1)?;
        if past.dtype() != upd.dtype() {
            return Err(bad("past_cache and update dtypes differ"));
        }
        let (ps, us) = (past.shape(), upd.shape());
        let r = ps.len();
        if r < 2 || us.len() != r {
            return Err(bad(format!(
                "past_cache {ps:?} and update {us:?} must share a rank of at least 2"
            )));
        }
        let axis = normalize_axis(NAME, self.axis, r)?;
        if axis == 0 {
            return Err(bad("axis cannot be the batch axis"));
        }
        for i in 0..r {
            if (i != axis && ps[i] != us[i]) || (i == axis && us[i] > ps[i]) {
                return Err(bad(format!(
                    "update {us:?} does not fit past_cache {ps:?} along axis {axis}"
                )));
            }
        }
        let batch = ps[0];
        let (max, seq) = (ps[axis], us[axis]);
        let outer: usize = ps[..axis].iter().product();
        let inner: usize = ps[axis + 1..].iter().product();
        let per_batch = outer / batch.max(1);
        let starts: Vec<i64> = match inputs.opt(2) {
            Some(w) => {
                if w.dtype() != DType::I64 || w.shape() != [batch] {
                    return Err(bad(format!(
                        "write_indices must be i64 of shape [{batch}], got {} {:?}",
                        w.dtype(),
                        w.shape()
                    )));
                }
                ints_of(NAME, w)?
            }
            None => vec![0; batch],
        };
        if self.circular {
            // The spec's pseudocode takes every index of the cache position (batch and
            // middle axes included) modulo the sequence length; only the sequence index
            // is meant to wrap. Refuse the shapes where the two readings differ.
            if seq > 0 && ps[..axis].iter().any(|&n| n > max) {
                return Err(OpError::unsupported(
                    NAME,
                    "circular mode with a leading axis longer than the sequence axis",
                ));
            }
        } else {
            for &w in &starts {
                if w < 0 || seq > 0 && (w as u64).saturating_add(seq as u64) > max as u64 {
                    return Err(bad(format!(
                        "write index {w} + {seq} updates exceeds the cache length {max}"
                    )));
                }
            }
        }
        let circular = self.circular;
        let dest = |o: usize, s: usize| -> usize {
            let w = starts[o / per_batch.max(1)];
            if circular {
                (w + s as i64).rem_euclid(max.max(1) as i64) as usize
            } else {
                w as usize + s
            }
        };
        let data = with_data!(past.data(), v => Elem::wrap(scatter(v, upd, outer, seq, max, inner, &dest)?));
        let out = Tensor::new(ps.to_vec(), data).map_err(|e| OpError::tensor(NAME, e))?;
        Ok(vec![out])
    }

    fn describe(&self) -> String {
        format!(
            "mode={} axis={}",
            if self.circular { "circular" } else { "linear" },
            self.axis
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &TensorScatter, past: &Tensor, upd: &Tensor, w: &Tensor) -> Result<Tensor, OpError> {
        op.eval(&Inputs::new(NAME, &[Some(past), Some(upd), Some(w)]))
            .map(|mut v| v.remove(0))
    }

    #[test]
    fn linear_and_circular_writes() {
        // past [2, 3, 1] (axis -2 = 1), update [2, 2, 1].
        let past = Tensor::from_vec(vec![2, 3, 1], vec![0i32; 6]).unwrap();
        let upd = Tensor::from_vec(vec![2, 2, 1], vec![1, 2, 3, 4]).unwrap();
        let w = Tensor::from_vec(vec![2], vec![1i64, 0]).unwrap();
        let lin = TensorScatter {
            circular: false,
            axis: -2,
        };
        let y = run(&lin, &past, &upd, &w).unwrap();
        assert_eq!(y.as_slice::<i32>().unwrap(), &[0, 1, 2, 3, 4, 0]);
        let w = Tensor::from_vec(vec![2], vec![2i64, 0]).unwrap();
        assert!(run(&lin, &past, &upd, &w).is_err());
        let circ = TensorScatter {
            circular: true,
            axis: -2,
        };
        let y = run(&circ, &past, &upd, &w).unwrap();
        assert_eq!(y.as_slice::<i32>().unwrap(), &[2, 0, 1, 3, 4, 0]);
    }
}
