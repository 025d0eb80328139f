//! Pow (ONNX opsets 1, 7, 12, 13, 15): `base ** exponent` with numpy broadcasting; the
//! exponent may have another numeric dtype, the output has the base's dtype.
use super::binary::{Arith, Legacy};
use super::broadcast::map2;
use crate::util::{broadcast_all, broadcast_types, output};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Pow {
    pub legacy: Legacy,
}

impl Pow {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Pow {
            legacy: Legacy::read(attrs, opset)?,
        }))
    }
}

fn pow_all<T: Arith>(
    op: &str,
    x: &[T],
    xs: &[usize],
    e: &Tensor,
) -> Result<(Vec<usize>, Vec<T>), OpError> {
    let es = e.shape();
    if e.dtype().is_int() {
        let ev = e.to_i64_vec().map_err(|err| OpError::tensor(op, err))?;
        if let [2] = ev[..] {
            // x * x: the common square, in the base dtype.
            let shape = broadcast_all(op, &[xs, es])?;
            return Ok((shape, x.iter().map(|&a| T::mul(a, a)).collect()));
        }
        map2(op, x, xs, &ev, es, |&a, &b| a.pow_int(b))
    } else if e.dtype().is_float() {
        let ev = e.to_f64_vec().map_err(|err| OpError::tensor(op, err))?;
        if let [2.0] = ev[..] {
            let shape = broadcast_all(op, &[xs, es])?;
            return Ok((shape, x.iter().map(|&a| T::mul(a, a)).collect()));
        }
        map2(op, x, xs, &ev, es, |&a, &b| a.pow_float(b))
    } else {
        Err(OpError::unsupported(
            op,
            format!("exponent dtype {}", e.dtype()),
        ))
    }
}

impl Op for Pow {
    fn name(&self) -> &'static str {
        "Pow"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let e = ctx.input(1)?;
        let mut vt = broadcast_types(self.name(), &[x, e])?;
        vt.dtype = x.dtype;
        Ok(vec![vt])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 8)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let e = inputs.req(1)?;
        self.legacy.check(op, x.shape(), e.shape())?;
        let y = crate::dispatch_num!(op, x, |v: T| {
            let (shape, out) = pow_all::<T>(op, v, x.shape(), e)?;
            output(op, shape, out)?
        });
        Ok(vec![y])
    }

    fn describe(&self) -> String {
        self.legacy.describe()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn float_base_with_mixed_exponents() {
        let x = t(&[3], vec![2.0f32, 4.0, -3.0]);
        let e = t(&[3], vec![3.0f32, 0.5, 2.0]);
        close(
            &vals::<f32>(&Pow::default(), &[&x, &e]),
            &[8.0, 2.0, 9.0],
            0.0,
        );
        let ei = t(&[], vec![2i64]);
        assert_eq!(vals::<f32>(&Pow::default(), &[&x, &ei]), [4.0, 16.0, 9.0]);
        let ef = t(&[1], vec![2.0f64]);
        assert_eq!(vals::<f32>(&Pow::default(), &[&x, &ef]), [4.0, 16.0, 9.0]);
    }

    #[test]
    fn integer_base_broadcasts() {
        let x = t(&[2, 1], vec![2i64, 3]);
        let e = t(&[3], vec![0i32, 1, 3]);
        let y = run(&Pow::default(), &[&x, &e]).unwrap();
        assert_eq!(y[0].shape(), &[2, 3]);
        assert_eq!(y[0].as_slice::<i64>().unwrap(), &[1, 2, 8, 1, 3, 27]);
        let ef = t(&[1], vec![0.5f32]);
        assert_eq!(
            vals::<i32>(&Pow::default(), &[&t(&[1], vec![10i32]), &ef]),
            [3]
        );
    }

    #[test]
    fn string_exponent_is_unsupported() {
        let x = t(&[1], vec![2.0f32]);
        let e = t(&[1], vec!["a".to_string()]);
        assert!(run(&Pow::default(), &[&x, &e]).is_err());
    }
}
