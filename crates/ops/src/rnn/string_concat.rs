//! StringConcat (ONNX opset 20): elementwise concatenation of two string tensors with
//! numpy broadcasting.
use crate::util::{broadcast_all, broadcast_index, broadcast_types, output, typed};
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "StringConcat";

#[derive(Clone, Debug, PartialEq)]
pub struct StringConcat;

impl StringConcat {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(StringConcat))
    }
}

impl Op for StringConcat {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let mut t = broadcast_types(NAME, &[ctx.input(0)?, ctx.input(1)?])?;
        t.dtype = Some(DType::String);
        Ok(vec![t])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let (a, b) = (inputs.req(0)?, inputs.req(1)?);
        let (va, vb) = (typed::<String>(NAME, a)?, typed::<String>(NAME, b)?);
        let shape = broadcast_all(NAME, &[a.shape(), b.shape()])?;
        let ia = broadcast_index(&shape, a.shape());
        let ib = broadcast_index(&shape, b.shape());
        let mut out = Vec::with_capacity(ia.len());
        for (&i, &j) in ia.iter().zip(&ib) {
            let (x, y) = match (va.get(i), vb.get(j)) {
                (Some(x), Some(y)) => (x, y),
                _ => return Err(OpError::invalid(NAME, "broadcast index out of range")),
            };
            let mut s = String::with_capacity(x.len() + y.len());
            s.push_str(x);
            s.push_str(y);
            out.push(s);
        }
        Ok(vec![output(NAME, shape, out)?])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(shape: Vec<usize>, v: &[&str]) -> Tensor {
        Tensor::from_vec(shape, v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn concatenates_with_broadcasting() {
        let a = st(vec![3], &["cat", "dog", "的"]);
        let b = st(vec![1], &["s"]);
        let y = StringConcat
            .eval(&Inputs::new(NAME, &[Some(&a), Some(&b)]))
            .unwrap();
        assert_eq!(y[0], st(vec![3], &["cats", "dogs", "的s"]));
        let x = Tensor::from_vec(vec![1], vec![1.0f32]).unwrap();
        assert!(StringConcat
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&b)]))
            .is_err());
    }
}
