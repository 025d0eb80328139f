//! Det (ONNX opsets 11, 22): determinants of the square matrices in the last two axes of
//! a `[*, M, M]` float tensor, by LU decomposition with partial pivoting in f64, rounded
//! once to the input dtype. Non-finite inputs are unsupported (how NaN and infinity
//! propagate depends on the elimination order of the implementation).
use super::common::{check_float, float_tensor, float_vals};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "Det";

#[derive(Clone, Debug, PartialEq)]
pub struct Det;

impl Det {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Det))
    }
}

/// Determinant of the `m x m` row-major matrix `a` (overwritten).
fn det(a: &mut [f64], m: usize) -> f64 {
    let mut d = 1.0f64;
    for k in 0..m {
        let mut p = k;
        let mut best = a[k * m + k].abs();
        for i in k + 1..m {
            let v = a[i * m + k].abs();
            if v > best {
                best = v;
                p = i;
            }
        }
        if best == 0.0 {
            return 0.0;
        }
        if p != k {
            for j in 0..m {
                a.swap(k * m + j, p * m + j);
            }
            d = -d;
        }
        let piv = a[k * m + k];
        d *= piv;
        for i in k + 1..m {
            let f = a[i * m + k] / piv;
            if f != 0.0 {
                for j in k + 1..m {
                    a[i * m + j] -= f * a[k * m + j];
                }
            }
        }
    }
    d
}

impl Op for Det {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        check_float(NAME, x)?;
        let shape = match &x.shape {
            Some(s) if s.len() < 2 => {
                return Err(OpError::invalid(NAME, "input must have rank >= 2"))
            }
            Some(s) => Some(s[..s.len() - 2].to_vec()),
            None => None,
        };
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let mut c = Cost::elementwise(inputs, outputs, 0);
        if let Some(s) = inputs.first().and_then(|t| t.concrete_shape()) {
            if let Some(&m) = s.last() {
                let batch: usize = s[..s.len().saturating_sub(2)].iter().product();
                c.flops = (batch * m * m * m) as u64 * 2 / 3;
            }
        }
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let shape = x.shape();
        let r = shape.len();
        if r < 2 || shape[r - 1] != shape[r - 2] {
            return Err(OpError::invalid(
                NAME,
                format!("input shape {shape:?} is not [*, M, M]"),
            ));
        }
        let m = shape[r - 1];
        let mut xs = float_vals(NAME, x)?;
        if xs.iter().any(|v| !v.is_finite()) {
            return Err(OpError::unsupported(NAME, "non-finite input values"));
        }
        let out_shape = shape[..r - 2].to_vec();
        let batch: usize = out_shape.iter().product();
        let y: Vec<f64> = if m == 0 {
            vec![1.0; batch]
        } else {
            xs.chunks_mut(m * m).map(|a| det(a, m)).collect()
        };
        Ok(vec![float_tensor(NAME, x.dtype(), out_shape, y)?])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched() {
        let x = Tensor::from_vec(
            vec![3, 2, 2],
            vec![
                1.0f32, 2.0, 3.0, 4.0, 1.0, 2.0, 2.0, 1.0, 1.0, 3.0, 3.0, 1.0,
            ],
        )
        .unwrap();
        let y = Det.eval(&Inputs::new(NAME, &[Some(&x)])).unwrap();
        assert_eq!(y[0].shape(), &[3]);
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[-2.0, -3.0, -8.0]);
    }

    #[test]
    fn three_by_three_and_singular() {
        let x = Tensor::from_vec(
            vec![3, 3],
            vec![0.0f64, 2.0, 1.0, 1.0, 1.0, 1.0, 2.0, 0.0, 3.0],
        )
        .unwrap();
        let y = Det.eval(&Inputs::new(NAME, &[Some(&x)])).unwrap();
        assert!(y[0].shape().is_empty());
        // 0*(3-0) - 2*(3-2) + 1*(0-2) = -4
        assert!((y[0].as_slice::<f64>().unwrap()[0] + 4.0).abs() < 1e-12);
        let s = Tensor::from_vec(vec![2, 2], vec![1.0f64, 2.0, 2.0, 4.0]).unwrap();
        let y = Det.eval(&Inputs::new(NAME, &[Some(&s)])).unwrap();
        assert_eq!(y[0].as_slice::<f64>().unwrap(), &[0.0]);
        let bad = Tensor::from_vec(vec![2, 3], vec![0.0f64; 6]).unwrap();
        assert!(Det.eval(&Inputs::new(NAME, &[Some(&bad)])).is_err());
    }
}
