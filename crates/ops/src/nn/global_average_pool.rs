//! GlobalAveragePool (ONNX opset 1, 22): mean over all spatial dims, keeping them as 1s.
use super::common::{float_out, prod, Float};
use super::pooling::global_infer;
use crate::float_run;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct GlobalAveragePool;

const NAME: &str = "GlobalAveragePool";

impl GlobalAveragePool {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(GlobalAveragePool))
    }
}

/// Output shape of a global pool: spatial dims become 1.
pub fn global_shape(op: &str, x: &[usize]) -> Result<Vec<usize>, OpError> {
    if x.len() < 2 {
        return Err(OpError::invalid(op, "input must be N x C x ..."));
    }
    Ok(x.iter()
        .enumerate()
        .map(|(i, &d)| if i < 2 { d } else { 1 })
        .collect())
}

/// `Op::writes_into` of the global pools: f32 in and out, output N x C x 1 x ...
pub(crate) fn global_writes_into(inputs: &[ValueType], outputs: &[ValueType]) -> bool {
    crate::planned::f32_io(inputs, outputs, 1)
        && match (
            crate::planned::f32_shape(&inputs[0]),
            crate::planned::f32_shape(&outputs[0]),
        ) {
            (Some(x), Some(y)) => global_shape(NAME, &x).is_ok_and(|s| s == y),
            _ => false,
        }
}

/// A global pooling kernel: `(x, planes, plane, out)`.
pub(crate) type GlobalKernel =
    fn(&[f32], usize, usize, &mut [f32]) -> Result<(), millrace_kernels::pool::PoolError>;

/// `Op::eval_into` of the global pools: checks the shapes, then reduces each of the N x C
/// planes with `kernel(x, planes, plane, out)`.
pub(crate) fn global_eval_into(
    op: &str,
    inputs: &[Option<millrace_ir::F32View<'_>>],
    out: &mut [f32],
    out_shape: &[usize],
    kernel: GlobalKernel,
) -> Result<(), OpError> {
    let x = millrace_ir::F32View::req(inputs, op, 0)?;
    if x.shape.len() < 2 {
        return Err(OpError::invalid(op, "input must be N x C x ..."));
    }
    let planes = x.shape[0] * x.shape[1];
    crate::planned::check_out(op, out, out_shape)?;
    if out.len() != planes {
        return Err(OpError::invalid(
            op,
            format!("output {out_shape:?} is not N x C x 1..."),
        ));
    }
    let plane = prod(&x.shape[2..]);
    kernel(x.data, planes, plane, out).map_err(|e| OpError::invalid(op, e.to_string()))
}

fn eval_as<F: Float>(x: &Tensor) -> Result<Vec<Tensor>, OpError> {
    let shape = global_shape(NAME, x.shape())?;
    let planes = x.shape()[0] * x.shape()[1];
    let plane = prod(&x.shape()[2..]);
    let xs = F::cow(NAME, x)?;
    let n = F::from_f64(plane as f64);
    let y: Vec<F> = (0..planes)
        .into_par_iter()
        .map(|p| {
            let mut s = F::ZERO;
            for &v in &xs[p * plane..(p + 1) * plane] {
                s += v;
            }
            s / n
        })
        .collect();
    Ok(vec![float_out(NAME, x.dtype(), shape, y)?])
}

impl Op for GlobalAveragePool {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![global_infer(NAME, ctx)?])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let mut c = Cost::movement(inputs, outputs);
        c.flops = inputs.first().and_then(|t| t.numel()).unwrap_or(0) as u64;
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        if x.dtype() == millrace_core::DType::F32 {
            let shape = global_shape(NAME, x.shape())?;
            let views = crate::planned::views(NAME, inputs)?;
            return Ok(vec![crate::planned::alloc_f32(NAME, shape.clone(), |y| {
                self.eval_into(&views, y, &shape)
            })?]);
        }
        float_run!(NAME, x.dtype(), eval_as(x))
    }

    fn writes_into(&self, inputs: &[ValueType], outputs: &[ValueType]) -> bool {
        global_writes_into(inputs, outputs)
    }

    fn eval_into(
        &self,
        inputs: &[Option<millrace_ir::F32View<'_>>],
        out: &mut [f32],
        out_shape: &[usize],
    ) -> Result<(), OpError> {
        global_eval_into(
            NAME,
            inputs,
            out,
            out_shape,
            millrace_kernels::pool::global_avg_pool,
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
    fn averages_each_plane() {
        let x = Tensor::from_vec(vec![1, 2, 2, 1], vec![1.0f32, 3.0, 10.0, 20.0]).unwrap();
        let y = GlobalAveragePool
            .eval(&Inputs::new(NAME, &[Some(&x)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[1, 2, 1, 1]);
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[2.0, 15.0]);
        // f32 (kernel) and f64 (generic) agree.
        let v: Vec<f32> = (0..2 * 3 * 7 * 5)
            .map(|i| ((i * 37) % 11) as f32 - 5.0)
            .collect();
        let xf = Tensor::from_vec(vec![2, 3, 7, 5], v.clone()).unwrap();
        let xd = Tensor::from_vec(vec![2, 3, 7, 5], v.iter().map(|&a| a as f64).collect()).unwrap();
        let a = GlobalAveragePool
            .eval(&Inputs::new(NAME, &[Some(&xf)]))
            .unwrap();
        let b = GlobalAveragePool
            .eval(&Inputs::new(NAME, &[Some(&xd)]))
            .unwrap();
        for (p, q) in a[0]
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .zip(b[0].as_slice::<f64>().unwrap())
        {
            assert!((*p as f64 - q).abs() < 1e-5);
        }
        let bad = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
        assert!(GlobalAveragePool
            .eval(&Inputs::new(NAME, &[Some(&bad)]))
            .is_err());
    }
}
