//! QuantizeLinear (ONNX opsets 10, 13, 19, 21, 23, 24, 25): `y = saturate(round(x / scale) +
//! zero_point)` with rounding half to even, per tensor, per axis or blocked, to int8, uint8,
//! int16 or uint16 (float8 / 4-bit / 2-bit targets are not representable in millrace).
//!
//! The division runs in the scale's dtype (or `precision`); where numpy's type promotion
//! (the ONNX reference) would divide in another precision and that changes a result, the
//! evaluation is refused rather than guessed.
use super::common::{
    check_pair_shapes, dtype_attr, int_tensor, qdq_param_index, quant_range, round_to,
    scale_values, zero_point_values,
};
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "QuantizeLinear";

#[derive(Clone, Debug, PartialEq)]
pub struct QuantizeLinear {
    /// `None` below opset 13 (no axis attribute: per-tensor only).
    pub axis: Option<i64>,
    pub block_size: i64,
    /// From the `output_dtype` attribute, when set.
    pub output_dtype: Option<DType>,
    /// From the `precision` attribute, when set.
    pub precision: Option<DType>,
}

impl QuantizeLinear {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let axis = if opset >= 13 {
            Some(attrs.int_or("axis", 1)?)
        } else {
            None
        };
        if opset >= 19 {
            // Only affects float8 targets, which millrace cannot produce.
            let _ = attrs.int_or("saturate", 1)?;
        }
        let (block_size, output_dtype) = if opset >= 21 {
            (
                attrs.int_or("block_size", 0)?,
                dtype_attr(NAME, attrs, "output_dtype")?,
            )
        } else {
            (0, None)
        };
        if block_size < 0 {
            return Err(OpError::attribute(
                NAME,
                "block_size",
                "must not be negative",
            ));
        }
        if let Some(d) = output_dtype {
            if quant_range(d).is_none() {
                return Err(OpError::unsupported(NAME, format!("output_dtype {d}")));
            }
        }
        let precision = if opset >= 23 {
            dtype_attr(NAME, attrs, "precision")?
        } else {
            None
        };
        if let Some(p) = precision {
            if !matches!(p, DType::F32 | DType::F16 | DType::BF16) {
                return Err(OpError::unsupported(NAME, format!("precision {p}")));
            }
        }
        Ok(Arc::new(QuantizeLinear {
            axis,
            block_size,
            output_dtype,
            precision,
        }))
    }

    fn out_dtype(&self, zp: Option<DType>) -> Result<DType, OpError> {
        match (zp, self.output_dtype) {
            (Some(z), Some(o)) if z != o => Err(OpError::invalid(
                NAME,
                format!("y_zero_point dtype {z} differs from output_dtype {o}"),
            )),
            (Some(z), _) => Ok(z),
            (None, Some(o)) => Ok(o),
            (None, None) => Ok(DType::U8),
        }
    }
}

/// numpy's result dtype for `x / scale` (the ONNX reference's division precision).
fn numpy_div_dtype(x: DType, s: DType) -> DType {
    if x == s {
        return x;
    }
    match (x, s) {
        (DType::I32, _) | (_, DType::I32) => DType::F64,
        _ => DType::F32,
    }
}

impl Op for QuantizeLinear {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let dtype = match ctx.opt_input(2) {
            None => Some(self.out_dtype(None)?),
            Some(z) => match z.dtype {
                Some(d) => Some(self.out_dtype(Some(d))?),
                None => self.output_dtype,
            },
        };
        Ok(vec![ValueType {
            dtype,
            shape: x.shape.clone(),
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 3)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let scale = inputs.req(1)?;
        let zp = inputs.opt(2);
        let out = self.out_dtype(zp.map(|z| z.dtype()))?;
        let (lo, hi) = quant_range(out)
            .ok_or_else(|| OpError::unsupported(NAME, format!("output dtype {out}")))?;
        if !matches!(
            x.dtype(),
            DType::F32 | DType::F16 | DType::BF16 | DType::I32
        ) {
            return Err(OpError::unsupported(
                NAME,
                format!("input dtype {}", x.dtype()),
            ));
        }
        let sv = scale_values(NAME, scale, "y_scale")?;
        let zv = match zp {
            Some(z) => {
                check_pair_shapes(NAME, scale, z)?;
                zero_point_values(NAME, z, out, "y_zero_point")?
            }
            None => vec![],
        };
        let idx = qdq_param_index(NAME, x.shape(), scale.shape(), self.axis, self.block_size)?;
        let xv = x.to_f64_vec().map_err(|e| OpError::tensor(NAME, e))?;
        let prec = self.precision.unwrap_or(scale.dtype());
        // A second precision to cross-check when the spec and numpy promotion differ.
        let alt = match self.precision {
            Some(_) => None,
            None => Some(numpy_div_dtype(x.dtype(), scale.dtype())).filter(|&d| d != prec),
        };
        let quant = |q: f64, z: i64| -> Result<i64, OpError> {
            if q.is_nan() {
                return Err(OpError::unsupported(NAME, "NaN input or scale"));
            }
            Ok((q.round_ties_even() + z as f64).clamp(lo as f64, hi as f64) as i64)
        };
        let div = |p: DType, a: f64, s: f64| round_to(p, round_to(p, a) / round_to(p, s));
        let mut y = Vec::with_capacity(xv.len());
        for (&a, &j) in xv.iter().zip(&idx) {
            let s = *sv
                .get(j)
                .ok_or_else(|| OpError::invalid(NAME, "scale index out of range"))?;
            let z = if zv.is_empty() {
                0
            } else {
                *zv.get(j)
                    .ok_or_else(|| OpError::invalid(NAME, "zero point index out of range"))?
            };
            let v = quant(div(prec, a, s), z)?;
            if let Some(p2) = alt {
                if quant(div(p2, a, s), z)? != v {
                    return Err(OpError::unsupported(
                        NAME,
                        format!(
                            "x {} / scale {} depends on the division precision",
                            x.dtype(),
                            scale.dtype()
                        ),
                    ));
                }
            }
            y.push(v);
        }
        Ok(vec![int_tensor(NAME, out, x.shape().to_vec(), y)?])
    }

    fn describe(&self) -> String {
        let mut parts = vec![];
        if let Some(a) = self.axis {
            parts.push(format!("axis={a}"));
        }
        if self.block_size > 0 {
            parts.push(format!("block_size={}", self.block_size));
        }
        if let Some(d) = self.output_dtype {
            parts.push(format!("output_dtype={d}"));
        }
        if let Some(d) = self.precision {
            parts.push(format!("precision={d}"));
        }
        parts.join(" ")
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(axis: i64, block: i64, out: Option<DType>) -> QuantizeLinear {
        QuantizeLinear {
            axis: Some(axis),
            block_size: block,
            output_dtype: out,
            precision: None,
        }
    }

    #[test]
    fn per_tensor_uint8_rounds_half_to_even() {
        // The spec example: scale 2, zero point 128.
        let x = Tensor::from_vec(vec![6], vec![0.0f32, 2.0, 3.0, 1000.0, -254.0, -1000.0]).unwrap();
        let s = Tensor::scalar(2.0f32);
        let z = Tensor::scalar(128u8);
        let y = op(1, 0, None)
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&s), Some(&z)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[128, 129, 130, 255, 1, 0]);
    }

    #[test]
    fn no_zero_point_means_uint8_or_output_dtype() {
        let x = Tensor::from_vec(vec![3], vec![-3.0f32, 5.0, 300.0]).unwrap();
        let s = Tensor::scalar(2.0f32);
        let y = op(1, 0, None)
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&s)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[0, 2, 150]);
        let y = op(1, 0, Some(DType::I16))
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&s)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<i16>().unwrap(), &[-2, 2, 150]);
    }

    #[test]
    fn per_axis_and_blocked() {
        let x = Tensor::from_vec(vec![2, 2], vec![4.0f32, 4.0, 4.0, 4.0]).unwrap();
        let s = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
        let y = op(0, 0, None)
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&s)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[4, 4, 2, 2]);
        let y = op(1, 0, None)
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&s)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[4, 2, 4, 2]);
        let sb = Tensor::from_vec(vec![2, 1], vec![1.0f32, 4.0]).unwrap();
        let y = op(1, 2, None)
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&sb)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[4, 4, 1, 1]);
    }

    #[test]
    fn refuses_nan_and_mismatched_zero_point() {
        let x = Tensor::from_vec(vec![1], vec![f32::NAN]).unwrap();
        let s = Tensor::scalar(1.0f32);
        assert!(op(1, 0, None)
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&s)]))
            .unwrap_err()
            .is_unsupported());
        let x = Tensor::from_vec(vec![1], vec![1.0f32]).unwrap();
        let z = Tensor::scalar(0i8);
        assert!(op(1, 0, Some(DType::U8))
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&s), Some(&z)]))
            .is_err());
    }
}
