//! GroupNormalization (ONNX opsets 18, 21): normalizes each (n, group of C/G channels)
//! block; scale/bias are per group at opset 18 and per channel from opset 21.
use super::common::{float_out, mean_var, param, prod, Float};
use crate::float_run;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct GroupNormalization {
    pub epsilon: f32,
    pub num_groups: usize,
    /// Opset 21+: scale and bias have one entry per channel.
    pub per_channel: bool,
}

const NAME: &str = "GroupNormalization";

impl GroupNormalization {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let epsilon = attrs.float_or("epsilon", 1e-5)?;
        let g = attrs.req_int("num_groups")?;
        if g < 1 {
            return Err(OpError::attribute(NAME, "num_groups", "must be positive"));
        }
        let stash = attrs.int_or("stash_type", 1)?;
        if stash != 1 {
            return Err(OpError::unsupported(NAME, format!("stash_type {stash}")));
        }
        Ok(Arc::new(GroupNormalization {
            epsilon,
            num_groups: g as usize,
            per_channel: opset >= 21,
        }))
    }
}

fn eval_as<F: Float>(op: &GroupNormalization, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
    let x = inputs.req(0)?;
    let shape = x.shape().to_vec();
    if shape.len() < 2 {
        return Err(OpError::invalid(NAME, "input must be N x C x ..."));
    }
    let (c, g) = (shape[1], op.num_groups);
    if c % g != 0 {
        return Err(OpError::invalid(
            NAME,
            format!("{c} channels do not split into {g} groups"),
        ));
    }
    let want = if op.per_channel { c } else { g };
    let (st, bt) = (inputs.req(1)?, inputs.req(2)?);
    if st.shape() != [want] || bt.shape() != [want] {
        return Err(OpError::invalid(
            NAME,
            format!("scale and bias must have shape [{want}]"),
        ));
    }
    let scale = param::<F>(NAME, st, "scale")?;
    let bias = param::<F>(NAME, bt, "bias")?;
    let plane = prod(&shape[2..]);
    let cg = c / g;
    let block = cg * plane;
    let xs = F::cow(NAME, x)?;
    let mut y = vec![F::ZERO; xs.len()];
    let eps = F::from_f32(op.epsilon);
    if block > 0 {
        y.par_chunks_mut(block)
            .zip(xs.par_chunks(block))
            .enumerate()
            .for_each(|(i, (yo, xi))| {
                let gi = i % g;
                let (mean, var) = mean_var(xi);
                let inv = F::ONE / (var + eps).sqrt();
                for (j, (o, &v)) in yo.iter_mut().zip(xi).enumerate() {
                    let p = if op.per_channel {
                        gi * cg + j / plane
                    } else {
                        gi
                    };
                    *o = (v - mean) * inv * scale[p] + bias[p];
                }
            });
    }
    Ok(vec![float_out(NAME, x.dtype(), shape, y)?])
}

impl Op for GroupNormalization {
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
        format!("num_groups={} epsilon={}", self.num_groups, self.epsilon)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_group_and_per_channel_affine() {
        // C = 2, one group: normalize all four values together.
        let x = Tensor::from_vec(vec![1, 2, 2], vec![1.0f32, 3.0, 1.0, 3.0]).unwrap();
        let op18 = GroupNormalization {
            epsilon: 0.0,
            num_groups: 1,
            per_channel: false,
        };
        let s = Tensor::from_vec(vec![1], vec![2.0f32]).unwrap();
        let b = Tensor::from_vec(vec![1], vec![1.0f32]).unwrap();
        let y = op18
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&s), Some(&b)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[-1.0, 3.0, -1.0, 3.0]);
        let op21 = GroupNormalization {
            per_channel: true,
            ..op18
        };
        let s = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
        let b = Tensor::from_vec(vec![2], vec![0.0f32, 1.0]).unwrap();
        let y = op21
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&s), Some(&b)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[-1.0, 1.0, -1.0, 3.0]);
        // Opset-18 shaped parameters are rejected at opset 21.
        let s1 = Tensor::from_vec(vec![1], vec![1.0f32]).unwrap();
        assert!(op21
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&s1), Some(&s1)]))
            .is_err());
    }
}
