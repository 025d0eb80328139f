//! IsInf (ONNX opsets 10, 20): true where a float element is +inf (if `detect_positive`)
//! or -inf (if `detect_negative`).
use crate::util::{output, Num};
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct IsInf {
    pub detect_negative: bool,
    pub detect_positive: bool,
}

impl IsInf {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(IsInf {
            detect_negative: attrs.int_or("detect_negative", 1)? != 0,
            detect_positive: attrs.int_or("detect_positive", 1)? != 0,
        }))
    }

    fn test(&self, v: f64) -> bool {
        (self.detect_positive && v == f64::INFINITY)
            || (self.detect_negative && v == f64::NEG_INFINITY)
    }
}

impl Op for IsInf {
    fn name(&self) -> &'static str {
        "IsInf"
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
                .map(|&a| self.test(<T as Num>::to_f64(a)))
                .collect::<Vec<bool>>()
        )?);
        Ok(vec![y])
    }

    fn describe(&self) -> String {
        format!(
            "detect_negative={} detect_positive={}",
            self.detect_negative as i32, self.detect_positive as i32
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{build, run, t, vals};
    use super::*;
    use millrace_ir::Attr;

    #[test]
    fn detects_selected_infinities() {
        let x = t(
            &[4],
            vec![1.0f32, f32::NAN, f32::INFINITY, f32::NEG_INFINITY],
        );
        let both = build(IsInf::from_onnx, "IsInf", vec![], 10).unwrap();
        assert_eq!(
            vals::<bool>(both.as_ref(), &[&x]),
            [false, false, true, true]
        );
        let neg = build(
            IsInf::from_onnx,
            "IsInf",
            vec![("detect_positive", Attr::Int(0))],
            10,
        )
        .unwrap();
        assert_eq!(
            vals::<bool>(neg.as_ref(), &[&x]),
            [false, false, false, true]
        );
        assert!(run(neg.as_ref(), &[&t(&[1], vec![1i64])]).is_err());
    }
}
