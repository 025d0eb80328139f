//! Helpers shared by the loss family: float inputs widened to f64, outputs rounded back
//! to the input's float dtype, the `reduction` attribute, and the negative-log-likelihood
//! core shared by NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.
use crate::util::output;
use millrace_core::{bf16, f16, DType, Dim, Tensor, TensorData};
use millrace_ir::{Attributes, InferCtx, OpError, ValueType};

/// The elements of a float tensor (f32, f64, f16, bf16) widened to f64; any other dtype
/// is unsupported.
pub(crate) fn float_vals(op: &str, t: &Tensor) -> Result<Vec<f64>, OpError> {
    match t.data() {
        TensorData::F32(v) => Ok(v.iter().map(|&x| x as f64).collect()),
        TensorData::F64(v) => Ok(v.clone()),
        TensorData::F16(v) => Ok(v.iter().map(|x| x.to_f64()).collect()),
        TensorData::BF16(v) => Ok(v.iter().map(|x| x.to_f64()).collect()),
        d => Err(OpError::unsupported(op, format!("dtype {}", d.dtype()))),
    }
}

/// Rounds one f64 to `dtype` and back (the value a tensor of that dtype would hold).
pub(crate) fn round_to(dtype: DType, v: f64) -> f64 {
    match dtype {
        DType::F32 => v as f32 as f64,
        DType::F16 => f16::from_f64(v).to_f64(),
        DType::BF16 => bf16::from_f64(v).to_f64(),
        _ => v,
    }
}

/// A tensor of float `dtype` from f64 values (each rounded once).
pub(crate) fn float_tensor(
    op: &str,
    dtype: DType,
    shape: Vec<usize>,
    v: Vec<f64>,
) -> Result<Tensor, OpError> {
    match dtype {
        DType::F32 => output(op, shape, v.iter().map(|&x| x as f32).collect()),
        DType::F64 => output(op, shape, v),
        DType::F16 => output(op, shape, v.iter().map(|&x| f16::from_f64(x)).collect()),
        DType::BF16 => output(op, shape, v.iter().map(|&x| bf16::from_f64(x)).collect()),
        d => Err(OpError::unsupported(op, format!("dtype {d}"))),
    }
}

/// Checks that a dtype is a float dtype, for shape inference.
pub(crate) fn check_float(op: &str, t: &ValueType) -> Result<(), OpError> {
    match t.dtype {
        Some(d) if !d.is_float() => Err(OpError::invalid(
            op,
            format!("expected a float input, got {d}"),
        )),
        _ => Ok(()),
    }
}

/// The `reduction` attribute of the loss ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossReduction {
    None,
    Sum,
    Mean,
}

impl LossReduction {
    pub(crate) fn parse(op: &str, attrs: &Attributes) -> Result<LossReduction, OpError> {
        match attrs.string_or("reduction", "mean")?.as_str() {
            "none" => Ok(LossReduction::None),
            "sum" => Ok(LossReduction::Sum),
            "mean" => Ok(LossReduction::Mean),
            other => Err(OpError::attribute(
                op,
                "reduction",
                format!("unknown value {other:?}"),
            )),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            LossReduction::None => "none",
            LossReduction::Sum => "sum",
            LossReduction::Mean => "mean",
        }
    }
}

/// Output type of a loss: the target's shape for `none`, else a scalar; the dtype of the
/// first input.
pub(crate) fn infer_loss(
    op: &str,
    ctx: &InferCtx<'_>,
    reduction: LossReduction,
) -> Result<ValueType, OpError> {
    let x = ctx.input(0)?;
    let t = ctx.input(1)?;
    check_float(op, x)?;
    let shape: Option<Vec<Dim>> = match reduction {
        LossReduction::None => match (&t.shape, &x.shape) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(xs)) if xs.len() >= 2 => {
                let mut s = vec![xs[0].clone()];
                s.extend(xs[2..].iter().cloned());
                Some(s)
            }
            _ => None,
        },
        _ => Some(vec![]),
    };
    Ok(ValueType {
        dtype: x.dtype,
        shape,
    })
}

/// Negative log likelihood over `logp` of shape `[N, C, d1..dk]` (f64 values) with class
/// indices `target` of shape `[N, d1..dk]`: per-element loss `-logp[n, c, d] * w[c]` (zero
/// where the target is `ignore`), then reduced. `mean` divides by the sum of the weights
/// of the elements not ignored (their count without `weight`). Returns the output shape
/// and the values, in f64 (the caller rounds to the output dtype).
#[allow(clippy::too_many_arguments)]
pub(crate) fn nll(
    op: &str,
    logp: &[f64],
    xshape: &[usize],
    target: &[i64],
    tshape: &[usize],
    weight: Option<&[f64]>,
    ignore: Option<i64>,
    reduction: LossReduction,
) -> Result<(Vec<usize>, Vec<f64>), OpError> {
    if xshape.len() < 2 {
        return Err(OpError::invalid(
            op,
            format!("input must have rank >= 2, got shape {xshape:?}"),
        ));
    }
    let (n, c) = (xshape[0], xshape[1]);
    let mut want_t = vec![n];
    want_t.extend_from_slice(&xshape[2..]);
    if tshape != want_t.as_slice() {
        return Err(OpError::invalid(
            op,
            format!("target shape {tshape:?} does not match input shape {xshape:?}"),
        ));
    }
    if let Some(w) = weight {
        if w.len() != c {
            return Err(OpError::invalid(
                op,
                format!("weight has {} elements, expected C = {c}", w.len()),
            ));
        }
    }
    let d: usize = xshape[2..].iter().product();
    if logp.len() != n * c * d || target.len() != n * d {
        return Err(OpError::invalid(
            op,
            "input sizes do not match their shapes",
        ));
    }
    let mut loss = vec![0.0f64; n * d];
    let mut wsum = 0.0f64;
    for i in 0..n {
        for j in 0..d {
            let t = target[i * d + j];
            if Some(t) == ignore {
                continue;
            }
            let cls = usize::try_from(t).ok().filter(|&k| k < c).ok_or_else(|| {
                OpError::invalid(op, format!("target value {t} is out of range [0, {c})"))
            })?;
            let w = weight.map_or(1.0, |w| w[cls]);
            loss[i * d + j] = -logp[(i * c + cls) * d + j] * w;
            wsum += w;
        }
    }
    Ok(match reduction {
        LossReduction::None => (tshape.to_vec(), loss),
        LossReduction::Sum => (vec![], vec![loss.iter().sum()]),
        LossReduction::Mean => (vec![], vec![loss.iter().sum::<f64>() / wsum]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_spec_examples() {
        // Examples 1-3 of the ONNX spec.
        let x = [1.0, 2.0, 2.0, 2.0, 3.0, 2.0, 0.0, 1.0, 2.0, 2.0, 1.0, 2.0];
        let t = [2i64, 1, 0, 2];
        let w = [0.2, 0.3, 0.1];
        let (s, v) = nll(
            "T",
            &x,
            &[2, 3, 2],
            &t,
            &[2, 2],
            None,
            None,
            LossReduction::None,
        )
        .unwrap();
        assert_eq!(s, vec![2, 2]);
        assert_eq!(v, vec![-3.0, -2.0, -0.0, -2.0]);
        let (s, v) = nll(
            "T",
            &x,
            &[2, 3, 2],
            &t,
            &[2, 2],
            Some(&w),
            None,
            LossReduction::Sum,
        )
        .unwrap();
        assert!(s.is_empty());
        assert!((v[0] + 1.1).abs() < 1e-12);
        let (_, v) = nll(
            "T",
            &x,
            &[2, 3, 2],
            &t,
            &[2, 2],
            Some(&w),
            None,
            LossReduction::Mean,
        )
        .unwrap();
        assert!((v[0] + 1.1 / 0.7).abs() < 1e-12);
    }

    #[test]
    fn nll_ignore_index_and_bad_targets() {
        let x = [1.0, 2.0, 3.0, 4.0];
        // N=2, C=2; second sample ignored: mean over the one remaining.
        let (_, v) = nll(
            "T",
            &x,
            &[2, 2],
            &[1, -1],
            &[2],
            None,
            Some(-1),
            LossReduction::Mean,
        )
        .unwrap();
        assert_eq!(v, vec![-2.0]);
        assert!(nll(
            "T",
            &x,
            &[2, 2],
            &[2, 0],
            &[2],
            None,
            None,
            LossReduction::Sum
        )
        .is_err());
        assert!(nll("T", &x, &[2, 2], &[0], &[1], None, None, LossReduction::Sum).is_err());
    }
}
