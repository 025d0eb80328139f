//! MatMul (ONNX opsets 1, 9, 13): numpy matmul; 1-D operands are promoted and the added
//! dimension removed, batch dimensions broadcast.
use super::common::{float_out, int_gemm, int_out, ints_wrapping, same_dtype, Float};
use crate::float_run;
use crate::util::{broadcast_all, broadcast_dims, broadcast_index};
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct MatMul;

const NAME: &str = "MatMul";

impl MatMul {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(MatMul))
    }
}

/// Shapes of one evaluation.
struct Plan {
    m: usize,
    k: usize,
    n: usize,
    /// Output batch shape, and for each output batch the A and B batch numbers.
    batch: Vec<usize>,
    a_idx: Vec<usize>,
    b_idx: Vec<usize>,
    /// B has no batch dimensions (one matrix shared by every batch).
    b_shared: bool,
    out_shape: Vec<usize>,
}

fn plan(a: &[usize], b: &[usize]) -> Result<Plan, OpError> {
    if a.is_empty() || b.is_empty() {
        return Err(OpError::invalid(NAME, "operands must have rank >= 1"));
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (kb, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != kb {
        return Err(OpError::invalid(
            NAME,
            format!("inner dimensions differ: {a:?} x {b:?}"),
        ));
    }
    let ab = &a2[..a2.len() - 2];
    let bb = &b2[..b2.len() - 2];
    let batch = broadcast_all(NAME, &[ab, bb])?;
    let a_idx = broadcast_index(&batch, ab);
    let b_idx = broadcast_index(&batch, bb);
    let mut out_shape = batch.clone();
    if a.len() > 1 {
        out_shape.push(m);
    }
    if b.len() > 1 {
        out_shape.push(n);
    }
    Ok(Plan {
        m,
        k,
        n,
        b_shared: bb.iter().product::<usize>() == 1,
        batch,
        a_idx,
        b_idx,
        out_shape,
    })
}

fn eval_float<F: Float>(a: &Tensor, b: &Tensor) -> Result<Vec<Tensor>, OpError> {
    let p = plan(a.shape(), b.shape())?;
    let av = F::cow(NAME, a)?;
    let bv = F::cow(NAME, b)?;
    let (m, k, n) = (p.m, p.k, p.n);
    let nb: usize = p.batch.iter().product();
    let mut y = vec![F::ZERO; nb * m * n];
    if y.is_empty() {
        return Ok(vec![float_out(NAME, a.dtype(), p.out_shape, y)?]);
    }
    let a_contig = p.a_idx.iter().enumerate().all(|(i, &j)| i == j);
    if p.b_shared && a_contig {
        // Every batch multiplies the same B: one tall GEMM.
        F::gemm(
            nb * m,
            k,
            n,
            F::ONE,
            &av,
            k as isize,
            1,
            &bv,
            n as isize,
            1,
            F::ZERO,
            &mut y,
            n as isize,
            1,
        );
    } else {
        let one = |i: usize, yb: &mut [F]| {
            let (ia, ib) = (p.a_idx[i], p.b_idx[i]);
            F::gemm(
                m,
                k,
                n,
                F::ONE,
                &av[ia * m * k..(ia + 1) * m * k],
                k as isize,
                1,
                &bv[ib * k * n..(ib + 1) * k * n],
                n as isize,
                1,
                F::ZERO,
                yb,
                n as isize,
                1,
            );
        };
        if nb > 1 && m * n * k < (1 << 20) {
            y.par_chunks_mut(m * n)
                .enumerate()
                .for_each(|(i, yb)| one(i, yb));
        } else {
            for (i, yb) in y.chunks_mut(m * n).enumerate() {
                one(i, yb);
            }
        }
    }
    Ok(vec![float_out(NAME, a.dtype(), p.out_shape, y)?])
}

fn eval_int(a: &Tensor, b: &Tensor) -> Result<Vec<Tensor>, OpError> {
    let p = plan(a.shape(), b.shape())?;
    let av = ints_wrapping(NAME, a)?;
    let bv = ints_wrapping(NAME, b)?;
    let (m, k, n) = (p.m, p.k, p.n);
    let nb: usize = p.batch.iter().product();
    let mut y = vec![0i64; nb * m * n];
    if m * n > 0 {
        for (i, yb) in y.chunks_mut(m * n).enumerate() {
            let (ia, ib) = (p.a_idx[i], p.b_idx[i]);
            int_gemm(
                m,
                k,
                n,
                &av[ia * m * k..(ia + 1) * m * k],
                k,
                1,
                &bv[ib * k * n..(ib + 1) * k * n],
                n,
                1,
                yb,
            );
        }
    }
    Ok(vec![int_out(NAME, a.dtype(), p.out_shape, y)?])
}

impl Op for MatMul {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let a = ctx.input(0)?;
        let b = ctx.input(1)?;
        let (Some(sa), Some(sb)) = (&a.shape, &b.shape) else {
            return Ok(vec![ValueType {
                dtype: a.dtype,
                shape: None,
            }]);
        };
        if sa.is_empty() || sb.is_empty() {
            return Err(OpError::invalid(NAME, "operands must have rank >= 1"));
        }
        let ab = if sa.len() > 2 {
            &sa[..sa.len() - 2]
        } else {
            &[][..]
        };
        let bb = if sb.len() > 2 {
            &sb[..sb.len() - 2]
        } else {
            &[][..]
        };
        if let (Some(Dim::Known(ka)), Some(Dim::Known(kb))) = (
            sa.last(),
            if sb.len() == 1 {
                sb.first()
            } else {
                sb.get(sb.len() - 2)
            },
        ) {
            if ka != kb {
                return Err(OpError::invalid(
                    NAME,
                    format!("inner dimensions differ: {ka} and {kb}"),
                ));
            }
        }
        let mut shape = broadcast_dims(NAME, &[ab, bb])?;
        if sa.len() > 1 {
            shape.push(sa[sa.len() - 2].clone());
        }
        if sb.len() > 1 {
            shape.push(sb[sb.len() - 1].clone());
        }
        Ok(vec![ValueType {
            dtype: a.dtype,
            shape: Some(shape),
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let mut c = Cost::movement(inputs, outputs);
        let a = inputs.first().and_then(|t| t.concrete_shape());
        let y = outputs.first().and_then(|t| t.numel());
        if let (Some(a), Some(y)) = (a, y) {
            c.flops = 2 * y as u64 * a.last().copied().unwrap_or(0) as u64;
        }
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let a = inputs.req(0)?;
        let b = inputs.req(1)?;
        same_dtype(NAME, &[a, b])?;
        if a.dtype().is_int() {
            return eval_int(a, b);
        }
        float_run!(NAME, a.dtype(), eval_float(a, b))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::conv::tests::rnd;

    /// Naive numpy matmul via explicit promotion and broadcasting.
    fn naive(a: &[f32], ash: &[usize], b: &[f32], bsh: &[usize]) -> (Vec<usize>, Vec<f32>) {
        let p = plan(ash, bsh).unwrap();
        let (m, k, n) = (p.m, p.k, p.n);
        let mut y = vec![];
        for i in 0..p.a_idx.len() {
            for r in 0..m {
                for c in 0..n {
                    let mut acc = 0.0;
                    for q in 0..k {
                        acc +=
                            a[p.a_idx[i] * m * k + r * k + q] * b[p.b_idx[i] * k * n + q * n + c];
                    }
                    y.push(acc);
                }
            }
        }
        (p.out_shape, y)
    }

    #[test]
    fn numpy_semantics() {
        let cases: Vec<(Vec<usize>, Vec<usize>, Vec<usize>)> = vec![
            (vec![3, 4], vec![4, 5], vec![3, 5]),
            (vec![4], vec![4, 5], vec![5]),
            (vec![3, 4], vec![4], vec![3]),
            (vec![4], vec![4], vec![]),
            (vec![2, 3, 4], vec![4, 5], vec![2, 3, 5]),
            (vec![2, 1, 3, 4], vec![5, 4, 2], vec![2, 5, 3, 2]),
            (vec![3, 4], vec![2, 4, 5], vec![2, 3, 5]),
            (vec![0, 3, 4], vec![4, 5], vec![0, 3, 5]),
        ];
        for (ash, bsh, want_shape) in cases {
            let a = rnd(ash.iter().product(), 1);
            let b = rnd(bsh.iter().product(), 2);
            let at = Tensor::from_vec(ash.clone(), a.clone()).unwrap();
            let bt = Tensor::from_vec(bsh.clone(), b.clone()).unwrap();
            let y = MatMul
                .eval(&Inputs::new(NAME, &[Some(&at), Some(&bt)]))
                .unwrap();
            assert_eq!(y[0].shape(), &want_shape[..]);
            let (_, want) = naive(&a, &ash, &b, &bsh);
            for (g, w) in y[0].as_slice::<f32>().unwrap().iter().zip(&want) {
                assert!((g - w).abs() < 1e-5);
            }
            let types = [
                Some(ValueType::concrete(millrace_core::DType::F32, &ash)),
                Some(ValueType::concrete(millrace_core::DType::F32, &bsh)),
            ];
            let t = MatMul.infer(&InferCtx::new(NAME, &types, &[])).unwrap();
            assert_eq!(t[0].concrete_shape().unwrap(), want_shape);
        }
    }

    #[test]
    fn integers_and_errors() {
        let a = Tensor::from_vec(vec![2, 2], vec![1i32, 2, 3, 4]).unwrap();
        let y = MatMul
            .eval(&Inputs::new(NAME, &[Some(&a), Some(&a)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[7, 10, 15, 22]);
        let b = Tensor::from_vec(vec![3], vec![1i32, 2, 3]).unwrap();
        assert!(MatMul
            .eval(&Inputs::new(NAME, &[Some(&a), Some(&b)]))
            .is_err());
        let f = Tensor::from_vec(vec![2], vec![1.0f64, 2.0]).unwrap();
        let y = MatMul
            .eval(&Inputs::new(NAME, &[Some(&f), Some(&f)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<f64>().unwrap(), &[5.0]);
    }
}
