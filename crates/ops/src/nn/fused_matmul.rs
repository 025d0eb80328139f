//! FusedMatMul (millrace): `Y = act(alpha * A W + bias + residual)` with a constant weight
//! matrix `W` (`K x N`) prepacked at compile time.
//!
//! Built by the `fuse-matmul` pass from `MatMul` with a constant 2-D right operand, or
//! `Gemm` with `transA = 0` and constant `B` and `C`, plus the bias `Add`, a residual
//! `Add` of a same-shaped tensor and an activation that follow. `A` is `[..., K]`; every
//! leading dimension is a GEMM row, so a transformer's `[batch, seq, hidden]` activations
//! are one `batch*seq x hidden` product. The bias is added per output column and the
//! activation applied on each register tile before it is stored.
use crate::planned::{alloc_f32, check_out, check_shape, fused_writes_into, views};
use millrace_core::{DType, Dim, Tensor, TensorData};
use millrace_ir::{Cost, F32View, InferCtx, Inputs, Op, OpError, ValueType};
use millrace_kernels::activation::Activation;
use millrace_kernels::gemm::{gemm_ex, Bias, Epilogue, Lhs, Out, Packed, Rhs, Strided, View};
use std::any::Any;

const NAME: &str = "FusedMatMul";

#[derive(Debug)]
pub struct FusedMatMul {
    k: usize,
    n: usize,
    alpha: f32,
    packed: Packed,
    bias: Option<Vec<f32>>,
    act: Activation,
    residual: bool,
    fused: Vec<String>,
}

impl FusedMatMul {
    /// `w` holds `W` as `k x n` row-major, or as `n x k` when `transposed`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        k: usize,
        n: usize,
        w: &[f32],
        transposed: bool,
        alpha: f32,
        bias: Option<Vec<f32>>,
        act: Activation,
        residual: bool,
        fused: Vec<String>,
    ) -> Result<FusedMatMul, OpError> {
        let src = if transposed {
            Strided::rows(w, n, k)
        } else {
            Strided::cols(w, n, k)
        };
        let src = src
            .filter(|_| w.len() == k * n)
            .ok_or_else(|| OpError::invalid(NAME, format!("weights are not {k} x {n}")))?;
        if bias.as_ref().is_some_and(|b| b.len() != n) {
            return Err(OpError::invalid(NAME, "bias length differs from N"));
        }
        Ok(FusedMatMul {
            k,
            n,
            alpha,
            packed: Packed::new(&src),
            bias,
            act,
            residual,
            fused,
        })
    }

    /// Bytes of prepacked weights this op holds.
    pub fn weight_bytes(&self) -> usize {
        self.packed.bytes()
    }

    /// The weight matrix `W`'s shape, `(K, N)`.
    pub fn weight_shape(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// The scale applied to `A W`.
    pub fn alpha(&self) -> f32 {
        self.alpha
    }

    /// Whether a bias (one per output column) is added.
    pub fn has_bias(&self) -> bool {
        self.bias.is_some()
    }

    /// Whether a residual input (shaped as `Y`) is added.
    pub fn has_residual(&self) -> bool {
        self.residual
    }

    /// The fused activation ([`Activation::None`] when there is none).
    pub fn activation(&self) -> Activation {
        self.act
    }

    fn out_shape(&self, a: &[usize]) -> Result<Vec<usize>, OpError> {
        match a.split_last() {
            Some((&k, lead)) if k == self.k => {
                let mut s = lead.to_vec();
                s.push(self.n);
                Ok(s)
            }
            _ => Err(OpError::invalid(
                NAME,
                format!("input {a:?} does not end in K = {}", self.k),
            )),
        }
    }
}

impl Op for FusedMatMul {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let a = ctx.input(0)?;
        let shape = match &a.shape {
            None => None,
            Some(s) => match s.split_last() {
                Some((Dim::Known(k), _)) if *k != self.k => {
                    return Err(OpError::invalid(
                        NAME,
                        format!("input ends in {k}, not K = {}", self.k),
                    ))
                }
                Some((_, lead)) => {
                    let mut v = lead.to_vec();
                    v.push(Dim::Known(self.n));
                    Some(v)
                }
                None => return Err(OpError::invalid(NAME, "input must have rank >= 1")),
            },
        };
        Ok(vec![ValueType {
            dtype: Some(DType::F32),
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let mut c = Cost::movement(inputs, outputs);
        c.bytes_read += (self.k * self.n * 4) as u64;
        if let Some(ys) = outputs.first().and_then(|t| t.numel()) {
            let ys = ys as u64;
            c.flops = 2 * ys * self.k as u64
                + ys * (self.bias.is_some() as u64
                    + self.residual as u64
                    + !self.act.is_none() as u64);
        }
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let at = inputs.req(0)?;
        if !matches!(at.data(), TensorData::F32(_)) {
            return Err(OpError::invalid(
                NAME,
                format!("input must be float32, got {}", at.dtype()),
            ));
        }
        let shape = self.out_shape(at.shape())?;
        let views = views(NAME, inputs)?;
        Ok(vec![alloc_f32(NAME, shape.clone(), |y| {
            self.eval_into(&views, y, &shape)
        })?])
    }

    fn writes_into(&self, inputs: &[ValueType], outputs: &[ValueType]) -> bool {
        fused_writes_into(inputs, outputs, self.residual, |a| self.out_shape(a))
    }

    fn eval_into(
        &self,
        inputs: &[Option<F32View<'_>>],
        y: &mut [f32],
        out_shape: &[usize],
    ) -> Result<(), OpError> {
        let av = F32View::req(inputs, NAME, 0)?;
        let a = av.data;
        // Checked without building the shape: this path must not allocate.
        let fits = match (av.shape.split_last(), out_shape.split_last()) {
            (Some((&k, lead)), Some((&n, olead))) => k == self.k && n == self.n && lead == olead,
            _ => false,
        };
        if !fits {
            return Err(OpError::invalid(
                NAME,
                format!(
                    "input {:?} and output {out_shape:?} do not fit K = {}, N = {}",
                    av.shape, self.k, self.n
                ),
            ));
        }
        check_out(NAME, y, out_shape)?;
        let m = av.shape[..av.shape.len() - 1].iter().product::<usize>();
        let res = if self.residual {
            let r = F32View::req(inputs, NAME, 1)?;
            check_shape(NAME, "residual", r.shape, out_shape)?;
            Some(r.data)
        } else {
            None
        };
        let src =
            Strided::rows(a, m, self.k).ok_or_else(|| OpError::invalid(NAME, "input too short"))?;
        gemm_ex(
            self.packed.kernel(),
            Lhs::Source(&src),
            Rhs::Packed(&self.packed),
            Out {
                data: y,
                rs: self.n,
                cs: 1,
            },
            &Epilogue {
                alpha: self.alpha,
                bias: self.bias.as_deref().map_or(Bias::None, Bias::Col),
                residual: res.map(|r| View {
                    data: r,
                    rs: self.n,
                    cs: 1,
                }),
                act: self.act,
                ..Epilogue::default()
            },
        )
        .map_err(|e| OpError::invalid(NAME, e.to_string()))
    }

    fn describe(&self) -> String {
        let mut parts = vec![format!("W={}x{}", self.k, self.n)];
        if self.alpha != 1.0 {
            parts.push(format!("alpha={}", self.alpha));
        }
        if self.bias.is_some() {
            parts.push("+bias".into());
        }
        if self.residual {
            parts.push("+residual".into());
        }
        if !self.act.is_none() {
            parts.push(format!("+{}", self.act.describe()));
        }
        if !self.fused.is_empty() {
            parts.push(format!("fused=[{}]", self.fused.join(",")));
        }
        parts.join(" ")
    }

    fn own_weight_bytes(&self) -> u64 {
        self.weight_bytes() as u64
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
        use crate::into_check::{check, rand, refuses};
        let (k, n) = (37, 45);
        let w = rand(&[k, n], 9);
        let w = w.as_slice::<f32>().unwrap();
        for (bias, act, residual, lead) in [
            (false, Activation::None, false, vec![5]),
            (true, Activation::Relu, false, vec![2, 7]),
            (true, Activation::Gelu, true, vec![3, 33]),
            (false, Activation::Sigmoid, true, vec![1, 1, 130]),
        ] {
            let f = FusedMatMul::new(
                k,
                n,
                w,
                false,
                1.0,
                bias.then(|| rand(&[n], 3).as_slice::<f32>().unwrap().to_vec()),
                act,
                residual,
                vec![],
            )
            .unwrap();
            let mut xs = lead.clone();
            xs.push(k);
            let mut ys = lead.clone();
            ys.push(n);
            let (x, r) = (rand(&xs, 1), rand(&ys, 2));
            check(&f, &[Some(&x), residual.then_some(&r)]);
            let t = |s: &[usize]| ValueType::concrete(DType::F32, s);
            refuses(&f, &[t(&xs), t(&ys)], &[t(&xs)]);
            if residual {
                refuses(&f, &[t(&xs)], &[t(&ys)]);
            }
        }
    }

    #[test]
    fn matches_naive_with_epilogue() {
        let (k, n) = (37, 45);
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0)
            .collect();
        let bias: Vec<f32> = (0..n).map(|i| i as f32 / 50.0 - 0.4).collect();
        let a = Tensor::from_vec(
            vec![2, 3, k],
            (0..6 * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 7.0)
                .collect(),
        )
        .unwrap();
        let r =
            Tensor::from_vec(vec![2, 3, n], (0..6 * n).map(|i| (i % 3) as f32).collect()).unwrap();
        for transposed in [false, true] {
            let wt: Vec<f32> = if transposed {
                (0..n * k).map(|i| w[(i % k) * n + i / k]).collect()
            } else {
                w.clone()
            };
            let f = FusedMatMul::new(
                k,
                n,
                &wt,
                transposed,
                0.5,
                Some(bias.clone()),
                Activation::Gelu,
                true,
                vec![],
            )
            .unwrap();
            let y = f
                .eval(&Inputs::new(NAME, &[Some(&a), Some(&r)]))
                .unwrap()
                .remove(0);
            assert_eq!(y.shape(), &[2, 3, n]);
            let (av, rv, yv) = (
                a.to_f32_vec().unwrap(),
                r.to_f32_vec().unwrap(),
                y.to_f32_vec().unwrap(),
            );
            for i in 0..6 {
                for j in 0..n {
                    let s: f32 = (0..k).map(|p| av[i * k + p] * w[p * n + j]).sum();
                    let want = Activation::Gelu.apply(0.5 * s + bias[j] + rv[i * n + j]);
                    assert!((yv[i * n + j] - want).abs() < 1e-5, "{i},{j}");
                }
            }
        }
    }

    #[test]
    fn wrong_inner_dimension_is_an_error() {
        let f = FusedMatMul::new(
            4,
            2,
            &[0.0; 8],
            false,
            1.0,
            None,
            Activation::None,
            false,
            vec![],
        )
        .unwrap();
        let a = Tensor::from_vec(vec![3, 5], vec![0.0f32; 15]).unwrap();
        assert!(f.eval(&Inputs::new(NAME, &[Some(&a)])).is_err());
        assert!(FusedMatMul::new(
            4,
            2,
            &[0.0; 7],
            false,
            1.0,
            None,
            Activation::None,
            false,
            vec![]
        )
        .is_err());
    }
}
