//! Clip (ONNX opsets 6, 11, 12, 13): `min(max(x, lo), hi)`; bounds are attributes before
//! opset 11 and optional scalar inputs since (either may be absent); ints since opset 12.
use super::unary::{unary_inplace_args, unary_input, unary_writes_into};
use crate::planned::f32_shape;
use crate::util::{output, typed, Num};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, F32View, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Clip {
    /// Opset < 11: bounds from attributes (`None` for opset >= 11).
    pub attr_bounds: Option<(Option<f32>, Option<f32>)>,
}

impl Clip {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let _ = attrs.ints("consumed_inputs")?;
        let attr_bounds = if opset < 11 {
            Some((attrs.float("min")?, attrs.float("max")?))
        } else {
            None
        };
        Ok(Arc::new(Clip { attr_bounds }))
    }
}

/// A bound input's single value, checked to match x's dtype.
fn bound<T: Num>(op: &str, x: &Tensor, b: Option<&Tensor>) -> Result<Option<T>, OpError> {
    let Some(b) = b else { return Ok(None) };
    if b.dtype() != x.dtype() {
        return Err(OpError::invalid(
            op,
            format!(
                "bound dtype {} differs from input dtype {}",
                b.dtype(),
                x.dtype()
            ),
        ));
    }
    let v = typed::<T>(op, b)?;
    match v {
        [s] => Ok(Some(*s)),
        _ => Err(OpError::invalid(
            op,
            format!("bound must be a scalar, got shape {:?}", b.shape()),
        )),
    }
}

#[inline]
fn clip1<T: Num>(a: T, lo: Option<T>, hi: Option<T>) -> T {
    let a = match lo {
        Some(l) if a < l => l,
        _ => a,
    };
    match hi {
        Some(h) if a > h => h,
        _ => a,
    }
}

fn clip<T: Num>(v: &[T], lo: Option<T>, hi: Option<T>) -> Vec<T> {
    v.iter().map(|&a| clip1(a, lo, hi)).collect()
}

impl Clip {
    /// The bounds of an f32 clip, from the attributes or the scalar inputs 1 and 2.
    fn f32_bounds(
        &self,
        inputs: &[Option<F32View<'_>>],
    ) -> Result<(Option<f32>, Option<f32>), OpError> {
        if let Some(b) = self.attr_bounds {
            return Ok(b);
        }
        let one = |i: usize| match inputs.get(i).copied().flatten() {
            None => Ok(None),
            Some(v) => match v.data {
                [s] => Ok(Some(*s)),
                _ => Err(OpError::invalid(
                    "Clip",
                    format!("bound must be a scalar, got shape {:?}", v.shape),
                )),
            },
        };
        Ok((one(1)?, one(2)?))
    }
}

impl Op for Clip {
    fn name(&self) -> &'static str {
        "Clip"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(&inputs[..inputs.len().min(1)], outputs, 2)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let shape = x.shape().to_vec();
        let y = if let Some((lo, hi)) = self.attr_bounds {
            crate::dispatch_float!(op, x, |v: T| output(
                op,
                shape,
                clip::<T>(v, lo.map(T::from_f32), hi.map(T::from_f32))
            )?)
        } else {
            crate::dispatch_num!(op, x, |v: T| {
                let lo = bound::<T>(op, x, inputs.opt(1))?;
                let hi = bound::<T>(op, x, inputs.opt(2))?;
                output(op, shape, clip::<T>(v, lo, hi))?
            })
        };
        Ok(vec![y])
    }

    fn writes_into(&self, inputs: &[ValueType], outputs: &[ValueType]) -> bool {
        let scalar_or_absent = |i: usize| match inputs.get(i) {
            None => true,
            Some(t) if t.dtype.is_none() && t.shape.is_none() => true,
            Some(t) => {
                self.attr_bounds.is_none()
                    && f32_shape(t).is_some_and(|s| s.iter().product::<usize>() == 1)
            }
        };
        unary_writes_into(inputs, outputs) && scalar_or_absent(1) && scalar_or_absent(2)
    }

    fn eval_into(
        &self,
        inputs: &[Option<F32View<'_>>],
        out: &mut [f32],
        out_shape: &[usize],
    ) -> Result<(), OpError> {
        let x = unary_input(self.name(), inputs, out, out_shape)?;
        let (lo, hi) = self.f32_bounds(inputs)?;
        out.iter_mut()
            .zip(x)
            .for_each(|(o, &a)| *o = clip1(a, lo, hi));
        Ok(())
    }

    fn inplace_input(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Option<usize> {
        self.writes_into(inputs, outputs).then_some(0)
    }

    fn eval_inplace(
        &self,
        index: usize,
        inputs: &[Option<F32View<'_>>],
        io: &mut [f32],
        out_shape: &[usize],
    ) -> Result<(), OpError> {
        unary_inplace_args(self.name(), index, io, out_shape)?;
        let (lo, hi) = self.f32_bounds(inputs)?;
        io.iter_mut().for_each(|v| *v = clip1(*v, lo, hi));
        Ok(())
    }

    fn describe(&self) -> String {
        match self.attr_bounds {
            Some((lo, hi)) => {
                let f = |v: Option<f32>| v.map_or("none".to_string(), |v| v.to_string());
                format!("min={} max={}", f(lo), f(hi))
            }
            None => String::new(),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{build, run, run_opt, t, vals};
    use super::*;
    use millrace_ir::Attr;

    #[test]
    fn planned_paths_match_eval() {
        use crate::into_check::{check, rand};
        let x = rand(&[3, 50], 1);
        let lo = Tensor::from_vec(vec![], vec![-0.25f32]).unwrap();
        let hi = Tensor::from_vec(vec![], vec![0.5f32]).unwrap();
        let c = Clip { attr_bounds: None };
        assert!(check(&c, &[Some(&x), Some(&lo), Some(&hi)]));
        assert!(check(&c, &[Some(&x), None, Some(&hi)]));
        assert!(check(&c, &[Some(&x), Some(&lo)]));
        let c = Clip {
            attr_bounds: Some((Some(0.0), Some(6.0))),
        };
        assert!(check(&c, &[Some(&x)]));
    }

    #[test]
    fn attribute_bounds_before_opset_11() {
        let attrs = vec![("min", Attr::Float(-1.0)), ("max", Attr::Float(2.0))];
        let op = build(Clip::from_onnx, "Clip", attrs, 6).unwrap();
        let x = t(&[4], vec![-5.0f32, 0.5, 3.0, f32::NAN]);
        let y = vals::<f32>(op.as_ref(), &[&x]);
        assert_eq!(&y[..3], &[-1.0, 0.5, 2.0]);
        assert!(y[3].is_nan());
    }

    #[test]
    fn optional_input_bounds() {
        let op = Clip { attr_bounds: None };
        let x = t(&[2, 2], vec![-5i32, 0, 3, 9]);
        let lo = t(&[], vec![-1i32]);
        let hi = t(&[], vec![4i32]);
        let y = run_opt(&op, &[Some(&x), None, Some(&hi)]).unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[-5, 0, 3, 4]);
        assert_eq!(vals::<i32>(&op, &[&x, &lo]), [-1, 0, 3, 9]);
        assert_eq!(vals::<i32>(&op, &[&x, &lo, &hi]), [-1, 0, 3, 4]);
        // min > max: everything becomes max.
        assert_eq!(vals::<i32>(&op, &[&x, &hi, &lo]), [-1, -1, -1, -1]);
    }

    #[test]
    fn bad_bounds_are_errors() {
        let op = Clip { attr_bounds: None };
        let x = t(&[2], vec![1.0f32, 2.0]);
        assert!(run(&op, &[&x, &t(&[2], vec![0.0f32, 1.0])]).is_err());
        assert!(run(&op, &[&x, &t(&[], vec![0.0f64])]).is_err());
    }
}
