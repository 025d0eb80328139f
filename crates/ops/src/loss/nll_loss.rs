//! NegativeLogLikelihoodLoss (ONNX opsets 12, 13, 22): `-input[n, target[n, d], d] *
//! weight[target]`, zero where the target is `ignore_index`, reduced by `none`, `sum` or
//! `mean` (weighted mean over the samples not ignored). Computed in f64, rounded once to
//! the input's float dtype.
use super::common::{float_tensor, float_vals, infer_loss, nll, LossReduction};
use crate::util::ints_of;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "NegativeLogLikelihoodLoss";

#[derive(Clone, Debug, PartialEq)]
pub struct NegativeLogLikelihoodLoss {
    pub reduction: LossReduction,
    pub ignore_index: Option<i64>,
}

impl NegativeLogLikelihoodLoss {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(NegativeLogLikelihoodLoss {
            reduction: LossReduction::parse(NAME, attrs)?,
            ignore_index: attrs.int("ignore_index")?,
        }))
    }
}

impl Op for NegativeLogLikelihoodLoss {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![infer_loss(NAME, ctx, self.reduction)?])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 2)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let t = inputs.req(1)?;
        let dtype = x.dtype();
        let xs = float_vals(NAME, x)?;
        if !matches!(
            t.dtype(),
            millrace_core::DType::I32 | millrace_core::DType::I64
        ) {
            return Err(OpError::invalid(
                NAME,
                format!("target must be int32 or int64, got {}", t.dtype()),
            ));
        }
        let ts = ints_of(NAME, t)?;
        let w = match inputs.opt(2) {
            Some(w) => {
                if w.dtype() != dtype {
                    return Err(OpError::invalid(
                        NAME,
                        format!("weight dtype {} differs from input {dtype}", w.dtype()),
                    ));
                }
                if w.rank() != 1 {
                    return Err(OpError::invalid(NAME, "weight must be 1-D"));
                }
                Some(float_vals(NAME, w)?)
            }
            None => None,
        };
        let (shape, v) = nll(
            NAME,
            &xs,
            x.shape(),
            &ts,
            t.shape(),
            w.as_deref(),
            self.ignore_index,
            self.reduction,
        )?;
        Ok(vec![float_tensor(NAME, dtype, shape, v)?])
    }

    fn describe(&self) -> String {
        match self.ignore_index {
            Some(i) => format!("reduction={} ignore_index={i}", self.reduction.name()),
            None => format!("reduction={}", self.reduction.name()),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &NegativeLogLikelihoodLoss, ins: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
        Ok(op.eval(&Inputs::new(NAME, ins))?.remove(0))
    }

    #[test]
    fn spec_example_weighted_mean() {
        let x = Tensor::from_vec(
            vec![2, 3, 2],
            vec![
                1.0f32, 2.0, 2.0, 2.0, 3.0, 2.0, 0.0, 1.0, 2.0, 2.0, 1.0, 2.0,
            ],
        )
        .unwrap();
        let t = Tensor::from_vec(vec![2, 2], vec![2i64, 1, 0, 2]).unwrap();
        let w = Tensor::from_vec(vec![3], vec![0.2f32, 0.3, 0.1]).unwrap();
        let op = NegativeLogLikelihoodLoss {
            reduction: LossReduction::Mean,
            ignore_index: None,
        };
        let y = run(&op, &[Some(&x), Some(&t), Some(&w)]).unwrap();
        assert!(y.shape().is_empty());
        let v = y.as_slice::<f32>().unwrap()[0];
        assert!((v + 1.5714285).abs() < 1e-5, "{v}");
        let op = NegativeLogLikelihoodLoss {
            reduction: LossReduction::None,
            ignore_index: Some(1),
        };
        let y = run(&op, &[Some(&x), Some(&t)]).unwrap();
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[-3.0, 0.0, -0.0, -2.0]);
    }

    #[test]
    fn rejects_float_targets() {
        let x = Tensor::from_vec(vec![1, 2], vec![1.0f32, 2.0]).unwrap();
        let t = Tensor::from_vec(vec![1], vec![0.0f32]).unwrap();
        let op = NegativeLogLikelihoodLoss {
            reduction: LossReduction::Sum,
            ignore_index: None,
        };
        assert!(run(&op, &[Some(&x), Some(&t)]).is_err());
    }
}
