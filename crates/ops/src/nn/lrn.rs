//! LRN (ONNX opsets 1, 13): local response normalization across channels,
//! `y = x / (bias + alpha / size * sum of squares over nearby channels) ^ beta`.
use super::common::{float_out, prod, Float};
use crate::float_run;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Lrn {
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
    pub size: usize,
}

const NAME: &str = "LRN";

impl Lrn {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let size = attrs.req_int("size")?;
        if size < 1 {
            return Err(OpError::attribute(NAME, "size", "must be positive"));
        }
        Ok(Arc::new(Lrn {
            alpha: attrs.float_or("alpha", 1e-4)?,
            beta: attrs.float_or("beta", 0.75)?,
            bias: attrs.float_or("bias", 1.0)?,
            size: size as usize,
        }))
    }
}

fn eval_as<F: Float>(op: &Lrn, x: &Tensor) -> Result<Vec<Tensor>, OpError> {
    let shape = x.shape().to_vec();
    if shape.len() < 3 {
        return Err(OpError::invalid(NAME, "input must be N x C x D1..."));
    }
    let (n, c, plane) = (shape[0], shape[1], prod(&shape[2..]));
    let xs = F::cow(NAME, x)?;
    let mut y = vec![F::ZERO; xs.len()];
    let before = (op.size - 1) / 2;
    let after = op.size - 1 - before;
    let k = F::from_f32(op.alpha) / F::from_f64(op.size as f64);
    let (bias, beta) = (F::from_f32(op.bias), F::from_f32(op.beta));
    for ni in 0..n {
        for ci in 0..c {
            let lo = ci.saturating_sub(before);
            let hi = (ci + after).min(c.saturating_sub(1));
            for p in 0..plane {
                let mut sq = F::ZERO;
                for cj in lo..=hi {
                    let v = xs[(ni * c + cj) * plane + p];
                    sq += v * v;
                }
                let i = (ni * c + ci) * plane + p;
                y[i] = xs[i] / (bias + k * sq).powf(beta);
            }
        }
    }
    Ok(vec![float_out(NAME, x.dtype(), shape, y)?])
}

impl Op for Lrn {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 2 * self.size as u64 + 4)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        float_run!(NAME, x.dtype(), eval_as(self, x))
    }

    fn describe(&self) -> String {
        format!(
            "size={} alpha={} beta={} bias={}",
            self.size, self.alpha, self.beta, self.bias
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_neighbouring_channels() {
        let op = Lrn {
            alpha: 3.0,
            beta: 1.0,
            bias: 1.0,
            size: 3,
        };
        // channels 1, 2, 3 at one position: squares 1, 4, 9; k = alpha/size = 1.
        let x = Tensor::from_vec(vec![1, 3, 1], vec![1.0f32, 2.0, 3.0]).unwrap();
        let y = op.eval(&Inputs::new(NAME, &[Some(&x)])).unwrap();
        let want = [1.0 / 6.0, 2.0 / 15.0, 3.0 / 14.0];
        for (g, w) in y[0].as_slice::<f32>().unwrap().iter().zip(want) {
            assert!((g - w).abs() < 1e-6);
        }
        let bad = Tensor::from_vec(vec![3], vec![1.0f32; 3]).unwrap();
        assert!(op.eval(&Inputs::new(NAME, &[Some(&bad)])).is_err());
    }
}
