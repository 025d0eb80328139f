//! LpNormalization (ONNX opsets 1, 22): `x / ||x||_p` along `axis` (default -1), p 1 or 2.
use super::common::{float_out, prod, Float};
use crate::float_run;
use crate::util::normalize_axis;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct LpNormalization {
    pub axis: i64,
    pub p: i64,
}

const NAME: &str = "LpNormalization";

impl LpNormalization {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let axis = attrs.int_or("axis", -1)?;
        let p = attrs.int_or("p", 2)?;
        if p != 1 && p != 2 {
            return Err(OpError::attribute(
                NAME,
                "p",
                format!("must be 1 or 2, got {p}"),
            ));
        }
        Ok(Arc::new(LpNormalization { axis, p }))
    }
}

fn eval_as<F: Float>(op: &LpNormalization, x: &Tensor) -> Result<Vec<Tensor>, OpError> {
    let shape = x.shape().to_vec();
    let a = normalize_axis(NAME, op.axis, shape.len())?;
    if shape.is_empty() {
        return Err(OpError::invalid(NAME, "input must have rank >= 1"));
    }
    let (outer, n, inner) = (prod(&shape[..a]), shape[a], prod(&shape[a + 1..]));
    let mut v = F::cow(NAME, x)?.into_owned();
    for o in 0..outer {
        for j in 0..inner {
            let at = |i: usize| (o * n + i) * inner + j;
            let mut s = F::ZERO;
            for i in 0..n {
                let e = v[at(i)];
                s += if op.p == 1 { e.abs() } else { e * e };
            }
            let norm = if op.p == 1 { s } else { s.sqrt() };
            // A zero vector normalizes to zeros (the spec's reference: 0 / 0 = 0).
            for i in 0..n {
                let k = at(i);
                v[k] = if norm == F::ZERO {
                    F::ZERO
                } else {
                    v[k] / norm
                };
            }
        }
    }
    Ok(vec![float_out(NAME, x.dtype(), shape, v)?])
}

impl Op for LpNormalization {
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
        let x = inputs.req(0)?;
        float_run!(NAME, x.dtype(), eval_as(self, x))
    }

    fn describe(&self) -> String {
        format!("axis={} p={}", self.axis, self.p)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l1_and_l2_along_axes() {
        let x = Tensor::from_vec(vec![2, 2], vec![3.0f32, 4.0, 1.0, -3.0]).unwrap();
        let l2 = LpNormalization { axis: -1, p: 2 };
        let y = l2.eval(&Inputs::new(NAME, &[Some(&x)])).unwrap();
        let g = y[0].as_slice::<f32>().unwrap();
        assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
        let l1 = LpNormalization { axis: 0, p: 1 };
        let y = l1.eval(&Inputs::new(NAME, &[Some(&x)])).unwrap();
        assert_eq!(
            y[0].as_slice::<f32>().unwrap(),
            &[0.75, 4.0 / 7.0, 0.25, -3.0 / 7.0]
        );
        let z = Tensor::from_vec(vec![2, 2], vec![0.0f32, 1.0, 0.0, 0.0]).unwrap();
        let y = l2.eval(&Inputs::new(NAME, &[Some(&z)])).unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[0.0, 1.0, 0.0, 0.0]);
        let bad = LpNormalization { axis: 2, p: 2 };
        assert!(bad.eval(&Inputs::new(NAME, &[Some(&x)])).is_err());
    }
}
