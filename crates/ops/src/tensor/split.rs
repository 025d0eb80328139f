//! Split (ONNX opsets 1, 2, 11, 13, 18): splits a tensor into parts along `axis`.
use super::common::{const_ints, opt_ints, take};
use crate::util::normalize_axis;
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub axis: i64,
    /// Opset < 13: part sizes from the attribute.
    pub split_attr: Option<Vec<i64>>,
    /// Opset >= 13: part sizes may come from input 1.
    pub split_input: bool,
    /// Number of outputs (opset 18 attribute; importers may also set it from the node's
    /// output count for an equal split in earlier opsets).
    pub num_outputs: Option<i64>,
}

impl Split {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let axis = attrs.int_or("axis", 0)?;
        let split_attr = if opset < 13 {
            attrs.ints("split")?
        } else {
            None
        };
        // Without `split` or `num_outputs`, the parts are as many as the node's outputs.
        let declared = attrs.node_outputs();
        let num_outputs = attrs
            .int("num_outputs")?
            .or((declared > 0).then_some(declared as i64));
        if let Some(n) = num_outputs {
            if n < 1 {
                return Err(OpError::attribute("Split", "num_outputs", "must be >= 1"));
            }
        }
        Ok(Arc::new(Split {
            axis,
            split_attr,
            split_input: opset >= 13,
            num_outputs,
        }))
    }

    /// Part sizes along an axis of length `dim`, given explicit `split` if any.
    fn sizes(&self, dim: usize, split: Option<Vec<i64>>) -> Result<Vec<usize>, OpError> {
        let op = self.name();
        if let Some(s) = split {
            if s.iter().any(|&v| v < 0) {
                return Err(OpError::invalid(op, format!("negative split {s:?}")));
            }
            let sizes: Vec<usize> = s.iter().map(|&v| v as usize).collect();
            if sizes.iter().sum::<usize>() != dim {
                return Err(OpError::invalid(
                    op,
                    format!("split {s:?} does not sum to the axis length {dim}"),
                ));
            }
            return Ok(sizes);
        }
        let n = self.num_outputs.ok_or_else(|| {
            OpError::unsupported(op, "equal split without `split` or `num_outputs`")
        })? as usize;
        let chunk = dim.div_ceil(n);
        let mut sizes = Vec::with_capacity(n);
        let mut left = dim;
        for _ in 0..n {
            let c = chunk.min(left);
            sizes.push(c);
            left -= c;
        }
        if chunk * (n - 1) > dim {
            return Err(OpError::invalid(
                op,
                format!("cannot split {dim} into {n} non-empty chunks"),
            ));
        }
        Ok(sizes)
    }
}

impl Op for Split {
    fn name(&self) -> &'static str {
        "Split"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let split = if self.split_input && ctx.opt_input(1).is_some() {
            match const_ints(ctx, 1) {
                Some(s) => Some(s),
                None => {
                    let n = ctx
                        .opt_input(1)
                        .and_then(|t| t.concrete_shape())
                        .and_then(|s| s.first().copied());
                    let unk = ValueType {
                        dtype: x.dtype,
                        shape: None,
                    };
                    return Ok(vec![unk; n.unwrap_or(0)]);
                }
            }
        } else {
            self.split_attr.clone()
        };
        let count = split
            .as_ref()
            .map(|s| s.len())
            .or(self.num_outputs.map(|n| n as usize))
            .unwrap_or(0);
        let Some(shape) = &x.shape else {
            return Ok(vec![
                ValueType {
                    dtype: x.dtype,
                    shape: None
                };
                count
            ]);
        };
        let axis = normalize_axis(self.name(), self.axis, shape.len())?;
        let outs = match &shape[axis] {
            Dim::Known(d) => self
                .sizes(*d, split)?
                .into_iter()
                .map(|c| {
                    let mut s = shape.clone();
                    s[axis] = Dim::Known(c);
                    ValueType {
                        dtype: x.dtype,
                        shape: Some(s),
                    }
                })
                .collect(),
            Dim::Sym(name) => (0..count)
                .map(|i| {
                    let mut s = shape.clone();
                    s[axis] = match &split {
                        Some(sp) => Dim::Known(sp[i].max(0) as usize),
                        None => Dim::Sym(format!("split({name},{count})[{i}]")),
                    };
                    ValueType {
                        dtype: x.dtype,
                        shape: Some(s),
                    }
                })
                .collect(),
        };
        Ok(outs)
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(&inputs[..inputs.len().min(1)], outputs)
    }

    fn output_pieces(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Option<Vec<usize>> {
        let x = inputs.first()?.concrete_shape()?;
        let axis = normalize_axis(self.name(), self.axis, x.len()).ok()?;
        if x[..axis].iter().product::<usize>() != 1 {
            return None;
        }
        let mut offsets = Vec::with_capacity(outputs.len());
        let mut at = 0usize;
        for o in outputs {
            offsets.push(at);
            at += o.numel()?;
        }
        (at == x.iter().product::<usize>()).then_some(offsets)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        if x.rank() == 0 {
            return Err(OpError::invalid(self.name(), "cannot split a scalar"));
        }
        let axis = normalize_axis(self.name(), self.axis, x.rank())?;
        let split = if self.split_input {
            opt_ints(self.name(), inputs, 1)?
        } else {
            self.split_attr.clone()
        };
        let s = x.shape();
        let sizes = self.sizes(s[axis], split)?;
        let outer: usize = s[..axis].iter().product();
        let inner: usize = s[axis + 1..].iter().product();
        let mut outs = Vec::with_capacity(sizes.len());
        let mut start = 0usize;
        for c in sizes {
            let mut idx = Vec::with_capacity(outer * c * inner);
            for o in 0..outer {
                let base = (o * s[axis] + start) * inner;
                idx.extend(base..base + c * inner);
            }
            let mut shape = s.to_vec();
            shape[axis] = c;
            outs.push(take(self.name(), x.data(), &idx, shape)?);
            start += c;
        }
        Ok(outs)
    }

    fn describe(&self) -> String {
        let mut d = format!("axis={}", self.axis);
        if let Some(s) = &self.split_attr {
            d.push_str(&format!(" split={s:?}"));
        }
        if let Some(n) = self.num_outputs {
            d.push_str(&format!(" num_outputs={n}"));
        }
        d
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;

    fn op(num: Option<i64>) -> Split {
        Split {
            axis: -1,
            split_attr: None,
            split_input: true,
            num_outputs: num,
        }
    }

    #[test]
    fn splits() {
        let x = Tensor::from_vec(vec![2, 3], vec![1i32, 2, 3, 4, 5, 6]).unwrap();
        let sp = Tensor::from_vec(vec![2], vec![1i64, 2]).unwrap();
        let y = op(None)
            .eval(&Inputs::new("Split", &[Some(&x), Some(&sp)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[1, 4]);
        assert_eq!(y[1].as_slice::<i32>().unwrap(), &[2, 3, 5, 6]);
        let y = op(Some(2))
            .eval(&Inputs::new("Split", &[Some(&x)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[2, 2]);
        assert_eq!(y[1].as_slice::<i32>().unwrap(), &[3, 6]);
        assert!(op(None).eval(&Inputs::new("Split", &[Some(&x)])).is_err());
        let bad = Tensor::from_vec(vec![2], vec![1i64, 1]).unwrap();
        assert!(op(None)
            .eval(&Inputs::new("Split", &[Some(&x), Some(&bad)]))
            .is_err());
    }
}
