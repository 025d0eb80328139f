//! Greater (ONNX opsets 1, 7, 9, 13): `a > b` elementwise with numpy broadcasting, to bool.
use super::binary::{infer_broadcast, Legacy};
use super::logic::{eval_compare, CmpKernel};
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Greater {
    pub legacy: Legacy,
}

impl Greater {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Greater {
            legacy: Legacy::read(attrs, opset)?,
        }))
    }
}

impl CmpKernel for Greater {
    const ANY_DTYPE: bool = false;
    fn cmp<T: PartialOrd>(&self, a: &T, b: &T) -> bool {
        a > b
    }
}

impl Op for Greater {
    fn name(&self) -> &'static str {
        "Greater"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![infer_broadcast(self.name(), ctx, Some(DType::Bool))?])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        eval_compare(self.name(), self, &self.legacy, inputs)
    }

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
    fn compares_with_broadcast() {
        let a = t(&[2, 2], vec![1.0f32, 2.0, 3.0, f32::NAN]);
        let b = t(&[2], vec![2.0f32, 2.0]);
        assert_eq!(
            vals::<bool>(&Greater::default(), &[&a, &b]),
            [false, false, true, false]
        );
        let x = t(&[3], vec![-1i64, 5, 7]);
        let y = t(&[], vec![5i64]);
        assert_eq!(
            vals::<bool>(&Greater::default(), &[&x, &y]),
            [false, false, true]
        );
    }

    #[test]
    fn other_dtypes() {
        let s = t(&[2], vec!["a".to_string(), "b".to_string()]);
        let r = run(&Greater::default(), &[&s, &s]);
        assert!(r.unwrap_err().is_unsupported());
        let x = t(&[1], vec![1i32]);
        let y = t(&[1], vec![1i64]);
        assert!(run(&Greater::default(), &[&x, &y]).is_err());
    }
}
