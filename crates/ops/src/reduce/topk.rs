//! TopK (ONNX opsets 1, 10, 11, 24): the k largest (or smallest) values along `axis` and
//! their i64 indices; ties go to the lower index.
use super::common::{split_at_axis, total_cmp};
use crate::util::{ints_of, normalize_axis, output, Num};
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct TopK {
    /// `k` from the attribute (opset < 10); `None` when it is input 1.
    pub k: Option<i64>,
    pub axis: i64,
    pub largest: bool,
    pub sorted: bool,
}

impl TopK {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(TopK::parse(attrs, opset)?))
    }

    pub fn parse(attrs: &Attributes, opset: i64) -> Result<TopK, OpError> {
        let k = attrs.int("k")?;
        let k = if opset < 10 {
            Some(k.ok_or_else(|| OpError::attribute("TopK", "k", "required but absent"))?)
        } else if k.is_some() {
            return Err(OpError::attribute(
                "TopK",
                "k",
                "is an input, not an attribute, from opset 10",
            ));
        } else {
            None
        };
        Ok(TopK {
            k,
            axis: attrs.int_or("axis", -1)?,
            largest: attrs.int_or("largest", 1)? != 0,
            sorted: attrs.int_or("sorted", 1)? != 0,
        })
    }

    fn k_from(&self, t: Option<&Tensor>) -> Result<Option<i64>, OpError> {
        if let Some(k) = self.k {
            return Ok(Some(k));
        }
        let Some(t) = t else { return Ok(None) };
        let v = ints_of("TopK", t)?;
        match v.as_slice() {
            [k] => Ok(Some(*k)),
            _ => Err(OpError::invalid(
                "TopK",
                format!("K must hold exactly one value, got {}", v.len()),
            )),
        }
    }

    fn topk<T: Num>(&self, x: &[T], shape: &[usize], axis: usize, k: usize) -> (Vec<T>, Vec<i64>) {
        let (outer, len, inner) = split_at_axis(shape, axis);
        let mut vals = vec![T::default(); outer * k * inner];
        let mut idxs = vec![0i64; outer * k * inner];
        let mut buf: Vec<usize> = Vec::with_capacity(len);
        for o in 0..outer {
            for i in 0..inner {
                let base = o * len * inner + i;
                buf.clear();
                buf.extend(0..len);
                let at = |j: usize| x[base + j * inner];
                let cmp = |a: &usize, b: &usize| {
                    let c = total_cmp(&at(*a), &at(*b));
                    let c = if self.largest { c.reverse() } else { c };
                    c.then(a.cmp(b))
                };
                if k < len {
                    buf.select_nth_unstable_by(k, cmp);
                    buf.truncate(k);
                }
                // Sorted output also for sorted=0 (any order is allowed then).
                buf.sort_by(cmp);
                for (r, &j) in buf.iter().enumerate() {
                    let dst = o * k * inner + r * inner + i;
                    vals[dst] = at(j);
                    idxs[dst] = j as i64;
                }
            }
        }
        (vals, idxs)
    }
}

impl Op for TopK {
    fn name(&self) -> &'static str {
        "TopK"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let k = if self.k.is_some() {
            self.k
        } else {
            self.k_from(ctx.constant(1))?
        };
        let shape = match (&x.shape, k) {
            (Some(s), Some(k)) => {
                if k < 0 {
                    return Err(OpError::invalid("TopK", format!("negative k {k}")));
                }
                let ax = normalize_axis("TopK", self.axis, s.len())?;
                if let Some(Dim::Known(d)) = s.get(ax) {
                    if k as usize > *d {
                        return Err(OpError::invalid(
                            "TopK",
                            format!("k {k} exceeds axis size {d}"),
                        ));
                    }
                }
                let mut out = s.clone();
                if let Some(d) = out.get_mut(ax) {
                    *d = Dim::Known(k as usize);
                }
                Some(out)
            }
            _ => None,
        };
        Ok(vec![
            ValueType {
                dtype: x.dtype,
                shape: shape.clone(),
            },
            ValueType {
                dtype: Some(DType::I64),
                shape,
            },
        ])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let mut c = Cost::elementwise(&inputs[..inputs.len().min(1)], outputs, 0);
        let n = inputs.first().and_then(|t| t.numel()).unwrap_or(0) as u64;
        let k = outputs.first().and_then(|t| t.numel()).unwrap_or(0) as u64;
        c.flops = n + k * (64 - k.leading_zeros() as u64);
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let k = if self.k.is_some() {
            self.k
        } else {
            self.k_from(Some(inputs.req(1)?))?
        };
        let k = k.unwrap_or(0);
        if x.rank() == 0 {
            return Err(OpError::invalid("TopK", "input must have rank >= 1"));
        }
        let axis = normalize_axis("TopK", self.axis, x.rank())?;
        let shape = x.shape();
        let len = shape[axis];
        if k < 0 || k as usize > len {
            return Err(OpError::invalid(
                "TopK",
                format!("k {k} is out of range for axis size {len}"),
            ));
        }
        let k = k as usize;
        let mut out_shape = shape.to_vec();
        out_shape[axis] = k;
        let (vals, idxs) = crate::dispatch_num!("TopK", x, |v: T| {
            let (a, b) = self.topk::<T>(v, shape, axis, k);
            (output("TopK", out_shape.clone(), a)?, b)
        });
        Ok(vec![vals, output("TopK", out_shape, idxs)?])
    }

    fn describe(&self) -> String {
        let mut s = format!("axis={} largest={}", self.axis, self.largest as i64);
        if let Some(k) = self.k {
            s = format!("k={k} {s}");
        }
        if !self.sorted {
            s.push_str(" sorted=0");
        }
        s
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_ir::Attr;

    fn op(opset: i64, attrs: Vec<(&str, Attr)>) -> TopK {
        let a = Attributes::new(
            "TopK",
            attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        );
        TopK::parse(&a, opset).unwrap()
    }

    fn run(op: &TopK, x: &Tensor, k: Option<i64>) -> Result<Vec<Tensor>, OpError> {
        let kt = k.map(|k| Tensor::from_vec(vec![1], vec![k]).unwrap());
        op.eval(&Inputs::new("TopK", &[Some(x), kt.as_ref()]))
    }

    type Case = (
        i64,
        Vec<(&'static str, Attr)>,
        i64,
        &'static [usize],
        &'static [f32],
        &'static [i64],
    );

    #[test]
    fn cases() {
        let x = Tensor::from_vec(vec![2, 4], vec![1f32, 5., 5., 3., 4., 2., 4., 0.]).unwrap();
        let cases: Vec<Case> = vec![
            (11, vec![], 2, &[2, 2], &[5., 5., 4., 4.], &[1, 2, 0, 2]),
            (
                11,
                vec![("largest", Attr::Int(0))],
                3,
                &[2, 3],
                &[1., 3., 5., 0., 2., 4.],
                &[0, 3, 1, 3, 1, 0],
            ),
            (
                10,
                vec![("axis", Attr::Int(0))],
                1,
                &[1, 4],
                &[4., 5., 5., 3.],
                &[1, 0, 0, 0],
            ),
            (11, vec![], 0, &[2, 0], &[], &[]),
        ];
        for (opset, attrs, k, shape, vals, idx) in cases {
            let y = run(&op(opset, attrs), &x, Some(k)).unwrap();
            assert_eq!(y[0].shape(), shape);
            assert_eq!(y[0].as_slice::<f32>().unwrap(), vals);
            assert_eq!(y[1].as_slice::<i64>().unwrap(), idx);
        }
        // opset 1: k attribute; ints.
        let xi = Tensor::from_vec(vec![3], vec![7i64, -1, 9]).unwrap();
        let y = run(&op(1, vec![("k", Attr::Int(2))]), &xi, None).unwrap();
        assert_eq!(y[0].as_slice::<i64>().unwrap(), &[9, 7]);
        assert_eq!(y[1].as_slice::<i64>().unwrap(), &[2, 0]);
    }

    #[test]
    fn errors_and_infer() {
        let x = Tensor::from_vec(vec![3], vec![1f32, 2., 3.]).unwrap();
        let o = op(11, vec![]);
        assert!(run(&o, &x, Some(4)).is_err());
        assert!(run(&o, &x, Some(-1)).is_err());
        assert!(run(&o, &x, None).is_err());
        assert!(run(&op(11, vec![("axis", Attr::Int(1))]), &x, Some(1)).is_err());
        let k = Tensor::from_vec(vec![1], vec![2i64]).unwrap();
        let types = [
            Some(ValueType::new(
                DType::F32,
                vec![Dim::Sym("n".into()), Dim::Known(5)],
            )),
            Some(ValueType::concrete(DType::I64, &[1])),
        ];
        let t = o
            .infer(&InferCtx::new("TopK", &types, &[None, Some(&k)]))
            .unwrap();
        assert_eq!(
            t[1],
            ValueType::new(DType::I64, vec![Dim::Sym("n".into()), Dim::Known(2)])
        );
    }
}
