//! Scan (ONNX opsets 8, 9, 11, 16, 19, 21, 23, 24, 25): runs `body` once per slice of the
//! scan inputs along their scan axes, threading N state values and stacking K scan outputs.
//!
//! Opset 8 adds a leading batch axis to every input and output and an optional
//! `sequence_lens`; millrace supports it when every sequence is full length.
use super::{body_output_types, dtype_only, empty_scan_output, stack, with_iter_dim};
use crate::util::normalize_axis;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Graph, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Debug)]
pub struct Scan {
    pub body: Arc<Graph>,
    pub num_scan_inputs: usize,
    pub input_axes: Vec<i64>,
    pub input_reverse: Vec<bool>,
    pub output_axes: Vec<i64>,
    pub output_reverse: Vec<bool>,
    /// Opset 8: inputs and outputs carry a batch axis and input 0 is `sequence_lens`.
    pub batched: bool,
    /// Inputs the node declares; captures follow.
    pub formal: usize,
}

const NAME: &str = "Scan";

impl Scan {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let body = attrs
            .graph("body")?
            .ok_or_else(|| OpError::attribute(NAME, "body", "required"))?;
        let m = attrs.req_int("num_scan_inputs")?;
        if m < 1 {
            return Err(OpError::attribute(
                NAME,
                "num_scan_inputs",
                "must be at least 1",
            ));
        }
        let m = m as usize;
        let batched = opset < 9;
        let formal = attrs.node_inputs();
        let declared = if batched {
            formal.saturating_sub(1)
        } else {
            formal
        };
        if declared < m || body.inputs.len() != declared {
            return Err(OpError::invalid(
                NAME,
                format!(
                    "body takes {} inputs, the node gives {declared}",
                    body.inputs.len()
                ),
            ));
        }
        let n_state = declared - m;
        if body.outputs.len() < n_state {
            return Err(OpError::invalid(
                NAME,
                "body has fewer outputs than state values",
            ));
        }
        let k = body.outputs.len() - n_state;
        let flags = |name: &str, len: usize| -> Result<Vec<bool>, OpError> {
            match attrs.ints(name)? {
                None => Ok(vec![false; len]),
                Some(v) if v.len() == len && v.iter().all(|&d| d == 0 || d == 1) => {
                    Ok(v.iter().map(|&d| d == 1).collect())
                }
                Some(_) => Err(OpError::attribute(
                    NAME,
                    name,
                    format!("needs {len} entries of 0 or 1"),
                )),
            }
        };
        let axes = |name: &str, len: usize| -> Result<Vec<i64>, OpError> {
            match attrs.ints(name)? {
                None => Ok(vec![0; len]),
                Some(v) if v.len() == len => Ok(v),
                Some(_) => Err(OpError::attribute(
                    NAME,
                    name,
                    format!("needs {len} entries"),
                )),
            }
        };
        let (input_axes, input_reverse, output_axes, output_reverse) = if batched {
            (
                vec![0; m],
                flags("directions", m)?,
                vec![0; k],
                vec![false; k],
            )
        } else {
            (
                axes("scan_input_axes", m)?,
                flags("scan_input_directions", m)?,
                axes("scan_output_axes", k)?,
                flags("scan_output_directions", k)?,
            )
        };
        Ok(Arc::new(Scan {
            body,
            num_scan_inputs: m,
            input_axes,
            input_reverse,
            output_axes,
            output_reverse,
            batched,
            formal,
        }))
    }

    fn n_state(&self) -> usize {
        self.body.inputs.len() - self.num_scan_inputs
    }

    /// One unbatched scan over `state` and `scan_in`.
    fn run(
        &self,
        state: Vec<Tensor>,
        scan_in: &[&Tensor],
        captures: &[&Tensor],
    ) -> Result<Vec<Tensor>, OpError> {
        let mut axes = Vec::with_capacity(scan_in.len());
        let mut len = None;
        for (x, &a) in scan_in.iter().zip(&self.input_axes) {
            let ax = normalize_axis(NAME, a, x.rank())?;
            let l = x.shape()[ax];
            if len.is_some_and(|p| p != l) {
                return Err(OpError::invalid(
                    NAME,
                    "scan inputs have different lengths along their scan axes",
                ));
            }
            len = Some(l);
            axes.push(ax);
        }
        let len = len.unwrap_or(0);
        let k = self.body.outputs.len() - self.n_state();
        let mut state = state;
        let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); k];
        for it in 0..len {
            let slices: Vec<Tensor> = scan_in
                .iter()
                .zip(&axes)
                .zip(&self.input_reverse)
                .map(|((x, &ax), &rev)| slice_axis(x, ax, if rev { len - 1 - it } else { it }))
                .collect::<Result<_, _>>()?;
            let mut args: Vec<&Tensor> = state.iter().collect();
            args.extend(slices.iter());
            let mut outs = self.body.eval(&args, captures)?.into_iter();
            state = outs.by_ref().take(self.n_state()).collect();
            for (j, t) in outs.enumerate() {
                if let Some(s) = scans.get_mut(j) {
                    s.push(t);
                }
            }
        }
        let types = body_output_types(&self.body);
        let mut result = state;
        for (j, mut parts) in scans.into_iter().enumerate() {
            if self.output_reverse[j] {
                parts.reverse();
            }
            let elem_rank = parts
                .first()
                .map(|p| p.rank())
                .or_else(|| types.get(self.n_state() + j).and_then(|t| t.rank()));
            let ax = normalize_axis(NAME, self.output_axes[j], elem_rank.unwrap_or(0) + 1)?;
            result.push(if parts.is_empty() {
                empty_scan_output(
                    NAME,
                    types
                        .get(self.n_state() + j)
                        .unwrap_or(&ValueType::default()),
                    ax,
                )?
            } else {
                stack(NAME, &parts, ax)?
            });
        }
        Ok(result)
    }
}

/// `x[.., i, ..]` along `axis`, dropping that axis.
fn slice_axis(x: &Tensor, axis: usize, i: usize) -> Result<Tensor, OpError> {
    let shape = x.shape();
    let outer: usize = shape[..axis].iter().product();
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let idx = (0..outer).flat_map(|o| {
        let base = (o * len + i) * inner;
        base..base + inner
    });
    let data = x
        .data()
        .gather(idx)
        .ok_or_else(|| OpError::invalid(NAME, "slice out of range"))?;
    let mut s = shape.to_vec();
    s.remove(axis);
    Tensor::new(s, data).map_err(|e| OpError::tensor(NAME, e))
}

impl Op for Scan {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let first = usize::from(self.batched);
        let mut out: Vec<ValueType> = (0..self.n_state())
            .map(|i| dtype_only(ctx.opt_input(first + i)))
            .collect();
        for (j, t) in body_output_types(&self.body)
            .iter()
            .enumerate()
            .skip(self.n_state())
        {
            let ax = self
                .output_axes
                .get(j - self.n_state())
                .copied()
                .unwrap_or(0);
            out.push(match t.rank() {
                Some(r) if !self.batched => match normalize_axis(NAME, ax, r + 1) {
                    Ok(a) => with_iter_dim(t, a, "scan_len"),
                    Err(_) => dtype_only(Some(t)),
                },
                _ => dtype_only(Some(t)),
            });
        }
        Ok(out)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let first = usize::from(self.batched);
        let n = self.n_state();
        let captures: Vec<&Tensor> = (self.formal..inputs.len())
            .filter_map(|i| inputs.opt(i))
            .collect();
        let state: Vec<&Tensor> = (0..n)
            .map(|i| inputs.req(first + i))
            .collect::<Result<_, _>>()?;
        let scan_in: Vec<&Tensor> = (0..self.num_scan_inputs)
            .map(|i| inputs.req(first + n + i))
            .collect::<Result<_, _>>()?;
        if !self.batched {
            return self.run(state.into_iter().cloned().collect(), &scan_in, &captures);
        }
        // Opset 8: peel the batch axis, scan each batch entry, restack.
        let batch = state
            .iter()
            .chain(&scan_in)
            .map(|t| t.shape().first().copied())
            .next()
            .flatten()
            .unwrap_or(0);
        let seq_axis_len = scan_in
            .first()
            .and_then(|t| t.shape().get(1).copied())
            .unwrap_or(0);
        if let Some(lens) = inputs.opt(0) {
            let lens = lens.to_i64_vec().map_err(|e| OpError::tensor(NAME, e))?;
            if lens.iter().any(|&l| l != seq_axis_len as i64) {
                return Err(OpError::unsupported(
                    NAME,
                    "sequence_lens shorter than the sequence (opset 8)",
                ));
            }
        }
        let mut per_batch: Vec<Vec<Tensor>> = Vec::with_capacity(batch);
        for b in 0..batch {
            let st: Vec<Tensor> = state
                .iter()
                .map(|t| slice_axis(t, 0, b))
                .collect::<Result<_, _>>()?;
            let sc: Vec<Tensor> = scan_in
                .iter()
                .map(|t| slice_axis(t, 0, b))
                .collect::<Result<_, _>>()?;
            let sc_refs: Vec<&Tensor> = sc.iter().collect();
            per_batch.push(self.run(st, &sc_refs, &captures)?);
        }
        let outputs = self.body.outputs.len();
        (0..outputs)
            .map(|o| {
                let parts: Vec<Tensor> =
                    per_batch.iter().filter_map(|r| r.get(o).cloned()).collect();
                stack(NAME, &parts, 0)
            })
            .collect()
    }

    fn describe(&self) -> String {
        format!(
            "body: {} nodes, {} state, {} scan inputs",
            self.body.nodes.len(),
            self.n_state(),
            self.num_scan_inputs
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
