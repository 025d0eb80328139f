//! PRelu (ONNX opsets 6, 7, 9, 16): `x` if `x >= 0` else `slope * x`, with `slope`
//! broadcast unidirectionally to `x`.
use super::binary::{same_dtype, Arith};
use super::broadcast::{map2, unidirectional};
use crate::util::{output, typed};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct PRelu;

impl PRelu {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let _ = attrs.ints("consumed_inputs")?;
        Ok(Arc::new(PRelu))
    }
}

fn prelu<T: Arith>(x: T, s: T) -> T {
    if x < T::default() {
        T::mul(s, x)
    } else {
        x
    }
}

impl Op for PRelu {
    fn name(&self) -> &'static str {
        "PRelu"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 2)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let s = inputs.req(1)?;
        same_dtype(op, x, s)?;
        unidirectional(op, x.shape(), s.shape())?;
        let y = crate::dispatch_num!(op, x, |v: T| {
            let sv = typed::<T>(op, s)?;
            let (shape, out) = map2(op, v, x.shape(), sv, s.shape(), |&a, &b| prelu(a, b))?;
            output(op, shape, out)?
        });
        Ok(vec![y])
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
    fn per_channel_slope() {
        // x [1, 2, 2], slope [2, 1]: one slope per channel.
        let x = t(&[1, 2, 2], vec![-1.0f32, 2.0, -4.0, 0.0]);
        let s = t(&[2, 1], vec![0.1f32, 0.5]);
        assert_eq!(vals::<f32>(&PRelu, &[&x, &s]), [-0.1, 2.0, -2.0, 0.0]);
        let xi = t(&[2], vec![-3i64, 3]);
        let si = t(&[1], vec![2i64]);
        assert_eq!(vals::<i64>(&PRelu, &[&xi, &si]), [-6, 3]);
    }

    #[test]
    fn slope_must_broadcast_to_x() {
        let x = t(&[2], vec![-1.0f32, 2.0]);
        let s = t(&[2, 2], vec![0.1f32; 4]);
        assert!(run(&PRelu, &[&x, &s]).is_err());
    }
}
