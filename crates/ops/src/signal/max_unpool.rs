//! MaxUnpool (ONNX opsets 9, 11, 22): scatters `X` into a zero tensor at the flat
//! indices `I` (as produced by MaxPool's second output, counted over the whole N, C,
//! spatial tensor). The output shape is the one implied by kernel_shape, strides and
//! pads. An `output_shape` input that differs from it is unsupported: the ONNX
//! reference then reads the indices in the implied shape and pads the result, while
//! onnxruntime and PyTorch read them in `output_shape`.
use super::common::{checked_numel, floats_f64, from_f64, to_dims};
use crate::nn::common::opt_usizes;
use crate::util::ints_of;
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "MaxUnpool";

#[derive(Clone, Debug, PartialEq)]
pub struct MaxUnpool {
    pub kernel_shape: Vec<usize>,
    pub strides: Option<Vec<usize>>,
    pub pads: Option<Vec<usize>>,
}

impl MaxUnpool {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let kernel_shape = opt_usizes(NAME, attrs, "kernel_shape")?
            .ok_or_else(|| OpError::attribute(NAME, "kernel_shape", "required but absent"))?;
        let strides = opt_usizes(NAME, attrs, "strides")?;
        let pads = opt_usizes(NAME, attrs, "pads")?;
        let k = kernel_shape.len();
        if strides
            .as_ref()
            .is_some_and(|s| s.len() != k || s.contains(&0))
        {
            return Err(OpError::attribute(
                NAME,
                "strides",
                "must hold one positive value per axis",
            ));
        }
        if pads.as_ref().is_some_and(|p| p.len() != 2 * k) {
            return Err(OpError::attribute(
                NAME,
                "pads",
                "must hold two values per axis",
            ));
        }
        Ok(Arc::new(MaxUnpool {
            kernel_shape,
            strides,
            pads,
        }))
    }

    /// The implied spatial output size for spatial input dims.
    fn implied(&self, sp: &[usize]) -> Result<Vec<usize>, OpError> {
        let k = self.kernel_shape.len();
        if sp.len() != k {
            return Err(OpError::invalid(
                NAME,
                format!("kernel_shape has {k} values for {} spatial axes", sp.len()),
            ));
        }
        (0..k)
            .map(|i| {
                let s = self.strides.as_ref().map_or(1, |s| s[i]);
                let (pb, pe) = self.pads.as_ref().map_or((0, 0), |p| (p[i], p[i + k]));
                sp[i]
                    .checked_sub(1)
                    .and_then(|v| v.checked_mul(s))
                    .and_then(|v| v.checked_add(self.kernel_shape[i]))
                    .and_then(|v| v.checked_sub(pb))
                    .and_then(|v| v.checked_sub(pe))
                    .ok_or_else(|| OpError::invalid(NAME, "invalid output size"))
            })
            .collect()
    }
}

impl Op for MaxUnpool {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let shape = (|| {
            if ctx.opt_input(2).is_some() {
                // An explicit output_shape: its value, when constant.
                let v = ints_of(NAME, ctx.constant(2)?).ok()?;
                return v
                    .iter()
                    .map(|&d| usize::try_from(d).ok().map(Dim::Known))
                    .collect();
            }
            let xs = x.shape.as_ref()?;
            if xs.len() < 3 {
                return None;
            }
            let mut s: Vec<Dim> = xs[..2].to_vec();
            let sp: Option<Vec<usize>> = xs[2..].iter().map(Dim::known).collect();
            match sp {
                Some(sp) => s.extend(self.implied(&sp).ok()?.into_iter().map(Dim::Known)),
                None => return None,
            }
            Some(s)
        })();
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let ind = inputs.req(1)?;
        let xs = x.shape();
        if xs.len() < 3 {
            return Err(OpError::invalid(NAME, "X must have rank 3 or more"));
        }
        if ind.shape() != xs {
            return Err(OpError::invalid(NAME, "I must have the shape of X"));
        }
        let mut out_shape = xs[..2].to_vec();
        out_shape.extend(self.implied(&xs[2..])?);
        if let Some(t) = inputs.opt(2) {
            let want = to_dims(NAME, "output_shape", &ints_of(NAME, t)?)?;
            if want != out_shape {
                return Err(OpError::unsupported(
                    NAME,
                    format!("output_shape {want:?} different from the implied shape {out_shape:?}"),
                ));
            }
        }
        let total = checked_numel(NAME, &out_shape)?;
        let xv = floats_f64(NAME, x)?;
        let iv = ints_of(NAME, ind)?;
        let mut y = vec![0.0f64; total];
        for (&v, &i) in xv.iter().zip(&iv) {
            let slot = usize::try_from(i)
                .ok()
                .and_then(|i| y.get_mut(i))
                .ok_or_else(|| OpError::invalid(NAME, format!("index {i} is out of range")))?;
            *slot = v;
        }
        Ok(vec![from_f64(NAME, x.dtype(), out_shape, y)?])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scatters_to_the_implied_shape() {
        let op = MaxUnpool {
            kernel_shape: vec![2, 2],
            strides: Some(vec![2, 2]),
            pads: None,
        };
        let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let i = Tensor::from_vec(vec![1, 1, 2, 2], vec![0i64, 3, 9, 15]).unwrap();
        let y = op.eval(&Inputs::new(NAME, &[Some(&x), Some(&i)])).unwrap();
        assert_eq!(y[0].shape(), &[1, 1, 4, 4]);
        let v = y[0].as_slice::<f32>().unwrap();
        assert_eq!((v[0], v[3], v[9], v[15]), (1.0, 2.0, 3.0, 4.0));
        assert_eq!(v.iter().filter(|&&a| a == 0.0).count(), 12);
    }
}
