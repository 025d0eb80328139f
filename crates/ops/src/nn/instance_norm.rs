//! InstanceNormalization (ONNX opsets 1, 6, 22): per (n, c) plane,
//! `scale[c] * (x - mean) / sqrt(var + epsilon) + B[c]`.
use super::common::{float_out, mean_var, param, prod, Float};
use crate::float_run;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct InstanceNormalization {
    pub epsilon: f32,
}

const NAME: &str = "InstanceNormalization";

impl InstanceNormalization {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let _ = attrs.ints("consumed_inputs")?;
        Ok(Arc::new(InstanceNormalization {
            epsilon: attrs.float_or("epsilon", 1e-5)?,
        }))
    }
}

fn eval_as<F: Float>(
    op: &InstanceNormalization,
    inputs: &Inputs<'_>,
) -> Result<Vec<Tensor>, OpError> {
    let x = inputs.req(0)?;
    let shape = x.shape().to_vec();
    if shape.len() < 3 {
        return Err(OpError::invalid(NAME, "input must be N x C x D1..."));
    }
    let c = shape[1];
    let (st, bt) = (inputs.req(1)?, inputs.req(2)?);
    if st.shape() != [c] || bt.shape() != [c] {
        return Err(OpError::invalid(
            NAME,
            format!("scale and B must have shape [{c}]"),
        ));
    }
    let scale = param::<F>(NAME, st, "scale")?;
    let bias = param::<F>(NAME, bt, "B")?;
    let plane = prod(&shape[2..]);
    let xs = F::cow(NAME, x)?;
    let mut y = vec![F::ZERO; xs.len()];
    let eps = F::from_f32(op.epsilon);
    if plane > 0 {
        y.par_chunks_mut(plane)
            .zip(xs.par_chunks(plane))
            .enumerate()
            .for_each(|(i, (yo, xi))| {
                let ch = i % c;
                let (mean, var) = mean_var(xi);
                let a = scale[ch] / (var + eps).sqrt();
                for (o, &v) in yo.iter_mut().zip(xi) {
                    *o = (v - mean) * a + bias[ch];
                }
            });
    }
    Ok(vec![float_out(NAME, x.dtype(), shape, y)?])
}

impl Op for InstanceNormalization {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 6)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        float_run!(NAME, x.dtype(), eval_as(self, inputs))
    }

    fn describe(&self) -> String {
        format!("epsilon={}", self.epsilon)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_each_plane() {
        let op = InstanceNormalization { epsilon: 0.0 };
        let x = Tensor::from_vec(vec![1, 2, 2], vec![1.0f32, 3.0, 0.0, 4.0]).unwrap();
        let s = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
        let b = Tensor::from_vec(vec![2], vec![0.0f32, 1.0]).unwrap();
        let y = op
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&s), Some(&b)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[-1.0, 1.0, -1.0, 3.0]);
        let bad = Tensor::from_vec(vec![3], vec![1.0f32; 3]).unwrap();
        assert!(op
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&bad), Some(&b)]))
            .is_err());
    }
}
