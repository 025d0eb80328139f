//! Concat (ONNX opsets 1, 4, 11, 13): joins tensors along `axis`.
use super::common::{dim_sum, same_typed, unify_dim};
use crate::util::normalize_axis;
use millrace_core::{with_data, Elem, Tensor};
use millrace_ir::{Attributes, Cost, F32View, InferCtx, Inputs, Op, OpError, ValueType};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Concat {
    pub axis: i64,
}

impl Concat {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let axis = if opset < 4 {
            attrs.int_or("axis", 1)?
        } else {
            attrs.req_int("axis")?
        };
        Ok(Arc::new(Concat { axis }))
    }
}

/// Concatenates typed parts: for each outer index, a chunk of `chunk[k]` from each part.
fn concat_typed<T: Elem>(
    op: &str,
    first: &[T],
    parts: &[&Tensor],
    outer: usize,
    chunks: &[usize],
) -> Result<Vec<T>, OpError> {
    let slices = parts
        .iter()
        .map(|t| same_typed(op, first, t))
        .collect::<Result<Vec<_>, _>>()?;
    let total: usize = chunks.iter().sum::<usize>() * outer;
    let mut out = Vec::with_capacity(total);
    for o in 0..outer {
        for (s, &c) in slices.iter().zip(chunks) {
            let part = s
                .get(o * c..(o + 1) * c)
                .ok_or_else(|| OpError::invalid(op, "input too short"))?;
            out.extend_from_slice(part);
        }
    }
    Ok(out)
}

impl Op for Concat {
    fn name(&self) -> &'static str {
        "Concat"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let op = self.name();
        let tys: Vec<&ValueType> = (0..ctx.len()).filter_map(|i| ctx.opt_input(i)).collect();
        if tys.is_empty() {
            return Err(OpError::MissingInput {
                op: op.into(),
                index: 0,
            });
        }
        let dtype = tys.iter().find_map(|t| t.dtype);
        let Some(shapes) = tys
            .iter()
            .map(|t| t.shape.clone())
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(vec![ValueType { dtype, shape: None }]);
        };
        let rank = shapes[0].len();
        let axis = normalize_axis(op, self.axis, rank)?;
        if shapes.iter().any(|s| s.len() != rank) {
            return Err(OpError::invalid(op, "inputs have different ranks"));
        }
        let mut out = shapes[0].clone();
        for s in &shapes[1..] {
            for (i, d) in s.iter().enumerate() {
                if i != axis {
                    out[i] = unify_dim(op, &out[i], d)?;
                }
            }
        }
        if rank > 0 {
            let along: Vec<_> = shapes.iter().map(|s| s[axis].clone()).collect();
            out[axis] = dim_sum(&along);
        }
        Ok(vec![ValueType {
            dtype,
            shape: Some(out),
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn input_pieces(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Option<Vec<usize>> {
        let out = outputs.first()?.concrete_shape()?;
        let axis = normalize_axis(self.name(), self.axis, out.len()).ok()?;
        if out[..axis].iter().product::<usize>() != 1 {
            return None;
        }
        let mut offsets = Vec::with_capacity(inputs.len());
        let mut at = 0usize;
        for t in inputs {
            offsets.push(at);
            at += t.numel()?;
        }
        (at == out.iter().product::<usize>()).then_some(offsets)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let parts: Vec<&Tensor> = inputs.present().collect();
        let first = *parts.first().ok_or(OpError::MissingInput {
            op: op.into(),
            index: 0,
        })?;
        let rank = first.rank();
        if rank == 0 {
            return Err(OpError::invalid(op, "cannot concatenate scalars"));
        }
        let axis = normalize_axis(op, self.axis, rank)?;
        let mut out_shape = first.shape().to_vec();
        out_shape[axis] = 0;
        for p in &parts {
            let s = p.shape();
            if s.len() != rank
                || s.iter()
                    .zip(first.shape())
                    .enumerate()
                    .any(|(i, (a, b))| i != axis && a != b)
            {
                return Err(OpError::invalid(
                    op,
                    format!(
                        "shapes {:?} and {:?} do not match off axis {axis}",
                        first.shape(),
                        s
                    ),
                ));
            }
            if p.dtype() != first.dtype() {
                return Err(OpError::invalid(op, "inputs have different dtypes"));
            }
            out_shape[axis] += s[axis];
        }
        if first.dtype() == millrace_core::DType::F32 {
            let views = crate::planned::views(op, inputs)?;
            return Ok(vec![crate::planned::alloc_f32(
                op,
                out_shape.clone(),
                |y| self.eval_into(&views, y, &out_shape),
            )?]);
        }
        let outer: usize = first.shape()[..axis].iter().product();
        let inner: usize = first.shape()[axis + 1..].iter().product();
        let chunks: Vec<usize> = parts.iter().map(|p| p.shape()[axis] * inner).collect();
        let data =
            with_data!(first.data(), v => Elem::wrap(concat_typed(op, v, &parts, outer, &chunks)?));
        Ok(vec![
            Tensor::new(out_shape, data).map_err(|e| OpError::tensor(op, e))?
        ])
    }

    fn writes_into(&self, inputs: &[ValueType], outputs: &[ValueType]) -> bool {
        use crate::planned::{f32_shape, is_f32};
        let (Some(y), true) = (outputs.first().and_then(f32_shape), outputs.len() == 1) else {
            return false;
        };
        if inputs.is_empty() || !inputs.iter().all(|t| is_f32(Some(t))) || y.is_empty() {
            return false;
        }
        let Ok(axis) = normalize_axis("Concat", self.axis, y.len()) else {
            return false;
        };
        let mut along = 0;
        for t in inputs {
            let Some(s) = f32_shape(t) else { return false };
            if s.len() != y.len() || (0..y.len()).any(|i| i != axis && s[i] != y[i]) {
                return false;
            }
            along += s[axis];
        }
        along == y[axis]
    }

    fn eval_into(
        &self,
        inputs: &[Option<F32View<'_>>],
        out: &mut [f32],
        out_shape: &[usize],
    ) -> Result<(), OpError> {
        let op = self.name();
        crate::planned::check_out(op, out, out_shape)?;
        if out_shape.is_empty() {
            return Err(OpError::invalid(op, "cannot concatenate scalars"));
        }
        let axis = normalize_axis(op, self.axis, out_shape.len())?;
        let mut along = 0;
        for p in inputs.iter().flatten() {
            let s = p.shape;
            if s.len() != out_shape.len()
                || (0..s.len()).any(|i| i != axis && s[i] != out_shape[i])
                || p.data.len() != s.iter().product::<usize>()
            {
                return Err(OpError::invalid(
                    op,
                    format!("input {s:?} does not fit output {out_shape:?} off axis {axis}"),
                ));
            }
            along += s[axis];
        }
        if along != out_shape[axis] {
            return Err(OpError::invalid(
                op,
                format!("inputs add up to {along} along axis {axis}, output has {out_shape:?}"),
            ));
        }
        let outer: usize = out_shape[..axis].iter().product();
        let inner: usize = out_shape[axis + 1..].iter().product();
        let row = along * inner;
        if row == 0 {
            return Ok(());
        }
        // Output block `o` (one index of the dimensions before the axis): every input's
        // block `o`, one after another.
        let block = |(o, dst): (usize, &mut [f32])| {
            let mut at = 0;
            for p in inputs.iter().flatten() {
                let c = p.shape[axis] * inner;
                dst[at..at + c].copy_from_slice(&p.data[o * c..(o + 1) * c]);
                at += c;
            }
        };
        // A batched channel concat (NCHW, batch > 1) is a few large blocks: copy them on
        // the pool's threads.
        if outer > 1 && out.len() >= 1 << 16 && rayon::current_num_threads() > 1 {
            out.par_chunks_mut(row)
                .with_min_len((1 << 15) / row + 1)
                .enumerate()
                .for_each(block);
        } else {
            out.chunks_mut(row).enumerate().for_each(block);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("axis={}", self.axis)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;
    use millrace_core::{DType, Dim};

    #[test]
    fn planned_paths_match_eval() {
        use crate::into_check::{check, rand, refuses};
        let (a, b, c) = (
            rand(&[2, 3, 4], 1),
            rand(&[2, 5, 4], 2),
            rand(&[2, 1, 4], 3),
        );
        check(&Concat { axis: 1 }, &[Some(&a), Some(&b), Some(&c)]);
        check(&Concat { axis: -2 }, &[Some(&a), Some(&b)]);
        let d = rand(&[2, 3, 7], 4);
        check(&Concat { axis: 2 }, &[Some(&a), Some(&d)]);
        check(&Concat { axis: 0 }, &[Some(&a), Some(&a)]);
        let t = |s: &[usize]| ValueType::concrete(DType::F32, s);
        refuses(
            &Concat { axis: 1 },
            &[t(&[2, 3]), t(&[3, 3])],
            &[t(&[2, 6])],
        );
        let i = ValueType::concrete(DType::I64, &[3]);
        refuses(
            &Concat { axis: 0 },
            &[i.clone(), i],
            &[ValueType::concrete(DType::I64, &[6])],
        );
    }

    #[test]
    fn joins_along_axes() {
        let a = Tensor::from_vec(vec![2, 2], vec![1i64, 2, 3, 4]).unwrap();
        let b = Tensor::from_vec(vec![2, 1], vec![5i64, 6]).unwrap();
        let e = Tensor::from_vec(vec![2, 0], Vec::<i64>::new()).unwrap();
        let y = Concat { axis: -1 }
            .eval(&Inputs::new("Concat", &[Some(&a), Some(&e), Some(&b)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[2, 3]);
        assert_eq!(y[0].as_slice::<i64>().unwrap(), &[1, 2, 5, 3, 4, 6]);
        let y = Concat { axis: 0 }
            .eval(&Inputs::new("Concat", &[Some(&a), Some(&a)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<i64>().unwrap(), &[1, 2, 3, 4, 1, 2, 3, 4]);
        assert!(Concat { axis: 0 }
            .eval(&Inputs::new("Concat", &[Some(&a), Some(&b)]))
            .is_err());
    }

    #[test]
    fn infers_symbolic() {
        let t = [
            Some(ValueType::new(
                DType::F32,
                vec![Dim::Sym("b".into()), Dim::Known(2)],
            )),
            Some(ValueType::new(
                DType::F32,
                vec![Dim::Known(3), Dim::Known(2)],
            )),
        ];
        let out = Concat { axis: 1 }
            .infer(&InferCtx::new("Concat", &t, &[None, None]))
            .unwrap();
        assert_eq!(out[0].shape, Some(vec![Dim::Known(3), Dim::Known(4)]));
        let out = Concat { axis: 0 }
            .infer(&InferCtx::new("Concat", &t, &[None, None]))
            .unwrap();
        assert_eq!(
            out[0].shape,
            Some(vec![Dim::Sym("b+3".into()), Dim::Known(2)])
        );
    }
}
