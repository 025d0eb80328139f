//! Reshape (ONNX opsets 1, 5, 13, 14, 19, 21): same data, new shape (0 copies, -1 infers).
use super::common::{const_ints, dim_product, with_shape};
use crate::util::ints_of;
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Reshape {
    /// Opset < 5: the target shape as an attribute.
    pub shape_attr: Option<Vec<i64>>,
    pub allowzero: bool,
}

impl Reshape {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let shape_attr = if opset < 5 {
            Some(
                attrs
                    .ints("shape")?
                    .ok_or_else(|| OpError::attribute("Reshape", "shape", "required"))?,
            )
        } else {
            None
        };
        let allowzero = attrs.int_or("allowzero", 0)? != 0;
        Ok(Arc::new(Reshape {
            shape_attr,
            allowzero,
        }))
    }
}

/// The concrete output shape for an input of shape `inp` and a target `spec`.
pub(crate) fn resolve_shape(
    op: &str,
    inp: &[usize],
    spec: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>, OpError> {
    let total: usize = inp.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer_at = None;
    if allowzero && spec.contains(&0) && spec.contains(&-1) {
        return Err(OpError::invalid(
            op,
            "with allowzero=1 the shape cannot hold both 0 and -1",
        ));
    }
    for (i, &s) in spec.iter().enumerate() {
        match s {
            -1 => {
                if infer_at.is_some() {
                    return Err(OpError::invalid(op, "more than one -1 in the shape"));
                }
                infer_at = Some(i);
                out.push(1);
            }
            0 if !allowzero => {
                let d = inp.get(i).ok_or_else(|| {
                    OpError::invalid(
                        op,
                        format!("0 at position {i} but the input has rank {}", inp.len()),
                    )
                })?;
                out.push(*d);
            }
            s if s >= 0 => out.push(s as usize),
            s => return Err(OpError::invalid(op, format!("invalid dimension {s}"))),
        }
    }
    let known: usize = out
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != infer_at)
        .try_fold(1usize, |a, (_, &d)| a.checked_mul(d))
        .ok_or_else(|| OpError::invalid(op, "shape too large"))?;
    if let Some(i) = infer_at {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(OpError::invalid(
                op,
                format!("cannot reshape {inp:?} to {spec:?}"),
            ));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(OpError::invalid(
            op,
            format!("cannot reshape {inp:?} ({total} elements) to {out:?}"),
        ));
    }
    Ok(out)
}

/// Symbolic output shape for a (possibly symbolic) input shape and a constant target.
pub(crate) fn resolve_dims(
    op: &str,
    inp: &[Dim],
    spec: &[i64],
    allowzero: bool,
) -> Result<Vec<Dim>, OpError> {
    if let Some(c) = inp.iter().map(Dim::known).collect::<Option<Vec<_>>>() {
        return Ok(resolve_shape(op, &c, spec, allowzero)?
            .into_iter()
            .map(Dim::Known)
            .collect());
    }
    let mut out: Vec<Option<Dim>> = Vec::with_capacity(spec.len());
    let mut neg = 0;
    for (i, &s) in spec.iter().enumerate() {
        match s {
            -1 => {
                neg += 1;
                out.push(None);
            }
            0 if !allowzero => out.push(Some(inp.get(i).cloned().ok_or_else(|| {
                OpError::invalid(op, format!("0 at position {i} beyond the input rank"))
            })?)),
            s if s >= 0 => out.push(Some(Dim::Known(s as usize))),
            s => return Err(OpError::invalid(op, format!("invalid dimension {s}"))),
        }
    }
    if neg > 1 {
        return Err(OpError::invalid(op, "more than one -1 in the shape"));
    }
    if neg == 1 {
        // Cancel symbols present on both sides; what remains of the input is the -1.
        let mut in_syms: Vec<String> = vec![];
        let mut in_known = 1usize;
        for d in inp {
            match d {
                Dim::Known(n) => in_known = in_known.saturating_mul(*n),
                Dim::Sym(s) => in_syms.push(s.clone()),
            }
        }
        let mut out_known = 1usize;
        let mut ok = true;
        for d in out.iter().flatten() {
            match d {
                Dim::Known(n) => out_known = out_known.saturating_mul(*n),
                Dim::Sym(s) => match in_syms.iter().position(|x| x == s) {
                    Some(p) => {
                        in_syms.remove(p);
                    }
                    None => ok = false,
                },
            }
        }
        let inferred = if ok && out_known != 0 && in_known.is_multiple_of(out_known) {
            let rest = in_known / out_known;
            let mut parts: Vec<Dim> = in_syms.into_iter().map(Dim::Sym).collect();
            parts.push(Dim::Known(rest));
            dim_product(&parts)
        } else {
            Dim::Sym(format!("{op}_inferred"))
        };
        for d in out.iter_mut() {
            if d.is_none() {
                *d = Some(inferred.clone());
            }
        }
    }
    Ok(out.into_iter().flatten().collect())
}

impl Reshape {
    fn spec(&self, ctx_const: Option<Vec<i64>>) -> Option<Vec<i64>> {
        self.shape_attr.clone().or(ctx_const)
    }
}

impl Op for Reshape {
    fn name(&self) -> &'static str {
        "Reshape"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let spec = self.spec(if self.shape_attr.is_none() {
            const_ints(ctx, 1)
        } else {
            None
        });
        let shape = match (spec, &x.shape) {
            (Some(spec), Some(inp)) => Some(resolve_dims(self.name(), inp, &spec, self.allowzero)?),
            (Some(spec), None) if spec.iter().all(|&s| s > 0 || (s == 0 && self.allowzero)) => {
                Some(spec.iter().map(|&s| Dim::Known(s as usize)).collect())
            }
            _ => None,
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
        let spec = match &self.shape_attr {
            Some(s) => s.clone(),
            None => ints_of(self.name(), inputs.req(1)?)?,
        };
        let shape = resolve_shape(self.name(), x.shape(), &spec, self.allowzero)?;
        Ok(vec![with_shape(self.name(), x, shape)?])
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(a) = &self.shape_attr {
            s = format!("shape={a:?}");
        }
        if self.allowzero {
            s.push_str(" allowzero=1");
        }
        s.trim().to_string()
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

    fn op(allowzero: bool) -> Reshape {
        Reshape {
            shape_attr: None,
            allowzero,
        }
    }

    #[test]
    fn resolves_zero_and_minus_one() {
        let cases: &[(&[usize], &[i64], bool, Option<&[usize]>)] = &[
            (&[2, 3, 4], &[0, -1], false, Some(&[2, 12])),
            (&[2, 3, 4], &[-1], false, Some(&[24])),
            (&[2, 3, 4], &[4, 0, 2], false, Some(&[4, 3, 2])),
            (&[0, 3], &[0, 3], true, Some(&[0, 3])),
            (&[0, 3], &[-1, 3], false, Some(&[0, 3])),
            (&[2, 3], &[4, -1], false, None),
            (&[2, 3], &[-1, -1], false, None),
            (&[2, 3], &[0, -1], true, None),
        ];
        for (inp, spec, az, want) in cases {
            let got = resolve_shape("Reshape", inp, spec, *az).ok();
            assert_eq!(got.as_deref(), *want, "{inp:?} {spec:?}");
        }
    }

    #[test]
    fn evaluates_for_strings() {
        let x = Tensor::from_vec(
            vec![2, 2],
            vec!["a".to_string(), "b".into(), "c".into(), "d".into()],
        )
        .unwrap();
        let s = Tensor::from_vec(vec![1], vec![-1i64]).unwrap();
        let y = op(false)
            .eval(&Inputs::new("Reshape", &[Some(&x), Some(&s)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[4]);
    }

    #[test]
    fn infers_symbolic() {
        let x = ValueType::new(
            millrace_core::DType::F32,
            vec![Dim::Sym("b".into()), Dim::Known(3), Dim::Known(4)],
        );
        let s = Tensor::from_vec(vec![2], vec![0i64, -1]).unwrap();
        let types = [
            Some(x),
            Some(ValueType::concrete(millrace_core::DType::I64, &[2])),
        ];
        let consts = [None, Some(&s)];
        let out = op(false)
            .infer(&InferCtx::new("Reshape", &types, &consts))
            .unwrap();
        assert_eq!(
            out[0].shape,
            Some(vec![Dim::Sym("b".into()), Dim::Known(12)])
        );
        let s2 = Tensor::from_vec(vec![2], vec![-1i64, 4]).unwrap();
        let consts = [None, Some(&s2)];
        let out = op(false)
            .infer(&InferCtx::new("Reshape", &types, &consts))
            .unwrap();
        assert_eq!(
            out[0].shape,
            Some(vec![Dim::Sym("b*3".into()), Dim::Known(4)])
        );
    }
}
