//! Where (ONNX opsets 9, 16): `condition ? x : y` elementwise with three-way numpy
//! broadcasting; x and y may have any dtype (numeric, bool, string).
use super::binary::{dispatch_any, same_dtype};
use super::broadcast::map3;
use crate::util::{broadcast_types, output, typed};
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Where;

impl Where {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Where))
    }
}

impl Op for Where {
    fn name(&self) -> &'static str {
        "Where"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let c = ctx.input(0)?;
        let x = ctx.input(1)?;
        let y = ctx.input(2)?;
        if let Some(d) = c.dtype.filter(|d| *d != DType::Bool) {
            return Err(OpError::invalid(
                self.name(),
                format!("condition is {d}, not bool"),
            ));
        }
        if let (Some(a), Some(b)) = (x.dtype, y.dtype) {
            if a != b {
                return Err(OpError::invalid(
                    self.name(),
                    format!("x and y dtypes differ: {a} and {b}"),
                ));
            }
        }
        let mut vt = broadcast_types(self.name(), &[c, x, y])?;
        vt.dtype = x.dtype.or(y.dtype);
        Ok(vec![vt])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 1)
    }

    #[allow(clippy::clone_on_copy)] // generic over every dtype, String included
    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let c = inputs.req(0)?;
        let x = inputs.req(1)?;
        let y = inputs.req(2)?;
        same_dtype(op, x, y)?;
        let cv = typed::<bool>(op, c)?;
        let out = dispatch_any!(op, x, |xv: T| {
            let yv = typed::<T>(op, y)?;
            let (shape, v) = map3(
                op,
                (cv, c.shape()),
                (xv, x.shape()),
                (yv, y.shape()),
                |&k, a: &T, b: &T| if k { a.clone() } else { b.clone() },
            )?;
            output(op, shape, v)?
        });
        Ok(vec![out])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, t, vals};
    use super::*;

    #[test]
    fn selects_with_broadcast() {
        let c = t(&[2, 1], vec![true, false]);
        let x = t(&[2], vec![1.0f32, 2.0]);
        let y = t(&[], vec![-1.0f32]);
        let out = run(&Where, &[&c, &x, &y]).unwrap();
        assert_eq!(out[0].shape(), &[2, 2]);
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[1.0, 2.0, -1.0, -1.0]);
    }

    #[test]
    fn strings_and_bools() {
        let c = t(&[2], vec![false, true]);
        let x = t(&[2], vec!["a".to_string(), "b".to_string()]);
        let y = t(&[1], vec!["z".to_string()]);
        assert_eq!(vals::<String>(&Where, &[&c, &x, &y]), ["z", "b"]);
        let bx = t(&[2], vec![true, true]);
        let by = t(&[2], vec![false, false]);
        assert_eq!(vals::<bool>(&Where, &[&c, &bx, &by]), [false, true]);
    }

    #[test]
    fn errors() {
        let c = t(&[2], vec![1u8, 0]);
        let x = t(&[2], vec![1i32, 2]);
        assert!(run(&Where, &[&c, &x, &x]).is_err());
        let c = t(&[3], vec![true, false, true]);
        assert!(run(&Where, &[&c, &x, &x]).is_err());
        let z = t(&[2], vec![1i64, 2]);
        assert!(run(&Where, &[&t(&[1], vec![true]), &x, &z]).is_err());
    }
}
