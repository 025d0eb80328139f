//! IsNaN (ONNX opsets 9, 13, 20): true where a float element is NaN.
use crate::util::{output, Num};
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct IsNaN;

impl IsNaN {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(IsNaN))
    }
}

impl Op for IsNaN {
    fn name(&self) -> &'static str {
        "IsNaN"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let mut t = ctx.input(0)?.clone();
        t.dtype = Some(DType::Bool);
        Ok(vec![t])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let shape = x.shape().to_vec();
        let y = crate::dispatch_float!(op, x, |v: T| output(
            op,
            shape,
            v.iter()
                .map(|&a| <T as Num>::to_f64(a).is_nan())
                .collect::<Vec<bool>>()
        )?);
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
    fn detects_nan() {
        let x = t(&[4], vec![1.0f32, f32::NAN, f32::INFINITY, -0.0]);
        assert_eq!(vals::<bool>(&IsNaN, &[&x]), [false, true, false, false]);
        let h = t(&[1], vec![half::f16::NAN]);
        assert_eq!(vals::<bool>(&IsNaN, &[&h]), [true]);
        assert!(run(&IsNaN, &[&t(&[1], vec![1i32])]).is_err());
    }
}
