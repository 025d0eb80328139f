//! ReduceSumSquare (ONNX opsets 1, 11, 13, 18): sum of squares over the given axes.
use super::common::{Reduce, ReduceKind};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

/// Builder for `ReduceSumSquare`; the op itself is a [`Reduce`] with kind [`ReduceKind::SumSquare`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceSumSquare;

impl ReduceSumSquare {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Reduce::from_onnx(ReduceKind::SumSquare, attrs, opset)
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::testing::*;
    use super::*;
    use millrace_core::Tensor;
    use millrace_ir::Attr;

    const K: ReduceKind = ReduceKind::SumSquare;

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
        let x = t(&[2, 2], &[1., -2., 3., 4.]);
        let op = build(K, 13, vec![("axes", Attr::Ints(vec![0]))]);
        close(
            run(&op, &x, None).unwrap().as_slice::<f32>().unwrap(),
            &[10., 20.],
        );
        let op = build(K, 18, vec![("keepdims", Attr::Int(0))]);
        let y = run(&op, &x, Some(&axes(&[-1]))).unwrap();
        assert_eq!(y.shape(), &[2]);
        close(y.as_slice::<f32>().unwrap(), &[5., 25.]);
        let xh = Tensor::from_vec(vec![2], vec![millrace_core::f16::from_f32(3.0); 2]).unwrap();
        let y = run(&op, &xh, None).unwrap();
        assert_eq!(
            y.as_slice::<millrace_core::f16>().unwrap()[0].to_f32(),
            18.0
        );
    }

    #[test]
    fn errors() {
        let op = build(K, 18, vec![]);
        assert!(run(&op, &t(&[2], &[1., 2.]), Some(&axes(&[1]))).is_err());
    }
}
