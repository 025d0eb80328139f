//! Add (ONNX opsets 1, 6, 7, 13, 14): `a + b` elementwise with numpy broadcasting (integers wrap).
use super::binary::{eval_arith, infer_broadcast, Arith, ArithKernel, Legacy};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Add {
    pub legacy: Legacy,
}

impl Add {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Add {
            legacy: Legacy::read(attrs, opset)?,
        }))
    }
}

impl ArithKernel for Add {
    fn apply<T: Arith>(&self, a: T, b: T) -> T {
        T::add(a, b)
    }

    fn vbin(&self) -> Option<millrace_kernels::vmath::Bin> {
        Some(millrace_kernels::vmath::Bin::Add)
    }
}

impl Op for Add {
    fn name(&self) -> &'static str {
        "Add"
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
    fn same_shape_scalar_and_broadcast() {
        let a = t(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0]);
        let b = t(&[2, 2], vec![10.0f32, 20.0, 30.0, 40.0]);
        assert_eq!(
            vals::<f32>(&Add::default(), &[&a, &b]),
            [11.0, 22.0, 33.0, 44.0]
        );
        let s = t(&[], vec![0.5f32]);
        assert_eq!(
            vals::<f32>(&Add::default(), &[&s, &a]),
            [1.5, 2.5, 3.5, 4.5]
        );
        let col = t(&[2, 1], vec![100.0f32, 200.0]);
        let row = t(&[3], vec![1.0f32, 2.0, 3.0]);
        let y = run(&Add::default(), &[&col, &row]).unwrap();
        assert_eq!(y[0].shape(), &[2, 3]);
        assert_eq!(
            y[0].as_slice::<f32>().unwrap(),
            &[101.0, 102.0, 103.0, 201.0, 202.0, 203.0]
        );
    }

    #[test]
    fn integers_wrap_and_empty_works() {
        let a = t(&[2], vec![i8::MAX, -3]);
        let b = t(&[2], vec![1i8, 5]);
        assert_eq!(vals::<i8>(&Add::default(), &[&a, &b]), [i8::MIN, 2]);
        let e = t(&[0, 3], Vec::<f32>::new());
        let r = t(&[3], vec![1.0f32, 2.0, 3.0]);
        assert_eq!(run(&Add::default(), &[&e, &r]).unwrap()[0].shape(), &[0, 3]);
    }

    #[test]
    fn mismatched_shapes_or_dtypes_are_errors() {
        let a = t(&[2], vec![1.0f32, 2.0]);
        let b = t(&[3], vec![1.0f32, 2.0, 3.0]);
        assert!(run(&Add::default(), &[&a, &b]).is_err());
        let c = t(&[2], vec![1i64, 2]);
        assert!(run(&Add::default(), &[&a, &c]).is_err());
    }
}
