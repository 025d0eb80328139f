//! EyeLike (ONNX opsets 9, 22): a 2-D tensor of the input's shape with ones on diagonal `k`.
use super::common::{scalar_data, take_or};
use millrace_core::{DType, Tensor, TensorData};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct EyeLike {
    pub dtype: Option<DType>,
    pub k: i64,
}

impl EyeLike {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let dtype = match attrs.int("dtype")? {
            Some(c) => Some(DType::from_onnx_code(c as i32).ok_or_else(|| {
                OpError::attribute("EyeLike", "dtype", format!("unsupported dtype code {c}"))
            })?),
            None => None,
        };
        if dtype == Some(DType::String) {
            return Err(OpError::attribute(
                "EyeLike",
                "dtype",
                "string is not allowed",
            ));
        }
        Ok(Arc::new(EyeLike {
            dtype,
            k: attrs.int_or("k", 0)?,
        }))
    }
}

impl Op for EyeLike {
    fn name(&self) -> &'static str {
        "EyeLike"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        if let Some(r) = x.rank() {
            if r != 2 {
                return Err(OpError::invalid(self.name(), "input must be 2-D"));
            }
        }
        Ok(vec![ValueType {
            dtype: self.dtype.or(x.dtype),
            shape: x.shape.clone(),
        }])
    }

    fn cost(&self, _inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(&[], outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let &[r, c] = x.shape() else {
            return Err(OpError::invalid(op, "input must be 2-D"));
        };
        let dtype = self.dtype.unwrap_or(x.dtype());
        if dtype == DType::String {
            return Err(OpError::unsupported(op, "dtype string"));
        }
        let zero = TensorData::zeros(dtype, 1);
        let one = scalar_data(op, dtype, 1.0)?;
        let mut idx = Vec::with_capacity(r * c);
        for i in 0..r {
            for j in 0..c {
                idx.push((j as i64 - i as i64 == self.k).then_some(0));
            }
        }
        Ok(vec![take_or(op, &one, &idx, &zero, vec![r, c])?])
    }

    fn describe(&self) -> String {
        format!("k={}", self.k)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_diagonals() {
        let x = Tensor::zeros(DType::I32, vec![2, 3]);
        for (k, want) in [
            (0, [1, 0, 0, 0, 1, 0]),
            (1, [0, 1, 0, 0, 0, 1]),
            (-1, [0, 0, 0, 1, 0, 0]),
        ] {
            let y = EyeLike { dtype: None, k }
                .eval(&Inputs::new("EyeLike", &[Some(&x)]))
                .unwrap();
            assert_eq!(y[0].as_slice::<i32>().unwrap(), &want);
        }
        let y = EyeLike {
            dtype: Some(DType::Bool),
            k: 0,
        }
        .eval(&Inputs::new("EyeLike", &[Some(&x)]))
        .unwrap();
        assert_eq!(
            y[0].as_slice::<bool>().unwrap(),
            &[true, false, false, false, true, false]
        );
        let bad = Tensor::zeros(DType::I32, vec![3]);
        assert!(EyeLike { dtype: None, k: 0 }
            .eval(&Inputs::new("EyeLike", &[Some(&bad)]))
            .is_err());
    }
}
