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
    if let millrace_core::TensorData::F32(v) = x.data() {
        let y = permute_f32(v, &out_shape, &out_strides);
        return Tensor::new(out_shape, millrace_core::TensorData::F32(y))
            .map_err(|e| OpError::tensor(op, e));
    }
    let idx = strided_indices(&out_shape, &out_strides, 0);
    take(op, x.data(), &idx, out_shape)
}

/// f32 fast path: walks the output in order with an odometer over the outer axes and a
/// strided copy along the last one (no index vector).
fn permute_f32(x: &[f32], shape: &[usize], strides: &[isize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let mut y = Vec::with_capacity(n);
    let Some((&last, outer)) = shape.split_last() else {
        y.extend_from_slice(&x[..n.min(x.len())]);
        return y;
    };
    if n == 0 {
        return y;
    }
    let ls = strides[strides.len() - 1];
    let mut pos = vec![0usize; outer.len()];
    let mut base: isize = 0;
    loop {
        if ls == 1 {
            y.extend_from_slice(&x[base as usize..base as usize + last]);
        } else {
            y.extend((0..last as isize).map(|i| x[(base + i * ls) as usize]));
        }
        // Advance the odometer over the outer axes.
        let mut d = outer.len();
        loop {
            if d == 0 {
                return y;
            }
            d -= 1;
            pos[d] += 1;
            base += strides[d];
            if pos[d] < outer[d] {
                break;
            }
            base -= strides[d] * outer[d] as isize;
            pos[d] = 0;
        }
    }
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
    fn f32_fast_path_matches_the_generic_one() {
        let shape = vec![2, 3, 4, 5];
        let v: Vec<f32> = (0..120).map(|i| i as f32).collect();
        let x = Tensor::from_vec(shape.clone(), v).unwrap();
        let xi = Tensor::from_vec(shape, (0..120).collect::<Vec<i32>>()).unwrap();
        for perm in [
            [0, 2, 1, 3],
            [3, 2, 1, 0],
            [1, 0, 3, 2],
            [0, 1, 3, 2],
            [2, 3, 0, 1],
        ] {
            let a = transpose("Transpose", &x, &perm).unwrap();
            let b = transpose("Transpose", &xi, &perm).unwrap();
            assert_eq!(a.shape(), b.shape());
            let av: Vec<i32> = a
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .map(|&f| f as i32)
                .collect();
            assert_eq!(av, b.as_slice::<i32>().unwrap(), "{perm:?}");
        }
    }

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
