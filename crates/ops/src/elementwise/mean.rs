//! Mean (ONNX opsets 1, 6, 8, 13): elementwise mean of one or more float inputs with
//! numpy broadcasting.
use super::binary::{eval_variadic, infer_broadcast, Arith, ArithKernel};
use crate::util::output;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Mean;

impl Mean {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let _ = attrs.ints("consumed_inputs")?;
        Ok(Arc::new(Mean))
    }
}

impl ArithKernel for Mean {
    fn apply<T: Arith>(&self, a: T, b: T) -> T {
        T::add(a, b)
    }
}

fn scale<T: Arith>(v: &[T], n: usize) -> Vec<T> {
    let d = T::from_f64(n as f64);
    v.iter().map(|&x| T::div(x, d)).collect()
}

impl Op for Mean {
    fn name(&self) -> &'static str {
        "Mean"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![infer_broadcast(self.name(), ctx, None)?])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, inputs.len().max(1) as u64)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let n = inputs.present().count();
        let sum = eval_variadic(op, self, inputs, true)?;
        let shape = sum.shape().to_vec();
        let y = crate::dispatch_float!(op, sum, |v: T| output(op, shape, scale::<T>(v, n))?);
        Ok(vec![y])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, t, vals};
    use super::*;

    #[test]
    fn averages_with_broadcast() {
        let a = t(&[2], vec![1.0f32, 2.0]);
        let b = t(&[2, 1], vec![3.0f32, 6.0]);
        let c = t(&[], vec![5.0f32]);
        let y = run(&Mean, &[&a, &b, &c]).unwrap();
        assert_eq!(y[0].shape(), &[2, 2]);
        assert_eq!(
            y[0].as_slice::<f32>().unwrap(),
            &[3.0, 10.0 / 3.0, 4.0, 13.0 / 3.0]
        );
        assert_eq!(vals::<f64>(&Mean, &[&t(&[1], vec![2.5f64])]), [2.5]);
    }

    #[test]
    fn integers_are_unsupported() {
        let a = t(&[1], vec![1i32]);
        assert!(run(&Mean, &[&a, &a]).unwrap_err().is_unsupported());
    }
}
