//! ReduceLogSumExp (ONNX opsets 1, 11, 13, 18): log of the sum of exponentials over the given axes (stable).
use super::common::{Reduce, ReduceKind};
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

/// Builder for `ReduceLogSumExp`; the op itself is a [`Reduce`] with kind [`ReduceKind::LogSumExp`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceLogSumExp;

impl ReduceLogSumExp {
    pub fn from_onnx(attrs: &Attributes, opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Reduce::from_onnx(ReduceKind::LogSumExp, attrs, opset)
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::testing::*;
    use super::*;
    use millrace_core::Tensor;
    use millrace_ir::Attr;

    const K: ReduceKind = ReduceKind::LogSumExp;

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
        let x = t(&[2, 2], &[1., 2., 1000., 1000.]);
        let op = build(K, 13, vec![("axes", Attr::Ints(vec![1]))]);
        let want = [(1f64.exp() + 2f64.exp()).ln() as f32, 1000. + 2f32.ln()];
        close(
            run(&op, &x, None).unwrap().as_slice::<f32>().unwrap(),
            &want,
        );
        let op = build(K, 18, vec![]);
        let y = run(&op, &t(&[0], &[]), None).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[f32::NEG_INFINITY]);
        let y = run(&op, &t(&[2], &[f32::NEG_INFINITY; 2]), None).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[f32::NEG_INFINITY]);
    }

    #[test]
    fn errors() {
        let op = build(K, 18, vec![]);
        assert!(run(&op, &t(&[2], &[1., 2.]), Some(&axes(&[1]))).is_err());
    }
}
