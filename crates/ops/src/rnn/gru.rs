//! GRU (ONNX opsets 1, 3, 7, 14, 22): one-layer gated recurrent unit over a sequence,
//! forward, reverse or bidirectional, with optional bias, sequence lengths and initial
//! state, `linear_before_reset` and `clip`; outputs Y and Y_h.
use super::common::{
    dims, matmul_t, opt_param, state_at, state_shape, time_of, x_row, y_at, y_shape, RnnAttrs,
};
use crate::float_run;
use crate::nn::common::{float_out, Float};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "GRU";

#[derive(Clone, Debug, PartialEq)]
pub struct Gru {
    pub attrs: RnnAttrs,
    pub linear_before_reset: bool,
}

impl Gru {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let a = RnnAttrs::parse(NAME, attrs, opset, &["Sigmoid", "Tanh"])?;
        let linear_before_reset = attrs.int_or("linear_before_reset", 0)? != 0;
        if opset < 7 {
            // GRU-1/3's output_sequence only says whether Y is wanted; Y is always computed.
            attrs.int("output_sequence")?;
        }
        Ok(Arc::new(Gru {
            attrs: a,
            linear_before_reset,
        }))
    }
}

fn eval_as<F: Float>(op: &Gru, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
    let a = &op.attrs;
    let (x, w, r) = (inputs.req(0)?, inputs.req(1)?, inputs.req(2)?);
    let dm = dims(NAME, a, x, w, r, inputs.opt(4), 3)?;
    let (hs, is, nd, nb) = (dm.hidden, dm.input, dm.dirs, dm.batch);
    let g3 = 3 * hs;
    let bias: Option<Vec<F>> = opt_param(NAME, inputs.opt(3), x, &[nd, 2 * g3], "B")?;
    let sshape = state_shape(a.layout, nd, nb, hs);
    let h0: Option<Vec<F>> = opt_param(NAME, inputs.opt(5), x, &sshape, "initial_h")?;
    let xs = F::cow(NAME, x)?;
    let ws = F::cow(NAME, w)?;
    let rs = F::cow(NAME, r)?;
    let rows = dm.seq * nb;
    let clip = a.clip;
    let mut y = vec![F::ZERO; rows * nd * hs];
    let mut yh = vec![F::ZERO; nd * nb * hs];
    let mut xw = vec![F::ZERO; rows * g3];
    let mut hr = vec![F::ZERO; nb * g3];
    let mut rh = vec![F::ZERO; nb * hs];
    let mut rhr = vec![F::ZERO; nb * hs];
    let mut zs = vec![F::ZERO; nb * hs];
    for d in 0..nd {
        let (fa, ga) = match a.acts.get(d).map(|v| v.as_slice()) {
            Some([f, g]) => (*f, *g),
            _ => return Err(OpError::invalid(NAME, "activation list is malformed")),
        };
        let wd = &ws[d * g3 * is..(d + 1) * g3 * is];
        let rd = &rs[d * g3 * hs..(d + 1) * g3 * hs];
        let rd_h = &rd[2 * hs * hs..];
        matmul_t(&xs, rows, is, wd, g3, &mut xw);
        let zero = vec![F::ZERO; 2 * g3];
        let bd: &[F] = match &bias {
            Some(b) => &b[d * 2 * g3..(d + 1) * 2 * g3],
            None => &zero,
        };
        let (wb, rb) = bd.split_at(g3);
        let mut h = vec![F::ZERO; nb * hs];
        if let Some(v) = &h0 {
            for b in 0..nb {
                let at = state_at(a.layout, nd, nb, hs, d, b);
                h[b * hs..(b + 1) * hs].copy_from_slice(&v[at..at + hs]);
            }
        }
        for s in 0..dm.seq {
            matmul_t(&h, nb, hs, rd, g3, &mut hr);
            // z and r gates; r (.) H(t-1) for the default (reset-before-linear) form.
            for b in 0..nb {
                if s >= dm.lens[b] {
                    continue;
                }
                let t = time_of(a, d, s, dm.lens[b]);
                let xrow = &xw[x_row(a.layout, dm.seq, nb, t, b) * g3..][..g3];
                let hrow = &hr[b * g3..(b + 1) * g3];
                for k in 0..hs {
                    let z = fa.run(xrow[k] + hrow[k] + wb[k] + rb[k], clip);
                    let j = hs + k;
                    let rg = fa.run(xrow[j] + hrow[j] + wb[j] + rb[j], clip);
                    zs[b * hs + k] = z;
                    rh[b * hs + k] = rg * h[b * hs + k];
                    rhr[b * hs + k] = rg;
                }
            }
            let mut lin = vec![F::ZERO; nb * hs];
            if !op.linear_before_reset {
                matmul_t(&rh, nb, hs, rd_h, hs, &mut lin);
            }
            for b in 0..nb {
                if s >= dm.lens[b] {
                    continue;
                }
                let t = time_of(a, d, s, dm.lens[b]);
                let xrow = &xw[x_row(a.layout, dm.seq, nb, t, b) * g3..][..g3];
                let hrow = &hr[b * g3..(b + 1) * g3];
                let yo = y_at(a.layout, &dm, t, d, b);
                for k in 0..hs {
                    let j = 2 * hs + k;
                    let pre = if op.linear_before_reset {
                        xrow[j] + rhr[b * hs + k] * (hrow[j] + rb[j]) + wb[j]
                    } else {
                        xrow[j] + lin[b * hs + k] + rb[j] + wb[j]
                    };
                    let hh = ga.run(pre, clip);
                    let z = zs[b * hs + k];
                    let hn = (F::ONE - z) * hh + z * h[b * hs + k];
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

impl Op for Gru {
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
        let mut s = self.attrs.describe();
        if self.linear_before_reset {
            s.push_str(" linear_before_reset=1");
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

    fn op(items: Vec<(&str, Attr)>) -> Arc<dyn Op> {
        let a = Attributes::new(
            NAME,
            items.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        );
        Gru::from_onnx(&a, 22).unwrap()
    }

    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn two_steps_by_hand() {
        // hidden 1, input 1: W = [z, r, h] = [1, 2, 3], R = [0.5, -0.5, 2], Wb = 0.1s, Rb = 0.2s.
        let x = Tensor::from_vec(vec![2, 1, 1], vec![1.0f32, -0.5]).unwrap();
        let w = Tensor::from_vec(vec![1, 3, 1], vec![1.0f32, 2.0, 3.0]).unwrap();
        let r = Tensor::from_vec(vec![1, 3, 1], vec![0.5f32, -0.5, 2.0]).unwrap();
        let bias = Tensor::from_vec(vec![1, 6], vec![0.1f32, 0.1, 0.1, 0.2, 0.2, 0.2]).unwrap();
        let h0 = Tensor::from_vec(vec![1, 1, 1], vec![0.3f32]).unwrap();
        for lbr in [0, 1] {
            let o = op(vec![("linear_before_reset", Attr::Int(lbr))]);
            let y = o
                .eval(&Inputs::new(
                    NAME,
                    &[Some(&x), Some(&w), Some(&r), Some(&bias), None, Some(&h0)],
                ))
                .unwrap();
            let mut h = 0.3f64;
            let mut hs = vec![];
            for xv in [1.0, -0.5] {
                let z = sig(xv + 0.5 * h + 0.3);
                let rg = sig(2.0 * xv - 0.5 * h + 0.3);
                let hh = if lbr == 0 {
                    (3.0 * xv + 2.0 * (rg * h) + 0.3).tanh()
                } else {
                    (3.0 * xv + rg * (2.0 * h + 0.2) + 0.1).tanh()
                };
                h = (1.0 - z) * hh + z * h;
                hs.push(h);
            }
            let yv = y[0].as_slice::<f32>().unwrap();
            assert!((yv[0] as f64 - hs[0]).abs() < 1e-6, "{yv:?} {hs:?}");
            assert!((yv[1] as f64 - hs[1]).abs() < 1e-6, "{yv:?} {hs:?}");
            assert!((y[1].as_slice::<f32>().unwrap()[0] as f64 - h).abs() < 1e-6);
        }
    }

    #[test]
    fn layout_1_transposes() {
        let x = Tensor::from_vec(vec![1, 2, 1], vec![1.0f32, -0.5]).unwrap();
        let w = Tensor::from_vec(vec![1, 3, 1], vec![1.0f32, 2.0, 3.0]).unwrap();
        let r = Tensor::from_vec(vec![1, 3, 1], vec![0.5f32, -0.5, 2.0]).unwrap();
        let y1 = op(vec![("layout", Attr::Int(1))])
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&w), Some(&r)]))
            .unwrap();
        let x0 = x.clone().reshape(vec![2, 1, 1]).unwrap();
        let y0 = op(vec![])
            .eval(&Inputs::new(NAME, &[Some(&x0), Some(&w), Some(&r)]))
            .unwrap();
        assert_eq!(y1[0].shape(), &[1, 2, 1, 1]);
        assert_eq!(y1[0].as_slice::<f32>(), y0[0].as_slice::<f32>());
    }
}
