//! MatMulInteger (ONNX opset 10): numpy matmul of int8/uint8 operands minus their zero
//! points (per tensor, per row of A, per column of B), accumulated in wrapping int32.
use super::common::{int_matmul, int_tensor, int_values, subtract_zp, zero_point_values, MatPlan};
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "MatMulInteger";

#[derive(Clone, Debug, PartialEq)]
pub struct MatMulInteger;

impl MatMulInteger {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(MatMulInteger))
    }
}

/// Values of an 8-bit quantized operand.
pub(crate) fn int8_values(op: &str, t: &Tensor, what: &str) -> Result<Vec<i64>, OpError> {
    if !matches!(t.dtype(), DType::I8 | DType::U8) {
        return Err(OpError::unsupported(
            op,
            format!("{what} of dtype {}", t.dtype()),
        ));
    }
    int_values(op, t, what)
}

/// Zero-point-adjusted operands of a matrix product: (plan, A - a_zp, B - b_zp).
pub(crate) fn adjusted_operands(
    op: &str,
    a: &Tensor,
    b: &Tensor,
    a_zp: Option<&Tensor>,
    b_zp: Option<&Tensor>,
) -> Result<(MatPlan, Vec<i64>, Vec<i64>), OpError> {
    let p = MatPlan::new(op, a.shape(), b.shape())?;
    let mut av = int8_values(op, a, "A")?;
    let mut bv = int8_values(op, b, "B")?;
    if let Some(z) = a_zp {
        let zv = zero_point_values(op, z, a.dtype(), "A's zero point")?;
        check_row_vector(op, &p, z.shape(), &zv)?;
        let idx = p.param_index(op, z.shape(), true)?;
        subtract_zp(&mut av, &zv, &idx, true, p.k, p.k);
    }
    if let Some(z) = b_zp {
        let zv = zero_point_values(op, z, b.dtype(), "B's zero point")?;
        let idx = p.param_index(op, z.shape(), false)?;
        subtract_zp(&mut bv, &zv, &idx, false, p.k, p.n);
    }
    Ok((p, av, bv))
}

/// A 1-D per-row parameter of a square A reads per row by the spec but per column by numpy
/// broadcasting (the ONNX reference); refuse it unless its values are all equal.
pub(crate) fn check_row_vector<T: PartialEq>(
    op: &str,
    p: &MatPlan,
    shape: &[usize],
    v: &[T],
) -> Result<(), OpError> {
    if shape.len() == 1 && v.len() > 1 && p.m == p.k && v.iter().any(|x| *x != v[0]) {
        return Err(OpError::unsupported(
            op,
            "1-D per-row parameter of a square matrix (ambiguous)",
        ));
    }
    Ok(())
}

/// Output shape of a numpy matmul for shape inference (None where the ranks are unknown).
pub(crate) fn infer_matmul_shape(
    op: &str,
    a: &ValueType,
    b: &ValueType,
) -> Result<Option<Vec<Dim>>, OpError> {
    let (Some(sa), Some(sb)) = (&a.shape, &b.shape) else {
        return Ok(None);
    };
    if sa.is_empty() || sb.is_empty() {
        return Err(OpError::invalid(op, "operands must have rank >= 1"));
    }
    let ab = if sa.len() > 2 {
        &sa[..sa.len() - 2]
    } else {
        &[][..]
    };
    let bb = if sb.len() > 2 {
        &sb[..sb.len() - 2]
    } else {
        &[][..]
    };
    let mut shape = crate::util::broadcast_dims(op, &[ab, bb])?;
    if sa.len() > 1 {
        shape.push(sa[sa.len() - 2].clone());
    }
    if sb.len() > 1 {
        shape.push(sb[sb.len() - 1].clone());
    }
    Ok(Some(shape))
}

impl Op for MatMulInteger {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let shape = infer_matmul_shape(NAME, ctx.input(0)?, ctx.input(1)?)?;
        Ok(vec![ValueType {
            dtype: Some(DType::I32),
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let mut c = Cost::movement(inputs, outputs);
        let k = inputs
            .first()
            .and_then(|t| t.concrete_shape())
            .and_then(|s| s.last().copied())
            .unwrap_or(0);
        let y = outputs.first().and_then(|t| t.numel()).unwrap_or(0);
        c.flops = (2 * k * y) as u64;
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let (p, av, bv) = adjusted_operands(
            NAME,
            inputs.req(0)?,
            inputs.req(1)?,
            inputs.opt(2),
            inputs.opt(3),
        )?;
        let y = int_matmul(&p, &av, &bv);
        Ok(vec![int_tensor(NAME, DType::I32, p.out_shape, y)?])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onnx_example() {
        let a = Tensor::from_vec(vec![4, 3], vec![11u8, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0]).unwrap();
        let b = Tensor::from_vec(vec![3, 2], vec![1u8, 4, 2, 5, 3, 6]).unwrap();
        let az = Tensor::from_vec(vec![1], vec![12u8]).unwrap();
        let bz = Tensor::from_vec(vec![1], vec![0u8]).unwrap();
        let y = MatMulInteger
            .eval(&Inputs::new(
                NAME,
                &[Some(&a), Some(&b), Some(&az), Some(&bz)],
            ))
            .unwrap();
        assert_eq!(y[0].shape(), &[4, 2]);
        assert_eq!(
            y[0].as_slice::<i32>().unwrap(),
            &[-38, -83, -44, -98, -50, -113, -56, -128]
        );
    }

    #[test]
    fn per_row_and_column_zero_points() {
        let a = Tensor::from_vec(vec![2, 3], vec![1i8, 2, 3, 4, 5, 6]).unwrap();
        let b = Tensor::from_vec(vec![3, 2], vec![1i8, 0, 0, 1, 1, 1]).unwrap();
        let az = Tensor::from_vec(vec![2], vec![1i8, 4]).unwrap();
        let bz = Tensor::from_vec(vec![2], vec![0i8, 1]).unwrap();
        // A - az (per row) = [[0, 1, 2], [0, 1, 2]]; B - bz (per column) = [[1, -1], [0, 0], [1, 0]].
        let y = MatMulInteger
            .eval(&Inputs::new(
                NAME,
                &[Some(&a), Some(&b), Some(&az), Some(&bz)],
            ))
            .unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[2, 0, 2, 0]);
    }

    #[test]
    fn square_per_row_zero_point_is_ambiguous() {
        let a = Tensor::from_vec(vec![2, 2], vec![1u8, 2, 3, 4]).unwrap();
        let az = Tensor::from_vec(vec![2], vec![1u8, 3]).unwrap();
        assert!(MatMulInteger
            .eval(&Inputs::new(NAME, &[Some(&a), Some(&a), Some(&az)]))
            .unwrap_err()
            .is_unsupported());
    }
}
