//! Mul (ONNX opsets 1, 6, 7, 13, 14): `a * b` elementwise with numpy broadcasting (integers wrap).
use super::binary::{eval_arith, infer_broadcast, Arith, ArithKernel, Legacy};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Mul {
    pub legacy: Legacy,
}

impl Mul {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Mul {
            legacy: Legacy::read(attrs, opset)?,
        }))
    }
}

impl ArithKernel for Mul {
    fn apply<T: Arith>(&self, a: T, b: T) -> T {
        T::mul(a, b)
    }

    fn vbin(&self) -> Option<millrace_kernels::vmath::Bin> {
        Some(millrace_kernels::vmath::Bin::Mul)
    }
}

impl Op for Mul {
    fn name(&self) -> &'static str {
        "Mul"
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
    fn multiplies_channels() {
        // [1, 2, 1, 2] * [2, 1, 1]: per-channel scale.
        let a = t(&[1, 2, 1, 2], vec![1.0f32, 2.0, 3.0, 4.0]);
        let s = t(&[2, 1, 1], vec![10.0f32, -1.0]);
        assert_eq!(
            vals::<f32>(&Mul::default(), &[&a, &s]),
            [10.0, 20.0, -3.0, -4.0]
        );
        let h = t(
            &[2],
            vec![half::f16::from_f32(1.5), half::f16::from_f32(-2.0)],
        );
        let y = vals::<half::f16>(&Mul::default(), &[&h, &h]);
        assert_eq!(y, [half::f16::from_f32(2.25), half::f16::from_f32(4.0)]);
    }

    #[test]
    fn legacy_broadcast_with_axis() {
        let attrs = vec![
            ("broadcast", millrace_ir::Attr::Int(1)),
            ("axis", millrace_ir::Attr::Int(0)),
        ];
        let op = super::super::testutil::build(Mul::from_onnx, "Mul", attrs, 6).unwrap();
        let a = t(&[2, 2], vec![1i32, 2, 3, 4]);
        let b = t(&[2], vec![10i32, 100]);
        // Axis 0 means b lines up with a's first dim: numpy would not do that.
        assert!(run(op.as_ref(), &[&a, &b]).unwrap_err().is_unsupported());
        let c = t(&[2, 2], vec![1i32, 1, 1, 1]);
        assert_eq!(vals::<i32>(op.as_ref(), &[&a, &c]), [1, 2, 3, 4]);
    }
}
