//! ReduceL1 (ONNX opsets 1, 11, 13, 18): sum of absolute values over the given axes.
use super::common::{Reduce, ReduceKind};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

/// Builder for `ReduceL1`; the op itself is a [`Reduce`] with kind [`ReduceKind::L1`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceL1;

impl ReduceL1 {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Reduce::from_onnx(ReduceKind::L1, attrs, opset)
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::testing::*;
    use super::*;
    use millrace_core::Tensor;
    use millrace_ir::Attr;

    const K: ReduceKind = ReduceKind::L1;

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
        let x = t(&[2, 2], &[1., -2., -3., 4.]);
        let op = build(K, 13, vec![("axes", Attr::Ints(vec![-1]))]);
        close(
            run(&op, &x, None).unwrap().as_slice::<f32>().unwrap(),
            &[3., 7.],
        );
        let op = build(K, 18, vec![]);
        close(
            run(&op, &x, None).unwrap().as_slice::<f32>().unwrap(),
            &[10.],
        );
        let xi = Tensor::from_vec(vec![2], vec![-2i32, 5]).unwrap();
        assert_eq!(
            run(&op, &xi, None).unwrap().as_slice::<i32>().unwrap(),
            &[7]
        );
    }

    #[test]
    fn errors() {
        let op = build(K, 18, vec![]);
        assert!(run(&op, &t(&[2], &[1., 2.]), Some(&axes(&[5]))).is_err());
    }
}
