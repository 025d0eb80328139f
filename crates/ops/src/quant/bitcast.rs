//! BitCast (ONNX opset 26): reinterprets each element's little-endian bytes as another dtype
//! of the same bit width (shape unchanged). Strings are not allowed; a byte that is neither 0
//! nor 1 has no bool value in millrace and is refused.
use millrace_core::{bf16, f16, DType, Tensor, TensorData};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "BitCast";

#[derive(Clone, Debug, PartialEq)]
pub struct BitCast {
    pub to: DType,
}

impl BitCast {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let code = attrs.req_int("to")?;
        let to = i32::try_from(code)
            .ok()
            .and_then(DType::from_onnx_code)
            .ok_or_else(|| OpError::unsupported(NAME, format!("target type {code}")))?;
        if to == DType::String {
            return Err(OpError::attribute(NAME, "to", "cannot bit-cast to string"));
        }
        Ok(Arc::new(BitCast { to }))
    }

    fn check(&self, from: DType) -> Result<(), OpError> {
        if from == DType::String {
            return Err(OpError::invalid(NAME, "cannot bit-cast strings"));
        }
        if from.size_bytes() != self.to.size_bytes() {
            return Err(OpError::invalid(
                NAME,
                format!("{from} and {} differ in bit width", self.to),
            ));
        }
        Ok(())
    }
}

/// Every element's bits, zero-extended to u64 (little-endian value of its bytes).
fn bits(data: &TensorData) -> Option<Vec<u64>> {
    Some(match data {
        TensorData::F32(v) => v.iter().map(|x| x.to_bits() as u64).collect(),
        TensorData::F64(v) => v.iter().map(|x| x.to_bits()).collect(),
        TensorData::F16(v) => v.iter().map(|x| x.to_bits() as u64).collect(),
        TensorData::BF16(v) => v.iter().map(|x| x.to_bits() as u64).collect(),
        TensorData::I8(v) => v.iter().map(|&x| x as u8 as u64).collect(),
        TensorData::I16(v) => v.iter().map(|&x| x as u16 as u64).collect(),
        TensorData::I32(v) => v.iter().map(|&x| x as u32 as u64).collect(),
        TensorData::I64(v) => v.iter().map(|&x| x as u64).collect(),
        TensorData::U8(v) => v.iter().map(|&x| x as u64).collect(),
        TensorData::U16(v) => v.iter().map(|&x| x as u64).collect(),
        TensorData::U32(v) => v.iter().map(|&x| x as u64).collect(),
        TensorData::U64(v) => v.clone(),
        TensorData::Bool(v) => v.iter().map(|&x| x as u64).collect(),
        // Strings have no bits; the narrow float/int types are refused (not bit-exact here).
        _ => return None,
    })
}

/// Elements of `to` from their bits (the width already checked).
fn from_bits(to: DType, b: Vec<u64>) -> Result<TensorData, OpError> {
    Ok(match to {
        DType::F32 => TensorData::F32(b.into_iter().map(|x| f32::from_bits(x as u32)).collect()),
        DType::F64 => TensorData::F64(b.into_iter().map(f64::from_bits).collect()),
        DType::F16 => TensorData::F16(b.into_iter().map(|x| f16::from_bits(x as u16)).collect()),
        DType::BF16 => TensorData::BF16(b.into_iter().map(|x| bf16::from_bits(x as u16)).collect()),
        DType::I8 => TensorData::I8(b.into_iter().map(|x| x as u8 as i8).collect()),
        DType::I16 => TensorData::I16(b.into_iter().map(|x| x as u16 as i16).collect()),
        DType::I32 => TensorData::I32(b.into_iter().map(|x| x as u32 as i32).collect()),
        DType::I64 => TensorData::I64(b.into_iter().map(|x| x as i64).collect()),
        DType::U8 => TensorData::U8(b.into_iter().map(|x| x as u8).collect()),
        DType::U16 => TensorData::U16(b.into_iter().map(|x| x as u16).collect()),
        DType::U32 => TensorData::U32(b.into_iter().map(|x| x as u32).collect()),
        DType::U64 => TensorData::U64(b),
        DType::Bool => {
            if b.iter().any(|&x| x > 1) {
                return Err(OpError::unsupported(
                    NAME,
                    "byte values other than 0 and 1 as bool",
                ));
            }
            TensorData::Bool(b.into_iter().map(|x| x == 1).collect())
        }
        DType::String => return Err(OpError::invalid(NAME, "cannot bit-cast to string")),
        other => return Err(OpError::unsupported(NAME, format!("bit-cast to {other}"))),
    })
}

impl Op for BitCast {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        if let Some(d) = x.dtype {
            self.check(d)?;
        }
        Ok(vec![ValueType {
            dtype: Some(self.to),
            shape: x.shape.clone(),
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        self.check(x.dtype())?;
        let b = bits(x.data())
            .ok_or_else(|| OpError::unsupported(NAME, format!("bit-cast from {}", x.dtype())))?;
        let data = from_bits(self.to, b)?;
        let t = Tensor::new(x.shape().to_vec(), data).map_err(|e| OpError::tensor(NAME, e))?;
        Ok(vec![t])
    }

    fn describe(&self) -> String {
        format!("to={}", self.to)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_bits_to_int() {
        let x = Tensor::from_vec(vec![2], vec![1.0f32, -2.0]).unwrap();
        let y = BitCast { to: DType::I32 }
            .eval(&Inputs::new(NAME, &[Some(&x)]))
            .unwrap();
        assert_eq!(
            y[0].as_slice::<i32>().unwrap(),
            &[0x3f80_0000, 0xc000_0000u32 as i32]
        );
    }

    #[test]
    fn bytes_and_bools() {
        let x = Tensor::from_vec(vec![3], vec![-1i8, 0, 1]).unwrap();
        let y = BitCast { to: DType::U8 }
            .eval(&Inputs::new(NAME, &[Some(&x)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[255, 0, 1]);
        let b = Tensor::from_vec(vec![2], vec![true, false]).unwrap();
        let y = BitCast { to: DType::U8 }
            .eval(&Inputs::new(NAME, &[Some(&b)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[1, 0]);
        let e = BitCast { to: DType::Bool }.eval(&Inputs::new(NAME, &[Some(&x)]));
        assert!(e.unwrap_err().is_unsupported());
    }

    #[test]
    fn widths_must_match() {
        let x = Tensor::from_vec(vec![1], vec![1u16]).unwrap();
        assert!(BitCast { to: DType::I32 }
            .eval(&Inputs::new(NAME, &[Some(&x)]))
            .is_err());
    }
}
