//! HannWindow, HammingWindow, BlackmanWindow (ONNX opset 17): a window of `size` points,
//! periodic (`N = size`) or symmetric (`N = size - 1`), in `output_datatype`.
use super::common::{checked_numel, dtype_from_code, from_f64, scalar_i64};
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::f64::consts::PI;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Hann,
    Hamming,
    Blackman,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub shape: Shape,
    pub periodic: bool,
    pub dtype: DType,
}

impl Window {
    fn build(attrs: &Attributes, shape: Shape) -> Result<Arc<dyn Op>, OpError> {
        let name = Self::op_name(shape);
        let periodic = attrs.int_or("periodic", 1)? != 0;
        let dtype = dtype_from_code(name, attrs.int_or("output_datatype", 1)?)?;
        if !dtype.is_float() {
            // Truncating values in [0, 1] to integers hinges on last-bit rounding.
            return Err(OpError::unsupported(
                name,
                format!("output_datatype {dtype}"),
            ));
        }
        Ok(Arc::new(Window {
            shape,
            periodic,
            dtype,
        }))
    }

    pub fn hann(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Self::build(attrs, Shape::Hann)
    }

    pub fn hamming(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Self::build(attrs, Shape::Hamming)
    }

    pub fn blackman(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Self::build(attrs, Shape::Blackman)
    }

    fn op_name(shape: Shape) -> &'static str {
        match shape {
            Shape::Hann => "HannWindow",
            Shape::Hamming => "HammingWindow",
            Shape::Blackman => "BlackmanWindow",
        }
    }

    fn values(&self, size: usize) -> Result<Vec<f64>, OpError> {
        let denom = if self.periodic { size } else { size - 1 };
        if denom == 0 {
            return Err(OpError::unsupported(
                self.name(),
                "a symmetric window of size 1 (0/0)",
            ));
        }
        let nn = denom as f64;
        Ok((0..size)
            .map(|i| {
                let a = 2.0 * PI * i as f64 / nn;
                match self.shape {
                    Shape::Hann => {
                        let s = (PI * i as f64 / nn).sin();
                        s * s
                    }
                    Shape::Hamming => {
                        let alpha = 25.0 / 46.0;
                        alpha - a.cos() * (1.0 - alpha)
                    }
                    Shape::Blackman => 0.42 - 0.5 * a.cos() + 0.08 * (2.0 * a).cos(),
                }
            })
            .collect())
    }
}

impl Op for Window {
    fn name(&self) -> &'static str {
        Self::op_name(self.shape)
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let dim = ctx
            .constant(0)
            .and_then(|t| scalar_i64(self.name(), t, "size").ok())
            .and_then(|n| usize::try_from(n).ok())
            .map(Dim::Known)
            .unwrap_or_else(|| Dim::Sym(format!("{}_size", self.name())));
        Ok(vec![ValueType::new(self.dtype, vec![dim])])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 4)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let size = scalar_i64(self.name(), inputs.req(0)?, "size")?;
        let size = usize::try_from(size)
            .map_err(|_| OpError::invalid(self.name(), format!("size {size} is negative")))?;
        checked_numel(self.name(), &[size, self.dtype.size_bytes()])?;
        if size == 0 {
            return Ok(vec![Tensor::zeros(self.dtype, vec![0])]);
        }
        let v = self.values(size)?;
        Ok(vec![from_f64(self.name(), self.dtype, vec![size], v)?])
    }

    fn describe(&self) -> String {
        format!("periodic={} dtype={}", self.periodic as i32, self.dtype)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(shape: Shape, periodic: bool, n: i64) -> Vec<f32> {
        let w = Window {
            shape,
            periodic,
            dtype: DType::F32,
        };
        let size = Tensor::scalar(n);
        let y = w.eval(&Inputs::new("W", &[Some(&size)])).unwrap();
        y[0].as_slice::<f32>().unwrap().to_vec()
    }

    #[test]
    fn hann_periodic_and_symmetric() {
        let p = run(Shape::Hann, true, 4);
        let want = [0.0, 0.5, 1.0, 0.5];
        assert!(p.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6));
        let s = run(Shape::Hann, false, 3);
        let want = [0.0, 1.0, 0.0];
        assert!(s.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn hamming_and_blackman_endpoints() {
        let h = run(Shape::Hamming, false, 3);
        assert!((h[0] - 4.0 / 46.0).abs() < 1e-6 && (h[1] - 1.0).abs() < 1e-6);
        let b = run(Shape::Blackman, false, 3);
        assert!(b[0].abs() < 1e-6 && (b[1] - 1.0).abs() < 1e-6);
    }
}
