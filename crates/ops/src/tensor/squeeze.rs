//! Squeeze (ONNX opsets 1, 11, 13, 21): removes size-1 dims (listed `axes`, or all of them).
use super::common::{const_ints, opt_ints, with_shape};
use crate::util::normalize_axes;
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Squeeze {
    /// Opset < 13: axes from the attribute (`None`: all 1-dims).
    pub axes_attr: Option<Vec<i64>>,
    /// Opset >= 13: axes come from the optional second input.
    pub axes_input: bool,
}

impl Squeeze {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        if opset < 13 {
            Ok(Arc::new(Squeeze {
                axes_attr: attrs.ints("axes")?,
                axes_input: false,
            }))
        } else {
            Ok(Arc::new(Squeeze {
                axes_attr: None,
                axes_input: true,
            }))
        }
    }

    /// Which dims to keep, given the input dims and the requested axes.
    fn keep(&self, shape: &[Dim], axes: Option<&[i64]>) -> Result<Option<Vec<bool>>, OpError> {
        let op = self.name();
        let mut keep = vec![true; shape.len()];
        match axes {
            Some(axes) => {
                for a in normalize_axes(op, axes, shape.len())? {
                    if let Dim::Known(n) = shape[a] {
                        if n != 1 {
                            return Err(OpError::invalid(
                                op,
                                format!("cannot squeeze axis {a} of size {n}"),
                            ));
                        }
                    }
                    keep[a] = false;
                }
            }
            None => {
                for (k, d) in keep.iter_mut().zip(shape) {
                    match d {
                        Dim::Known(1) => *k = false,
                        Dim::Known(_) => {}
                        Dim::Sym(_) => return Ok(None),
                    }
                }
            }
        }
        Ok(Some(keep))
    }
}

impl Op for Squeeze {
    fn name(&self) -> &'static str {
        "Squeeze"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let axes = if self.axes_input {
            match ctx.opt_input(1) {
                None => None,
                Some(_) => match const_ints(ctx, 1) {
                    Some(a) => Some(a),
                    None => {
                        return Ok(vec![ValueType {
                            dtype: x.dtype,
                            shape: None,
                        }])
                    }
                },
            }
        } else {
            self.axes_attr.clone()
        };
        let shape = match &x.shape {
            Some(s) => self.keep(s, axes.as_deref())?.map(|keep| {
                s.iter()
                    .zip(keep)
                    .filter(|(_, k)| *k)
                    .map(|(d, _)| d.clone())
                    .collect()
            }),
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
        let axes = if self.axes_input {
            opt_ints(self.name(), inputs, 1)?
        } else {
            self.axes_attr.clone()
        };
        let dims: Vec<Dim> = x.shape().iter().map(|&d| Dim::Known(d)).collect();
        let keep = self
            .keep(&dims, axes.as_deref())?
            .ok_or_else(|| OpError::invalid(self.name(), "unknown dims"))?;
        let shape = x
            .shape()
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(d, _)| *d)
            .collect();
        Ok(vec![with_shape(self.name(), x, shape)?])
    }

    fn describe(&self) -> String {
        match &self.axes_attr {
            Some(a) => format!("axes={a:?}"),
            None => String::new(),
        }
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
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;
    use millrace_core::DType;

    #[test]
    fn squeezes() {
        let x = Tensor::zeros(DType::Bool, vec![1, 3, 1, 2]);
        let cases: &[(Option<&[i64]>, Option<&[usize]>)] = &[
            (None, Some(&[3, 2])),
            (Some(&[0]), Some(&[3, 1, 2])),
            (Some(&[-2, 0]), Some(&[3, 2])),
            (Some(&[1]), None),
            (Some(&[4]), None),
        ];
        for (axes, want) in cases {
            let a = axes.map(|a| Tensor::from_vec(vec![a.len()], a.to_vec()).unwrap());
            let op = Squeeze {
                axes_attr: None,
                axes_input: true,
            };
            let got = op.eval(&Inputs::new("Squeeze", &[Some(&x), a.as_ref()]));
            assert_eq!(got.ok().map(|t| t[0].shape().to_vec()).as_deref(), *want);
        }
    }

    #[test]
    fn infers_with_symbols() {
        let t = [Some(ValueType::new(
            DType::F32,
            vec![Dim::Sym("b".into()), Dim::Known(1)],
        ))];
        let op = Squeeze {
            axes_attr: Some(vec![-1]),
            axes_input: false,
        };
        let out = op.infer(&InferCtx::new("Squeeze", &t, &[None])).unwrap();
        assert_eq!(out[0].shape, Some(vec![Dim::Sym("b".into())]));
    }
}
