//! Transpose (ONNX opsets 1, 13, 21): permutes axes (`perm`, default reversed).
use super::common::{istrides, strided_indices, take};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, F32View, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Transpose {
    pub perm: Option<Vec<i64>>,
}

impl Transpose {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Transpose {
            perm: attrs.ints("perm")?,
        }))
    }

    fn perm(&self, rank: usize) -> Result<Vec<usize>, OpError> {
        let Some(p) = &self.perm else {
            return Ok((0..rank).rev().collect());
        };
        if p.len() != rank {
            return Err(OpError::invalid(
                self.name(),
                format!("perm {p:?} does not match rank {rank}"),
            ));
        }
        let mut seen = vec![false; rank];
        let mut out = Vec::with_capacity(rank);
        for &a in p {
            let n = if a < 0 { a + rank as i64 } else { a };
            if n < 0 || n >= rank as i64 || seen[n as usize] {
                return Err(OpError::invalid(
                    self.name(),
                    format!("perm {p:?} is not a permutation of 0..{rank}"),
                ));
            }
            seen[n as usize] = true;
            out.push(n as usize);
        }
        Ok(out)
    }
}

/// Transposes any tensor by `perm` (already validated).
pub(crate) fn transpose(op: &str, x: &Tensor, perm: &[usize]) -> Result<Tensor, OpError> {
    let s = x.shape();
    let st = istrides(s);
    let out_shape: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    let out_strides: Vec<isize> = perm.iter().map(|&p| st[p]).collect();
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(x.clone());
    }
    if let millrace_core::TensorData::F32(v) = x.data() {
        let y = permute_f32(v, &out_shape, &out_strides);
        return Tensor::new(out_shape, millrace_core::TensorData::F32(y))
            .map_err(|e| OpError::tensor(op, e));
    }
    let idx = strided_indices(&out_shape, &out_strides, 0);
    take(op, x.data(), &idx, out_shape)
}

/// f32 fast path: walks the output in order with an odometer over the outer axes and a
/// strided copy along the last one (no index vector).
fn permute_f32(x: &[f32], shape: &[usize], strides: &[isize]) -> Vec<f32> {
    let mut y = vec![0f32; shape.iter().product()];
    permute_f32_into(x, shape, strides, &mut y);
    y
}

/// Highest rank whose transpose runs without allocating (the planned-buffer path).
const MAX_RANK: usize = 8;

/// [`permute_f32`] into `y` (of `shape`'s size); allocation-free up to [`MAX_RANK`].
fn permute_f32_into(x: &[f32], shape: &[usize], strides: &[isize], y: &mut [f32]) {
    let n: usize = shape.iter().product();
    let Some((&last, outer)) = shape.split_last() else {
        let k = n.min(x.len()).min(y.len());
        y[..k].copy_from_slice(&x[..k]);
        return;
    };
    if n == 0 {
        return;
    }
    let ls = strides[strides.len() - 1];
    let mut pos_arr = [0usize; MAX_RANK];
    let mut pos_vec;
    let pos: &mut [usize] = if outer.len() <= MAX_RANK {
        &mut pos_arr[..outer.len()]
    } else {
        pos_vec = vec![0usize; outer.len()];
        &mut pos_vec
    };
    let mut base: isize = 0;
    let mut at = 0;
    loop {
        let row = &mut y[at..at + last];
        if ls == 1 {
            row.copy_from_slice(&x[base as usize..base as usize + last]);
        } else {
            for (i, o) in row.iter_mut().enumerate() {
                *o = x[(base + i as isize * ls) as usize];
            }
        }
        at += last;
        // Advance the odometer over the outer axes.
        let mut d = outer.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            pos[d] += 1;
            base += strides[d];
            if pos[d] < outer[d] {
                break;
            }
            base -= strides[d] * outer[d] as isize;
            pos[d] = 0;
        }
    }
}

impl Transpose {
    /// The validated permutation for `rank` into `out`, without allocating.
    fn perm_into(&self, rank: usize, out: &mut [usize; MAX_RANK]) -> Result<(), OpError> {
        if rank > MAX_RANK {
            return Err(OpError::unsupported(
                self.name(),
                format!("eval_into at rank {rank}"),
            ));
        }
        match &self.perm {
            None => (0..rank).for_each(|i| out[i] = rank - 1 - i),
            Some(p) if p.len() == rank => {
                let mut seen = [false; MAX_RANK];
                for (i, &a) in p.iter().enumerate() {
                    let n = if a < 0 { a + rank as i64 } else { a };
                    if n < 0 || n >= rank as i64 || seen[n as usize] {
                        return Err(OpError::invalid(
                            self.name(),
                            format!("perm {p:?} is not a permutation of 0..{rank}"),
                        ));
                    }
                    seen[n as usize] = true;
                    out[i] = n as usize;
                }
            }
            Some(p) => {
                return Err(OpError::invalid(
                    self.name(),
                    format!("perm {p:?} does not match rank {rank}"),
                ))
            }
        }
        Ok(())
    }
}

impl Op for Transpose {
    fn name(&self) -> &'static str {
        "Transpose"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let shape = match &x.shape {
            Some(s) => Some(self.perm(s.len())?.iter().map(|&p| s[p].clone()).collect()),
            None => None,
        };
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let perm = self.perm(x.rank())?;
        if x.dtype() == millrace_core::DType::F32 && x.rank() <= MAX_RANK {
            let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
            let views = crate::planned::views(self.name(), inputs)?;
            return Ok(vec![crate::planned::alloc_f32(
                self.name(),
                shape.clone(),
                |y| self.eval_into(&views, y, &shape),
            )?]);
        }
        Ok(vec![transpose(self.name(), x, &perm)?])
    }

    fn writes_into(&self, inputs: &[ValueType], outputs: &[ValueType]) -> bool {
        use crate::planned::{f32_io, f32_shape};
        if !f32_io(inputs, outputs, 1) {
            return false;
        }
        let (Some(x), Some(y)) = (f32_shape(&inputs[0]), f32_shape(&outputs[0])) else {
            return false;
        };
        x.len() <= MAX_RANK
            && self
                .perm(x.len())
                .is_ok_and(|p| p.iter().map(|&a| x[a]).eq(y.iter().copied()))
    }

    fn eval_into(
        &self,
        inputs: &[Option<F32View<'_>>],
        out: &mut [f32],
        out_shape: &[usize],
    ) -> Result<(), OpError> {
        let x = F32View::req(inputs, self.name(), 0)?;
        let r = x.shape.len();
        let mut perm = [0usize; MAX_RANK];
        self.perm_into(r, &mut perm)?;
        crate::planned::check_out(self.name(), out, out_shape)?;
        if x.data.len() != x.shape.iter().product::<usize>()
            || out_shape.len() != r
            || (0..r).any(|i| out_shape[i] != x.shape[perm[i]])
        {
            return Err(OpError::invalid(
                self.name(),
                format!("output {out_shape:?} is not {:?} permuted", x.shape),
            ));
        }
        let mut st = [0isize; MAX_RANK];
        let mut acc = 1isize;
        for i in (0..r).rev() {
            st[i] = acc;
            acc *= x.shape[i] as isize;
        }
        let mut ost = [0isize; MAX_RANK];
        for i in 0..r {
            ost[i] = st[perm[i]];
        }
        permute_f32_into(x.data, out_shape, &ost[..r], out);
        Ok(())
    }

    fn describe(&self) -> String {
        match &self.perm {
            Some(p) => format!("perm={p:?}"),
            None => String::new(),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_paths_match_eval() {
        use crate::into_check::check;
        let x = crate::into_check::rand(&[2, 3, 4, 5], 1);
        for perm in [
            None,
            Some(vec![0, 2, 1, 3]),
            Some(vec![0, 1, 2, 3]),
            Some(vec![3, 2, 1, 0]),
            Some(vec![0, 1, 3, 2]),
            Some(vec![2, -1, 0, 1]),
        ] {
            check(&Transpose { perm }, &[Some(&x)]);
        }
        let s = crate::into_check::rand(&[], 2);
        check(&Transpose { perm: None }, &[Some(&s)]);
    }

    #[test]
    fn f32_fast_path_matches_the_generic_one() {
        let shape = vec![2, 3, 4, 5];
        let v: Vec<f32> = (0..120).map(|i| i as f32).collect();
        let x = Tensor::from_vec(shape.clone(), v).unwrap();
        let xi = Tensor::from_vec(shape, (0..120).collect::<Vec<i32>>()).unwrap();
        for perm in [
            [0, 2, 1, 3],
            [3, 2, 1, 0],
            [1, 0, 3, 2],
            [0, 1, 3, 2],
            [2, 3, 0, 1],
        ] {
            let a = transpose("Transpose", &x, &perm).unwrap();
            let b = transpose("Transpose", &xi, &perm).unwrap();
            assert_eq!(a.shape(), b.shape());
            let av: Vec<i32> = a
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .map(|&f| f as i32)
                .collect();
            assert_eq!(av, b.as_slice::<i32>().unwrap(), "{perm:?}");
        }
    }

    #[test]
    fn permutes() {
        let x = Tensor::from_vec(vec![2, 3], vec![1i32, 2, 3, 4, 5, 6]).unwrap();
        let y = Transpose { perm: None }
            .eval(&Inputs::new("Transpose", &[Some(&x)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[3, 2]);
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[1, 4, 2, 5, 3, 6]);
        let x3 = Tensor::from_vec(vec![1, 2, 2], vec![1u8, 2, 3, 4]).unwrap();
        let y = Transpose {
            perm: Some(vec![0, -1, 1]),
        }
        .eval(&Inputs::new("Transpose", &[Some(&x3)]))
        .unwrap();
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[1, 3, 2, 4]);
        assert!(Transpose {
            perm: Some(vec![0, 0])
        }
        .eval(&Inputs::new("Transpose", &[Some(&x)]))
        .is_err());
    }
}
