//! Sub (ONNX opsets 1, 6, 7, 13, 14): `a - b` elementwise with numpy broadcasting (integers wrap).
use super::binary::{eval_arith, infer_broadcast, Arith, ArithKernel, Legacy};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Sub {
    pub legacy: Legacy,
}

impl Sub {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Sub {
            legacy: Legacy::read(attrs, opset)?,
        }))
    }
}

impl ArithKernel for Sub {
    fn apply<T: Arith>(&self, a: T, b: T) -> T {
        T::sub(a, b)
    }

    fn vbin(&self) -> Option<millrace_kernels::vmath::Bin> {
        Some(millrace_kernels::vmath::Bin::Sub)
    }
}

impl Op for Sub {
    fn name(&self) -> &'static str {
        "Sub"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![infer_broadcast(self.name(), ctx, None)?])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        eval_arith(self.name(), self, &self.legacy, inputs)
    }

    crate::arith_into_hooks!();

    fn describe(&self) -> String {
        self.legacy.describe()
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
    fn subtracts_with_broadcast() {
        let a = t(&[2, 2], vec![5.0f64, 6.0, 7.0, 8.0]);
        let b = t(&[2, 1], vec![1.0f64, 2.0]);
        assert_eq!(
            vals::<f64>(&Sub::default(), &[&a, &b]),
            [4.0, 5.0, 5.0, 6.0]
        );
        let u = t(&[1], vec![0u8]);
        let v = t(&[1], vec![1u8]);
        assert_eq!(vals::<u8>(&Sub::default(), &[&u, &v]), [255]);
    }

    #[test]
    fn missing_input_is_an_error() {
        let a = t(&[1], vec![1.0f32]);
        assert!(matches!(
            run(&Sub::default(), &[&a]),
            Err(OpError::MissingInput { .. })
        ));
    }
}
