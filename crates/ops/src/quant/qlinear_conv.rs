//! QLinearConv (ONNX opset 10): quantized grouped N-d convolution. int8/uint8 input and
//! weights minus their zero points are convolved in wrapping int32 (plus the optional int32
//! bias), then requantized with `x_scale * w_scale / y_scale` (weights per tensor or per
//! output channel) and the output zero point, rounding half to even.
use super::common::{quant_range, requantize, scale_values};
use super::conv_integer::{conv_accumulate, conv_cost, infer_conv, parse_conv};
use crate::nn::common::{prod, Window};
use crate::util::output;
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "QLinearConv";

#[derive(Clone, Debug, PartialEq)]
pub struct QLinearConv {
    pub window: Window,
    pub group: usize,
}

impl QLinearConv {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let (window, group) = parse_conv(NAME, attrs)?;
        Ok(Arc::new(QLinearConv { window, group }))
    }
}

/// The single value of a per-tensor parameter.
fn single(t: &Tensor, what: &str) -> Result<(), OpError> {
    if t.len() == 1 {
        Ok(())
    } else {
        Err(OpError::unsupported(
            NAME,
            format!("{what} of shape {:?} (only per tensor)", t.shape()),
        ))
    }
}

impl Op for QLinearConv {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![infer_conv(
            NAME,
            &self.window,
            ctx.input(0)?,
            ctx.input(3)?,
            ctx.input(7)?.dtype,
        )?])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        conv_cost(inputs, outputs, 3)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let x_scale = inputs.req(1)?;
        let x_zp = inputs.req(2)?;
        let w = inputs.req(3)?;
        let w_scale = inputs.req(4)?;
        let w_zp = inputs.req(5)?;
        let y_scale = inputs.req(6)?;
        let y_zp = inputs.req(7)?;
        let bias = inputs.opt(8);
        let out = y_zp.dtype();
        let range = match out {
            DType::I8 | DType::U8 => quant_range(out),
            _ => None,
        }
        .ok_or_else(|| OpError::unsupported(NAME, format!("output dtype {out}")))?;
        single(x_scale, "x_scale")?;
        single(x_zp, "x_zero_point")?;
        single(y_scale, "y_scale")?;
        single(y_zp, "y_zero_point")?;
        let sd = x_scale.dtype();
        if w_scale.dtype() != sd || y_scale.dtype() != sd {
            return Err(OpError::invalid(NAME, "scales must share one dtype"));
        }
        let sx = scale_values(NAME, x_scale, "x_scale")?[0];
        let sy = scale_values(NAME, y_scale, "y_scale")?[0];
        let sw = scale_values(NAME, w_scale, "w_scale")?;
        let zy = super::common::int_values(NAME, y_zp, "y_zero_point")?[0];
        let (shape, mut acc, m) =
            conv_accumulate(NAME, &self.window, self.group, x, w, Some(x_zp), Some(w_zp))?;
        if !(sw.len() == 1 || (w_scale.rank() == 1 && sw.len() == m)) {
            return Err(OpError::invalid(
                NAME,
                format!(
                    "w_scale of shape {:?} for {m} output channels",
                    w_scale.shape()
                ),
            ));
        }
        let plane = prod(&shape[2..]);
        if let Some(b) = bias {
            if b.dtype() != DType::I32 || b.shape() != [m] {
                return Err(OpError::invalid(
                    NAME,
                    format!(
                        "bias must be int32 of shape [{m}], got {} {:?}",
                        b.dtype(),
                        b.shape()
                    ),
                ));
            }
            let bv = crate::util::typed::<i32>(NAME, b)?;
            for (i, v) in acc.iter_mut().enumerate() {
                let ch = (i / plane.max(1)) % m.max(1);
                *v = (*v as i32).wrapping_add(bv[ch]) as i64;
            }
        }
        let mut y = Vec::with_capacity(acc.len());
        for (i, &c) in acc.iter().enumerate() {
            let ch = (i / plane.max(1)) % m.max(1);
            let s = if sw.len() == 1 { sw[0] } else { sw[ch] };
            let v = requantize(c, sx, s, sy, sd, zy, range).ok_or_else(|| {
                OpError::unsupported(NAME, "result depends on the requantization precision")
            })?;
            y.push(v);
        }
        let t = match out {
            DType::I8 => output(NAME, shape, y.into_iter().map(|v| v as i8).collect())?,
            _ => output(NAME, shape, y.into_iter().map(|v| v as u8).collect())?,
        };
        Ok(vec![t])
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

    #[test]
    fn one_by_one_kernel_with_bias() {
        let op = QLinearConv {
            window: Window {
                kernel: None,
                strides: None,
                dilations: None,
                pads: None,
                auto_pad: AutoPad::NotSet,
                ceil_mode: false,
            },
            group: 1,
        };
        let x = Tensor::from_vec(vec![1, 1, 1, 3], vec![10u8, 20, 30]).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 1, 1], vec![3u8]).unwrap();
        let f = |v: f32| Tensor::scalar(v);
        let (sx, zx, sw, zw, sy, zy) = (
            f(0.5),
            Tensor::scalar(10u8),
            f(1.0),
            Tensor::scalar(1u8),
            f(2.0),
            Tensor::scalar(5u8),
        );
        let b = Tensor::from_vec(vec![1], vec![4i32]).unwrap();
        let items = [
            Some(&x),
            Some(&sx),
            Some(&zx),
            Some(&w),
            Some(&sw),
            Some(&zw),
            Some(&sy),
            Some(&zy),
            Some(&b),
        ];
        let y = op.eval(&Inputs::new(NAME, &items)).unwrap();
        // acc = (x - 10) * 2 + 4 = [4, 24, 44]; * 0.25 = [1, 6, 11]; + 5.
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[6, 11, 16]);
    }
}
