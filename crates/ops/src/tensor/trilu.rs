//! Trilu (ONNX opset 14): keeps the upper or lower triangle (diagonal offset `k`) of the
//! last two axes, zeroing the rest.
use super::common::{scalar_int, take_or};
use millrace_core::{Tensor, TensorData};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Trilu {
    pub upper: bool,
}

impl Trilu {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Trilu {
            upper: attrs.int_or("upper", 1)? != 0,
        }))
    }
}

impl Op for Trilu {
    fn name(&self) -> &'static str {
        "Trilu"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        if x.rank().is_some_and(|r| r < 2) {
            return Err(OpError::invalid(self.name(), "input must have rank >= 2"));
        }
        Ok(vec![x.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(&inputs[..inputs.len().min(1)], outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let k = match inputs.opt(1) {
            Some(t) => scalar_int(op, t, "k")?,
            None => 0,
        };
        let r = x.rank();
        if r < 2 {
            return Err(OpError::invalid(op, "input must have rank >= 2"));
        }
        let (rows, cols) = (x.shape()[r - 2], x.shape()[r - 1]);
        let n = x.len();
        let mut idx = Vec::with_capacity(n);
        for p in 0..n {
            let j = (p % cols.max(1)) as i64;
            let i = ((p / cols.max(1)) % rows.max(1)) as i64;
            let keep = if self.upper { j - i >= k } else { j - i <= k };
            idx.push(keep.then_some(p));
        }
        let zero = TensorData::zeros(x.dtype(), 1);
        Ok(vec![take_or(
            op,
            x.data(),
            &idx,
            &zero,
            x.shape().to_vec(),
        )?])
    }

    fn describe(&self) -> String {
        format!("upper={}", self.upper as i32)
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
    fn keeps_triangles() {
        let x = Tensor::from_vec(vec![2, 3], vec![1i64, 2, 3, 4, 5, 6]).unwrap();
        let cases: &[(bool, Option<i64>, &[i64])] = &[
            (true, None, &[1, 2, 3, 0, 5, 6]),
            (false, None, &[1, 0, 0, 4, 5, 0]),
            (true, Some(1), &[0, 2, 3, 0, 0, 6]),
            (false, Some(-1), &[0, 0, 0, 4, 0, 0]),
        ];
        for (upper, k, want) in cases {
            let kt = k.map(Tensor::scalar);
            let y = Trilu { upper: *upper }
                .eval(&Inputs::new("Trilu", &[Some(&x), kt.as_ref()]))
                .unwrap();
            assert_eq!(y[0].as_slice::<i64>().unwrap(), *want);
        }
        let v = Tensor::from_vec(vec![2], vec![1i64, 2]).unwrap();
        assert!(Trilu { upper: true }
            .eval(&Inputs::new("Trilu", &[Some(&v)]))
            .is_err());
    }
}
