//! Softmax (ONNX opsets 1, 11, 13): `exp(x - max) / sum` along `axis` (default -1 from
//! opset 13; before that the input is coerced to 2-D at `axis`, default 1). The same
//! struct serves LogSoftmax and Hardmax, which differ only in the final map.
use super::common::{float_out, prod, Float};
use crate::float_run;
use crate::util::normalize_axis;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Softmax,
    LogSoftmax,
    Hardmax,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Softmax {
    pub kind: Kind,
    pub axis: i64,
    /// Opsets before 13: flatten to 2-D at `axis` and normalize the whole trailing block.
    pub coerce_2d: bool,
}

impl Softmax {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Softmax::parse(Kind::Softmax, attrs, opset)?))
    }

    pub fn parse(kind: Kind, attrs: &Attributes, opset: i64) -> Result<Softmax, OpError> {
        let coerce_2d = opset < 13;
        let axis = attrs.int_or("axis", if coerce_2d { 1 } else { -1 })?;
        Ok(Softmax {
            kind,
            axis,
            coerce_2d,
        })
    }

    fn op_name(&self) -> &'static str {
        match self.kind {
            Kind::Softmax => "Softmax",
            Kind::LogSoftmax => "LogSoftmax",
            Kind::Hardmax => "Hardmax",
        }
    }

    /// (outer, n, inner) for an input shape.
    fn split(&self, shape: &[usize]) -> Result<(usize, usize, usize), OpError> {
        let name = self.op_name();
        if shape.is_empty() {
            return Err(OpError::invalid(name, "input must have rank >= 1"));
        }
        let a = normalize_axis(name, self.axis, shape.len())?;
        if self.coerce_2d {
            Ok((prod(&shape[..a]), prod(&shape[a..]), 1))
        } else {
            Ok((prod(&shape[..a]), shape[a], prod(&shape[a + 1..])))
        }
    }
}

fn apply<F: Float>(kind: Kind, v: &mut [F], n: usize, inner: usize) {
    for j in 0..inner {
        let at = |i: usize| i * inner + j;
        let mut mx = F::NEG_INF;
        let mut arg = 0;
        let mut nan = false;
        for i in 0..n {
            let x = v[at(i)];
            nan |= x.is_nan();
            if x > mx || i == 0 {
                mx = x;
                arg = i;
            }
        }
        match kind {
            Kind::Hardmax => {
                for i in 0..n {
                    v[at(i)] = if i == arg { F::ONE } else { F::ZERO };
                }
            }
            Kind::Softmax | Kind::LogSoftmax => {
                if nan {
                    for i in 0..n {
                        v[at(i)] = F::from_f64(f64::NAN);
                    }
                    continue;
                }
                // An all -inf row: exp(x - max) is NaN, as in the spec's formula.
                let mut sum = F::ZERO;
                for i in 0..n {
                    let e = (v[at(i)] - mx).exp();
                    sum += e;
                    if kind == Kind::Softmax {
                        v[at(i)] = e;
                    }
                }
                if kind == Kind::Softmax {
                    let inv = F::ONE / sum;
                    for i in 0..n {
                        v[at(i)] *= inv;
                    }
                } else {
                    let ls = sum.ln() + mx;
                    for i in 0..n {
                        v[at(i)] = v[at(i)] - ls;
                    }
                }
            }
        }
    }
}

fn eval_as<F: Float>(s: &Softmax, x: &Tensor) -> Result<Vec<Tensor>, OpError> {
    let name = s.op_name();
    let (_, n, inner) = s.split(x.shape())?;
    let mut v = F::cow(name, x)?.into_owned();
    let block = n * inner;
    if block > 0 {
        v.par_chunks_mut(block)
            .for_each(|b| apply(s.kind, b, n, inner));
    }
    Ok(vec![float_out(name, x.dtype(), x.shape().to_vec(), v)?])
}

impl Op for Softmax {
    fn name(&self) -> &'static str {
        self.op_name()
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        if let Some(r) = x.rank() {
            if r == 0 {
                return Err(OpError::invalid(
                    self.op_name(),
                    "input must have rank >= 1",
                ));
            }
            normalize_axis(self.op_name(), self.axis, r)?;
        }
        Ok(vec![x.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 4)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        float_run!(self.op_name(), x.dtype(), eval_as(self, x))
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
    use crate::nn::conv::tests::attrs;
    use millrace_ir::Attr;

    fn run(opset: i64, axis: Option<i64>, shape: Vec<usize>, x: Vec<f32>) -> Vec<f32> {
        let items = axis
            .map(|a| vec![("axis", Attr::Int(a))])
            .unwrap_or_default();
        let s = Softmax::parse(Kind::Softmax, &attrs("Softmax", items), opset).unwrap();
        let t = Tensor::from_vec(shape, x).unwrap();
        let y = s.eval(&Inputs::new("Softmax", &[Some(&t)])).unwrap();
        y[0].as_slice::<f32>().unwrap().to_vec()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn axis_semantics_by_opset() {
        let e = (1.0f32).exp();
        let (p, q) = (1.0 / (1.0 + e), e / (1.0 + e));
        // [2, 2]: opset 13 default axis -1 normalizes rows.
        close(
            &run(13, None, vec![2, 2], vec![0.0, 1.0, 1000.0, 1001.0]),
            &[p, q, p, q],
        );
        // axis 0 (columns) at opset 13, negative form.
        close(
            &run(13, Some(-2), vec![2, 2], vec![0.0, 5.0, 1.0, 5.0]),
            &[p, 0.5, q, 0.5],
        );
        // Opset 11, axis 0: the whole tensor is one row.
        let y = run(11, Some(0), vec![2, 2], vec![0.0, 0.0, 0.0, 0.0]);
        close(&y, &[0.25; 4]);
        // Opset 11 default axis 1 on [1, 2, 2]: normalizes the trailing 4 together.
        close(&run(11, None, vec![1, 2, 2], vec![1.0; 4]), &[0.25; 4]);
    }

    #[test]
    fn bad_axis_is_an_error() {
        let s = Softmax::parse(
            Kind::Softmax,
            &attrs("Softmax", vec![("axis", Attr::Int(2))]),
            13,
        )
        .unwrap();
        let t = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
        assert!(s.eval(&Inputs::new("Softmax", &[Some(&t)])).is_err());
    }
}
