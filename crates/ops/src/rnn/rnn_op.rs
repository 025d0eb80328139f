//! RNN (ONNX opsets 1, 7, 14, 22): one-layer simple recurrent network
//! `Ht = f(Xt*W^T + Ht-1*R^T + Wb + Rb)`, forward, reverse or bidirectional, with optional
//! bias, sequence lengths, initial state and `clip`; outputs Y and Y_h.
use super::common::{
    dims, matmul_t, opt_param, state_at, state_shape, time_of, x_row, y_at, y_shape, RnnAttrs,
};
use crate::float_run;
use crate::nn::common::{float_out, Float};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "RNN";

#[derive(Clone, Debug, PartialEq)]
pub struct Rnn {
    pub attrs: RnnAttrs,
}

impl Rnn {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let a = RnnAttrs::parse(NAME, attrs, opset, &["Tanh"])?;
        if opset < 7 {
            // RNN-1's output_sequence only says whether Y is wanted; Y is always computed.
            attrs.int("output_sequence")?;
        }
        Ok(Arc::new(Rnn { attrs: a }))
    }
}

fn eval_as<F: Float>(op: &Rnn, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
    let a = &op.attrs;
    let (x, w, r) = (inputs.req(0)?, inputs.req(1)?, inputs.req(2)?);
    let dm = dims(NAME, a, x, w, r, inputs.opt(4), 1)?;
    let (hs, is, nd, nb) = (dm.hidden, dm.input, dm.dirs, dm.batch);
    let bias: Option<Vec<F>> = opt_param(NAME, inputs.opt(3), x, &[nd, 2 * hs], "B")?;
    let sshape = state_shape(a.layout, nd, nb, hs);
    let h0: Option<Vec<F>> = opt_param(NAME, inputs.opt(5), x, &sshape, "initial_h")?;
    let xs = F::cow(NAME, x)?;
    let ws = F::cow(NAME, w)?;
    let rs = F::cow(NAME, r)?;
    let rows = dm.seq * nb;
    let mut y = vec![F::ZERO; rows * nd * hs];
    let mut yh = vec![F::ZERO; nd * nb * hs];
    let mut xw = vec![F::ZERO; rows * hs];
    let mut hr = vec![F::ZERO; nb * hs];
    for d in 0..nd {
        let f = match a.acts.get(d).map(|v| v.as_slice()) {
            Some([f]) => *f,
            _ => return Err(OpError::invalid(NAME, "activation list is malformed")),
        };
        let wd = &ws[d * hs * is..(d + 1) * hs * is];
        let rd = &rs[d * hs * hs..(d + 1) * hs * hs];
        matmul_t(&xs, rows, is, wd, hs, &mut xw);
        let mut bsum = vec![F::ZERO; hs];
        if let Some(b) = &bias {
            let bd = &b[d * 2 * hs..(d + 1) * 2 * hs];
            for (j, s) in bsum.iter_mut().enumerate() {
                *s = bd[j] + bd[hs + j];
            }
        }
        let mut h = vec![F::ZERO; nb * hs];
        if let Some(v) = &h0 {
            for b in 0..nb {
                let at = state_at(a.layout, nd, nb, hs, d, b);
                h[b * hs..(b + 1) * hs].copy_from_slice(&v[at..at + hs]);
            }
        }
        for s in 0..dm.seq {
            matmul_t(&h, nb, hs, rd, hs, &mut hr);
            for b in 0..nb {
                if s >= dm.lens[b] {
                    continue;
                }
                let t = time_of(a, d, s, dm.lens[b]);
                let xrow = &xw[x_row(a.layout, dm.seq, nb, t, b) * hs..][..hs];
                let yo = y_at(a.layout, &dm, t, d, b);
                for k in 0..hs {
                    let hn = f.run(xrow[k] + hr[b * hs + k] + bsum[k], a.clip);
                    h[b * hs + k] = hn;
                    y[yo + k] = hn;
                }
            }
        }
        for b in 0..nb {
            let at = state_at(a.layout, nd, nb, hs, d, b);
            yh[at..at + hs].copy_from_slice(&h[b * hs..(b + 1) * hs]);
        }
    }
    let dt = x.dtype();
    Ok(vec![
        float_out(NAME, dt, y_shape(a.layout, &dm), y)?,
        float_out(NAME, dt, sshape, yh)?,
    ])
}

impl Op for Rnn {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        self.attrs.infer(NAME, ctx, 2)
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        super::common::cost(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        float_run!(NAME, x.dtype(), eval_as(self, inputs))
    }

    fn describe(&self) -> String {
        self.attrs.describe()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_ir::Attr;

    fn op(items: Vec<(&str, Attr)>) -> Arc<dyn Op> {
        let a = Attributes::new(
            NAME,
            items.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        );
        Rnn::from_onnx(&a, 22).unwrap()
    }

    #[test]
    fn bidirectional_relu_with_clip() {
        // hidden 1, input 1, seq 2: forward W=1 R=1, reverse W=2 R=0; Relu, clip 2.5.
        let x = Tensor::from_vec(vec![2, 1, 1], vec![1.0f32, 2.0]).unwrap();
        let w = Tensor::from_vec(vec![2, 1, 1], vec![1.0f32, 2.0]).unwrap();
        let r = Tensor::from_vec(vec![2, 1, 1], vec![1.0f32, 0.0]).unwrap();
        let o = op(vec![
            ("direction", Attr::String(b"bidirectional".to_vec())),
            (
                "activations",
                Attr::Strings(vec![b"Relu".to_vec(), b"Relu".to_vec()]),
            ),
            ("clip", Attr::Float(2.5)),
        ]);
        let y = o
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&w), Some(&r)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[2, 2, 1, 1]);
        // forward: h1 = 1, h2 = min(2 + 1, 2.5); reverse: t=1: min(4, 2.5), t=0: 2.
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[1.0, 2.0, 2.5, 2.5]);
        assert_eq!(y[1].as_slice::<f32>().unwrap(), &[2.5, 2.0]);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let x = Tensor::from_vec(vec![2, 1, 1], vec![1.0f32, 2.0]).unwrap();
        let w = Tensor::from_vec(vec![1, 2, 1], vec![1.0f32, 2.0]).unwrap();
        let r = Tensor::from_vec(vec![1, 1, 1], vec![1.0f32]).unwrap();
        assert!(op(vec![])
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&w), Some(&r)]))
            .is_err());
    }
}
