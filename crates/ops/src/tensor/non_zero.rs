//! NonZero (ONNX opsets 9, 13): indices of non-zero elements, shape `[rank, count]` (i64).
use crate::util::output;
use millrace_core::{DType, Dim, Tensor, TensorData};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct NonZero;

impl NonZero {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(NonZero))
    }
}

/// Which elements are non-zero (non-empty for strings).
fn mask(d: &TensorData) -> Vec<bool> {
    match d {
        TensorData::Bool(v) => v.clone(),
        TensorData::String(v) => v.iter().map(|s| !s.is_empty()).collect(),
        TensorData::F16(v) => v.iter().map(|x| x.to_f32() != 0.0).collect(),
        TensorData::BF16(v) => v.iter().map(|x| x.to_f32() != 0.0).collect(),
        _ => Vec::new(),
    }
}

impl Op for NonZero {
    fn name(&self) -> &'static str {
        "NonZero"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        Ok(vec![match x.rank() {
            Some(r) => ValueType::new(DType::I64, vec![Dim::Known(r), Dim::Sym("nonzero".into())]),
            None => ValueType::of_dtype(DType::I64),
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 0)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let nz: Vec<bool> = match x.data() {
            TensorData::Bool(_)
            | TensorData::String(_)
            | TensorData::F16(_)
            | TensorData::BF16(_) => mask(x.data()),
            _ => x
                .to_f64_vec()
                .map_err(|e| OpError::tensor(op, e))?
                .into_iter()
                .map(|v| v != 0.0)
                .collect(),
        };
        // i64/u64 beyond 2^53 still compare with zero exactly through f64.
        let r = x.rank();
        let hits: Vec<usize> = nz
            .iter()
            .enumerate()
            .filter(|(_, &b)| b)
            .map(|(i, _)| i)
            .collect();
        let n = hits.len();
        let st = millrace_core::strides_of(x.shape());
        let mut out = vec![0i64; r * n];
        for (k, &flat) in hits.iter().enumerate() {
            let mut rem = flat;
            for a in 0..r {
                out[a * n + k] = (rem / st[a]) as i64;
                rem %= st[a];
            }
        }
        Ok(vec![output(op, vec![r, n], out)?])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nonzeros() {
        let x = Tensor::from_vec(vec![2, 2], vec![1i32, 0, 1, 1]).unwrap();
        let y = NonZero.eval(&Inputs::new("NonZero", &[Some(&x)])).unwrap();
        assert_eq!(y[0].shape(), &[2, 3]);
        assert_eq!(y[0].as_slice::<i64>().unwrap(), &[0, 1, 1, 0, 0, 1]);
        let b = Tensor::from_vec(vec![3], vec![false, true, false]).unwrap();
        let y = NonZero.eval(&Inputs::new("NonZero", &[Some(&b)])).unwrap();
        assert_eq!(y[0].as_slice::<i64>().unwrap(), &[1]);
        let s = Tensor::scalar(0.0f32);
        let y = NonZero.eval(&Inputs::new("NonZero", &[Some(&s)])).unwrap();
        assert_eq!(y[0].shape(), &[0, 0]);
    }
}
