//! Relu (ONNX opsets 6, 13, 14): `max(x, 0)` elementwise, for float and signed-int dtypes.
use crate::util::{output, Num};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Relu;

impl Relu {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Relu))
    }
}

fn relu<T: Num>(x: &[T]) -> Vec<T> {
    let zero = T::default();
    x.iter().map(|&v| if v > zero { v } else { zero }).collect()
}

/// `x > 0 ? x : 0`, as the generic loop (NaN and -0 give +0).
const RELU: millrace_kernels::vmath::Func = millrace_kernels::vmath::Func::ReluZeroNan;

fn relu_f32(x: &[f32], y: &mut [f32]) {
    super::fast::unary_into(RELU, x, y)
}

impl Op for Relu {
    fn name(&self) -> &'static str {
        "Relu"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let shape = x.shape().to_vec();
        if let Ok(v) = x.as_slice::<f32>() {
            let mut y = vec![0f32; v.len()];
            relu_f32(v, &mut y);
            return Ok(vec![output(self.name(), shape, y)?]);
        }
        let y = crate::dispatch_num!(self.name(), x, |v: T| output(
            self.name(),
            shape,
            relu::<T>(v)
        )?);
        Ok(vec![y])
    }

    crate::unary_into_hooks!(
        |_: &Self, x: &[f32], y: &mut [f32]| relu_f32(x, y),
        |_: &Self, io: &mut [f32]| super::fast::unary_inplace(RELU, io)
    );

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_negatives_to_zero() {
        let x = Tensor::from_vec(vec![4], vec![-1.0f32, 0.0, 2.5, -0.0]).unwrap();
        let y = Relu.eval(&Inputs::new("Relu", &[Some(&x)])).unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[0.0, 0.0, 2.5, 0.0]);
    }

    #[test]
    fn planned_paths_match_eval() {
        let x = crate::into_check::rand(&[3, 70_000], 1);
        assert!(crate::into_check::check(&Relu, &[Some(&x)]));
        let x = Tensor::from_vec(vec![3], vec![f32::NAN, -0.0, 1.0]).unwrap();
        assert!(crate::into_check::check(&Relu, &[Some(&x)]));
    }

    #[test]
    fn missing_input_is_an_error() {
        assert!(matches!(
            Relu.eval(&Inputs::new("Relu", &[])),
            Err(OpError::MissingInput { .. })
        ));
    }
}
