//! Range (ONNX opset 11): `start, start+delta, ...` up to (excluding) `limit`.
use crate::util::{output, Num};
use millrace_core::{DType, Dim, Tensor, TensorData};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Range;

impl Range {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Range))
    }
}

/// Number of elements: `max(ceil((limit - start) / delta), 0)`.
fn count(op: &str, start: f64, limit: f64, delta: f64) -> Result<usize, OpError> {
    if delta == 0.0 || !delta.is_finite() || !start.is_finite() || !limit.is_finite() {
        return Err(OpError::invalid(
            op,
            "delta must be non-zero and values finite",
        ));
    }
    let n = ((limit - start) / delta).ceil();
    if n > 1e12 {
        return Err(OpError::invalid(op, "range too large"));
    }
    Ok(n.max(0.0) as usize)
}

fn one(op: &str, t: &Tensor, what: &str) -> Result<(), OpError> {
    if t.len() != 1 {
        return Err(OpError::invalid(op, format!("{what} must be a scalar")));
    }
    Ok(())
}

fn range_int<T: Num>(op: &str, v: [i64; 3]) -> Result<Vec<T>, OpError> {
    let [s, l, d] = v;
    if d == 0 {
        return Err(OpError::invalid(op, "delta must be non-zero"));
    }
    let diff = l as i128 - s as i128;
    let d128 = d as i128;
    let n = if diff == 0 || (diff > 0) != (d > 0) {
        0
    } else {
        (diff.abs() + d128.abs() - 1) / d128.abs()
    };
    if n > 1_000_000_000_000 {
        return Err(OpError::invalid(op, "range too large"));
    }
    Ok((0..n as i64)
        .map(|i| T::from_f64((s + i * d) as f64))
        .collect())
}

impl Op for Range {
    fn name(&self) -> &'static str {
        "Range"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let dtype = ctx.input(0)?.dtype;
        let vals: Option<Vec<f64>> = (0..3)
            .map(|i| ctx.constant(i).and_then(|t| t.scalar_f64().ok().flatten()))
            .collect();
        let dim = match vals {
            Some(v) => Dim::Known(count(self.name(), v[0], v[1], v[2])?),
            None => Dim::Sym("range_len".into()),
        };
        Ok(vec![ValueType {
            dtype,
            shape: Some(vec![dim]),
        }])
    }

    fn cost(&self, _inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(&[], outputs, 2)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let (s, l, d) = (inputs.req(0)?, inputs.req(1)?, inputs.req(2)?);
        one(op, s, "start")?;
        one(op, l, "limit")?;
        one(op, d, "delta")?;
        if s.dtype() != l.dtype() || s.dtype() != d.dtype() {
            return Err(OpError::invalid(
                op,
                "start, limit and delta differ in dtype",
            ));
        }
        let dtype = s.dtype();
        let t = if dtype.is_int() {
            let g = |t: &Tensor| -> Result<i64, OpError> {
                t.to_i64_vec()
                    .map_err(|e| OpError::tensor(op, e))?
                    .first()
                    .copied()
                    .ok_or_else(|| OpError::invalid(op, "empty scalar"))
            };
            let v = [g(s)?, g(l)?, g(d)?];
            let data = match dtype {
                DType::I8 => TensorData::I8(range_int(op, v)?),
                DType::I16 => TensorData::I16(range_int(op, v)?),
                DType::I32 => TensorData::I32(range_int(op, v)?),
                DType::I64 => TensorData::I64(range_int(op, v)?),
                DType::U8 => TensorData::U8(range_int(op, v)?),
                DType::U16 => TensorData::U16(range_int(op, v)?),
                DType::U32 => TensorData::U32(range_int(op, v)?),
                _ => return Err(OpError::unsupported(op, format!("dtype {dtype}"))),
            };
            let n = data.len();
            Tensor::new(vec![n], data).map_err(|e| OpError::tensor(op, e))?
        } else {
            let g = |t: &Tensor| -> Result<f64, OpError> {
                t.scalar_f64()
                    .map_err(|e| OpError::tensor(op, e))?
                    .ok_or_else(|| OpError::invalid(op, "empty scalar"))
            };
            let (a, b, c) = (g(s)?, g(l)?, g(d)?);
            let n = count(op, a, b, c)?;
            crate::dispatch_float!(op, s, |_v: T| {
                let v: Vec<T> = if dtype == DType::F32 {
                    // Accumulate in f32 like the reference implementation.
                    let (a, c) = (a as f32, c as f32);
                    (0..n).map(|i| T::from_f32(a + i as f32 * c)).collect()
                } else {
                    (0..n).map(|i| T::from_f64(a + i as f64 * c)).collect()
                };
                output(op, vec![n], v)?
            })
        };
        Ok(vec![t])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: Tensor, l: Tensor, d: Tensor) -> Result<Tensor, OpError> {
        Range
            .eval(&Inputs::new("Range", &[Some(&s), Some(&l), Some(&d)]))
            .map(|mut v| v.remove(0))
    }

    #[test]
    fn ranges() {
        let y = run(
            Tensor::scalar(3i64),
            Tensor::scalar(10i64),
            Tensor::scalar(3i64),
        )
        .unwrap();
        assert_eq!(y.as_slice::<i64>().unwrap(), &[3, 6, 9]);
        let y = run(
            Tensor::scalar(10i32),
            Tensor::scalar(4i32),
            Tensor::scalar(-2i32),
        )
        .unwrap();
        assert_eq!(y.as_slice::<i32>().unwrap(), &[10, 8, 6]);
        let y = run(
            Tensor::scalar(1.0f32),
            Tensor::scalar(2.0f32),
            Tensor::scalar(0.25f32),
        )
        .unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1.0, 1.25, 1.5, 1.75]);
        let y = run(
            Tensor::scalar(5i64),
            Tensor::scalar(1i64),
            Tensor::scalar(1i64),
        )
        .unwrap();
        assert_eq!(y.shape(), &[0]);
        assert!(run(
            Tensor::scalar(0i64),
            Tensor::scalar(1i64),
            Tensor::scalar(0i64)
        )
        .is_err());
    }
}
