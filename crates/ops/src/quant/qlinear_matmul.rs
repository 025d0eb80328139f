//! QLinearMatMul (ONNX opsets 10, 21): quantized numpy matmul. The int8/uint8 operands minus
//! their zero points are multiplied in wrapping int32, then requantized with
//! `a_scale * b_scale / y_scale` (per tensor, per row of A, per column of B) and the output
//! zero point, rounding half to even. Scales are f32 (or, from opset 21, f16/bf16); float8
//! operands are not representable in millrace.
use super::common::{quant_range, requantize, scale_values, MatPlan};
use super::matmul_integer::{adjusted_operands, check_row_vector, infer_matmul_shape};
use crate::util::output;
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "QLinearMatMul";

#[derive(Clone, Debug, PartialEq)]
pub struct QLinearMatMul;

impl QLinearMatMul {
    pub fn from_onnx(_attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(QLinearMatMul))
    }
}

/// A scale's values and, per element of its operand's row/column layout, their index.
fn scale_param(
    p: &MatPlan,
    t: &Tensor,
    zp: &Tensor,
    rows: bool,
    what: &str,
) -> Result<(Vec<f64>, Vec<usize>), OpError> {
    let v = scale_values(NAME, t, what)?;
    if t.shape() != zp.shape() && !(t.len() == 1 && zp.len() == 1) {
        return Err(OpError::invalid(
            NAME,
            format!(
                "{what} shape {:?} differs from its zero point's {:?}",
                t.shape(),
                zp.shape()
            ),
        ));
    }
    if rows {
        check_row_vector(NAME, p, t.shape(), &v)?;
    }
    let idx = p.param_index(NAME, t.shape(), rows)?;
    Ok((v, idx))
}

impl Op for QLinearMatMul {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let shape = infer_matmul_shape(NAME, ctx.input(0)?, ctx.input(3)?)?;
        Ok(vec![ValueType {
            dtype: ctx.input(7)?.dtype,
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
        c.flops = (2 * k * y + 3 * y) as u64;
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let a = inputs.req(0)?;
        let a_scale = inputs.req(1)?;
        let a_zp = inputs.req(2)?;
        let b = inputs.req(3)?;
        let b_scale = inputs.req(4)?;
        let b_zp = inputs.req(5)?;
        let y_scale = inputs.req(6)?;
        let y_zp = inputs.req(7)?;
        let sd = a_scale.dtype();
        if b_scale.dtype() != sd || y_scale.dtype() != sd {
            return Err(OpError::invalid(NAME, "scales must share one dtype"));
        }
        let out = y_zp.dtype();
        let range = match out {
            DType::I8 | DType::U8 => quant_range(out),
            _ => None,
        }
        .ok_or_else(|| OpError::unsupported(NAME, format!("output dtype {out}")))?;
        let (p, av, bv) = adjusted_operands(NAME, a, b, Some(a_zp), Some(b_zp))?;
        let (sa, ia) = scale_param(&p, a_scale, a_zp, true, "a_scale")?;
        let (sb, ib) = scale_param(&p, b_scale, b_zp, false, "b_scale")?;
        if y_scale.len() != 1 || y_zp.len() != 1 {
            return Err(OpError::unsupported(
                NAME,
                "per-row or per-column output scale or zero point",
            ));
        }
        let sy = scale_values(NAME, y_scale, "y_scale")?[0];
        let zy = super::common::int_values(NAME, y_zp, "y_zero_point")?[0];
        let acc = super::common::int_matmul(&p, &av, &bv);
        let (m, n) = (p.m, p.n);
        let mut y = Vec::with_capacity(acc.len());
        for (e, &c) in acc.iter().enumerate() {
            let bi = e / (m * n).max(1);
            let i = (e / n.max(1)) % m.max(1);
            let j = e % n.max(1);
            let ja = ia.get(p.a_idx[bi] * m + i).copied().unwrap_or(0);
            let jb = ib.get(p.b_idx[bi] * n + j).copied().unwrap_or(0);
            let (Some(&s1), Some(&s2)) = (sa.get(ja), sb.get(jb)) else {
                return Err(OpError::invalid(NAME, "scale index out of range"));
            };
            let v = requantize(c, s1, s2, sy, sd, zy, range).ok_or_else(|| {
                OpError::unsupported(NAME, "result depends on the requantization precision")
            })?;
            y.push(v);
        }
        let t = match out {
            DType::I8 => output(NAME, p.out_shape, y.into_iter().map(|v| v as i8).collect())?,
            _ => output(NAME, p.out_shape, y.into_iter().map(|v| v as u8).collect())?,
        };
        Ok(vec![t])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onnx_example_uint8() {
        let a = Tensor::from_vec(vec![2, 4], vec![208u8, 236, 0, 238, 3, 214, 255, 29]).unwrap();
        let b = Tensor::from_vec(
            vec![4, 3],
            vec![152u8, 51, 244, 60, 26, 255, 0, 127, 246, 127, 254, 247],
        )
        .unwrap();
        let f = |v: f32| Tensor::from_vec(vec![1], vec![v]).unwrap();
        let z = |v: u8| Tensor::from_vec(vec![1], vec![v]).unwrap();
        let (sa, za, sb, zb, sy, zy) = (f(0.0066), z(113), f(0.00705), z(114), f(0.0107), z(118));
        let items = [
            Some(&a),
            Some(&sa),
            Some(&za),
            Some(&b),
            Some(&sb),
            Some(&zb),
            Some(&sy),
            Some(&zy),
        ];
        let y = QLinearMatMul.eval(&Inputs::new(NAME, &items)).unwrap();
        assert_eq!(y[0].shape(), &[2, 3]);
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[168, 115, 255, 1, 66, 151]);
    }

    #[test]
    fn per_row_and_per_column_scales() {
        let run = |a: Tensor, sa: Tensor, b: Tensor, sb: Tensor| {
            let za = Tensor::from_vec(sa.shape().to_vec(), vec![0u8; sa.len()]).unwrap();
            let zb = Tensor::from_vec(sb.shape().to_vec(), vec![0u8; sb.len()]).unwrap();
            let (sy, zy) = (Tensor::scalar(1.0f32), Tensor::scalar(0u8));
            let items = [
                Some(&a),
                Some(&sa),
                Some(&za),
                Some(&b),
                Some(&sb),
                Some(&zb),
                Some(&sy),
                Some(&zy),
            ];
            QLinearMatMul.eval(&Inputs::new(NAME, &items)).unwrap()[0]
                .as_slice::<u8>()
                .unwrap()
                .to_vec()
        };
        // Per column of B: C = [3, 3], scales [1, 2].
        let y = run(
            Tensor::from_vec(vec![1, 2], vec![1u8, 2]).unwrap(),
            Tensor::scalar(1.0f32),
            Tensor::from_vec(vec![2, 2], vec![1u8; 4]).unwrap(),
            Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap(),
        );
        assert_eq!(y, vec![3, 6]);
        // Per row of A: C = [[2], [4]], scales [1, 3].
        let y = run(
            Tensor::from_vec(vec![2, 1], vec![1u8, 2]).unwrap(),
            Tensor::from_vec(vec![2], vec![1.0f32, 3.0]).unwrap(),
            Tensor::from_vec(vec![1, 1], vec![2u8]).unwrap(),
            Tensor::scalar(1.0f32),
        );
        assert_eq!(y, vec![2, 12]);
    }
}
