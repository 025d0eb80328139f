//! GlobalMaxPool (ONNX opset 1, 22): max over all spatial dims, keeping them as 1s.
use super::common::prod;
use super::global_average_pool::{global_eval_into, global_shape, global_writes_into};
use super::pooling::global_infer;
use crate::util::{output, Num};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct GlobalMaxPool;

const NAME: &str = "GlobalMaxPool";

impl GlobalMaxPool {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(GlobalMaxPool))
    }
}

fn pool<T: Num>(x: &[T], planes: usize, plane: usize) -> Vec<T> {
    (0..planes)
        .map(|p| {
            let xs = &x[p * plane..(p + 1) * plane];
            let mut best = xs
                .first()
                .copied()
                .unwrap_or(T::from_f64(f64::NEG_INFINITY));
            for &v in xs {
                if v > best {
                    best = v;
                }
            }
            best
        })
        .collect()
}

impl Op for GlobalMaxPool {
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
        let shape = global_shape(NAME, x.shape())?;
        let planes = x.shape()[0] * x.shape()[1];
        let plane = prod(&x.shape()[2..]);
        if x.dtype() == millrace_core::DType::F32 {
            let shape = global_shape(NAME, x.shape())?;
            let views = crate::planned::views(NAME, inputs)?;
            return Ok(vec![crate::planned::alloc_f32(NAME, shape.clone(), |y| {
                self.eval_into(&views, y, &shape)
            })?]);
        }
        if !x.dtype().is_float() {
            return Err(OpError::unsupported(NAME, format!("dtype {}", x.dtype())));
        }
        let y = crate::dispatch_float!(NAME, x, |v: T| output(
            NAME,
            shape,
            pool::<T>(v, planes, plane)
        )?);
        Ok(vec![y])
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
            millrace_kernels::pool::global_max_pool,
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
    fn maxes_each_plane() {
        let x =
            Tensor::from_vec(vec![1, 2, 3], vec![1.0f32, -3.0, 0.5, -10.0, -20.0, -1.0]).unwrap();
        let y = GlobalMaxPool.eval(&Inputs::new(NAME, &[Some(&x)])).unwrap();
        assert_eq!(y[0].shape(), &[1, 2, 1]);
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[1.0, -1.0]);
        // f32 (kernel) and f64 (generic) agree.
        let v: Vec<f32> = (0..2 * 3 * 7 * 5)
            .map(|i| ((i * 37) % 11) as f32 - 5.0)
            .collect();
        let xf = Tensor::from_vec(vec![2, 3, 7, 5], v.clone()).unwrap();
        let xd = Tensor::from_vec(vec![2, 3, 7, 5], v.iter().map(|&a| a as f64).collect()).unwrap();
        let a = GlobalMaxPool
            .eval(&Inputs::new(NAME, &[Some(&xf)]))
            .unwrap();
        let b = GlobalMaxPool
            .eval(&Inputs::new(NAME, &[Some(&xd)]))
            .unwrap();
        for (p, q) in a[0]
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .zip(b[0].as_slice::<f64>().unwrap())
        {
            assert_eq!(*p as f64, *q);
        }
    }
}
