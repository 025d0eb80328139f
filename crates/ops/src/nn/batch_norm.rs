//! BatchNormalization (ONNX opsets 1, 6, 7, 9, 14, 15): inference-mode
//! `Y = (X - mean) / sqrt(var + epsilon) * scale + B` per channel (axis 1).
use super::common::{float_out, prod, Float};
use crate::float_run;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormalization {
    pub epsilon: f32,
    pub momentum: f32,
}

const NAME: &str = "BatchNormalization";

impl BatchNormalization {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(BatchNormalization::parse(attrs, opset)?))
    }

    pub fn parse(attrs: &Attributes, opset: i64) -> Result<BatchNormalization, OpError> {
        let epsilon = attrs.float_or("epsilon", 1e-5)?;
        let momentum = attrs.float_or("momentum", 0.9)?;
        // Opset 1 only: consumed_inputs is a legacy optimization hint.
        let _ = attrs.ints("consumed_inputs")?;
        // is_test (opsets < 7): only the Y output is produced either way; a node that asks
        // for the training outputs fails for lack of them.
        let _ = attrs.int("is_test")?;
        if opset < 9 && attrs.int_or("spatial", 1)? == 0 {
            return Err(OpError::unsupported(
                NAME,
                "spatial=0 (per-activation statistics)",
            ));
        }
        if attrs.int_or("training_mode", 0)? != 0 {
            return Err(OpError::unsupported(NAME, "training_mode=1"));
        }
        Ok(BatchNormalization { epsilon, momentum })
    }
}

/// A per-channel parameter converted to the compute type.
fn param<F: Float>(t: &Tensor, c: usize, what: &str) -> Result<Vec<F>, OpError> {
    if t.shape() != [c] {
        return Err(OpError::invalid(
            NAME,
            format!("{what} has shape {:?}, expected [{c}]", t.shape()),
        ));
    }
    if !t.dtype().is_float() {
        return Err(OpError::invalid(NAME, format!("{what} must be float")));
    }
    Ok(t.to_f64_vec()
        .map_err(|e| OpError::tensor(NAME, e))?
        .into_iter()
        .map(F::from_f64)
        .collect())
}

fn eval_as<F: Float>(bn: &BatchNormalization, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
    let x = inputs.req(0)?;
    let shape = x.shape().to_vec();
    if shape.len() < 2 {
        return Err(OpError::invalid(NAME, "input must be N x C x ..."));
    }
    let c = shape[1];
    let scale = param::<F>(inputs.req(1)?, c, "scale")?;
    let bias = param::<F>(inputs.req(2)?, c, "B")?;
    let mean = param::<F>(inputs.req(3)?, c, "mean")?;
    let var = param::<F>(inputs.req(4)?, c, "var")?;
    let eps = F::from_f32(bn.epsilon);
    let a: Vec<F> = (0..c).map(|i| scale[i] / (var[i] + eps).sqrt()).collect();
    let b: Vec<F> = (0..c).map(|i| bias[i] - mean[i] * a[i]).collect();
    let plane = prod(&shape[2..]);
    let xs = F::cow(NAME, x)?;
    let mut y = vec![F::ZERO; xs.len()];
    if plane > 0 && c > 0 {
        y.par_chunks_mut(plane)
            .zip(xs.par_chunks(plane))
            .enumerate()
            .for_each(|(i, (yo, xi))| {
                let ch = i % c;
                let (ac, bc) = (a[ch], b[ch]);
                for (o, &v) in yo.iter_mut().zip(xi) {
                    *o = v * ac + bc;
                }
            });
    }
    Ok(vec![float_out(NAME, x.dtype(), shape, y)?])
}

impl Op for BatchNormalization {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 2)
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
    use crate::nn::conv::tests::attrs;
    use millrace_ir::Attr;

    #[test]
    fn normalizes_per_channel() {
        let bn = BatchNormalization::parse(&attrs(NAME, vec![("epsilon", Attr::Float(0.0))]), 15)
            .unwrap();
        let x = Tensor::from_vec(vec![1, 2, 2], vec![1.0f32, 3.0, 10.0, 20.0]).unwrap();
        let s = Tensor::from_vec(vec![2], vec![2.0f32, 1.0]).unwrap();
        let b = Tensor::from_vec(vec![2], vec![0.5f32, 0.0]).unwrap();
        let m = Tensor::from_vec(vec![2], vec![2.0f32, 10.0]).unwrap();
        let v = Tensor::from_vec(vec![2], vec![4.0f32, 25.0]).unwrap();
        let y = bn
            .eval(&Inputs::new(
                NAME,
                &[Some(&x), Some(&s), Some(&b), Some(&m), Some(&v)],
            ))
            .unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[-0.5, 1.5, 0.0, 2.0]);
    }

    #[test]
    fn unsupported_modes() {
        assert!(
            BatchNormalization::parse(&attrs(NAME, vec![("training_mode", Attr::Int(1))]), 15)
                .unwrap_err()
                .is_unsupported()
        );
        assert!(
            BatchNormalization::parse(&attrs(NAME, vec![("spatial", Attr::Int(0))]), 7)
                .unwrap_err()
                .is_unsupported()
        );
        let bn = BatchNormalization::parse(&attrs(NAME, vec![]), 9).unwrap();
        let x = Tensor::from_vec(vec![1, 2], vec![1.0f32, 2.0]).unwrap();
        let p = Tensor::from_vec(vec![3], vec![1.0f32; 3]).unwrap();
        assert!(bn
            .eval(&Inputs::new(
                NAME,
                &[Some(&x), Some(&p), Some(&p), Some(&p), Some(&p)]
            ))
            .is_err());
    }
}
