//! Constant (ONNX opsets 1, 9, 11, 12, 13, 19, 21): a tensor given by one of its attributes.
use crate::util::output;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Constant {
    pub value: Tensor,
}

impl Constant {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let name = "Constant";
        let mut found: Vec<Tensor> = vec![];
        if let Some(t) = attrs.tensor("value")? {
            found.push(t);
        }
        if attrs.get("sparse_value").is_some() {
            return Err(OpError::unsupported(name, "sparse_value"));
        }
        if let Some(v) = attrs.float("value_float")? {
            found.push(Tensor::scalar(v));
        }
        if let Some(v) = attrs.floats("value_floats")? {
            found.push(output(name, vec![v.len()], v)?);
        }
        if let Some(v) = attrs.int("value_int")? {
            found.push(Tensor::scalar(v));
        }
        if let Some(v) = attrs.ints("value_ints")? {
            found.push(output(name, vec![v.len()], v)?);
        }
        if let Some(v) = attrs.string("value_string")? {
            found.push(Tensor::scalar(v));
        }
        if let Some(v) = attrs.strings("value_strings")? {
            found.push(output(name, vec![v.len()], v)?);
        }
        if found.len() != 1 {
            return Err(OpError::invalid(
                name,
                format!(
                    "exactly one value attribute is required, found {}",
                    found.len()
                ),
            ));
        }
        Ok(Arc::new(Constant {
            value: found.remove(0),
        }))
    }
}

impl Op for Constant {
    fn name(&self) -> &'static str {
        "Constant"
    }

    fn infer(&self, _ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ValueType::concrete(
            self.value.dtype(),
            self.value.shape(),
        )])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, _inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        Ok(vec![self.value.clone()])
    }

    fn describe(&self) -> String {
        format!("{}{:?}", self.value.dtype(), self.value.shape())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_ir::Attr;

    #[test]
    fn builds_from_each_attribute() {
        let cases = vec![
            (
                Attr::Float(1.5),
                ValueType::concrete(millrace_core::DType::F32, &[]),
            ),
            (
                Attr::Ints(vec![1, 2]),
                ValueType::concrete(millrace_core::DType::I64, &[2]),
            ),
            (
                Attr::Strings(vec![b"a".to_vec()]),
                ValueType::concrete(millrace_core::DType::String, &[1]),
            ),
        ];
        let names = ["value_float", "value_ints", "value_strings"];
        for ((a, want), n) in cases.into_iter().zip(names) {
            let attrs = Attributes::new("Constant", vec![(n.to_string(), a)]);
            let op = Constant::from_onnx(&attrs, 13).unwrap();
            assert!(attrs.unread().is_empty());
            let t = op.infer(&InferCtx::new("Constant", &[], &[])).unwrap();
            assert_eq!(t[0], want);
        }
        let none = Attributes::new("Constant", vec![]);
        assert!(Constant::from_onnx(&none, 13).is_err());
        let sparse = Attributes::new("Constant", vec![("sparse_value".into(), Attr::Int(0))]);
        assert!(Constant::from_onnx(&sparse, 13)
            .unwrap_err()
            .is_unsupported());
    }
}
