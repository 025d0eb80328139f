//! Flatten (ONNX opsets 1, 9, 11, 13, 21): reshape to 2-D `[prod(d[..axis]), prod(d[axis..])]`.
use super::common::{dim_product, normalize_axis_incl, with_shape};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Flatten {
    pub axis: i64,
}

impl Flatten {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Flatten {
            axis: attrs.int_or("axis", 1)?,
        }))
    }
}

impl Op for Flatten {
    fn name(&self) -> &'static str {
        "Flatten"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let shape = match &x.shape {
            Some(s) => {
                let a = normalize_axis_incl(self.name(), self.axis, s.len())?;
                Some(vec![dim_product(&s[..a]), dim_product(&s[a..])])
            }
            None => None,
        };
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape,
        }])
    }

    fn cost(&self, _inputs: &[ValueType], _outputs: &[ValueType]) -> Cost {
        Cost::default()
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let a = normalize_axis_incl(self.name(), self.axis, x.rank())?;
        let s = x.shape();
        let shape = vec![s[..a].iter().product(), s[a..].iter().product()];
        Ok(vec![with_shape(self.name(), x, shape)?])
    }

    fn describe(&self) -> String {
        format!("axis={}", self.axis)
    }

    /// Output 0 is input 0's data under a new shape: the executor may alias it.
    fn is_alias(&self) -> bool {
        true
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_core::{DType, Dim};

    #[test]
    fn flattens_at_axis() {
        let x = Tensor::zeros(DType::F32, vec![2, 3, 4]);
        for (axis, want) in [
            (0, [1, 24]),
            (1, [2, 12]),
            (-1, [6, 4]),
            (3, [24, 1]),
            (-3, [1, 24]),
        ] {
            let y = Flatten { axis }
                .eval(&Inputs::new("Flatten", &[Some(&x)]))
                .unwrap();
            assert_eq!(y[0].shape(), &want, "axis {axis}");
        }
        assert!(Flatten { axis: 4 }
            .eval(&Inputs::new("Flatten", &[Some(&x)]))
            .is_err());
    }

    #[test]
    fn infers_symbolic() {
        let t = [Some(ValueType::new(
            DType::F32,
            vec![Dim::Sym("n".into()), Dim::Known(3), Dim::Known(4)],
        ))];
        let out = Flatten { axis: 1 }
            .infer(&InferCtx::new("Flatten", &t, &[None]))
            .unwrap();
        assert_eq!(
            out[0].shape,
            Some(vec![Dim::Sym("n".into()), Dim::Known(12)])
        );
    }
}
