//! ReduceSum (ONNX opsets 1, 11, 13): sum over the given axes (all by default).
use super::common::{Reduce, ReduceKind};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

/// Builder for `ReduceSum`; the op itself is a [`Reduce`] with kind [`ReduceKind::Sum`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceSum;

impl ReduceSum {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Reduce::from_onnx(ReduceKind::Sum, attrs, opset)
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::testing::*;
    use super::*;
    use millrace_core::{DType, Tensor};
    use millrace_ir::{Attr, ValueType};

    const K: ReduceKind = ReduceKind::Sum;

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
        let x = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        // opset 11: axes attribute.
        let op = build(K, 11, vec![("axes", Attr::Ints(vec![1]))]);
        let y = run(&op, &x, None).unwrap();
        assert_eq!(y.shape(), &[2, 1]);
        close(y.as_slice::<f32>().unwrap(), &[6., 15.]);
        // opset 13: axes input, negative axis, keepdims=0.
        let op = build(K, 13, vec![("keepdims", Attr::Int(0))]);
        let y = run(&op, &x, Some(&axes(&[-2]))).unwrap();
        assert_eq!(y.shape(), &[3]);
        close(y.as_slice::<f32>().unwrap(), &[5., 7., 9.]);
        // no axes: reduce all.
        let y = run(&op, &x, None).unwrap();
        assert_eq!(y.shape(), &[] as &[usize]);
        close(y.as_slice::<f32>().unwrap(), &[21.]);
        // empty axes with noop: identity.
        let op = build(K, 13, vec![("noop_with_empty_axes", Attr::Int(1))]);
        let y = run(&op, &x, Some(&axes(&[]))).unwrap();
        assert_eq!(y, x);
    }

    #[test]
    fn empty_dim_sums_to_zero_and_ints_are_exact() {
        let op = build(K, 13, vec![]);
        let x = t(&[2, 0], &[]);
        let y = run(&op, &x, Some(&axes(&[1]))).unwrap();
        assert_eq!(y.shape(), &[2, 1]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[0., 0.]);
        let xi = Tensor::from_vec(vec![2], vec![i64::MAX - 1, 1]).unwrap();
        let y = run(&op, &xi, None).unwrap();
        assert_eq!(y.as_slice::<i64>().unwrap(), &[i64::MAX]);
    }

    #[test]
    fn errors() {
        let op = build(K, 13, vec![]);
        let x = t(&[2, 3], &[0.; 6]);
        assert!(run(&op, &x, Some(&axes(&[2]))).is_err());
        assert!(run(&op, &x, Some(&axes(&[1, -1]))).is_err());
        let s = Tensor::from_vec(vec![1], vec![true]).unwrap();
        assert!(run(&op, &s, None).is_err());
        let shape = shape_of(
            &op,
            ValueType::concrete(DType::F32, &[2, 3]),
            Some(&axes(&[0])),
        );
        assert_eq!(shape.shape.unwrap(), dims_of(&[1, 3]));
    }
}
