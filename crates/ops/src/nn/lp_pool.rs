//! LpPool (ONNX opsets 1, 2, 11, 18, 22): `(sum over window of |x|^p)^(1/p)`; padding
//! contributes zeros.
use super::common::{float_out, Float, Window};
use super::pooling::{infer, out_shape, resolve, Table};
use crate::float_run;
use millrace_core::Tensor;
use millrace_ir::{Attr, Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct LpPool {
    pub window: Window,
    pub p: f32,
}

const NAME: &str = "LpPool";

impl LpPool {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let window = Window::from_attrs(NAME, attrs)?;
        if window.kernel.is_none() {
            return Err(OpError::attribute(
                NAME,
                "kernel_shape",
                "required but absent",
            ));
        }
        // Opset 1 had a float p; later opsets an int.
        let p = match attrs.get("p") {
            None => 2.0,
            Some(Attr::Int(v)) => *v as f32,
            Some(Attr::Float(v)) => *v,
            Some(a) => {
                return Err(OpError::attribute(
                    NAME,
                    "p",
                    format!("expected int, found {}", a.kind()),
                ))
            }
        };
        if p <= 0.0 || !p.is_finite() {
            return Err(OpError::attribute(NAME, "p", "must be positive"));
        }
        Ok(Arc::new(LpPool { window, p }))
    }
}

fn eval_as<F: Float>(op: &LpPool, x: &Tensor) -> Result<Vec<Tensor>, OpError> {
    let r = resolve(NAME, &op.window, x.shape())?;
    let t = Table::new(&x.shape()[2..], &r);
    let planes = x.shape()[0] * x.shape()[1];
    let xs = F::cow(NAME, x)?;
    let p = F::from_f32(op.p);
    let inv = F::ONE / p;
    let mut y = vec![F::ZERO; planes * t.out_plane];
    if t.out_plane > 0 {
        y.par_chunks_mut(t.out_plane)
            .enumerate()
            .for_each(|(pi, yo)| {
                let xi = &xs[pi * t.in_plane..(pi + 1) * t.in_plane];
                for (o, out) in yo.iter_mut().enumerate() {
                    let mut s = F::ZERO;
                    for &i in t.window(o) {
                        s += xi[i].abs().powf(p);
                    }
                    *out = s.powf(inv);
                }
            });
    }
    Ok(vec![float_out(
        NAME,
        x.dtype(),
        out_shape(x.shape(), &r),
        y,
    )?])
}

impl Op for LpPool {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![infer(NAME, &self.window, ctx)?])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let k: usize = self.window.kernel.iter().flatten().product();
        Cost::elementwise(inputs, outputs, 2 * k as u64)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        float_run!(NAME, x.dtype(), eval_as(self, x))
    }

    fn describe(&self) -> String {
        format!("{} p={}", self.window.describe(), self.p)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::conv::tests::attrs;

    #[test]
    fn l2_pool_with_padding() {
        let op = LpPool::from_onnx(
            &attrs(
                NAME,
                vec![
                    ("kernel_shape", Attr::Ints(vec![2])),
                    ("pads", Attr::Ints(vec![1, 0])),
                    ("p", Attr::Int(2)),
                ],
            ),
            18,
        )
        .unwrap();
        let x = Tensor::from_vec(vec![1, 1, 2], vec![3.0f32, 4.0]).unwrap();
        let y = op.eval(&Inputs::new(NAME, &[Some(&x)])).unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[3.0, 5.0]);
        assert!(LpPool::from_onnx(&attrs(NAME, vec![]), 18).is_err());
    }
}
