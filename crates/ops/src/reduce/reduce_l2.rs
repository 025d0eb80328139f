//! ReduceL2 (ONNX opsets 1, 11, 13, 18): square root of the sum of squares over the given axes.
use super::common::{Reduce, ReduceKind};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

/// Builder for `ReduceL2`; the op itself is a [`Reduce`] with kind [`ReduceKind::L2`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceL2;

impl ReduceL2 {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Reduce::from_onnx(ReduceKind::L2, attrs, opset)
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::testing::*;
    use super::*;
    use millrace_core::Tensor;
    use millrace_ir::Attr;

    const K: ReduceKind = ReduceKind::L2;

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
        let x = t(&[2, 2], &[3., -4., 0., 2.]);
        let op = build(K, 13, vec![("axes", Attr::Ints(vec![1]))]);
        close(
            run(&op, &x, None).unwrap().as_slice::<f32>().unwrap(),
            &[5., 2.],
        );
        let op = build(K, 18, vec![]);
        let y = run(&op, &t(&[0], &[]), None).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[0.]);
        let xi = Tensor::from_vec(vec![2], vec![3i64, 4]).unwrap();
        assert_eq!(
            run(&op, &xi, None).unwrap().as_slice::<i64>().unwrap(),
            &[5]
        );
    }

    #[test]
    fn errors() {
        let op = build(K, 18, vec![]);
        assert!(run(&op, &t(&[2], &[1., 2.]), Some(&axes(&[-3]))).is_err());
    }
}
