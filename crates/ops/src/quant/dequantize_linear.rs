//! DequantizeLinear (ONNX opsets 10, 13, 19, 21, 23, 24, 25): `y = (x - zero_point) * scale`
//! per tensor, per axis or blocked, from int8, uint8, int16, uint16 or int32 to the scale's
//! float dtype (or `output_dtype`).
//!
//! The spec multiplies in the output precision, ONNX's reference in f32 and then converts;
//! results are produced only where every reading gives the same value (always so for f32
//! outputs and for 8-bit inputs), otherwise the evaluation is refused.
use super::common::{
    check_pair_shapes, dtype_attr, float_tensor, int_values, qdq_param_index, round_to, same_f64,
    scale_values, zero_point_values,
};
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "DequantizeLinear";

#[derive(Clone, Debug, PartialEq)]
pub struct DequantizeLinear {
    /// `None` below opset 13 (no axis attribute: per-tensor only).
    pub axis: Option<i64>,
    pub block_size: i64,
    /// From the `output_dtype` attribute, when set.
    pub output_dtype: Option<DType>,
}

impl DequantizeLinear {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let axis = if opset >= 13 {
            Some(attrs.int_or("axis", 1)?)
        } else {
            None
        };
        let block_size = if opset >= 21 {
            attrs.int_or("block_size", 0)?
        } else {
            0
        };
        if block_size < 0 {
            return Err(OpError::attribute(
                NAME,
                "block_size",
                "must not be negative",
            ));
        }
        let output_dtype = if opset >= 23 {
            dtype_attr(NAME, attrs, "output_dtype")?
        } else {
            None
        };
        if let Some(d) = output_dtype {
            if !matches!(d, DType::F32 | DType::F16 | DType::BF16) {
                return Err(OpError::unsupported(NAME, format!("output_dtype {d}")));
            }
        }
        Ok(Arc::new(DequantizeLinear {
            axis,
            block_size,
            output_dtype,
        }))
    }
}

/// Largest integer magnitude exact in f32.
const F32_EXACT: i64 = 1 << 24;

impl Op for DequantizeLinear {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let s = ctx.input(1)?;
        Ok(vec![ValueType {
            dtype: self.output_dtype.or(s.dtype),
            shape: x.shape.clone(),
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 2)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let scale = inputs.req(1)?;
        let zp = inputs.opt(2);
        let sv = scale_values(NAME, scale, "x_scale")?;
        let out = self.output_dtype.unwrap_or(scale.dtype());
        let xv = int_values(NAME, x, "x")?;
        let zv = match zp {
            Some(z) => {
                check_pair_shapes(NAME, scale, z)?;
                zero_point_values(NAME, z, x.dtype(), "x_zero_point")?
            }
            None => vec![],
        };
        let idx = qdq_param_index(NAME, x.shape(), scale.shape(), self.axis, self.block_size)?;
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
            let d = a - z;
            if a.abs() > F32_EXACT || d.abs() > F32_EXACT {
                return Err(OpError::unsupported(
                    NAME,
                    "int32 values beyond 2^24 (precision-dependent result)",
                ));
            }
            // d and s are exact in f64 and their product fits in 48 bits: exact.
            let p = d as f64 * s;
            let exact = round_to(out, p);
            let via_f32 = round_to(out, round_to(DType::F32, p));
            let in_out = round_to(out, round_to(out, d as f64) * round_to(out, s));
            if !same_f64(exact, via_f32) || !same_f64(exact, in_out) {
                return Err(OpError::unsupported(
                    NAME,
                    format!("{out} result depends on the multiplication precision"),
                ));
            }
            y.push(exact);
        }
        Ok(vec![float_tensor(NAME, out, x.shape().to_vec(), y)?])
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
        parts.join(" ")
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_core::f16;

    fn op(axis: i64, block: i64) -> DequantizeLinear {
        DequantizeLinear {
            axis: Some(axis),
            block_size: block,
            output_dtype: None,
        }
    }

    #[test]
    fn per_tensor_uint8() {
        // The spec example: zero point 128, scale 2.
        let x = Tensor::from_vec(vec![4], vec![0u8, 3, 128, 255]).unwrap();
        let s = Tensor::scalar(2.0f32);
        let z = Tensor::scalar(128u8);
        let y = op(1, 0)
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&s), Some(&z)]))
            .unwrap();
        assert_eq!(
            y[0].as_slice::<f32>().unwrap(),
            &[-256.0, -250.0, 0.0, 254.0]
        );
    }

    #[test]
    fn per_axis_int8_and_f16_scale() {
        let x = Tensor::from_vec(vec![2, 2], vec![-1i8, 2, 3, -4]).unwrap();
        let s = Tensor::from_vec(vec![2], vec![f16::from_f32(0.5), f16::from_f32(2.0)]).unwrap();
        let z = Tensor::from_vec(vec![2], vec![0i8, 1]).unwrap();
        let y = op(1, 0)
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&s), Some(&z)]))
            .unwrap();
        let v: Vec<f32> = y[0]
            .as_slice::<f16>()
            .unwrap()
            .iter()
            .map(|h| h.to_f32())
            .collect();
        assert_eq!(v, vec![-0.5, 2.0, 1.5, -10.0]);
    }

    #[test]
    fn zero_point_dtype_must_match() {
        let x = Tensor::from_vec(vec![1], vec![1u8]).unwrap();
        let s = Tensor::scalar(1.0f32);
        let z = Tensor::scalar(0i8);
        assert!(op(1, 0)
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&s), Some(&z)]))
            .is_err());
    }
}
