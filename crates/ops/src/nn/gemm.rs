//! Gemm (ONNX opsets 1, 6, 7, 9, 11, 13): `Y = alpha * A' * B' + beta * C`, A' and B'
//! optionally transposed, C unidirectionally broadcast to M x N.
use super::common::{float_out, int_gemm, int_out, ints_wrapping, same_dtype, Float};
use crate::float_run;
use crate::util::broadcast_index;
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
    /// Opsets before 7: whether C may be broadcast.
    pub broadcast: bool,
}

const NAME: &str = "Gemm";

impl Gemm {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Gemm::parse(attrs, opset)?))
    }

    pub fn parse(attrs: &Attributes, opset: i64) -> Result<Gemm, OpError> {
        let broadcast = attrs.int_or("broadcast", 0)? != 0;
        Ok(Gemm {
            alpha: attrs.float_or("alpha", 1.0)?,
            beta: attrs.float_or("beta", 1.0)?,
            trans_a: attrs.int_or("transA", 0)? != 0,
            trans_b: attrs.int_or("transB", 0)? != 0,
            broadcast: opset >= 7 || broadcast,
        })
    }

    /// (M, K, N) from the operand shapes.
    fn dims(&self, a: &[usize], b: &[usize]) -> Result<(usize, usize, usize), OpError> {
        if a.len() != 2 || b.len() != 2 {
            return Err(OpError::invalid(
                NAME,
                format!("A and B must be matrices, got {a:?} and {b:?}"),
            ));
        }
        let (m, k) = if self.trans_a {
            (a[1], a[0])
        } else {
            (a[0], a[1])
        };
        let (kb, n) = if self.trans_b {
            (b[1], b[0])
        } else {
            (b[0], b[1])
        };
        if k != kb {
            return Err(OpError::invalid(
                NAME,
                format!("inner dimensions differ: A {a:?} and B {b:?}"),
            ));
        }
        Ok((m, k, n))
    }

    /// Flat index into C for each output element, checking C broadcasts to [m, n].
    fn c_index(&self, c: &[usize], m: usize, n: usize) -> Result<Vec<usize>, OpError> {
        let ok = c.len() <= 2
            && c.iter()
                .rev()
                .zip([n, m])
                .all(|(&d, want)| d == want || d == 1);
        let exact = c == [m, n];
        if !ok || (!self.broadcast && !exact) {
            return Err(OpError::invalid(
                NAME,
                format!("C of shape {c:?} does not broadcast to [{m}, {n}]"),
            ));
        }
        Ok(broadcast_index(&[m, n], c))
    }
}

fn eval_float<F: Float>(g: &Gemm, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
    g.eval_float_impl::<F>(inputs)
}

impl Gemm {
    fn eval_float_impl<F: Float>(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let (a, b) = (inputs.req(0)?, inputs.req(1)?);
        let c = inputs.opt(2);
        let (m, k, n) = self.dims(a.shape(), b.shape())?;
        let av = F::cow(NAME, a)?;
        let bv = F::cow(NAME, b)?;
        let mut y = vec![F::ZERO; m * n];
        let mut beta = F::ZERO;
        if let Some(c) = c {
            let idx = self.c_index(c.shape(), m, n)?;
            if self.beta != 0.0 {
                let cv = F::cow(NAME, c)?;
                let bt = F::from_f32(self.beta);
                for (o, &i) in y.iter_mut().zip(&idx) {
                    *o = bt * cv[i];
                }
                beta = F::ONE;
            }
        }
        let (rsa, csa) = if self.trans_a { (1, m) } else { (k, 1) };
        let (rsb, csb) = if self.trans_b { (1, k) } else { (n, 1) };
        F::gemm(
            m,
            k,
            n,
            F::from_f32(self.alpha),
            &av,
            rsa as isize,
            csa as isize,
            &bv,
            rsb as isize,
            csb as isize,
            beta,
            &mut y,
            n as isize,
            1,
        );
        Ok(vec![float_out(NAME, a.dtype(), vec![m, n], y)?])
    }

    fn eval_int(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let (a, b) = (inputs.req(0)?, inputs.req(1)?);
        let c = inputs.opt(2);
        if self.alpha != 1.0 || !(self.beta == 1.0 || self.beta == 0.0 || c.is_none()) {
            return Err(OpError::unsupported(
                NAME,
                "integer Gemm with alpha != 1 or beta other than 0 and 1",
            ));
        }
        let (m, k, n) = self.dims(a.shape(), b.shape())?;
        let av = ints_wrapping(NAME, a)?;
        let bv = ints_wrapping(NAME, b)?;
        let mut y = vec![0i64; m * n];
        if let Some(c) = c {
            let idx = self.c_index(c.shape(), m, n)?;
            if self.beta == 1.0 {
                let cv = ints_wrapping(NAME, c)?;
                for (o, &i) in y.iter_mut().zip(&idx) {
                    *o = cv[i];
                }
            }
        }
        let (rsa, csa) = if self.trans_a { (1, m) } else { (k, 1) };
        let (rsb, csb) = if self.trans_b { (1, k) } else { (n, 1) };
        int_gemm(m, k, n, &av, rsa, csa, &bv, rsb, csb, &mut y);
        Ok(vec![int_out(NAME, a.dtype(), vec![m, n], y)?])
    }
}

impl Op for Gemm {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let a = ctx.input(0)?;
        let b = ctx.input(1)?;
        // Y is M x N: M from A (A[0], or A[1] when transposed), N from B (B[1], or B[0]).
        let pick = |t: &ValueType, idx: usize, what: &str| -> Result<Dim, OpError> {
            match &t.shape {
                Some(s) if s.len() == 2 => Ok(s[idx].clone()),
                Some(s) => Err(OpError::invalid(
                    NAME,
                    format!("operands must be matrices, got rank {}", s.len()),
                )),
                None => Ok(Dim::Sym(format!("Gemm_{what}"))),
            }
        };
        let m = pick(a, usize::from(self.trans_a), "M")?;
        let n = pick(b, usize::from(!self.trans_b), "N")?;
        Ok(vec![ValueType {
            dtype: a.dtype,
            shape: Some(vec![m, n]),
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let mut c = Cost::movement(inputs, outputs);
        let a = inputs.first().and_then(|t| t.concrete_shape());
        let y = outputs.first().and_then(|t| t.numel());
        if let (Some(a), Some(y)) = (a, y) {
            let k = if self.trans_a { a.first() } else { a.get(1) };
            c.flops = 2 * y as u64 * k.copied().unwrap_or(0) as u64;
            if inputs.get(2).is_some_and(|t| t.dtype.is_some()) {
                c.flops += 2 * y as u64;
            }
        }
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let a = inputs.req(0)?;
        let mut ts = vec![a, inputs.req(1)?];
        ts.extend(inputs.opt(2));
        same_dtype(NAME, &ts)?;
        if a.dtype().is_int() {
            return self.eval_int(inputs);
        }
        float_run!(NAME, a.dtype(), eval_float(self, inputs))
    }

    fn describe(&self) -> String {
        let mut parts = vec![];
        if self.alpha != 1.0 {
            parts.push(format!("alpha={}", self.alpha));
        }
        if self.beta != 1.0 {
            parts.push(format!("beta={}", self.beta));
        }
        if self.trans_a {
            parts.push("transA=1".to_string());
        }
        if self.trans_b {
            parts.push("transB=1".to_string());
        }
        parts.join(" ")
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_m_by_n_for_every_transpose() {
        for (ta, tb, a, b) in [
            (0, 0, [2, 3], [3, 4]),
            (1, 0, [3, 2], [3, 4]),
            (0, 1, [2, 3], [4, 3]),
            (1, 1, [3, 2], [4, 3]),
        ] {
            let attrs = Attributes::new(
                "Gemm",
                vec![
                    ("transA".into(), millrace_ir::Attr::Int(ta)),
                    ("transB".into(), millrace_ir::Attr::Int(tb)),
                ],
            );
            let op = Gemm::from_onnx(&attrs, 13).unwrap();
            let types = [
                Some(ValueType::concrete(millrace_core::DType::F32, &a)),
                Some(ValueType::concrete(millrace_core::DType::F32, &b)),
            ];
            let out = op
                .infer(&InferCtx::new("Gemm", &types, &[None, None]))
                .unwrap();
            assert_eq!(
                out[0].concrete_shape(),
                Some(vec![2, 4]),
                "transA={ta} transB={tb}"
            );
        }
    }
    use crate::nn::conv::tests::{attrs, rnd};
    use millrace_ir::Attr;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, ta: bool, tb: bool) -> Vec<f32> {
        let mut y = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    y[i * n + j] += av * bv;
                }
            }
        }
        y
    }

    #[test]
    fn transposes_and_broadcasts_c() {
        let (m, k, n) = (3, 4, 5);
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for cshape in [vec![], vec![n], vec![m, 1], vec![m, n]] {
                let a = rnd(m * k, 1);
                let b = rnd(k * n, 2);
                let c = rnd(cshape.iter().product(), 3);
                let g = Gemm::parse(
                    &attrs(
                        "Gemm",
                        vec![
                            ("alpha", Attr::Float(0.5)),
                            ("beta", Attr::Float(2.0)),
                            ("transA", Attr::Int(ta as i64)),
                            ("transB", Attr::Int(tb as i64)),
                        ],
                    ),
                    13,
                )
                .unwrap();
                let ash = if ta { vec![k, m] } else { vec![m, k] };
                let bsh = if tb { vec![n, k] } else { vec![k, n] };
                let at = Tensor::from_vec(ash, a.clone()).unwrap();
                let bt = Tensor::from_vec(bsh, b.clone()).unwrap();
                let ct = Tensor::from_vec(cshape.clone(), c.clone()).unwrap();
                let y = g
                    .eval(&Inputs::new("Gemm", &[Some(&at), Some(&bt), Some(&ct)]))
                    .unwrap();
                let want = naive(&a, &b, m, k, n, ta, tb);
                let idx = broadcast_index(&[m, n], &cshape);
                for (i, got) in y[0].as_slice::<f32>().unwrap().iter().enumerate() {
                    let w = 0.5 * want[i] + 2.0 * c[idx[i]];
                    assert!((got - w).abs() < 1e-5, "{got} vs {w}");
                }
            }
        }
    }

    #[test]
    fn integers_without_c_and_errors() {
        let g = Gemm::parse(&attrs("Gemm", vec![]), 13).unwrap();
        let a = Tensor::from_vec(vec![1, 2], vec![2i64, 3]).unwrap();
        let b = Tensor::from_vec(vec![2, 1], vec![4i64, 5]).unwrap();
        let y = g
            .eval(&Inputs::new("Gemm", &[Some(&a), Some(&b), None]))
            .unwrap();
        assert_eq!(y[0].as_slice::<i64>().unwrap(), &[23]);
        let bad = Tensor::from_vec(vec![3, 1], vec![1i64, 1, 1]).unwrap();
        assert!(g
            .eval(&Inputs::new("Gemm", &[Some(&a), Some(&bad)]))
            .is_err());
        // Opset 6 without broadcast: C must match exactly.
        let g6 = Gemm::parse(&attrs("Gemm", vec![("broadcast", Attr::Int(0))]), 6).unwrap();
        let a = Tensor::from_vec(vec![1, 1], vec![1.0f32]).unwrap();
        let c = Tensor::from_vec(vec![1], vec![1.0f32]).unwrap();
        assert!(g6
            .eval(&Inputs::new("Gemm", &[Some(&a), Some(&a), Some(&c)]))
            .is_err());
    }
}
