//! AveragePool (ONNX opsets 1, 7, 10, 11, 19, 22): N-d window mean; padding counts toward
//! the divisor only with count_include_pad=1.
use super::common::{float_out, Float, Window};
use super::pooling::{
    geom2d, infer, kernel_err, out_shape, pool2d_args, pool2d_writes_into, resolve, Table,
};
use crate::float_run;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, F32View, InferCtx, Inputs, Op, OpError, ValueType};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct AveragePool {
    pub window: Window,
    pub count_include_pad: bool,
}

const NAME: &str = "AveragePool";

impl AveragePool {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(AveragePool::parse(attrs)?))
    }

    pub fn parse(attrs: &Attributes) -> Result<AveragePool, OpError> {
        let window = Window::from_attrs(NAME, attrs)?;
        if window.kernel.is_none() {
            return Err(OpError::attribute(
                NAME,
                "kernel_shape",
                "required but absent",
            ));
        }
        Ok(AveragePool {
            window,
            count_include_pad: attrs.int_or("count_include_pad", 0)? != 0,
        })
    }
}

fn eval_as<F: Float>(ap: &AveragePool, x: &Tensor) -> Result<Vec<Tensor>, OpError> {
    let r = resolve(NAME, &ap.window, x.shape())?;
    let t = Table::new(&x.shape()[2..], &r);
    let planes = x.shape()[0] * x.shape()[1];
    let xs = F::cow(NAME, x)?;
    let mut y = vec![F::ZERO; planes * t.out_plane];
    if t.out_plane > 0 {
        y.par_chunks_mut(t.out_plane)
            .enumerate()
            .for_each(|(p, yo)| {
                let xi = &xs[p * t.in_plane..(p + 1) * t.in_plane];
                for (o, out) in yo.iter_mut().enumerate() {
                    let win = t.window(o);
                    let mut s = F::ZERO;
                    for &i in win {
                        s += xi[i];
                    }
                    let n = if ap.count_include_pad {
                        t.padded[o]
                    } else {
                        win.len()
                    };
                    // An empty window (only possible in padding) averages to 0/0.
                    *out = s / F::from_f64(n as f64);
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

impl Op for AveragePool {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![infer(NAME, &self.window, ctx)?])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let k: usize = self.window.kernel.iter().flatten().product();
        Cost::elementwise(inputs, outputs, k as u64)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let r = resolve(NAME, &self.window, x.shape())?;
        if geom2d(x, &r).is_some() {
            let shape = out_shape(x.shape(), &r);
            let views = crate::planned::views(NAME, inputs)?;
            return Ok(vec![crate::planned::alloc_f32(NAME, shape.clone(), |y| {
                self.eval_into(&views, y, &shape)
            })?]);
        }
        float_run!(NAME, x.dtype(), eval_as(self, x))
    }

    fn writes_into(&self, inputs: &[ValueType], outputs: &[ValueType]) -> bool {
        pool2d_writes_into(NAME, &self.window, inputs, outputs)
    }

    fn eval_into(
        &self,
        inputs: &[Option<F32View<'_>>],
        out: &mut [f32],
        out_shape: &[usize],
    ) -> Result<(), OpError> {
        let (x, r, g) = pool2d_args(NAME, &self.window, inputs, out, out_shape)?;
        let pads_end = (r.pads_end[0], r.pads_end[1]);
        millrace_kernels::pool::avg_pool2d(x, &g, pads_end, self.count_include_pad, out)
            .map_err(|e| kernel_err(NAME, e))
    }

    fn describe(&self) -> String {
        let mut s = self.window.describe();
        if self.count_include_pad {
            s.push_str(" count_include_pad=1");
        }
        s
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::conv::tests::rnd;
    use crate::nn::max_pool::tests::{case_attrs, cases, naive2d};
    use millrace_ir::Attr;

    #[test]
    fn matches_naive_reference() {
        let (h, w) = (7, 6);
        for include in [0, 1] {
            for (ci, c) in cases().iter().enumerate() {
                let a = case_attrs(NAME, c, vec![("count_include_pad", Attr::Int(include))]);
                let ap = AveragePool::parse(&a).unwrap();
                let x = rnd(3 * h * w, 10 + ci as u64);
                let xt = Tensor::from_vec(vec![3, 1, h, w], x.clone()).unwrap();
                let r = resolve(NAME, &ap.window, xt.shape()).unwrap();
                let y = ap.eval(&Inputs::new(NAME, &[Some(&xt)])).unwrap();
                let got = y[0].as_slice::<f32>().unwrap();
                let op = r.output[0] * r.output[1];
                for p in 0..3 {
                    for (o, wv) in naive2d(&x[p * h * w..], h, w, &r).iter().enumerate() {
                        let n = if include == 1 { wv.4 } else { wv.3 };
                        let want = wv.2 / n as f32;
                        assert!((got[p * op + o] - want).abs() < 1e-5, "case {ci} {include}");
                    }
                }
            }
        }
    }

    #[test]
    fn fast_path_equals_generic_path() {
        let (h, w) = (13, 11);
        for include in [0, 1] {
            for (ci, c) in cases().iter().enumerate() {
                let a = case_attrs(NAME, c, vec![("count_include_pad", Attr::Int(include))]);
                let ap = AveragePool::parse(&a).unwrap();
                let x = rnd(6 * h * w, 50 + ci as u64);
                let xt = Tensor::from_vec(vec![2, 3, h, w], x.clone()).unwrap();
                let fast = ap.eval(&Inputs::new(NAME, &[Some(&xt)])).unwrap();
                // The generic path, through f64.
                let xd = Tensor::from_vec(vec![2, 3, h, w], x.iter().map(|&v| v as f64).collect())
                    .unwrap();
                let slow = ap.eval(&Inputs::new(NAME, &[Some(&xd)])).unwrap();
                assert_eq!(fast[0].shape(), slow[0].shape());
                let (f, s) = (
                    fast[0].as_slice::<f32>().unwrap(),
                    slow[0].as_slice::<f64>().unwrap(),
                );
                for (a, b) in f.iter().zip(s) {
                    assert!(
                        (*a as f64 - b).abs() < 1e-5 || (a.is_nan() && b.is_nan()),
                        "case {ci} {include}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn f64_and_errors() {
        let ap = AveragePool::parse(&case_attrs(
            NAME,
            &(vec![2], vec![1], vec![1], vec![0, 0], "NOTSET", 0),
            vec![],
        ))
        .unwrap();
        let x = Tensor::from_vec(vec![1, 1, 3], vec![1.0f64, 3.0, 8.0]).unwrap();
        let y = ap.eval(&Inputs::new(NAME, &[Some(&x)])).unwrap();
        assert_eq!(y[0].as_slice::<f64>().unwrap(), &[2.0, 5.5]);
        let xi = Tensor::from_vec(vec![1, 1, 3], vec![1i32, 3, 8]).unwrap();
        assert!(ap.eval(&Inputs::new(NAME, &[Some(&xi)])).is_err());
    }
}
