//! ScatterElements (ONNX opsets 11, 13, 16, 18) and Scatter (opsets 9, 10, deprecated):
//! writes `updates` into a copy of `data` at elementwise `indices` along `axis`.
use super::common::{scatter_into, Reduction};
use super::gather_elements::element_positions;
use crate::util::{ints_of, normalize_axis};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct ScatterElements {
    pub axis: i64,
    pub reduction: Reduction,
    /// Registered as the deprecated `Scatter`.
    pub legacy: bool,
}

impl ScatterElements {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let reduction = Reduction::parse(
            "ScatterElements",
            &attrs.string_or("reduction", "none")?,
            opset,
        )?;
        Ok(Arc::new(ScatterElements {
            axis: attrs.int_or("axis", 0)?,
            reduction,
            legacy: false,
        }))
    }

    /// The deprecated `Scatter` (opsets 9, 10): ScatterElements without reduction.
    pub fn from_onnx_scatter(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        if opset >= 11 {
            return Err(OpError::unsupported("Scatter", "removed in opset 11"));
        }
        Ok(Arc::new(ScatterElements {
            axis: attrs.int_or("axis", 0)?,
            reduction: Reduction::None,
            legacy: true,
        }))
    }
}

impl Op for ScatterElements {
    fn name(&self) -> &'static str {
        if self.legacy {
            "Scatter"
        } else {
            "ScatterElements"
        }
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        ctx.input(1)?;
        ctx.input(2)?;
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let ind = inputs.req(1)?;
        let upd = inputs.req(2)?;
        if ind.shape() != upd.shape() {
            return Err(OpError::invalid(op, "indices and updates differ in shape"));
        }
        if x.rank() == 0 {
            return Err(OpError::invalid(op, "data must have rank >= 1"));
        }
        let a = normalize_axis(op, self.axis, x.rank())?;
        let pos = element_positions(op, x.shape(), ind.shape(), &ints_of(op, ind)?, a)?;
        Ok(vec![scatter_into(op, x, &pos, upd, self.reduction)?])
    }

    fn describe(&self) -> String {
        format!("axis={} reduction={}", self.axis, self.reduction.name())
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
    fn scatters() {
        let x = Tensor::from_vec(vec![1, 5], vec![1.0f32, 2., 3., 4., 5.]).unwrap();
        let i = Tensor::from_vec(vec![1, 2], vec![1i64, -2]).unwrap();
        let u = Tensor::from_vec(vec![1, 2], vec![1.1f32, 2.1]).unwrap();
        let cases: &[(Reduction, &[f32])] = &[
            (Reduction::None, &[1., 1.1, 3., 2.1, 5.]),
            (Reduction::Add, &[1., 3.1, 3., 6.1, 5.]),
            (Reduction::Max, &[1., 2., 3., 4., 5.]),
        ];
        for (red, want) in cases {
            let op = ScatterElements {
                axis: -1,
                reduction: *red,
                legacy: false,
            };
            let y = op
                .eval(&Inputs::new(
                    "ScatterElements",
                    &[Some(&x), Some(&i), Some(&u)],
                ))
                .unwrap();
            assert_eq!(y[0].as_slice::<f32>().unwrap(), *want, "{red:?}");
        }
        let bad = Tensor::from_vec(vec![1, 2], vec![5i64, 0]).unwrap();
        let op = ScatterElements {
            axis: 1,
            reduction: Reduction::None,
            legacy: false,
        };
        assert!(op
            .eval(&Inputs::new(
                "ScatterElements",
                &[Some(&x), Some(&bad), Some(&u)]
            ))
            .is_err());
    }
}
