//! SoftmaxCrossEntropyLoss (ONNX opsets 12, 13): LogSoftmax of `scores` over axis 1, then
//! the negative log likelihood of `labels` (optional `weights`, `ignore_index`,
//! `reduction`); the optional second output is the log-probabilities. Computed in f64,
//! rounded once to the input's float dtype.
use super::common::{float_tensor, float_vals, infer_loss, nll, LossReduction};
use crate::util::ints_of;
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "SoftmaxCrossEntropyLoss";

#[derive(Clone, Debug, PartialEq)]
pub struct SoftmaxCrossEntropyLoss {
    pub reduction: LossReduction,
    pub ignore_index: Option<i64>,
    /// Whether the node declares the `log_prob` output.
    pub log_prob: bool,
}

impl SoftmaxCrossEntropyLoss {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(SoftmaxCrossEntropyLoss {
            reduction: LossReduction::parse(NAME, attrs)?,
            ignore_index: attrs.int("ignore_index")?,
            log_prob: attrs.node_outputs() >= 2,
        }))
    }
}

/// Log-softmax over axis 1 of a `[N, C, d...]` tensor.
fn log_softmax_axis1(x: &[f64], shape: &[usize]) -> Vec<f64> {
    let n = shape.first().copied().unwrap_or(1);
    let c = shape.get(1).copied().unwrap_or(1);
    let d: usize = shape.iter().skip(2).product();
    let mut out = vec![0.0f64; x.len()];
    if n * c * d != x.len() {
        return out;
    }
    for i in 0..n {
        for j in 0..d {
            let at = |k: usize| (i * c + k) * d + j;
            let mut m = f64::NEG_INFINITY;
            for k in 0..c {
                m = m.max(x[at(k)]);
            }
            let mut s = 0.0f64;
            for k in 0..c {
                s += (x[at(k)] - m).exp();
            }
            let ls = s.ln();
            for k in 0..c {
                out[at(k)] = x[at(k)] - m - ls;
            }
        }
    }
    out
}

impl Op for SoftmaxCrossEntropyLoss {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let loss = infer_loss(NAME, ctx, self.reduction)?;
        if self.log_prob {
            Ok(vec![loss, ctx.input(0)?.clone()])
        } else {
            Ok(vec![loss])
        }
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let mut c = Cost::elementwise(inputs, outputs, 0);
        c.flops = inputs.first().and_then(|t| t.numel()).unwrap_or(0) as u64 * 6;
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let t = inputs.req(1)?;
        let dtype = x.dtype();
        let xs = float_vals(NAME, x)?;
        if x.rank() < 2 {
            return Err(OpError::invalid(
                NAME,
                format!("scores must have rank >= 2, got shape {:?}", x.shape()),
            ));
        }
        if !matches!(t.dtype(), DType::I32 | DType::I64) {
            return Err(OpError::invalid(
                NAME,
                format!("labels must be int32 or int64, got {}", t.dtype()),
            ));
        }
        let ts = ints_of(NAME, t)?;
        let w = match inputs.opt(2) {
            Some(w) => {
                if w.dtype() != dtype {
                    return Err(OpError::invalid(
                        NAME,
                        format!("weights dtype {} differs from scores {dtype}", w.dtype()),
                    ));
                }
                if w.rank() != 1 {
                    return Err(OpError::invalid(NAME, "weights must be 1-D"));
                }
                Some(float_vals(NAME, w)?)
            }
            None => None,
        };
        let lp = log_softmax_axis1(&xs, x.shape());
        let (shape, v) = nll(
            NAME,
            &lp,
            x.shape(),
            &ts,
            t.shape(),
            w.as_deref(),
            self.ignore_index,
            self.reduction,
        )?;
        let mut outs = vec![float_tensor(NAME, dtype, shape, v)?];
        if self.log_prob {
            outs.push(float_tensor(NAME, dtype, x.shape().to_vec(), lp)?);
        }
        Ok(outs)
    }

    fn describe(&self) -> String {
        match self.ignore_index {
            Some(i) => format!("reduction={} ignore_index={i}", self.reduction.name()),
            None => format!("reduction={}", self.reduction.name()),
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
    fn mean_loss_and_log_prob() {
        // Two samples, two classes: scores [0, 0] and [0, ln 3].
        let x = Tensor::from_vec(vec![2, 2], vec![0.0f64, 0.0, 0.0, 3f64.ln()]).unwrap();
        let t = Tensor::from_vec(vec![2], vec![0i64, 1]).unwrap();
        let op = SoftmaxCrossEntropyLoss {
            reduction: LossReduction::Mean,
            ignore_index: None,
            log_prob: true,
        };
        let y = op.eval(&Inputs::new(NAME, &[Some(&x), Some(&t)])).unwrap();
        assert_eq!(y.len(), 2);
        let want = (2f64.ln() + (4.0f64 / 3.0).ln()) / 2.0;
        assert!((y[0].as_slice::<f64>().unwrap()[0] - want).abs() < 1e-12);
        let lp = y[1].as_slice::<f64>().unwrap();
        assert!((lp[0] + 2f64.ln()).abs() < 1e-12);
        assert!((lp[2] - (0.25f64).ln()).abs() < 1e-12);
        assert!((lp[3] - (0.75f64).ln()).abs() < 1e-12);
    }

    #[test]
    fn ignored_labels_leave_the_mean() {
        let x = Tensor::from_vec(vec![2, 2], vec![0.0f32, 0.0, 5.0, 1.0]).unwrap();
        let t = Tensor::from_vec(vec![2], vec![1i32, 7]).unwrap();
        let op = SoftmaxCrossEntropyLoss {
            reduction: LossReduction::Mean,
            ignore_index: Some(7),
            log_prob: false,
        };
        let y = op.eval(&Inputs::new(NAME, &[Some(&x), Some(&t)])).unwrap();
        assert_eq!(y.len(), 1);
        let v = y[0].as_slice::<f32>().unwrap()[0];
        assert!((v - 2f32.ln()).abs() < 1e-6);
    }
}
