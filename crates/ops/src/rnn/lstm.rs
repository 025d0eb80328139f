//! LSTM (ONNX opsets 1, 7, 14, 22): one-layer long short-term memory over a sequence,
//! forward, reverse or bidirectional, with optional bias, sequence lengths, initial
//! states and peepholes; outputs Y, Y_h and Y_c.
use super::common::{
    dims, matmul_t, opt_param, state_at, state_shape, time_of, x_row, y_at, y_shape, Act, RnnAttrs,
};
use crate::float_run;
use crate::nn::common::{float_out, Float};
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "LSTM";

#[derive(Clone, Debug, PartialEq)]
pub struct Lstm {
    pub attrs: RnnAttrs,
    pub input_forget: bool,
}

impl Lstm {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let a = RnnAttrs::parse(NAME, attrs, opset, &["Sigmoid", "Tanh", "Tanh"])?;
        let input_forget = attrs.int_or("input_forget", 0)? != 0;
        if opset < 7 {
            // LSTM-1's output_sequence only says whether Y is wanted; Y is always computed.
            attrs.int("output_sequence")?;
        }
        if a.clip.is_some() {
            // Implementations disagree on whether h(Ct) sees a clipped Ct.
            return Err(OpError::unsupported(NAME, "clip"));
        }
        Ok(Arc::new(Lstm {
            attrs: a,
            input_forget,
        }))
    }
}

fn eval_as<F: Float>(op: &Lstm, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
    let a = &op.attrs;
    let (x, w, r) = (inputs.req(0)?, inputs.req(1)?, inputs.req(2)?);
    let dm = dims(NAME, a, x, w, r, inputs.opt(4), 4)?;
    let (hs, is, nd, nb) = (dm.hidden, dm.input, dm.dirs, dm.batch);
    let g4 = 4 * hs;
    let bias: Option<Vec<F>> = opt_param(NAME, inputs.opt(3), x, &[nd, 2 * g4], "B")?;
    let sshape = state_shape(a.layout, nd, nb, hs);
    let h0: Option<Vec<F>> = opt_param(NAME, inputs.opt(5), x, &sshape, "initial_h")?;
    let c0: Option<Vec<F>> = opt_param(NAME, inputs.opt(6), x, &sshape, "initial_c")?;
    let peep: Option<Vec<F>> = opt_param(NAME, inputs.opt(7), x, &[nd, 3 * hs], "P")?;
    let xs = F::cow(NAME, x)?;
    let ws = F::cow(NAME, w)?;
    let rs = F::cow(NAME, r)?;
    let rows = dm.seq * nb;
    let mut y = vec![F::ZERO; rows * nd * hs];
    let mut yh = vec![F::ZERO; nd * nb * hs];
    let mut yc = vec![F::ZERO; nd * nb * hs];
    let mut xw = vec![F::ZERO; rows * g4];
    let mut hr = vec![F::ZERO; nb * g4];
    for d in 0..nd {
        let (fa, ga, ha) = match a.acts.get(d).map(|v| v.as_slice()) {
            Some([f, g, h]) => (*f, *g, *h),
            _ => return Err(OpError::invalid(NAME, "activation list is malformed")),
        };
        let wd = &ws[d * g4 * is..(d + 1) * g4 * is];
        let rd = &rs[d * g4 * hs..(d + 1) * g4 * hs];
        matmul_t(&xs, rows, is, wd, g4, &mut xw);
        let mut bsum = vec![F::ZERO; g4];
        if let Some(b) = &bias {
            let bd = &b[d * 2 * g4..(d + 1) * 2 * g4];
            for (j, s) in bsum.iter_mut().enumerate() {
                *s = bd[j] + bd[g4 + j];
            }
        }
        let pd = peep.as_ref().map(|p| &p[d * 3 * hs..(d + 1) * 3 * hs]);
        let mut h = vec![F::ZERO; nb * hs];
        let mut c = vec![F::ZERO; nb * hs];
        for b in 0..nb {
            let at = state_at(a.layout, nd, nb, hs, d, b);
            if let Some(v) = &h0 {
                h[b * hs..(b + 1) * hs].copy_from_slice(&v[at..at + hs]);
            }
            if let Some(v) = &c0 {
                c[b * hs..(b + 1) * hs].copy_from_slice(&v[at..at + hs]);
            }
        }
        for s in 0..dm.seq {
            matmul_t(&h, nb, hs, rd, g4, &mut hr);
            for b in 0..nb {
                let len = dm.lens[b];
                if s >= len {
                    continue;
                }
                let t = time_of(a, d, s, len);
                let xrow = &xw[x_row(a.layout, dm.seq, nb, t, b) * g4..][..g4];
                let hrow = &hr[b * g4..(b + 1) * g4];
                let yo = y_at(a.layout, &dm, t, d, b);
                for k in 0..hs {
                    let gate = |j: usize| xrow[j * hs + k] + hrow[j * hs + k] + bsum[j * hs + k];
                    let (pi, po, pf) = match pd {
                        Some(p) => (p[k], p[hs + k], p[2 * hs + k]),
                        None => (F::ZERO, F::ZERO, F::ZERO),
                    };
                    let cprev = c[b * hs + k];
                    let it = Act::run(fa, gate(0) + pi * cprev, None);
                    let ft = if op.input_forget {
                        F::ONE - it
                    } else {
                        Act::run(fa, gate(2) + pf * cprev, None)
                    };
                    let ct = Act::run(ga, gate(3), None);
                    let cn = ft * cprev + it * ct;
                    let ot = Act::run(fa, gate(1) + po * cn, None);
                    let hn = ot * Act::run(ha, cn, None);
                    c[b * hs + k] = cn;
                    h[b * hs + k] = hn;
                    y[yo + k] = hn;
                }
            }
        }
        for b in 0..nb {
            let at = state_at(a.layout, nd, nb, hs, d, b);
            yh[at..at + hs].copy_from_slice(&h[b * hs..(b + 1) * hs]);
            yc[at..at + hs].copy_from_slice(&c[b * hs..(b + 1) * hs]);
        }
    }
    let dt = x.dtype();
    Ok(vec![
        float_out(NAME, dt, y_shape(a.layout, &dm), y)?,
        float_out(NAME, dt, sshape.clone(), yh)?,
        float_out(NAME, dt, sshape, yc)?,
    ])
}

impl Op for Lstm {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        self.attrs.infer(NAME, ctx, 3)
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
        if self.input_forget {
            s.push_str(" input_forget=1");
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
        Lstm::from_onnx(&a, 22).unwrap()
    }

    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn one_step_by_hand() {
        // hidden 1, input 1, batch 1, seq 2: W = [i, o, f, c] = [1, 2, 3, 4], R = 0.5 each.
        let x = Tensor::from_vec(vec![2, 1, 1], vec![1.0f32, -1.0]).unwrap();
        let w = Tensor::from_vec(vec![1, 4, 1], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let r = Tensor::from_vec(vec![1, 4, 1], vec![0.5f32; 4]).unwrap();
        let o = op(vec![("hidden_size", Attr::Int(1))]);
        let y = o
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&w), Some(&r)]))
            .unwrap();
        let (mut h, mut c) = (0.0f64, 0.0f64);
        let mut hs = vec![];
        for xv in [1.0, -1.0] {
            let i = sig(xv + 0.5 * h);
            let o = sig(2.0 * xv + 0.5 * h);
            let f = sig(3.0 * xv + 0.5 * h);
            let g = (4.0 * xv + 0.5 * h).tanh();
            c = f * c + i * g;
            h = o * c.tanh();
            hs.push(h);
        }
        let yv = y[0].as_slice::<f32>().unwrap();
        assert_eq!(y[0].shape(), &[2, 1, 1, 1]);
        assert!((yv[0] as f64 - hs[0]).abs() < 1e-6 && (yv[1] as f64 - hs[1]).abs() < 1e-6);
        assert!((y[1].as_slice::<f32>().unwrap()[0] as f64 - h).abs() < 1e-6);
        assert!((y[2].as_slice::<f32>().unwrap()[0] as f64 - c).abs() < 1e-6);

        // Reverse direction sees the sequence backwards; bidirectional stacks both.
        let rev = op(vec![("direction", Attr::String(b"reverse".to_vec()))]);
        let yr = rev
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&w), Some(&r)]))
            .unwrap();
        let xr = Tensor::from_vec(vec![2, 1, 1], vec![-1.0f32, 1.0]).unwrap();
        let yf = o
            .eval(&Inputs::new(NAME, &[Some(&xr), Some(&w), Some(&r)]))
            .unwrap();
        assert_eq!(yr[1], yf[1]);
        let yrv = yr[0].as_slice::<f32>().unwrap();
        let yfv = yf[0].as_slice::<f32>().unwrap();
        assert_eq!((yrv[0], yrv[1]), (yfv[1], yfv[0]));
    }

    #[test]
    fn sequence_lens_stop_early_and_zero_fill() {
        let x = Tensor::from_vec(vec![2, 2, 1], vec![1.0f32, 1.0, 2.0, 2.0]).unwrap();
        let w = Tensor::from_vec(vec![1, 4, 1], vec![1.0f32; 4]).unwrap();
        let r = Tensor::from_vec(vec![1, 4, 1], vec![1.0f32; 4]).unwrap();
        let sl = Tensor::from_vec(vec![2], vec![2i32, 1]).unwrap();
        let o = op(vec![]);
        let y = o
            .eval(&Inputs::new(
                NAME,
                &[Some(&x), Some(&w), Some(&r), None, Some(&sl)],
            ))
            .unwrap();
        let yv = y[0].as_slice::<f32>().unwrap();
        // Batch 1 stops after step 0: Y[1, 0, 1] = 0 and Y_h[1] = Y[0, 0, 1].
        assert_eq!(yv[3], 0.0);
        assert_eq!(y[1].as_slice::<f32>().unwrap()[1], yv[1]);
        assert_eq!(y[1].as_slice::<f32>().unwrap()[0], yv[2]);
    }
}
