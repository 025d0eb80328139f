//! Shape (ONNX opsets 1, 13, 15, 19, 21): the input's shape as a 1-D i64 tensor (`start`/`end` slice).
use crate::util::output;
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub start: i64,
    pub end: Option<i64>,
}

impl Shape {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Shape {
            start: attrs.int_or("start", 0)?,
            end: attrs.int("end")?,
        }))
    }

    /// The `[start, end)` range of dims kept for an input of rank `rank` (clamped).
    pub fn range(&self, rank: usize) -> (usize, usize) {
        let r = rank as i64;
        let clamp = |v: i64| {
            let v = if v < 0 { v + r } else { v };
            v.clamp(0, r) as usize
        };
        let s = clamp(self.start);
        let e = clamp(self.end.unwrap_or(r));
        (s, e.max(s))
    }
}

impl Op for Shape {
    fn name(&self) -> &'static str {
        "Shape"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        Ok(vec![match x.rank() {
            Some(r) => {
                let (s, e) = self.range(r);
                ValueType::new(DType::I64, vec![Dim::Known(e - s)])
            }
            None => ValueType::new(DType::I64, vec![Dim::Sym("rank".into())]),
        }])
    }

    fn cost(&self, _inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(&[], outputs)
    }

    fn fold_from_types(&self, inputs: &[ValueType]) -> Option<Vec<Tensor>> {
        let shape = inputs.first()?.concrete_shape()?;
        let (s, e) = self.range(shape.len());
        let v: Vec<i64> = shape[s..e].iter().map(|&d| d as i64).collect();
        Some(vec![Tensor::from_vec(vec![v.len()], v).ok()?])
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let (s, e) = self.range(x.rank());
        let v: Vec<i64> = x.shape()[s..e].iter().map(|&d| d as i64).collect();
        Ok(vec![output(self.name(), vec![v.len()], v)?])
    }

    fn describe(&self) -> String {
        match (self.start, self.end) {
            (0, None) => String::new(),
            (s, None) => format!("start={s}"),
            (s, Some(e)) => format!("start={s} end={e}"),
        }
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
    fn slices_the_shape() {
        let x = Tensor::zeros(DType::String, vec![2, 3, 4]);
        let cases: &[(i64, Option<i64>, &[i64])] = &[
            (0, None, &[2, 3, 4]),
            (1, None, &[3, 4]),
            (-1, None, &[4]),
            (0, Some(-1), &[2, 3]),
            (2, Some(1), &[]),
            (-10, Some(10), &[2, 3, 4]),
        ];
        for (start, end, want) in cases {
            let y = Shape {
                start: *start,
                end: *end,
            }
            .eval(&Inputs::new("Shape", &[Some(&x)]))
            .unwrap();
            assert_eq!(y[0].as_slice::<i64>().unwrap(), *want);
        }
    }

    #[test]
    fn infers_rank_for_symbolic_input() {
        let t = [Some(ValueType::new(
            DType::F32,
            vec![Dim::Sym("b".into()), Dim::Known(3)],
        ))];
        let out = Shape {
            start: 0,
            end: None,
        }
        .infer(&InferCtx::new("Shape", &t, &[None]))
        .unwrap();
        assert_eq!(out[0], ValueType::concrete(DType::I64, &[2]));
    }
}
