//! ArgMin (ONNX opsets 1, 11, 12, 13): i64 index of the minimum along `axis` (first or last on ties).
use super::common::ArgReduce;
use millrace_ir::{Attributes, Op, OpError};
use std::sync::Arc;

/// Builder for `ArgMin`; the op itself is an [`ArgReduce`].
#[derive(Clone, Debug, PartialEq)]
pub struct ArgMin;

impl ArgMin {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(ArgReduce::parse(false, attrs)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_core::{DType, Tensor};
    use millrace_ir::{Attr, InferCtx, Inputs, ValueType};

    fn op(attrs: Vec<(&str, Attr)>) -> ArgReduce {
        let a = Attributes::new(
            "ArgMin",
            attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        );
        ArgReduce::parse(false, &a).unwrap()
    }

    fn run(op: &ArgReduce, x: &Tensor) -> Result<Tensor, OpError> {
        Ok(op.eval(&Inputs::new("ArgMin", &[Some(x)]))?.remove(0))
    }

    type Case = (i64, i64, i64, &'static [usize], &'static [i64]);

    #[test]
    fn cases() {
        // Ties at both ends: [[1, 5, 5, 1], [2, 2, 0, 9]].
        let x = Tensor::from_vec(vec![2, 4], vec![1f32, 5., 5., 1., 2., 2., 0., 9.]).unwrap();
        let want: [Case; 4] = if false {
            [
                (-1, 1, 0, &[2, 1], &[1, 3]),
                (-1, 1, 1, &[2, 1], &[2, 3]),
                (0, 0, 0, &[4], &[1, 0, 0, 1]),
                (1, 0, 1, &[2], &[2, 3]),
            ]
        } else {
            [
                (-1, 1, 0, &[2, 1], &[0, 2]),
                (-1, 1, 1, &[2, 1], &[3, 2]),
                (0, 0, 0, &[4], &[0, 1, 1, 0]),
                (1, 0, 1, &[2], &[3, 2]),
            ]
        };
        for (axis, keep, last, shape, idx) in want {
            let o = op(vec![
                ("axis", Attr::Int(axis)),
                ("keepdims", Attr::Int(keep)),
                ("select_last_index", Attr::Int(last)),
            ]);
            let y = run(&o, &x).unwrap();
            assert_eq!(y.shape(), shape, "axis {axis} keep {keep} last {last}");
            assert_eq!(
                y.as_slice::<i64>().unwrap(),
                idx,
                "axis {axis} keep {keep} last {last}"
            );
        }
        let xi = Tensor::from_vec(vec![3], vec![3i32, -7, 8]).unwrap();
        let y = run(&op(vec![]), &xi).unwrap();
        assert_eq!(y.as_slice::<i64>().unwrap(), &[if false { 2 } else { 1 }]);
    }

    #[test]
    fn shapes_and_errors() {
        let o = op(vec![("axis", Attr::Int(2))]);
        let x = Tensor::from_vec(vec![2], vec![1f32, 2.]).unwrap();
        assert!(run(&o, &x).is_err());
        let e = Tensor::from_vec(vec![2, 0], Vec::<f32>::new()).unwrap();
        assert!(run(&op(vec![("axis", Attr::Int(1))]), &e).is_err());
        let y = run(&op(vec![]), &e).unwrap();
        assert_eq!(y.shape(), &[1, 0]);
        let types = [Some(ValueType::concrete(DType::F32, &[5, 3]))];
        let t = op(vec![("keepdims", Attr::Int(0))])
            .infer(&InferCtx::new("ArgMin", &types, &[None]))
            .unwrap();
        assert_eq!(t[0], ValueType::concrete(DType::I64, &[3]));
    }
}
