//! Shared pieces of the recurrent ops (RNN, GRU, LSTM): attribute parsing (direction,
//! layout, activations with their alpha/beta, clip, hidden_size), input validation and
//! layout of the outputs.
use crate::nn::common::Float;
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, OpError, ValueType};

/// An activation function of the recurrent ops, with its parameters resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    Relu,
    Tanh,
    Sigmoid,
    Affine(f64, f64),
    LeakyRelu(f64),
    ThresholdedRelu(f64),
    ScaledTanh(f64, f64),
    HardSigmoid(f64, f64),
    Elu(f64),
    Softsign,
    Softplus,
}

impl Act {
    /// Applies the function in f64 (accurate for f32/f16/bf16 results too).
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Act::Relu => x.max(0.0),
            Act::Tanh => x.tanh(),
            Act::Sigmoid => {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (1.0 + e)
                }
            }
            Act::Affine(a, b) => a * x + b,
            Act::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Act::ThresholdedRelu(a) => {
                if x >= a {
                    x
                } else {
                    0.0
                }
            }
            Act::ScaledTanh(a, b) => a * (b * x).tanh(),
            Act::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Act::Elu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * (x.exp() - 1.0)
                }
            }
            Act::Softsign => x / (1.0 + x.abs()),
            Act::Softplus => {
                // log(1 + e^x) without overflow.
                if x > 0.0 {
                    x + (-x).exp().ln_1p()
                } else {
                    x.exp().ln_1p()
                }
            }
        }
    }

    /// Applies the function to a compute-type value, clipping its input first when set.
    pub fn run<F: Float>(self, x: F, clip: Option<f64>) -> F {
        let mut v = x.to_f64();
        if let Some(c) = clip {
            v = v.clamp(-c, c);
        }
        F::from_f64(self.apply(v))
    }
}

/// How many (alpha, beta) parameters a function name uses; `None` for unknown names.
fn params_of(name: &str) -> Option<(usize, usize)> {
    Some(match name.to_ascii_lowercase().as_str() {
        "relu" | "tanh" | "sigmoid" | "softsign" | "softplus" => (0, 0),
        "leakyrelu" | "thresholdedrelu" | "elu" => (1, 0),
        "affine" | "scaledtanh" | "hardsigmoid" => (1, 1),
        _ => return None,
    })
}

fn build(op: &str, name: &str, alpha: Option<f64>, beta: Option<f64>) -> Result<Act, OpError> {
    let lower = name.to_ascii_lowercase();
    let need = |v: Option<f64>, what: &str| {
        v.ok_or_else(|| {
            OpError::unsupported(
                op,
                format!("activation {name} without an explicit {what} (no agreed default)"),
            )
        })
    };
    Ok(match lower.as_str() {
        "relu" => Act::Relu,
        "tanh" => Act::Tanh,
        "sigmoid" => Act::Sigmoid,
        "softsign" => Act::Softsign,
        "softplus" => Act::Softplus,
        "affine" => Act::Affine(need(alpha, "alpha")?, need(beta, "beta")?),
        "scaledtanh" => Act::ScaledTanh(need(alpha, "alpha")?, need(beta, "beta")?),
        "leakyrelu" => Act::LeakyRelu(alpha.unwrap_or(0.01)),
        "thresholdedrelu" => Act::ThresholdedRelu(alpha.unwrap_or(1.0)),
        "elu" => Act::Elu(alpha.unwrap_or(1.0)),
        "hardsigmoid" => Act::HardSigmoid(alpha.unwrap_or(0.2), beta.unwrap_or(0.5)),
        _ => {
            return Err(OpError::unsupported(
                op,
                format!("activation function {name}"),
            ))
        }
    })
}

/// Direction of a recurrent op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
    Bidirectional,
}

impl Direction {
    pub fn count(self) -> usize {
        if self == Direction::Bidirectional {
            2
        } else {
            1
        }
    }

    /// Whether direction index `d` runs backwards in time.
    pub fn reversed(self, d: usize) -> bool {
        self == Direction::Reverse || (self == Direction::Bidirectional && d == 1)
    }
}

/// Attributes shared by RNN, GRU and LSTM.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnAttrs {
    pub direction: Direction,
    pub layout: usize,
    pub hidden_size: Option<usize>,
    pub clip: Option<f64>,
    /// Per direction, the `per_dir` activation functions.
    pub acts: Vec<Vec<Act>>,
}

impl RnnAttrs {
    /// Reads direction, layout, hidden_size, clip, activations, activation_alpha and
    /// activation_beta. `defaults` are one direction's default functions.
    pub fn parse(
        op: &str,
        attrs: &Attributes,
        opset: i64,
        defaults: &[&str],
    ) -> Result<RnnAttrs, OpError> {
        let dir = attrs.string_or("direction", "forward")?;
        let direction = match dir.as_str() {
            "forward" => Direction::Forward,
            "reverse" => Direction::Reverse,
            "bidirectional" => Direction::Bidirectional,
            _ => {
                return Err(OpError::attribute(
                    op,
                    "direction",
                    format!("unknown direction `{dir}`"),
                ))
            }
        };
        let layout = attrs.int_or("layout", 0)?;
        if layout != 0 && layout != 1 {
            return Err(OpError::attribute(op, "layout", "must be 0 or 1"));
        }
        if layout != 0 && opset < 14 {
            return Err(OpError::attribute(op, "layout", "exists from opset 14"));
        }
        let hidden_size = match attrs.int("hidden_size")? {
            Some(h) if h <= 0 => {
                return Err(OpError::attribute(op, "hidden_size", "must be positive"))
            }
            Some(h) => Some(h as usize),
            None => None,
        };
        let clip = match attrs.float("clip")? {
            Some(c) if c.is_nan() || c < 0.0 => {
                return Err(OpError::attribute(op, "clip", "must be non-negative"))
            }
            Some(c) => Some(c as f64),
            None => None,
        };
        let n = defaults.len();
        let nd = direction.count();
        let names = attrs.strings("activations")?;
        let alphas = attrs.floats("activation_alpha")?;
        let betas = attrs.floats("activation_beta")?;
        let names: Vec<String> = match names {
            None => {
                let one: Vec<String> = defaults.iter().map(|s| s.to_string()).collect();
                (0..nd).flat_map(|_| one.clone()).collect()
            }
            Some(v) if v.len() == n * nd => v,
            // RNN's schema default lists two functions even for one direction.
            Some(v) if op == "RNN" && nd == 1 && v.len() == 2 => v[..1].to_vec(),
            Some(v) if nd == 2 && v.len() == n && alphas.is_none() && betas.is_none() => {
                v.iter().chain(v.iter()).cloned().collect()
            }
            Some(v) => {
                return Err(OpError::attribute(
                    op,
                    "activations",
                    format!("{} functions given, expected {}", v.len(), n * nd),
                ))
            }
        };
        for nm in &names {
            if params_of(nm).is_none() {
                return Err(OpError::unsupported(
                    op,
                    format!("activation function {nm}"),
                ));
            }
        }
        // alpha/beta are consumed in order by the functions that take them.
        let need_a: usize = names.iter().filter_map(|s| params_of(s)).map(|p| p.0).sum();
        let need_b: usize = names.iter().filter_map(|s| params_of(s)).map(|p| p.1).sum();
        for (list, need, what) in [
            (&alphas, need_a, "activation_alpha"),
            (&betas, need_b, "activation_beta"),
        ] {
            if let Some(l) = list {
                if l.len() != need {
                    return Err(OpError::unsupported(
                        op,
                        format!(
                            "{what} has {} values but the functions take {need}",
                            l.len()
                        ),
                    ));
                }
            }
        }
        let mut ai = alphas.unwrap_or_default().into_iter();
        let mut bi = betas.unwrap_or_default().into_iter();
        let mut flat = Vec::with_capacity(names.len());
        for nm in &names {
            let (pa, pb) = params_of(nm).unwrap_or((0, 0));
            let a = if pa > 0 {
                ai.next().map(f64::from)
            } else {
                None
            };
            let b = if pb > 0 {
                bi.next().map(f64::from)
            } else {
                None
            };
            flat.push(build(op, nm, a, b)?);
        }
        let acts = flat.chunks(n.max(1)).map(|c| c.to_vec()).collect();
        Ok(RnnAttrs {
            direction,
            layout: layout as usize,
            hidden_size,
            clip,
            acts,
        })
    }

    pub fn describe(&self) -> String {
        let mut s = format!("direction={:?}", self.direction);
        if let Some(h) = self.hidden_size {
            s.push_str(&format!(" hidden_size={h}"));
        }
        if self.layout != 0 {
            s.push_str(" layout=1");
        }
        if let Some(c) = self.clip {
            s.push_str(&format!(" clip={c}"));
        }
        s
    }

    /// Output types: Y, Y_h and (for LSTM, `n_out` = 3) Y_c.
    pub fn infer(
        &self,
        op: &str,
        ctx: &InferCtx<'_>,
        n_out: usize,
    ) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let dtype = x.dtype;
        let nd = Dim::Known(self.direction.count());
        let hidden = self.hidden_size.map(Dim::Known).or_else(|| {
            let r = ctx.opt_input(2)?.shape.as_ref()?;
            r.get(2).cloned()
        });
        let (seq, batch) = match x.shape.as_ref() {
            Some(s) if s.len() == 3 => {
                if self.layout == 0 {
                    (Some(s[0].clone()), Some(s[1].clone()))
                } else {
                    (Some(s[1].clone()), Some(s[0].clone()))
                }
            }
            Some(s) => {
                return Err(OpError::invalid(
                    op,
                    format!("X must have rank 3, has rank {}", s.len()),
                ))
            }
            None => (None, None),
        };
        let shape = |dims: Vec<Option<Dim>>| -> Option<Vec<Dim>> { dims.into_iter().collect() };
        let y = if self.layout == 0 {
            shape(vec![
                seq.clone(),
                Some(nd.clone()),
                batch.clone(),
                hidden.clone(),
            ])
        } else {
            shape(vec![
                batch.clone(),
                seq.clone(),
                Some(nd.clone()),
                hidden.clone(),
            ])
        };
        let yh = if self.layout == 0 {
            shape(vec![Some(nd.clone()), batch.clone(), hidden.clone()])
        } else {
            shape(vec![batch.clone(), Some(nd.clone()), hidden.clone()])
        };
        let mut out = vec![
            ValueType { dtype, shape: y },
            ValueType {
                dtype,
                shape: yh.clone(),
            },
        ];
        if n_out == 3 {
            out.push(ValueType { dtype, shape: yh });
        }
        Ok(out)
    }
}

/// Concrete problem sizes and validated inputs of one evaluation.
pub struct Dims {
    pub seq: usize,
    pub batch: usize,
    pub input: usize,
    pub hidden: usize,
    pub dirs: usize,
    /// Per batch entry, the number of valid time steps.
    pub lens: Vec<usize>,
}

/// Checks X, W, R and sequence_lens against each other; `gates` is the number of gate
/// blocks in W and R (1 for RNN, 3 for GRU, 4 for LSTM).
pub fn dims(
    op: &str,
    a: &RnnAttrs,
    x: &Tensor,
    w: &Tensor,
    r: &Tensor,
    seq_lens: Option<&Tensor>,
    gates: usize,
) -> Result<Dims, OpError> {
    let (xs, ws, rs) = (x.shape(), w.shape(), r.shape());
    if xs.len() != 3 || ws.len() != 3 || rs.len() != 3 {
        return Err(OpError::invalid(op, "X, W and R must have rank 3"));
    }
    for t in [w, r] {
        if t.dtype() != x.dtype() {
            return Err(OpError::invalid(op, "X, W and R must share a dtype"));
        }
    }
    let (seq, batch) = if a.layout == 0 {
        (xs[0], xs[1])
    } else {
        (xs[1], xs[0])
    };
    let input = xs[2];
    let dirs = a.direction.count();
    let hidden = rs[2];
    if let Some(h) = a.hidden_size {
        if h != hidden {
            return Err(OpError::invalid(
                op,
                format!("hidden_size {h} but R has {hidden} columns"),
            ));
        }
    }
    if ws != [dirs, gates * hidden, input] || rs != [dirs, gates * hidden, hidden] {
        return Err(OpError::invalid(
            op,
            format!(
                "W {ws:?} / R {rs:?} do not match X {xs:?}, {dirs} direction(s), hidden {hidden}"
            ),
        ));
    }
    let lens = match seq_lens {
        None => vec![seq; batch],
        Some(t) => {
            let v = crate::util::ints_of(op, t)?;
            if t.dtype() != DType::I32 && t.dtype() != DType::I64 {
                return Err(OpError::invalid(op, "sequence_lens must be int32"));
            }
            if v.len() != batch {
                return Err(OpError::invalid(
                    op,
                    format!("sequence_lens has {} values, batch is {batch}", v.len()),
                ));
            }
            let mut out = Vec::with_capacity(batch);
            for &l in &v {
                if l < 0 || l as usize > seq {
                    return Err(OpError::invalid(
                        op,
                        format!("sequence length {l} outside [0, {seq}]"),
                    ));
                }
                if l == 0 && seq > 0 {
                    return Err(OpError::unsupported(op, "a sequence length of 0"));
                }
                out.push(l as usize);
            }
            out
        }
    };
    Ok(Dims {
        seq,
        batch,
        input,
        hidden,
        dirs,
        lens,
    })
}

/// A float input of shape `want` converted to the compute type, or `None` when absent.
pub fn opt_param<F: Float>(
    op: &str,
    t: Option<&Tensor>,
    x: &Tensor,
    want: &[usize],
    what: &str,
) -> Result<Option<Vec<F>>, OpError> {
    match t {
        None => Ok(None),
        Some(t) => {
            if t.dtype() != x.dtype() {
                return Err(OpError::invalid(op, format!("{what} must have X's dtype")));
            }
            if t.shape() != want {
                return Err(OpError::invalid(
                    op,
                    format!("{what} has shape {:?}, expected {want:?}", t.shape()),
                ));
            }
            Ok(Some(F::cow(op, t)?.into_owned()))
        }
    }
}

/// The initial state of direction `d`, batch `b` (index of element 0 of its H-vector) in an
/// initial_h / initial_c tensor of the given layout.
pub fn state_at(
    layout: usize,
    dirs: usize,
    batch: usize,
    hidden: usize,
    d: usize,
    b: usize,
) -> usize {
    if layout == 0 {
        (d * batch + b) * hidden
    } else {
        (b * dirs + d) * hidden
    }
}

/// Shape of a state input/output (initial_h, Y_h, ...).
pub fn state_shape(layout: usize, dirs: usize, batch: usize, hidden: usize) -> Vec<usize> {
    if layout == 0 {
        vec![dirs, batch, hidden]
    } else {
        vec![batch, dirs, hidden]
    }
}

/// Row of X holding time `t`, batch `b`.
pub fn x_row(layout: usize, seq: usize, batch: usize, t: usize, b: usize) -> usize {
    if layout == 0 {
        t * batch + b
    } else {
        b * seq + t
    }
}

/// Offset of Y's H-vector at time `t`, direction `d`, batch `b`.
pub fn y_at(layout: usize, dm: &Dims, t: usize, d: usize, b: usize) -> usize {
    let h = dm.hidden;
    if layout == 0 {
        ((t * dm.dirs + d) * dm.batch + b) * h
    } else {
        ((b * dm.seq + t) * dm.dirs + d) * h
    }
}

/// Shape of Y.
pub fn y_shape(layout: usize, dm: &Dims) -> Vec<usize> {
    if layout == 0 {
        vec![dm.seq, dm.dirs, dm.batch, dm.hidden]
    } else {
        vec![dm.batch, dm.seq, dm.dirs, dm.hidden]
    }
}

/// `out[m x n] = x[m x k] * w^T` where `w` is `n x k` row-major (one direction's W or R).
pub fn matmul_t<F: Float>(x: &[F], m: usize, k: usize, w: &[F], n: usize, out: &mut [F]) {
    if m == 0 || n == 0 {
        return;
    }
    F::gemm(
        m,
        k,
        n,
        F::ONE,
        x,
        k as isize,
        1,
        w,
        1,
        k as isize,
        F::ZERO,
        out,
        n as isize,
        1,
    );
}

/// Work of a recurrent op: the input and recurrence products for every step.
pub fn cost(inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
    let mut c = Cost::elementwise(inputs, outputs, 0);
    let w = inputs.get(1).and_then(|t| t.numel()).unwrap_or(0) as u64;
    let r = inputs.get(2).and_then(|t| t.numel()).unwrap_or(0) as u64;
    if let Some(xs) = inputs.first().and_then(|t| t.concrete_shape()) {
        if xs.len() == 3 {
            c.flops = 2 * (xs[0] * xs[1]) as u64 * (w + r);
        }
    }
    c
}

/// The time index direction `d` processes at step `s` for a sequence of length `len`.
pub fn time_of(a: &RnnAttrs, d: usize, s: usize, len: usize) -> usize {
    if a.direction.reversed(d) {
        len - 1 - s
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_ir::Attr;

    fn attrs(items: Vec<(&str, Attr)>) -> Attributes {
        Attributes::new(
            "LSTM",
            items.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        )
    }

    #[test]
    fn activations_consume_parameters_in_order() {
        let a = attrs(vec![
            ("direction", Attr::String(b"bidirectional".to_vec())),
            (
                "activations",
                Attr::Strings(vec![
                    b"LeakyRelu".to_vec(),
                    b"Tanh".to_vec(),
                    b"HardSigmoid".to_vec(),
                    b"Sigmoid".to_vec(),
                ]),
            ),
            ("activation_alpha", Attr::Floats(vec![0.1, 0.3])),
            ("activation_beta", Attr::Floats(vec![0.6])),
        ]);
        let p = RnnAttrs::parse("GRU", &a, 22, &["Sigmoid", "Tanh"]).unwrap();
        assert_eq!(
            p.acts,
            vec![
                vec![Act::LeakyRelu(0.1f32 as f64), Act::Tanh],
                vec![Act::HardSigmoid(0.3f32 as f64, 0.6f32 as f64), Act::Sigmoid]
            ]
        );
        let bad = attrs(vec![(
            "activations",
            Attr::Strings(vec![b"Affine".to_vec()]),
        )]);
        assert!(RnnAttrs::parse("RNN", &bad, 22, &["Tanh"])
            .unwrap_err()
            .is_unsupported());
    }

    #[test]
    fn activation_values() {
        assert!((Act::Sigmoid.apply(0.0) - 0.5).abs() < 1e-12);
        assert!((Act::Softplus.apply(0.0) - 2f64.ln()).abs() < 1e-12);
        assert_eq!(Act::ThresholdedRelu(1.0).apply(0.5), 0.0);
        assert_eq!(Act::HardSigmoid(0.2, 0.5).apply(10.0), 1.0);
        assert_eq!(Act::Tanh.run::<f32>(5.0, Some(0.0)), 0.0);
    }
}
