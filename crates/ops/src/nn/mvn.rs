//! MeanVarianceNormalization (ONNX opsets 9, 13): `(x - mean) / sqrt(var + 1e-9)` with
//! statistics over `axes` (default [0, 2, 3]).
use super::common::{float_out, Float};
use crate::float_run;
use crate::util::normalize_axes;
use millrace_core::Tensor;
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct MeanVarianceNormalization {
    pub axes: Vec<i64>,
}

const NAME: &str = "MeanVarianceNormalization";

impl MeanVarianceNormalization {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(MeanVarianceNormalization {
            axes: attrs.ints("axes")?.unwrap_or_else(|| vec![0, 2, 3]),
        }))
    }
}

fn eval_as<F: Float>(op: &MeanVarianceNormalization, x: &Tensor) -> Result<Vec<Tensor>, OpError> {
    let shape = x.shape().to_vec();
    let axes = normalize_axes(NAME, &op.axes, shape.len())?;
    // Flat index of each element's group (the element with reduced axes zeroed).
    let rank = shape.len();
    let mut kept_stride = vec![0usize; rank];
    let mut groups = 1usize;
    for d in (0..rank).rev() {
        if !axes.contains(&d) {
            kept_stride[d] = groups;
            groups *= shape[d];
        }
    }
    let xs = F::cow(NAME, x)?;
    let mut gid = Vec::with_capacity(xs.len());
    let mut counter = vec![0usize; rank];
    for _ in 0..xs.len() {
        gid.push(
            (0..rank)
                .map(|d| counter[d] * kept_stride[d])
                .sum::<usize>(),
        );
        for d in (0..rank).rev() {
            counter[d] += 1;
            if counter[d] < shape[d] {
                break;
            }
            counter[d] = 0;
        }
    }
    let count = F::from_f64((xs.len() / groups.max(1)) as f64);
    let mut mean = vec![F::ZERO; groups];
    for (&g, &v) in gid.iter().zip(xs.iter()) {
        mean[g] += v;
    }
    for m in &mut mean {
        *m = *m / count;
    }
    let mut var = vec![F::ZERO; groups];
    for (&g, &v) in gid.iter().zip(xs.iter()) {
        let d = v - mean[g];
        var[g] += d * d;
    }
    let eps = F::from_f64(1e-9);
    let inv: Vec<F> = var
        .iter()
        .map(|&v| F::ONE / (v / count + eps).sqrt())
        .collect();
    let y: Vec<F> = gid
        .iter()
        .zip(xs.iter())
        .map(|(&g, &v)| (v - mean[g]) * inv[g])
        .collect();
    Ok(vec![float_out(NAME, x.dtype(), shape, y)?])
}

impl Op for MeanVarianceNormalization {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ctx.input(0)?.clone()])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 6)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        float_run!(NAME, x.dtype(), eval_as(self, x))
    }

    fn describe(&self) -> String {
        format!("axes={:?}", self.axes)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_over_axes() {
        let op = MeanVarianceNormalization { axes: vec![-1] };
        let x = Tensor::from_vec(vec![2, 2], vec![1.0f64, 3.0, 10.0, 10.0]).unwrap();
        let y = op.eval(&Inputs::new(NAME, &[Some(&x)])).unwrap();
        let g = y[0].as_slice::<f64>().unwrap();
        assert!((g[0] + 1.0).abs() < 1e-6 && (g[1] - 1.0).abs() < 1e-6);
        assert_eq!(&g[2..], &[0.0, 0.0]);
        // Default axes need rank 4.
        let op = MeanVarianceNormalization {
            axes: vec![0, 2, 3],
        };
        assert!(op.eval(&Inputs::new(NAME, &[Some(&x)])).is_err());
    }
}
