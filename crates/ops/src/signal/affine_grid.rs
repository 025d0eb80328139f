//! AffineGrid (ONNX opset 20): the sampling grid `theta @ [x, y, (z,) 1]` over an evenly
//! spaced base grid in [-1, 1], for 2-D (`theta` [N, 2, 3], `size` [N, C, H, W], output
//! [N, H, W, 2]) and 3-D (`theta` [N, 3, 4], `size` [N, C, D, H, W], output [N, D, H, W, 3]).
use super::common::{checked_numel, floats_f64, from_f64, to_dims};
use crate::util::ints_of;
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "AffineGrid";

#[derive(Clone, Debug, PartialEq)]
pub struct AffineGrid {
    pub align_corners: bool,
}

impl AffineGrid {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(AffineGrid {
            align_corners: attrs.int_or("align_corners", 0)? != 0,
        }))
    }

    /// Base coordinates along an axis of `s` points.
    fn base(&self, s: usize) -> Result<Vec<f64>, OpError> {
        if self.align_corners {
            if s == 1 {
                return Err(OpError::unsupported(
                    NAME,
                    "align_corners=1 with a spatial size of 1",
                ));
            }
            let step = 2.0 / (s as f64 - 1.0);
            Ok((0..s).map(|i| -1.0 + i as f64 * step).collect())
        } else {
            let step = 2.0 / s as f64;
            let start = -1.0 + step / 2.0;
            Ok((0..s).map(|i| start + i as f64 * step).collect())
        }
    }
}

impl Op for AffineGrid {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let theta = ctx.input(0)?;
        let shape = match ctx.constant(1).map(|t| ints_of(NAME, t)) {
            Some(Ok(size)) if size.len() == 4 || size.len() == 5 => {
                let mut s: Vec<Dim> = vec![];
                for (i, &d) in size.iter().enumerate() {
                    if i != 1 {
                        s.push(Dim::Known(usize::try_from(d).unwrap_or(0)));
                    }
                }
                s.push(Dim::Known(size.len() - 2));
                Some(s)
            }
            _ => None,
        };
        Ok(vec![ValueType {
            dtype: theta.dtype,
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 8)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let theta = inputs.req(0)?;
        let size = to_dims(NAME, "size", &ints_of(NAME, inputs.req(1)?)?)?;
        let r = match size.len() {
            4 => 2,
            5 => 3,
            n => {
                return Err(OpError::invalid(
                    NAME,
                    format!("size must hold 4 or 5 values, got {n}"),
                ))
            }
        };
        let n = size[0];
        if theta.shape() != [n, r, r + 1] {
            return Err(OpError::invalid(
                NAME,
                format!(
                    "theta shape {:?} does not match size {size:?}",
                    theta.shape()
                ),
            ));
        }
        let sp = &size[2..];
        let mut out_shape = vec![n];
        out_shape.extend_from_slice(sp);
        out_shape.push(r);
        let total = checked_numel(NAME, &out_shape)?;
        let th = floats_f64(NAME, theta)?;
        let mut y = Vec::with_capacity(total);
        if total > 0 {
            // Base coordinates per spatial axis; the homogeneous vector is (x, y, [z,] 1)
            // where x runs along the last axis.
            let bases: Vec<Vec<f64>> =
                sp.iter().map(|&s| self.base(s)).collect::<Result<_, _>>()?;
            let p_count: usize = sp.iter().product();
            let mut idx = vec![0usize; r];
            let mut homo = vec![1.0f64; r + 1];
            for b in 0..n {
                let t = th
                    .get(b * r * (r + 1)..(b + 1) * r * (r + 1))
                    .ok_or_else(|| OpError::invalid(NAME, "theta is too short"))?;
                idx.iter_mut().for_each(|i| *i = 0);
                for _ in 0..p_count {
                    for k in 0..r {
                        // homo[k] is the coordinate of spatial axis r-1-k.
                        homo[k] = bases[r - 1 - k][idx[r - 1 - k]];
                    }
                    for row in t.chunks_exact(r + 1) {
                        y.push(row.iter().zip(&homo).map(|(a, b)| a * b).sum::<f64>());
                    }
                    for ax in (0..r).rev() {
                        idx[ax] += 1;
                        if idx[ax] < sp[ax] {
                            break;
                        }
                        idx[ax] = 0;
                    }
                }
            }
        }
        Ok(vec![from_f64(NAME, theta.dtype(), out_shape, y)?])
    }

    fn describe(&self) -> String {
        format!("align_corners={}", self.align_corners as i32)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_theta_gives_the_base_grid() {
        let op = AffineGrid {
            align_corners: true,
        };
        let theta = Tensor::from_vec(vec![1, 2, 3], vec![1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0]).unwrap();
        let size = Tensor::from_vec(vec![4], vec![1i64, 1, 2, 3]).unwrap();
        let y = op
            .eval(&Inputs::new(NAME, &[Some(&theta), Some(&size)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[1, 2, 3, 2]);
        assert_eq!(
            y[0].as_slice::<f32>().unwrap(),
            &[-1.0, -1.0, 0.0, -1.0, 1.0, -1.0, -1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
        );
    }

    #[test]
    fn half_pixel_centers_without_align_corners() {
        let op = AffineGrid {
            align_corners: false,
        };
        let theta = Tensor::from_vec(vec![1, 2, 3], vec![1.0f32, 0.0, 0.5, 0.0, 2.0, 0.0]).unwrap();
        let size = Tensor::from_vec(vec![4], vec![1i64, 3, 1, 2]).unwrap();
        let y = op
            .eval(&Inputs::new(NAME, &[Some(&theta), Some(&size)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[0.0, 0.0, 1.0, 0.0]);
    }
}
