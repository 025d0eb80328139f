//! CumProd (ONNX opset 26): cumulative product along the axis given by the second input
//! (`exclusive`, `reverse`). Each step rounds to the element type (wrapping for integers,
//! f16/bf16 through f32), as a running product in that type does.
use crate::util::{ints_of, normalize_axis, output, Num};
use millrace_core::{bf16, f16, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "CumProd";

#[derive(Clone, Debug, PartialEq)]
pub struct CumProd {
    pub exclusive: bool,
    pub reverse: bool,
}

impl CumProd {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(CumProd {
            exclusive: attrs.int_or("exclusive", 0)? != 0,
            reverse: attrs.int_or("reverse", 0)? != 0,
        }))
    }
}

/// Multiplication in the element type.
trait Prod: Num {
    const ONE: Self;
    fn mul(self, o: Self) -> Self;
}

macro_rules! prod_int {
    ($($t:ty),*) => {$(
        impl Prod for $t {
            const ONE: Self = 1;
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
        }
    )*};
}
prod_int!(i8, i16, i32, i64, u8, u16, u32, u64);

impl Prod for f32 {
    const ONE: Self = 1.0;
    fn mul(self, o: Self) -> Self {
        self * o
    }
}

impl Prod for f64 {
    const ONE: Self = 1.0;
    fn mul(self, o: Self) -> Self {
        self * o
    }
}

impl Prod for f16 {
    const ONE: Self = f16::ONE;
    fn mul(self, o: Self) -> Self {
        f16::from_f32(self.to_f32() * o.to_f32())
    }
}

impl Prod for bf16 {
    const ONE: Self = bf16::ONE;
    fn mul(self, o: Self) -> Self {
        bf16::from_f32(self.to_f32() * o.to_f32())
    }
}

fn cumprod<T: Prod>(x: &[T], shape: &[usize], axis: usize, excl: bool, rev: bool) -> Vec<T> {
    let outer: usize = shape[..axis].iter().product();
    let d = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = vec![T::ONE; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let mut acc = T::ONE;
            for s in 0..d {
                let j = if rev { d - 1 - s } else { s };
                let p = (o * d + j) * inner + i;
                if excl {
                    out[p] = acc;
                    acc = acc.mul(x[p]);
                } else {
                    acc = acc.mul(x[p]);
                    out[p] = acc;
                }
            }
        }
    }
    out
}

impl Op for CumProd {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        ctx.input(1)?;
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(&inputs[..inputs.len().min(1)], outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let at = inputs.req(1)?;
        if !matches!(
            at.dtype(),
            millrace_core::DType::I32 | millrace_core::DType::I64
        ) {
            return Err(OpError::invalid(NAME, "axis must be int32 or int64"));
        }
        let axis = match ints_of(NAME, at)?.as_slice() {
            [a] => *a,
            v => {
                return Err(OpError::invalid(
                    NAME,
                    format!("axis must hold one element, got {}", v.len()),
                ))
            }
        };
        if x.rank() == 0 {
            return Err(OpError::invalid(NAME, "input must have rank >= 1"));
        }
        let a = normalize_axis(NAME, axis, x.rank())?;
        let shape = x.shape().to_vec();
        let y = crate::dispatch_num!(NAME, x, |v: T| output(
            NAME,
            shape.clone(),
            cumprod::<T>(v, &shape, a, self.exclusive, self.reverse)
        )?);
        Ok(vec![y])
    }

    fn describe(&self) -> String {
        format!(
            "exclusive={} reverse={}",
            self.exclusive as i32, self.reverse as i32
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_and_2d() {
        let x = Tensor::from_vec(vec![3], vec![1.0f64, 2.0, 3.0]).unwrap();
        let a = Tensor::scalar(0i64);
        let cases: &[(bool, bool, &[f64])] = &[
            (false, false, &[1., 2., 6.]),
            (true, false, &[1., 1., 2.]),
            (false, true, &[6., 6., 3.]),
            (true, true, &[6., 3., 1.]),
        ];
        for (excl, rev, want) in cases {
            let op = CumProd {
                exclusive: *excl,
                reverse: *rev,
            };
            let y = op.eval(&Inputs::new(NAME, &[Some(&x), Some(&a)])).unwrap();
            assert_eq!(y[0].as_slice::<f64>().unwrap(), *want);
        }
        let x = Tensor::from_vec(vec![2, 3], vec![1i32, 2, 3, 4, 5, 6]).unwrap();
        let a = Tensor::scalar(-2i32);
        let op = CumProd {
            exclusive: false,
            reverse: false,
        };
        let y = op.eval(&Inputs::new(NAME, &[Some(&x), Some(&a)])).unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[1, 2, 3, 4, 10, 18]);
        let a = Tensor::scalar(2i32);
        assert!(op.eval(&Inputs::new(NAME, &[Some(&x), Some(&a)])).is_err());
    }
}
