//! LayerNormalization (ONNX opset 17): normalizes over dims `axis..` then applies Scale and
//! optional B (broadcast to those dims); optional Mean and InvStdDev outputs.
use super::common::{float_out, mean_var, param, prod, Float};
use crate::float_run;
use crate::util::{broadcast_index, dims, normalize_axis, output};
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormalization {
    pub axis: i64,
    pub epsilon: f32,
}

const NAME: &str = "LayerNormalization";

impl LayerNormalization {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(LayerNormalization::parse(attrs)?))
    }

    pub fn parse(attrs: &Attributes) -> Result<LayerNormalization, OpError> {
        let axis = attrs.int_or("axis", -1)?;
        let epsilon = attrs.float_or("epsilon", 1e-5)?;
        // Statistics are computed in f32 (f64 for f64 inputs) whatever stash_type says;
        // only float is defined.
        let stash = attrs.int_or("stash_type", 1)?;
        if stash != 1 {
            return Err(OpError::unsupported(NAME, format!("stash_type {stash}")));
        }
        Ok(LayerNormalization { axis, epsilon })
    }
}

/// Broadcast index of a parameter into the normalized block `inner`.
fn param_index(p: &[usize], inner: &[usize], what: &str) -> Result<Vec<usize>, OpError> {
    let mut p = p;
    while p.len() > inner.len() && p.first() == Some(&1) {
        p = &p[1..];
    }
    let ok = p.len() <= inner.len()
        && p.iter()
            .rev()
            .zip(inner.iter().rev())
            .all(|(&a, &b)| a == b || a == 1);
    if !ok {
        return Err(OpError::invalid(
            NAME,
            format!("{what} shape {p:?} does not broadcast to {inner:?}"),
        ));
    }
    Ok(broadcast_index(inner, p))
}

fn eval_as<F: Float>(ln: &LayerNormalization, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
    let x = inputs.req(0)?;
    let shape = x.shape().to_vec();
    let a = normalize_axis(NAME, ln.axis, shape.len())?;
    let inner = &shape[a..];
    let n = prod(inner);
    let scale_t = inputs.req(1)?;
    let si = param_index(scale_t.shape(), inner, "Scale")?;
    let scale = param::<F>(NAME, scale_t, "Scale")?;
    let (bi, bias) = match inputs.opt(2) {
        Some(b) => (
            param_index(b.shape(), inner, "B")?,
            param::<F>(NAME, b, "B")?,
        ),
        None => (vec![], vec![]),
    };
    let xs = F::cow(NAME, x)?;
    let rows = prod(&shape[..a]);
    let mut y = vec![F::ZERO; xs.len()];
    let mut means = vec![F::ZERO; rows];
    let mut invs = vec![F::ZERO; rows];
    let eps = F::from_f32(ln.epsilon);
    if n > 0 {
        y.par_chunks_mut(n)
            .zip(xs.par_chunks(n))
            .zip(means.par_iter_mut().zip(invs.par_iter_mut()))
            .for_each(|((yo, xi), (m, iv))| {
                let (mean, var) = mean_var(xi);
                let inv = F::ONE / (var + eps).sqrt();
                *m = mean;
                *iv = inv;
                for (j, (o, &v)) in yo.iter_mut().zip(xi).enumerate() {
                    let mut r = (v - mean) * inv * scale[si[j]];
                    if !bi.is_empty() {
                        r += bias[bi[j]];
                    }
                    *o = r;
                }
            });
    }
    let mut stat_shape = shape[..a].to_vec();
    stat_shape.resize(shape.len(), 1);
    let to32 = |v: Vec<F>| v.into_iter().map(|x| x.to_f32()).collect::<Vec<f32>>();
    Ok(vec![
        float_out(NAME, x.dtype(), shape.clone(), y)?,
        output(NAME, stat_shape.clone(), to32(means))?,
        output(NAME, stat_shape, to32(invs))?,
    ])
}

impl Op for LayerNormalization {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let stat = match &x.shape {
            Some(s) => {
                let a = normalize_axis(NAME, self.axis, s.len())?;
                let mut d: Vec<Dim> = s[..a].to_vec();
                d.extend(dims(&vec![1; s.len() - a]));
                ValueType::new(DType::F32, d)
            }
            None => ValueType::of_dtype(DType::F32),
        };
        Ok(vec![x.clone(), stat.clone(), stat])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, &outputs[..outputs.len().min(1)], 8)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        float_run!(NAME, x.dtype(), eval_as(self, inputs))
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
    use crate::nn::conv::tests::attrs;
    use millrace_ir::Attr;

    #[test]
    fn normalizes_trailing_dims() {
        let ln = LayerNormalization::parse(&attrs(
            NAME,
            vec![("axis", Attr::Int(-1)), ("epsilon", Attr::Float(0.0))],
        ))
        .unwrap();
        let x = Tensor::from_vec(vec![2, 2], vec![1.0f32, 3.0, 5.0, 5.0]).unwrap();
        let s = Tensor::from_vec(vec![2], vec![2.0f32, 1.0]).unwrap();
        let b = Tensor::from_vec(vec![1], vec![0.5f32]).unwrap();
        let y = ln
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&s), Some(&b)]))
            .unwrap();
        let got = y[0].as_slice::<f32>().unwrap();
        assert_eq!(&got[..2], &[-1.5, 1.5]);
        assert!(got[2].is_nan()); // zero variance with epsilon 0
        assert_eq!(y[1].shape(), &[2, 1]);
        assert_eq!(y[1].as_slice::<f32>().unwrap(), &[2.0, 5.0]);
        assert_eq!(y[2].as_slice::<f32>().unwrap()[0], 1.0);
    }

    #[test]
    fn axis_zero_and_bad_scale() {
        let ln = LayerNormalization::parse(&attrs(NAME, vec![("axis", Attr::Int(0))])).unwrap();
        let x = Tensor::from_vec(vec![2, 1], vec![1.0f64, -1.0]).unwrap();
        let s = Tensor::from_vec(vec![2, 1], vec![1.0f64, 1.0]).unwrap();
        let y = ln.eval(&Inputs::new(NAME, &[Some(&x), Some(&s)])).unwrap();
        let got = y[0].as_slice::<f64>().unwrap();
        assert!((got[0] - 1.0).abs() < 1e-4 && (got[1] + 1.0).abs() < 1e-4);
        let bad = Tensor::from_vec(vec![3], vec![1.0f64; 3]).unwrap();
        assert!(ln
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&bad)]))
            .is_err());
    }
}
