//! RMSNormalization (ONNX opset 23): `X / sqrt(mean(X^2 over axes axis..) + epsilon)`,
//! cast back to X's dtype, times `scale` (broadcast). The statistics are computed in f64
//! (at least as precise as `stash_type` float or double).
use super::common::{float_tensor, float_vals, round_to};
use crate::util::{broadcast_all, broadcast_index, broadcast_types, normalize_axis};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "RMSNormalization";

#[derive(Clone, Debug, PartialEq)]
pub struct RMSNormalization {
    pub axis: i64,
    pub epsilon: f32,
}

impl RMSNormalization {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let axis = attrs.int_or("axis", -1)?;
        let epsilon = attrs.float_or("epsilon", 1e-5)?;
        // 1 = float, 11 = double: computing in f64 matches both within tolerance; a
        // half-precision stash would round intermediate values and is not supported.
        let stash = attrs.int_or("stash_type", 1)?;
        if stash != 1 && stash != 11 {
            return Err(OpError::unsupported(NAME, format!("stash_type {stash}")));
        }
        Ok(Arc::new(RMSNormalization { axis, epsilon }))
    }
}

impl Op for RMSNormalization {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let s = ctx.input(1)?;
        if let Some(r) = x.rank() {
            normalize_axis(NAME, self.axis, r)?;
        }
        let mut t = broadcast_types(NAME, &[x, s])?;
        t.dtype = s.dtype.or(x.dtype);
        Ok(vec![t])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 5)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let scale = inputs.req(1)?;
        let dtype = x.dtype();
        if scale.dtype() != dtype {
            return Err(OpError::unsupported(
                NAME,
                format!("scale dtype {} differs from X {dtype}", scale.dtype()),
            ));
        }
        let xs = float_vals(NAME, x)?;
        let ss = float_vals(NAME, scale)?;
        let shape = x.shape();
        let a = normalize_axis(NAME, self.axis, shape.len())?;
        let inner: usize = shape[a..].iter().product();
        let eps = self.epsilon as f64;
        // Normalized X, rounded to X's dtype as the function's final Cast does.
        let mut norm = vec![0.0f64; xs.len()];
        if inner > 0 {
            for (o, xi) in norm.chunks_mut(inner).zip(xs.chunks(inner)) {
                let ms = xi.iter().map(|v| v * v).sum::<f64>() / inner as f64;
                let rms = (ms + eps).sqrt();
                for (o, &v) in o.iter_mut().zip(xi) {
                    *o = round_to(dtype, v / rms);
                }
            }
        }
        let out_shape = broadcast_all(NAME, &[shape, scale.shape()])?;
        let xi = broadcast_index(&out_shape, shape);
        let si = broadcast_index(&out_shape, scale.shape());
        let y: Vec<f64> = xi.iter().zip(&si).map(|(&i, &j)| norm[i] * ss[j]).collect();
        Ok(vec![float_tensor(NAME, dtype, out_shape, y)?])
    }

    fn describe(&self) -> String {
        format!("axis={} epsilon={}", self.axis, self.epsilon)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_rows() {
        // Row [3, 4]: mean square 12.5; row [0, 0] stays 0.
        let x = Tensor::from_vec(vec![2, 2], vec![3.0f64, 4.0, 0.0, 0.0]).unwrap();
        let s = Tensor::from_vec(vec![2], vec![1.0f64, 2.0]).unwrap();
        let op = RMSNormalization {
            axis: -1,
            epsilon: 0.0,
        };
        let y = op.eval(&Inputs::new(NAME, &[Some(&x), Some(&s)])).unwrap();
        let r = 12.5f64.sqrt();
        let v = y[0].as_slice::<f64>().unwrap();
        assert!((v[0] - 3.0 / r).abs() < 1e-12);
        assert!((v[1] - 8.0 / r).abs() < 1e-12);
        assert!(v[2].is_nan()); // 0 / sqrt(0 + 0)
    }

    #[test]
    fn whole_tensor_axis0() {
        let x = Tensor::from_vec(vec![2, 2], vec![1.0f32, 1.0, 1.0, 1.0]).unwrap();
        let s = Tensor::from_vec(vec![2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let op = RMSNormalization {
            axis: 0,
            epsilon: 0.0,
        };
        let y = op.eval(&Inputs::new(NAME, &[Some(&x), Some(&s)])).unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[1.0, 2.0, 3.0, 4.0]);
        let bad = RMSNormalization {
            axis: 2,
            epsilon: 0.0,
        };
        assert!(bad.eval(&Inputs::new(NAME, &[Some(&x), Some(&s)])).is_err());
    }
}
