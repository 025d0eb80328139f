//! Swish (ONNX opset 24): `x * sigmoid(alpha * x)` elementwise for float dtypes, computed
//! in f64 and rounded once.
use super::common::{check_float, float_tensor, float_vals};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "Swish";

#[derive(Clone, Debug, PartialEq)]
pub struct Swish {
    pub alpha: f32,
}

impl Swish {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Swish {
            alpha: attrs.float_or("alpha", 1.0)?,
        }))
    }
}

fn swish(x: f64, alpha: f64) -> f64 {
    x / (1.0 + (-alpha * x).exp())
}

impl Op for Swish {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        check_float(NAME, x)?;
        Ok(vec![x.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 4)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let a = self.alpha as f64;
        let y = float_vals(NAME, x)?
            .into_iter()
            .map(|v| swish(v, a))
            .collect();
        Ok(vec![float_tensor(NAME, x.dtype(), x.shape().to_vec(), y)?])
    }

    fn describe(&self) -> String {
        format!("alpha={}", self.alpha)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let x = Tensor::from_vec(vec![4], vec![0.0f32, 1.0, -1.0, -1000.0]).unwrap();
        let y = Swish { alpha: 2.0 }
            .eval(&Inputs::new(NAME, &[Some(&x)]))
            .unwrap();
        let v = y[0].as_slice::<f32>().unwrap();
        let s = 1.0 / (1.0 + (-2.0f64).exp());
        assert_eq!(v[0], 0.0);
        assert!((v[1] as f64 - s).abs() < 1e-7);
        assert!((v[2] as f64 + (1.0 - s)).abs() < 1e-7);
        assert_eq!(v[3], 0.0);
        let i = Tensor::from_vec(vec![1], vec![1i32]).unwrap();
        assert!(Swish { alpha: 1.0 }
            .eval(&Inputs::new(NAME, &[Some(&i)]))
            .is_err());
    }
}
