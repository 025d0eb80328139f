//! Equal (ONNX opsets 1, 7, 11, 13, 19): `a == b` elementwise with numpy broadcasting, to bool.
use super::binary::{infer_broadcast, Legacy};
use super::logic::{eval_compare, CmpKernel};
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Equal {
    pub legacy: Legacy,
}

impl Equal {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Equal {
            legacy: Legacy::read(attrs, opset)?,
        }))
    }
}

impl CmpKernel for Equal {
    const ANY_DTYPE: bool = true;
    fn cmp<T: PartialOrd>(&self, a: &T, b: &T) -> bool {
        a == b
    }
}

impl Op for Equal {
    fn name(&self) -> &'static str {
        "Equal"
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
            vals::<bool>(&Equal::default(), &[&a, &b]),
            [false, true, false, false]
        );
        let x = t(&[3], vec![-1i64, 5, 7]);
        let y = t(&[], vec![5i64]);
        assert_eq!(
            vals::<bool>(&Equal::default(), &[&x, &y]),
            [false, true, false]
        );
    }

    #[test]
    fn other_dtypes() {
        let s = t(&[2], vec!["a".to_string(), "b".to_string()]);
        let r = run(&Equal::default(), &[&s, &s]);
        assert_eq!(r.unwrap()[0].as_slice::<bool>().unwrap(), &[true, true]);
        let x = t(&[1], vec![1i32]);
        let y = t(&[1], vec![1i64]);
        assert!(run(&Equal::default(), &[&x, &y]).is_err());
    }
}
