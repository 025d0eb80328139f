//! Transpose (ONNX opsets 1, 13, 21): permutes axes (`perm`, default reversed).
use super::common::{istrides, strided_indices, take};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Transpose {
    pub perm: Option<Vec<i64>>,
}

impl Transpose {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Transpose {
            perm: attrs.ints("perm")?,
        }))
    }

    fn perm(&self, rank: usize) -> Result<Vec<usize>, OpError> {
        let Some(p) = &self.perm else {
            return Ok((0..rank).rev().collect());
        };
        if p.len() != rank {
            return Err(OpError::invalid(
                self.name(),
                format!("perm {p:?} does not match rank {rank}"),
            ));
        }
        let mut seen = vec![false; rank];
        let mut out = Vec::with_capacity(rank);
        for &a in p {
            let n = if a < 0 { a + rank as i64 } else { a };
            if n < 0 || n >= rank as i64 || seen[n as usize] {
                return Err(OpError::invalid(
                    self.name(),
                    format!("perm {p:?} is not a permutation of 0..{rank}"),
                ));
            }
            seen[n as usize] = true;
            out.push(n as usize);
        }
        Ok(out)
    }
}

/// Transposes any tensor by `perm` (already validated).
pub(crate) fn transpose(op: &str, x: &Tensor, perm: &[usize]) -> Result<Tensor, OpError> {
    let s = x.shape();
    let st = istrides(s);
    let out_shape: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    let out_strides: Vec<isize> = perm.iter().map(|&p| st[p]).collect();
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(x.clone());
    }
    let idx = strided_indices(&out_shape, &out_strides, 0);
    take(op, x.data(), &idx, out_shape)
}

impl Op for Transpose {
    fn name(&self) -> &'static str {
        "Transpose"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let shape = match &x.shape {
            Some(s) => Some(self.perm(s.len())?.iter().map(|&p| s[p].clone()).collect()),
            None => None,
        };
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let perm = self.perm(x.rank())?;
        Ok(vec![transpose(self.name(), x, &perm)?])
    }

    fn describe(&self) -> String {
        match &self.perm {
            Some(p) => format!("perm={p:?}"),
            None => String::new(),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutes() {
        let x = Tensor::from_vec(vec![2, 3], vec![1i32, 2, 3, 4, 5, 6]).unwrap();
        let y = Transpose { perm: None }
            .eval(&Inputs::new("Transpose", &[Some(&x)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[3, 2]);
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[1, 4, 2, 5, 3, 6]);
        let x3 = Tensor::from_vec(vec![1, 2, 2], vec![1u8, 2, 3, 4]).unwrap();
        let y = Transpose {
            perm: Some(vec![0, -1, 1]),
        }
        .eval(&Inputs::new("Transpose", &[Some(&x3)]))
        .unwrap();
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[1, 3, 2, 4]);
        assert!(Transpose {
            perm: Some(vec![0, 0])
        }
        .eval(&Inputs::new("Transpose", &[Some(&x)]))
        .is_err());
    }
}
