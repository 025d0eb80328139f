//! OneHot (ONNX opsets 9, 11): `values[1]` where the index matches along a new `axis`,
//! `values[0]` elsewhere (negative indices count from `depth`).
use super::common::{normalize_axis_incl, take};
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct OneHot {
    pub axis: i64,
}

impl OneHot {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(OneHot {
            axis: attrs.int_or("axis", -1)?,
        }))
    }

    /// Insert position for the depth axis in an output of rank `rank + 1`.
    fn pos(&self, rank: usize) -> Result<usize, OpError> {
        if self.axis < 0 {
            let a = self.axis + rank as i64 + 1;
            if a < 0 {
                return Err(OpError::invalid(self.name(), "axis out of range"));
            }
            Ok(a as usize)
        } else {
            normalize_axis_incl(self.name(), self.axis, rank)
        }
    }
}

fn depth_of(op: &str, t: &Tensor) -> Result<usize, OpError> {
    let v = t.to_f64_vec().map_err(|e| OpError::tensor(op, e))?;
    match v.as_slice() {
        [d] if *d >= 0.0 && d.is_finite() => Ok(*d as usize),
        _ => Err(OpError::invalid(op, "depth must be one non-negative value")),
    }
}

impl Op for OneHot {
    fn name(&self) -> &'static str {
        "OneHot"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let i = ctx.input(0)?;
        let v = ctx.input(2)?;
        let depth = match ctx.constant(1) {
            Some(t) => Dim::Known(depth_of(self.name(), t)?),
            None => Dim::Sym("depth".into()),
        };
        let shape = match &i.shape {
            Some(s) => {
                let p = self.pos(s.len())?;
                let mut o = s.clone();
                o.insert(p, depth);
                Some(o)
            }
            None => None,
        };
        Ok(vec![ValueType {
            dtype: v.dtype,
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let ind = inputs.req(0)?;
        let depth = depth_of(op, inputs.req(1)?)?;
        let vals = inputs.req(2)?;
        if vals.len() != 2 {
            return Err(OpError::invalid(op, "values must hold [off, on]"));
        }
        let idx: Vec<i64> = match ind.to_i64_vec() {
            Ok(v) => v,
            Err(_) => ind
                .to_f64_vec()
                .map_err(|e| OpError::tensor(op, e))?
                .into_iter()
                .map(|x| x as i64)
                .collect(),
        };
        let p = self.pos(ind.rank())?;
        let outer: usize = ind.shape()[..p].iter().product();
        let inner: usize = ind.shape()[p..].iter().product();
        let mut sel = Vec::with_capacity(outer * depth * inner);
        let d = depth as i64;
        for o in 0..outer {
            for k in 0..d {
                for i in 0..inner {
                    let mut v = idx.get(o * inner + i).copied().unwrap_or(-d - 1);
                    if v < 0 {
                        v += d;
                    }
                    sel.push((v == k) as usize);
                }
            }
        }
        let mut shape = ind.shape().to_vec();
        shape.insert(p, depth);
        Ok(vec![take(op, vals.data(), &sel, shape)?])
    }

    fn describe(&self) -> String {
        format!("axis={}", self.axis)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes() {
        let i = Tensor::from_vec(vec![3], vec![0i64, -1, 5]).unwrap();
        let d = Tensor::scalar(3i64);
        let v = Tensor::from_vec(vec![2], vec![0.0f32, 1.0]).unwrap();
        let y = OneHot { axis: -1 }
            .eval(&Inputs::new("OneHot", &[Some(&i), Some(&d), Some(&v)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[3, 3]);
        assert_eq!(
            y[0].as_slice::<f32>().unwrap(),
            &[1., 0., 0., 0., 0., 1., 0., 0., 0.]
        );
        let y = OneHot { axis: 0 }
            .eval(&Inputs::new("OneHot", &[Some(&i), Some(&d), Some(&v)]))
            .unwrap();
        assert_eq!(
            y[0].as_slice::<f32>().unwrap(),
            &[1., 0., 0., 0., 0., 0., 0., 1., 0.]
        );
        let bad = Tensor::from_vec(vec![3], vec![0.0f32, 1.0, 2.0]).unwrap();
        assert!(OneHot { axis: 0 }
            .eval(&Inputs::new("OneHot", &[Some(&i), Some(&d), Some(&bad)]))
            .is_err());
    }
}
