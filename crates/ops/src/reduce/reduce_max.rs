//! ReduceMax (ONNX opsets 1, 11, 12, 13, 18, 20): maximum over the given axes (all by default).
use super::common::{Reduce, ReduceKind};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

/// Builder for `ReduceMax`; the op itself is a [`Reduce`] with kind [`ReduceKind::Max`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceMax;

impl ReduceMax {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Reduce::from_onnx(ReduceKind::Max, attrs, opset)
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::testing::*;
    use super::*;
    use millrace_core::Tensor;
    use millrace_ir::Attr;

    const K: ReduceKind = ReduceKind::Max;

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
        let op = build(K, 13, vec![("axes", Attr::Ints(vec![-1]))]);
        let y = run(&op, &x, None).unwrap();
        close(y.as_slice::<f32>().unwrap(), &[9., -4.]);
        let op = build(K, 18, vec![("keepdims", Attr::Int(0))]);
        let y = run(&op, &t(&[0], &[]), None).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[f32::NEG_INFINITY]);
        let xi = Tensor::from_vec(vec![0], Vec::<u8>::new()).unwrap();
        let y = run(&op, &xi, None).unwrap();
        assert_eq!(y.as_slice::<u8>().unwrap(), &[0]);
        let xi = Tensor::from_vec(vec![2], vec![u64::MAX, 1]).unwrap();
        let y = run(&op, &xi, None).unwrap();
        assert_eq!(y.as_slice::<u64>().unwrap(), &[u64::MAX]);
        let xb = Tensor::from_vec(vec![2, 2], vec![false, true, false, false]).unwrap();
        let y = run(&op, &xb, Some(&axes(&[1]))).unwrap();
        assert_eq!(y.as_slice::<bool>().unwrap(), &[true, false]);
    }

    #[test]
    fn errors() {
        let op = build(K, 18, vec![]);
        assert!(run(&op, &t(&[2], &[1., 2.]), Some(&axes(&[1]))).is_err());
    }
}
