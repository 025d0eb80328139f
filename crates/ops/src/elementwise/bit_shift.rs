//! BitShift (ONNX opset 11): `x << y` or `x >> y` for unsigned integers with numpy
//! broadcasting; shifts by the bit width or more give 0.
use super::binary::{infer_broadcast, same_dtype};
use super::broadcast::map2;
use crate::util::{output, typed};
use millrace_core::{Tensor, TensorData};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct BitShift {
    pub left: bool,
}

impl BitShift {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let dir = attrs
            .string("direction")?
            .ok_or_else(|| OpError::attribute("BitShift", "direction", "required but absent"))?;
        let left = match dir.as_str() {
            "LEFT" => true,
            "RIGHT" => false,
            other => {
                return Err(OpError::attribute(
                    "BitShift",
                    "direction",
                    format!("must be LEFT or RIGHT, got {other:?}"),
                ))
            }
        };
        Ok(Arc::new(BitShift { left }))
    }
}

macro_rules! shift {
    ($self:expr, $op:expr, $x:expr, $y:expr, $xv:expr, $t:ty) => {{
        let yv = typed::<$t>($op, $y)?;
        let left = $self.left;
        let (shape, v) = map2($op, $xv, $x.shape(), yv, $y.shape(), |&a: &$t, &b: &$t| {
            let s = u32::try_from(b).unwrap_or(u32::MAX);
            if left {
                a.checked_shl(s).unwrap_or(0)
            } else {
                a.checked_shr(s).unwrap_or(0)
            }
        })?;
        output($op, shape, v)?
    }};
}

impl Op for BitShift {
    fn name(&self) -> &'static str {
        "BitShift"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![infer_broadcast(self.name(), ctx, None)?])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let y = inputs.req(1)?;
        same_dtype(op, x, y)?;
        let out = match x.data() {
            TensorData::U8(v) => shift!(self, op, x, y, v, u8),
            TensorData::U16(v) => shift!(self, op, x, y, v, u16),
            TensorData::U32(v) => shift!(self, op, x, y, v, u32),
            TensorData::U64(v) => shift!(self, op, x, y, v, u64),
            other => return Err(OpError::unsupported(op, format!("dtype {}", other.dtype()))),
        };
        Ok(vec![out])
    }

    fn describe(&self) -> String {
        format!("direction={}", if self.left { "LEFT" } else { "RIGHT" })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{build, run, t, vals};
    use super::*;
    use millrace_ir::Attr;

    #[test]
    fn shifts_both_ways() {
        let x = t(&[3], vec![16u8, 4, 1]);
        let y = t(&[3], vec![1u8, 2, 9]);
        assert_eq!(vals::<u8>(&BitShift { left: false }, &[&x, &y]), [8, 1, 0]);
        assert_eq!(vals::<u8>(&BitShift { left: true }, &[&x, &y]), [32, 16, 0]);
        let s = t(&[], vec![3u64]);
        let v = t(&[2], vec![1u64, 2]);
        assert_eq!(vals::<u64>(&BitShift { left: true }, &[&v, &s]), [8, 16]);
    }

    #[test]
    fn errors() {
        let attrs = vec![("direction", Attr::String(b"UP".to_vec()))];
        assert!(build(BitShift::from_onnx, "BitShift", attrs, 11).is_err());
        assert!(build(BitShift::from_onnx, "BitShift", vec![], 11).is_err());
        let x = t(&[1], vec![1i32]);
        assert!(run(&BitShift { left: true }, &[&x, &x])
            .unwrap_err()
            .is_unsupported());
    }
}
