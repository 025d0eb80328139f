//! Dropout (ONNX opsets 1, 6, 7, 10, 12, 13, 22): inference mode only; output = input,
//! optional mask all true.
use millrace_core::{DType, Tensor, TensorData};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Dropout {
    pub ratio: f32,
    pub seed: Option<i64>,
    /// Opset >= 10: the mask is bool; before, it has the input's dtype.
    pub bool_mask: bool,
    /// The node declares one output (no mask) and no `training_mode` input: output 0 is
    /// input 0, which the executor may alias instead of running the op.
    pub alias: bool,
}

impl Dropout {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let ratio = attrs.float_or("ratio", 0.5)?;
        let seed = attrs.int("seed")?;
        if opset < 7 && attrs.int_or("is_test", 0)? == 0 {
            return Err(OpError::unsupported("Dropout", "training mode (is_test=0)"));
        }
        if attrs.ints("consumed_inputs")?.is_some() && opset >= 6 {
            return Err(OpError::attribute(
                "Dropout",
                "consumed_inputs",
                "removed in opset 6",
            ));
        }
        Ok(Arc::new(Dropout {
            ratio,
            seed,
            bool_mask: opset >= 10,
            alias: attrs.node_outputs() == 1 && (1..=2).contains(&attrs.node_inputs()),
        }))
    }

    fn mask_type(&self, x: &ValueType) -> ValueType {
        ValueType {
            dtype: if self.bool_mask {
                Some(DType::Bool)
            } else {
                x.dtype
            },
            shape: x.shape.clone(),
        }
    }
}

impl Op for Dropout {
    fn name(&self) -> &'static str {
        "Dropout"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        if let Some(t) = ctx.constant(2) {
            if t.to_i64_vec()
                .ok()
                .and_then(|v| v.first().copied())
                .unwrap_or(0)
                != 0
            {
                return Err(OpError::unsupported(self.name(), "training_mode=true"));
            }
        }
        Ok(vec![x.clone(), self.mask_type(x)])
    }

    fn cost(&self, _inputs: &[ValueType], _outputs: &[ValueType]) -> Cost {
        Cost::default()
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        if let Some(t) = inputs.opt(2) {
            let v = t.to_i64_vec().map_err(|e| OpError::tensor(op, e))?;
            if v.first().copied().unwrap_or(0) != 0 {
                return Err(OpError::unsupported(op, "training_mode=true"));
            }
        }
        let n = x.len();
        let mask = if self.bool_mask {
            TensorData::Bool(vec![true; n])
        } else {
            let one = super::common::scalar_data(op, x.dtype(), 1.0)?;
            one.gather(std::iter::repeat_n(0, n))
                .ok_or_else(|| OpError::invalid(op, "empty mask value"))?
        };
        let mask = Tensor::new(x.shape().to_vec(), mask).map_err(|e| OpError::tensor(op, e))?;
        Ok(vec![x.clone(), mask])
    }

    fn is_alias(&self) -> bool {
        self.alias
    }

    fn describe(&self) -> String {
        format!("ratio={}", self.ratio)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_through_in_inference() {
        let x = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
        let op = Dropout {
            ratio: 0.5,
            seed: None,
            bool_mask: true,
            alias: false,
        };
        let y = op.eval(&Inputs::new("Dropout", &[Some(&x)])).unwrap();
        assert_eq!(y[0], x);
        assert_eq!(y[1].as_slice::<bool>().unwrap(), &[true, true]);
        let tm = Tensor::scalar(true);
        let r = Tensor::scalar(0.1f32);
        assert!(op
            .eval(&Inputs::new("Dropout", &[Some(&x), Some(&r), Some(&tm)]))
            .unwrap_err()
            .is_unsupported());
    }

    #[test]
    fn aliases_only_with_one_output_and_no_training_mode() {
        let a = |outs, ins| {
            let attrs = Attributes::new("Dropout", vec![])
                .with_outputs(outs)
                .with_inputs(ins);
            Dropout::from_onnx(&attrs, 13).unwrap().is_alias()
        };
        assert!(a(1, 1));
        assert!(a(1, 2));
        assert!(!a(2, 1), "mask requested");
        assert!(!a(1, 3), "training_mode given");
        assert!(!a(0, 0), "unknown node");
    }
}
