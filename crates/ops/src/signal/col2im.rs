//! Col2Im (ONNX opset 18): rearranges column blocks `input` [N, C*prod(block_shape), L]
//! back into an image [N, C, *image_shape], summing overlapping values; N-d, with
//! strides, pads and dilations.
use super::common::{checked_numel, floats_f64, from_f64, to_dims};
use crate::nn::common::opt_usizes;
use crate::util::ints_of;
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "Col2Im";

#[derive(Clone, Debug, PartialEq)]
pub struct Col2Im {
    pub strides: Option<Vec<usize>>,
    pub pads: Option<Vec<usize>>,
    pub dilations: Option<Vec<usize>>,
}

impl Col2Im {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let op = Col2Im {
            strides: opt_usizes(NAME, attrs, "strides")?,
            pads: opt_usizes(NAME, attrs, "pads")?,
            dilations: opt_usizes(NAME, attrs, "dilations")?,
        };
        if op.strides.as_ref().is_some_and(|s| s.contains(&0)) {
            return Err(OpError::attribute(NAME, "strides", "must be positive"));
        }
        if op.dilations.as_ref().is_some_and(|s| s.contains(&0)) {
            return Err(OpError::attribute(NAME, "dilations", "must be positive"));
        }
        Ok(Arc::new(op))
    }
}

/// Sums `v` (per (n, c) block of `kk * l` columns) into images; `add` accumulates.
#[allow(clippy::too_many_arguments)]
fn scatter<T: Copy>(
    v: &[T],
    out: &mut [T],
    nc: usize,
    image: &[usize],
    block: &[usize],
    cols: &[usize],
    strides: &[usize],
    pads: &[usize],
    dil: &[usize],
    add: impl Fn(T, T) -> T,
) {
    let k = image.len();
    let kk: usize = block.iter().product();
    let l: usize = cols.iter().product();
    let img: usize = image.iter().product();
    let mut koff = vec![0usize; k];
    let mut cidx = vec![0usize; k];
    for b in 0..nc {
        let src = &v[b * kk * l..(b + 1) * kk * l];
        let dst = &mut out[b * img..(b + 1) * img];
        koff.iter_mut().for_each(|x| *x = 0);
        for kc in 0..kk {
            cidx.iter_mut().for_each(|x| *x = 0);
            for col in 0..l {
                let mut flat = 0usize;
                let mut inside = true;
                for i in 0..k {
                    let pos = (cidx[i] * strides[i] + koff[i] * dil[i]) as i64 - pads[i] as i64;
                    if pos < 0 || pos as usize >= image[i] {
                        inside = false;
                        break;
                    }
                    flat = flat * image[i] + pos as usize;
                }
                if inside {
                    dst[flat] = add(dst[flat], src[kc * l + col]);
                }
                for i in (0..k).rev() {
                    cidx[i] += 1;
                    if cidx[i] < cols[i] {
                        break;
                    }
                    cidx[i] = 0;
                }
            }
            for i in (0..k).rev() {
                koff[i] += 1;
                if koff[i] < block[i] {
                    break;
                }
                koff[i] = 0;
            }
        }
    }
}

impl Op for Col2Im {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let shape = (|| {
            let xs = x.shape.as_ref()?;
            let image = ints_of(NAME, ctx.constant(1)?).ok()?;
            let block = ints_of(NAME, ctx.constant(2)?).ok()?;
            let kk: i64 = block.iter().product();
            let c = match xs.get(1)? {
                Dim::Known(c) if kk > 0 => Dim::Known(*c / kk as usize),
                _ => return None,
            };
            let mut s = vec![xs.first()?.clone(), c];
            for &d in &image {
                s.push(Dim::Known(usize::try_from(d).ok()?));
            }
            Some(s)
        })();
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(outputs, inputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let image = to_dims(NAME, "image_shape", &ints_of(NAME, inputs.req(1)?)?)?;
        let block = to_dims(NAME, "block_shape", &ints_of(NAME, inputs.req(2)?)?)?;
        let k = image.len();
        if k == 0 || block.len() != k {
            return Err(OpError::invalid(
                NAME,
                "image_shape and block_shape must have the same non-zero length",
            ));
        }
        let &[n, ckk, l] = x.shape() else {
            return Err(OpError::invalid(NAME, "input must have rank 3"));
        };
        let strides = self.strides.clone().unwrap_or_else(|| vec![1; k]);
        let dil = self.dilations.clone().unwrap_or_else(|| vec![1; k]);
        let pads = self.pads.clone().unwrap_or_else(|| vec![0; 2 * k]);
        if strides.len() != k || dil.len() != k || pads.len() != 2 * k {
            return Err(OpError::invalid(
                NAME,
                "strides, dilations and pads do not match the image rank",
            ));
        }
        let kk = checked_numel(NAME, &block)?;
        if kk == 0 || ckk % kk != 0 {
            return Err(OpError::invalid(
                NAME,
                format!("input dimension 1 ({ckk}) is not a multiple of the block size {kk}"),
            ));
        }
        let c = ckk / kk;
        let mut cols = Vec::with_capacity(k);
        for i in 0..k {
            let eff = block[i]
                .checked_sub(1)
                .and_then(|b| b.checked_mul(dil[i]))
                .map(|e| e + 1)
                .ok_or_else(|| OpError::invalid(NAME, "empty block"))?;
            let padded = image[i].saturating_add(pads[i]).saturating_add(pads[i + k]);
            let nb = padded
                .checked_sub(eff)
                .map(|v| v / strides[i] + 1)
                .ok_or_else(|| {
                    OpError::invalid(NAME, "the block is larger than the padded image")
                })?;
            cols.push(nb);
        }
        if checked_numel(NAME, &cols)? != l {
            return Err(OpError::invalid(
                NAME,
                format!("input dimension 2 ({l}) must equal the block count {cols:?}"),
            ));
        }
        let mut out_shape = vec![n, c];
        out_shape.extend_from_slice(&image);
        let total = checked_numel(NAME, &out_shape)?;
        let nc = n * c;
        let dtype = x.dtype();
        let y = if dtype.is_float() {
            let v = floats_f64(NAME, x)?;
            let mut out = vec![0.0f64; total];
            scatter(
                &v,
                &mut out,
                nc,
                &image,
                &block,
                &cols,
                &strides,
                &pads,
                &dil,
                |a, b| a + b,
            );
            from_f64(NAME, dtype, out_shape, out)?
        } else if dtype.is_int() {
            let v = x.to_i64_vec().map_err(|e| OpError::tensor(NAME, e))?;
            let mut out = vec![0i64; total];
            scatter(
                &v,
                &mut out,
                nc,
                &image,
                &block,
                &cols,
                &strides,
                &pads,
                &dil,
                |a, b| a.wrapping_add(b),
            );
            // Wrapping sums in i64 reduce to the same bits as in any narrower integer.
            let t = Tensor::from_vec(out_shape, out).map_err(|e| OpError::tensor(NAME, e))?;
            cast_int(t, dtype)?
        } else {
            return Err(OpError::unsupported(NAME, format!("dtype {dtype}")));
        };
        Ok(vec![y])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Narrows an i64 tensor to integer `dtype` by truncating bits.
fn cast_int(t: Tensor, dtype: DType) -> Result<Tensor, OpError> {
    let (shape, data) = t.into_parts();
    let v = match data {
        millrace_core::TensorData::I64(v) => v,
        _ => return Err(OpError::invalid(NAME, "internal: expected i64")),
    };
    let out = |d| Tensor::new(shape.clone(), d).map_err(|e| OpError::tensor(NAME, e));
    use millrace_core::TensorData as TD;
    match dtype {
        DType::I64 => out(TD::I64(v)),
        DType::I32 => out(TD::I32(v.iter().map(|&x| x as i32).collect())),
        DType::I16 => out(TD::I16(v.iter().map(|&x| x as i16).collect())),
        DType::I8 => out(TD::I8(v.iter().map(|&x| x as i8).collect())),
        DType::U64 => out(TD::U64(v.iter().map(|&x| x as u64).collect())),
        DType::U32 => out(TD::U32(v.iter().map(|&x| x as u32).collect())),
        DType::U16 => out(TD::U16(v.iter().map(|&x| x as u16).collect())),
        DType::U8 => out(TD::U8(v.iter().map(|&x| x as u8).collect())),
        d => Err(OpError::unsupported(NAME, format!("dtype {d}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_blocks_sum() {
        // 1-D image of 3 with blocks of 2, stride 1: columns [a0 a1; b0 b1].
        let x = Tensor::from_vec(vec![1, 2, 2], vec![1.0f32, 2.0, 10.0, 20.0]).unwrap();
        let image = Tensor::from_vec(vec![1], vec![3i64]).unwrap();
        let block = Tensor::from_vec(vec![1], vec![2i64]).unwrap();
        let op = Col2Im {
            strides: None,
            pads: None,
            dilations: None,
        };
        let y = op
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&image), Some(&block)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[1, 1, 3]);
        // Block tap 0 reads columns (1, 2) at positions 0, 1; tap 1 (10, 20) at 1, 2.
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[1.0, 12.0, 20.0]);
    }

    #[test]
    fn integer_input_sums_exactly() {
        let x = Tensor::from_vec(vec![1, 2, 2], vec![1i32, 2, 10, 20]).unwrap();
        let image = Tensor::from_vec(vec![1], vec![3i64]).unwrap();
        let block = Tensor::from_vec(vec![1], vec![2i64]).unwrap();
        let op = Col2Im {
            strides: None,
            pads: None,
            dilations: None,
        };
        let y = op
            .eval(&Inputs::new(NAME, &[Some(&x), Some(&image), Some(&block)]))
            .unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[1, 12, 20]);
    }
}
