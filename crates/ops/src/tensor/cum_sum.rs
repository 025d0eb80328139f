//! CumSum (ONNX opsets 11, 14): cumulative sum along an axis (`exclusive`, `reverse`).
use super::common::{scalar_int, Arith};
use crate::util::{normalize_axis, output};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct CumSum {
    pub exclusive: bool,
    pub reverse: bool,
}

impl CumSum {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(CumSum {
            exclusive: attrs.int_or("exclusive", 0)? != 0,
            reverse: attrs.int_or("reverse", 0)? != 0,
        }))
    }
}

fn cumsum<T: Arith>(x: &[T], shape: &[usize], axis: usize, excl: bool, rev: bool) -> Vec<T> {
    let outer: usize = shape[..axis].iter().product();
    let d = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = vec![T::default(); x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let mut acc = T::default();
            for s in 0..d {
                let j = if rev { d - 1 - s } else { s };
                let p = (o * d + j) * inner + i;
                if excl {
                    out[p] = acc;
                    acc = acc.add(x[p]);
                } else {
                    acc = acc.add(x[p]);
                    out[p] = acc;
                }
            }
        }
    }
    out
}

impl Op for CumSum {
    fn name(&self) -> &'static str {
        "CumSum"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        ctx.input(1)?;
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(&inputs[..inputs.len().min(1)], outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let axis = scalar_int(op, inputs.req(1)?, "axis")?;
        if x.rank() == 0 {
            return Err(OpError::invalid(op, "input must have rank >= 1"));
        }
        let a = normalize_axis(op, axis, x.rank())?;
        let shape = x.shape().to_vec();
        let y = crate::dispatch_num!(op, x, |v: T| output(
            op,
            shape.clone(),
            cumsum::<T>(v, &shape, a, self.exclusive, self.reverse)
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
    fn sums() {
        let x = Tensor::from_vec(vec![2, 3], vec![1.0f64, 2., 3., 4., 5., 6.]).unwrap();
        let cases: &[(i64, bool, bool, &[f64])] = &[
            (1, false, false, &[1., 3., 6., 4., 9., 15.]),
            (-1, true, false, &[0., 1., 3., 0., 4., 9.]),
            (1, false, true, &[6., 5., 3., 15., 11., 6.]),
            (0, true, true, &[4., 5., 6., 0., 0., 0.]),
        ];
        for (axis, excl, rev, want) in cases {
            let a = Tensor::scalar(*axis);
            let y = CumSum {
                exclusive: *excl,
                reverse: *rev,
            }
            .eval(&Inputs::new("CumSum", &[Some(&x), Some(&a)]))
            .unwrap();
            assert_eq!(y[0].as_slice::<f64>().unwrap(), *want);
        }
        let a = Tensor::scalar(2i32);
        assert!(CumSum {
            exclusive: false,
            reverse: false
        }
        .eval(&Inputs::new("CumSum", &[Some(&x), Some(&a)]))
        .is_err());
    }
}
