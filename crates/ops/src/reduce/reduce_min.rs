//! ReduceMin (ONNX opsets 1, 11, 12, 13, 18, 20): minimum over the given axes (all by default).
use super::common::{Reduce, ReduceKind};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

/// Builder for `ReduceMin`; the op itself is a [`Reduce`] with kind [`ReduceKind::Min`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceMin;

impl ReduceMin {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Reduce::from_onnx(ReduceKind::Min, attrs, opset)
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::testing::*;
    use super::*;
    use millrace_core::Tensor;
    use millrace_ir::Attr;

    const K: ReduceKind = ReduceKind::Min;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec()).unwrap()
    }

    fn axes(v: &[i64]) -> Tensor {
        Tensor::from_vec(vec![v.len()], v.to_vec()).unwrap()
    }

    #[allow(dead_code)]
    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + y.abs()) || (x == y),
                "{a:?} vs {b:?}"
            );
        }
    }

    #[test]
    fn cases() {
        let x = t(&[2, 3], &[1., 9., 3., -4., -5., -6.]);
        let op = build(K, 13, vec![("axes", Attr::Ints(vec![0]))]);
        let y = run(&op, &x, None).unwrap();
        close(y.as_slice::<f32>().unwrap(), &[-4., -5., -6.]);
        let op = build(K, 18, vec![]);
        let y = run(&op, &t(&[2, 0], &[]), Some(&axes(&[-1]))).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[f32::INFINITY; 2]);
        let xi = Tensor::from_vec(vec![0], Vec::<i8>::new()).unwrap();
        let y = run(&op, &xi, None).unwrap();
        assert_eq!(y.as_slice::<i8>().unwrap(), &[i8::MAX]);
    }

    #[test]
    fn errors() {
        let op = build(K, 18, vec![]);
        assert!(run(&op, &t(&[2], &[1., 2.]), Some(&axes(&[-2]))).is_err());
    }
}
