//! ConvInteger (ONNX opset 10): grouped N-d convolution of int8/uint8 input and weights
//! minus their zero points (input: per tensor; weights: per tensor or per output channel),
//! accumulated in wrapping int32. Padding contributes zero (the input's zero point).
use super::common::{conv_plan, int_conv, int_tensor, zero_point_values};
use super::matmul_integer::int8_values;
use crate::nn::common::{prod, Window};
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "ConvInteger";

#[derive(Clone, Debug, PartialEq)]
pub struct ConvInteger {
    pub window: Window,
    pub group: usize,
}

/// Window and group of a quantized convolution (ConvInteger, QLinearConv).
pub(crate) fn parse_conv(op: &str, attrs: &Attributes) -> Result<(Window, usize), OpError> {
    let window = Window::from_attrs(op, attrs)?;
    if window.ceil_mode {
        return Err(OpError::attribute(
            op,
            "ceil_mode",
            "not an attribute of this op",
        ));
    }
    let group = attrs.int_or("group", 1)?;
    if group < 1 {
        return Err(OpError::attribute(op, "group", "must be positive"));
    }
    Ok((window, group as usize))
}

/// Output type of a convolution: N x M x spatial output.
pub(crate) fn infer_conv(
    op: &str,
    window: &Window,
    x: &ValueType,
    w: &ValueType,
    dtype: Option<DType>,
) -> Result<ValueType, OpError> {
    let Some(xs) = &x.shape else {
        return Ok(ValueType { dtype, shape: None });
    };
    if xs.len() < 3 {
        return Err(OpError::invalid(op, "input must be N x C x D1..."));
    }
    let (m, wk) = match &w.shape {
        Some(ws) if ws.len() == xs.len() => (
            ws[0].clone(),
            ws[2..].iter().map(Dim::known).collect::<Option<Vec<_>>>(),
        ),
        Some(ws) => {
            return Err(OpError::invalid(
                op,
                format!(
                    "weight rank {} does not match input rank {}",
                    ws.len(),
                    xs.len()
                ),
            ))
        }
        None => (Dim::Sym(format!("{op}_out_channels")), None),
    };
    let mut shape = vec![xs[0].clone(), m];
    shape.extend(window.infer(op, &xs[2..], wk));
    Ok(ValueType {
        dtype,
        shape: Some(shape),
    })
}

/// Conv flops from the output and weight shapes.
pub(crate) fn conv_cost(inputs: &[ValueType], outputs: &[ValueType], w_input: usize) -> Cost {
    let mut c = Cost::movement(inputs, outputs);
    let per_out = inputs
        .get(w_input)
        .and_then(|t| t.concrete_shape())
        .map(|s| prod(&s[1.min(s.len())..]))
        .unwrap_or(0);
    let y = outputs.first().and_then(|t| t.numel()).unwrap_or(0);
    c.flops = (2 * per_out * y) as u64;
    c
}

/// Zero-point-adjusted input and weights of a quantized convolution, and the raw integer
/// accumulators: (output shape, accumulators, output channels).
pub(crate) fn conv_accumulate(
    op: &str,
    window: &Window,
    group: usize,
    x: &Tensor,
    w: &Tensor,
    x_zp: Option<&Tensor>,
    w_zp: Option<&Tensor>,
) -> Result<(Vec<usize>, Vec<i64>, usize), OpError> {
    let (n, c, m, r) = conv_plan(op, window, group, x.shape(), w.shape())?;
    let mut xv = int8_values(op, x, "x")?;
    let mut wv = int8_values(op, w, "w")?;
    if let Some(z) = x_zp {
        if z.len() != 1 {
            return Err(OpError::unsupported(op, "per-channel input zero point"));
        }
        let zv = zero_point_values(op, z, x.dtype(), "x_zero_point")?;
        xv.iter_mut().for_each(|v| *v -= zv[0]);
    }
    if let Some(z) = w_zp {
        let zv = zero_point_values(op, z, w.dtype(), "w_zero_point")?;
        let per = prod(&w.shape()[1..]);
        if zv.len() == 1 {
            wv.iter_mut().for_each(|v| *v -= zv[0]);
        } else if z.rank() == 1 && zv.len() == m {
            for (i, v) in wv.iter_mut().enumerate() {
                *v -= zv[i / per.max(1)];
            }
        } else {
            return Err(OpError::invalid(
                op,
                format!(
                    "w_zero_point of shape {:?} for {m} output channels",
                    z.shape()
                ),
            ));
        }
    }
    let input = x.shape()[2..].to_vec();
    let acc = int_conv(&xv, &wv, (n, c, m), group, &input, &r);
    let mut shape = vec![n, m];
    shape.extend(&r.output);
    Ok((shape, acc, m))
}

impl ConvInteger {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let (window, group) = parse_conv(NAME, attrs)?;
        Ok(Arc::new(ConvInteger { window, group }))
    }
}

impl Op for ConvInteger {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![infer_conv(
            NAME,
            &self.window,
            ctx.input(0)?,
            ctx.input(1)?,
            Some(DType::I32),
        )?])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        conv_cost(inputs, outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let (shape, acc, _) = conv_accumulate(
            NAME,
            &self.window,
            self.group,
            inputs.req(0)?,
            inputs.req(1)?,
            inputs.opt(2),
            inputs.opt(3),
        )?;
        Ok(vec![int_tensor(NAME, DType::I32, shape, acc)?])
    }

    fn describe(&self) -> String {
        let mut s = self.window.describe();
        if self.group != 1 {
            s.push_str(&format!(" group={}", self.group));
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
    use crate::nn::common::AutoPad;

    fn op(pads: Option<Vec<usize>>) -> ConvInteger {
        ConvInteger {
            window: Window {
                kernel: None,
                strides: None,
                dilations: None,
                pads,
                auto_pad: AutoPad::NotSet,
                ceil_mode: false,
            },
            group: 1,
        }
    }

    #[test]
    fn onnx_example_without_padding() {
        let x = Tensor::from_vec(vec![1, 1, 3, 3], (2u8..11).collect()).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 2, 2], vec![1u8; 4]).unwrap();
        let z = Tensor::scalar(1u8);
        let y = op(None)
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&w), Some(&z)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[1, 1, 2, 2]);
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[12, 16, 24, 28]);
    }

    #[test]
    fn padding_and_per_channel_weight_zero_point() {
        let x = Tensor::from_vec(vec![1, 1, 1, 2], vec![3u8, 5]).unwrap();
        let w = Tensor::from_vec(vec![2, 1, 1, 2], vec![1u8, 1, 2, 2]).unwrap();
        let wz = Tensor::from_vec(vec![2], vec![0u8, 1]).unwrap();
        let y = op(Some(vec![0, 1, 0, 1]))
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&w), None, Some(&wz)]))
            .unwrap();
        // Padded row [0, 3, 5, 0]; channel 0 kernel [1, 1], channel 1 kernel [1, 1].
        assert_eq!(y[0].shape(), &[1, 2, 1, 3]);
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[3, 8, 5, 3, 8, 5]);
    }
}
