//! Shrink (ONNX opset 9): `x + bias` where `x < -lambd`, `x - bias` where `x > lambd`,
//! else 0. Floats compare and add with `lambd` and `bias` rounded to the input dtype (as
//! the function body's CastLike does); integers are exact, and supported only where every
//! reading of the spec agrees (integral `bias`, `lambd >= 0`, results in range).
use super::common::{float_tensor, float_vals, round_to};
use crate::util::output;
use millrace_core::{Tensor, TensorData};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "Shrink";

#[derive(Clone, Debug, PartialEq)]
pub struct Shrink {
    pub bias: f32,
    pub lambd: f32,
}

impl Shrink {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Shrink {
            bias: attrs.float_or("bias", 0.0)?,
            lambd: attrs.float_or("lambd", 0.5)?,
        }))
    }

    fn int_params(&self) -> Result<(i128, f64), OpError> {
        let b = self.bias as f64;
        if b.fract() != 0.0 || !b.is_finite() {
            return Err(OpError::unsupported(
                NAME,
                format!("non-integral bias {b} on an integer input"),
            ));
        }
        let l = self.lambd as f64;
        if l.is_nan() || l < 0.0 {
            return Err(OpError::unsupported(
                NAME,
                format!("lambd {l} on an integer input"),
            ));
        }
        Ok((b as i128, l))
    }
}

/// Shrink over integers widened to i128; unsupported where a result overflows `T`.
fn shrink_ints<T: Copy + Into<i128> + TryFrom<i128>>(
    x: &[T],
    bias: i128,
    lambd: f64,
) -> Result<Vec<T>, OpError> {
    x.iter()
        .map(|&v| {
            let w: i128 = v.into();
            let wf = w as f64;
            let r = if wf < -lambd {
                w + bias
            } else if wf > lambd {
                w - bias
            } else {
                0
            };
            T::try_from(r).map_err(|_| {
                OpError::unsupported(NAME, format!("result {r} overflows the input dtype"))
            })
        })
        .collect()
}

impl Op for Shrink {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 2)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let shape = x.shape().to_vec();
        let dtype = x.dtype();
        macro_rules! ints {
            ($v:expr) => {{
                let (b, l) = self.int_params()?;
                output(NAME, shape, shrink_ints($v, b, l)?)?
            }};
        }
        let y = match x.data() {
            TensorData::I8(v) => ints!(v),
            TensorData::I16(v) => ints!(v),
            TensorData::I32(v) => ints!(v),
            TensorData::I64(v) => ints!(v),
            TensorData::U8(v) => ints!(v),
            TensorData::U16(v) => ints!(v),
            TensorData::U32(v) => ints!(v),
            TensorData::U64(v) => ints!(v),
            _ => {
                let l = round_to(dtype, self.lambd as f64);
                let b = round_to(dtype, self.bias as f64);
                let y = float_vals(NAME, x)?
                    .into_iter()
                    .map(|v| {
                        if v < -l {
                            v + b
                        } else if v > l {
                            v - b
                        } else {
                            0.0
                        }
                    })
                    .collect();
                float_tensor(NAME, dtype, shape, y)?
            }
        };
        Ok(vec![y])
    }

    fn describe(&self) -> String {
        format!("bias={} lambd={}", self.bias, self.lambd)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &Shrink, x: &Tensor) -> Result<Tensor, OpError> {
        Ok(op.eval(&Inputs::new(NAME, &[Some(x)]))?.remove(0))
    }

    #[test]
    fn soft_and_hard() {
        let x = Tensor::from_vec(vec![5], vec![-2.0f32, -1.0, 0.0, 1.0, 2.0]).unwrap();
        let soft = Shrink {
            bias: 1.5,
            lambd: 1.5,
        };
        let y = run(&soft, &x).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[-0.5, 0.0, 0.0, 0.0, 0.5]);
        let hard = Shrink {
            bias: 0.0,
            lambd: 1.5,
        };
        let y = run(&hard, &x).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[-2.0, 0.0, 0.0, 0.0, 2.0]);
    }

    #[test]
    fn integers() {
        let x = Tensor::from_vec(vec![4], vec![-3i32, -1, 2, 5]).unwrap();
        let op = Shrink {
            bias: 1.0,
            lambd: 1.5,
        };
        let y = run(&op, &x).unwrap();
        assert_eq!(y.as_slice::<i32>().unwrap(), &[-2, 0, 1, 4]);
        let frac = Shrink {
            bias: 0.5,
            lambd: 1.5,
        };
        assert!(run(&frac, &x).unwrap_err().is_unsupported());
        let u = Tensor::from_vec(vec![1], vec![2u8]).unwrap();
        let big = Shrink {
            bias: 3.0,
            lambd: 1.0,
        };
        assert!(run(&big, &u).unwrap_err().is_unsupported());
    }
}
