//! DynamicQuantizeLinear (ONNX opset 11): quantizes an f32 tensor to uint8 with a scale and
//! zero point computed from its range (widened to include 0). Outputs `y`, `y_scale` (f32
//! scalar) and `y_zero_point` (uint8 scalar). All arithmetic is in f32, rounding half to even.
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "DynamicQuantizeLinear";

#[derive(Clone, Debug, PartialEq)]
pub struct DynamicQuantizeLinear;

impl DynamicQuantizeLinear {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(DynamicQuantizeLinear))
    }
}

/// (y, scale, zero point) for finite, non-empty `x`.
fn quantize(x: &[f32]) -> Result<(Vec<u8>, f32, u8), OpError> {
    if x.is_empty() {
        return Err(OpError::invalid(NAME, "empty input has no range"));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(OpError::unsupported(NAME, "non-finite input values"));
    }
    let max = x.iter().copied().fold(0.0f32, f32::max);
    let min = x.iter().copied().fold(0.0f32, f32::min);
    let range = if max == min { 1.0f32 } else { max - min };
    let scale = range / 255.0f32;
    if !scale.is_finite() || scale == 0.0 {
        return Err(OpError::unsupported(NAME, "input range overflows f32"));
    }
    let zp = (0.0f32 - min / scale).clamp(0.0, 255.0).round_ties_even();
    let y = x
        .iter()
        .map(|&v| ((v / scale).round_ties_even() + zp).clamp(0.0, 255.0) as u8)
        .collect();
    Ok((y, scale, zp as u8))
}

impl Op for DynamicQuantizeLinear {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let scalar = |d| ValueType::new(d, Vec::<Dim>::new());
        Ok(vec![
            ValueType {
                dtype: Some(DType::U8),
                shape: x.shape.clone(),
            },
            scalar(DType::F32),
            scalar(DType::U8),
        ])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 5)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let xv = crate::util::typed::<f32>(NAME, x)?;
        let (y, scale, zp) = quantize(xv)?;
        Ok(vec![
            crate::util::output(NAME, x.shape().to_vec(), y)?,
            Tensor::scalar(scale),
            Tensor::scalar(zp),
        ])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example() {
        // From the ONNX test: x = [0, 2, -3, -2.5, 1.34, 0.5].
        let x = Tensor::from_vec(vec![6], vec![0.0f32, 2.0, -3.0, -2.5, 1.34, 0.5]).unwrap();
        let out = DynamicQuantizeLinear
            .eval(&Inputs::new(NAME, &[Some(&x)]))
            .unwrap();
        assert_eq!(
            out[0].as_slice::<u8>().unwrap(),
            &[153, 255, 0, 26, 221, 179]
        );
        assert_eq!(out[1].as_slice::<f32>().unwrap(), &[5.0f32 / 255.0]);
        assert_eq!(out[2].as_slice::<u8>().unwrap(), &[153]);
    }

    #[test]
    fn all_zero_input_uses_unit_range() {
        let x = Tensor::from_vec(vec![2], vec![0.0f32, 0.0]).unwrap();
        let out = DynamicQuantizeLinear
            .eval(&Inputs::new(NAME, &[Some(&x)]))
            .unwrap();
        assert_eq!(out[1].as_slice::<f32>().unwrap(), &[1.0f32 / 255.0]);
        assert_eq!(out[2].as_slice::<u8>().unwrap(), &[0]);
    }

    #[test]
    fn refuses_nan() {
        let x = Tensor::from_vec(vec![1], vec![f32::NAN]).unwrap();
        assert!(DynamicQuantizeLinear
            .eval(&Inputs::new(NAME, &[Some(&x)]))
            .is_err());
    }
}
