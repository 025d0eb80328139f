//! ReduceMean (ONNX opsets 1, 11, 13, 18): arithmetic mean over the given axes (all by default).
use super::common::{Reduce, ReduceKind};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

/// Builder for `ReduceMean`; the op itself is a [`Reduce`] with kind [`ReduceKind::Mean`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceMean;

impl ReduceMean {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Reduce::from_onnx(ReduceKind::Mean, attrs, opset)
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::testing::*;
    use super::*;
    use millrace_core::Tensor;
    use millrace_ir::Attr;

    const K: ReduceKind = ReduceKind::Mean;

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
        let x = t(&[2, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let op = build(K, 13, vec![("axes", Attr::Ints(vec![0, -1]))]);
        let y = run(&op, &x, None).unwrap();
        assert_eq!(y.shape(), &[1, 2, 1]);
        close(y.as_slice::<f32>().unwrap(), &[3.5, 5.5]);
        let op = build(K, 18, vec![("keepdims", Attr::Int(0))]);
        let y = run(&op, &x, Some(&axes(&[-1]))).unwrap();
        assert_eq!(y.shape(), &[2, 2]);
        close(y.as_slice::<f32>().unwrap(), &[1.5, 3.5, 5.5, 7.5]);
        let xi = Tensor::from_vec(vec![3], vec![1i32, 2, 4]).unwrap();
        let y = run(&op, &xi, None).unwrap();
        assert_eq!(y.as_slice::<i32>().unwrap(), &[2]);
    }

    #[test]
    fn errors() {
        let a = Attributes::new("ReduceMean", vec![("axes".into(), Attr::Ints(vec![0]))]);
        assert!(ReduceMean::from_onnx(&a, 18).is_err());
        let op = build(K, 13, vec![("axes", Attr::Ints(vec![3]))]);
        assert!(run(&op, &t(&[2], &[1., 2.]), None).is_err());
    }
}
