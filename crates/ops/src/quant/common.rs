//! Helpers shared by the quantization ops: exact rounding to narrow float types, integer
//! ranges, scale/zero-point layouts (per tensor, per axis, blocked, per row/column), integer
//! matrix products and convolutions, and requantization.
use crate::nn::common::{int_out, prod, Resolved, Window};
use crate::util::{broadcast_index, output};
use millrace_core::{bf16, f16, DType, Tensor};
use millrace_ir::{Attributes, OpError};
use millrace_kernels::conv::{im2col_nd, GeomNd};

/// Rounds `v` to the nearest value of a binary float format with `mant` explicit mantissa
/// bits, minimum normal exponent `emin` and largest finite value `max` (ties to even,
/// overflow to infinity). One rounding step from the exact `v`.
fn round_format(v: f64, mant: i32, emin: i32, max: f64) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    let a = v.abs();
    // floor(log2(a)) from the bits (a is a normal f64 here for any value we meet; treat
    // f64 subnormals through the emin clamp, which makes the quantum far larger).
    let e = (((a.to_bits() >> 52) & 0x7ff) as i32 - 1023).max(emin);
    let q = 2f64.powi(e - mant);
    let r = (a / q).round_ties_even() * q;
    let r = if r > max { f64::INFINITY } else { r };
    r.copysign(v)
}

/// `v` rounded (once, ties to even) to float `dtype`, returned exactly as f64.
pub fn round_to(dtype: DType, v: f64) -> f64 {
    match dtype {
        DType::F32 => v as f32 as f64,
        DType::F16 => round_format(v, 10, -14, 65504.0),
        DType::BF16 => round_format(v, 7, -126, bf16::MAX.to_f64()),
        _ => v,
    }
}

/// Same value, treating all NaNs as equal (for comparing candidate results).
pub fn same_f64(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

/// Builds a float tensor of `dtype` from values already representable in it.
pub fn float_tensor(
    op: &str,
    dtype: DType,
    shape: Vec<usize>,
    v: Vec<f64>,
) -> Result<Tensor, OpError> {
    match dtype {
        DType::F32 => output(op, shape, v.into_iter().map(|x| x as f32).collect()),
        DType::F64 => output(op, shape, v),
        DType::F16 => output(op, shape, v.into_iter().map(f16::from_f64).collect()),
        DType::BF16 => output(op, shape, v.into_iter().map(bf16::from_f64).collect()),
        d => Err(OpError::unsupported(op, format!("output dtype {d}"))),
    }
}

/// Builds an integer tensor of `dtype` from values already in its range.
pub fn int_tensor(
    op: &str,
    dtype: DType,
    shape: Vec<usize>,
    v: Vec<i64>,
) -> Result<Tensor, OpError> {
    int_out(op, dtype, shape, v)
}

/// An ONNX dtype code attribute (0 = unset) as a millrace dtype; codes millrace cannot
/// represent are unsupported.
pub fn dtype_attr(op: &str, attrs: &Attributes, name: &str) -> Result<Option<DType>, OpError> {
    match attrs.int_or(name, 0)? {
        0 => Ok(None),
        code => match i32::try_from(code).ok().and_then(DType::from_onnx_code) {
            Some(d) => Ok(Some(d)),
            None => Err(OpError::unsupported(
                op,
                format!("{name} {code} (not representable)"),
            )),
        },
    }
}

/// The saturation range of an integer quantized type.
pub fn quant_range(dtype: DType) -> Option<(i64, i64)> {
    Some(match dtype {
        DType::U8 => (0, 255),
        DType::I8 => (-128, 127),
        DType::U16 => (0, 65535),
        DType::I16 => (-32768, 32767),
        _ => return None,
    })
}

/// Scale values as f64 (exact), requiring a float dtype.
pub fn scale_values(op: &str, t: &Tensor, what: &str) -> Result<Vec<f64>, OpError> {
    if !matches!(t.dtype(), DType::F32 | DType::F16 | DType::BF16) {
        return Err(OpError::unsupported(
            op,
            format!("{what} of dtype {}", t.dtype()),
        ));
    }
    t.to_f64_vec().map_err(|e| OpError::tensor(op, e))
}

/// Integer values of a quantized tensor (8/16/32-bit integers) as i64.
pub fn int_values(op: &str, t: &Tensor, what: &str) -> Result<Vec<i64>, OpError> {
    if !matches!(
        t.dtype(),
        DType::I8 | DType::U8 | DType::I16 | DType::U16 | DType::I32
    ) {
        return Err(OpError::unsupported(
            op,
            format!("{what} of dtype {}", t.dtype()),
        ));
    }
    t.to_i64_vec().map_err(|e| OpError::tensor(op, e))
}

/// A zero point's values, checking its dtype matches `want`.
pub fn zero_point_values(
    op: &str,
    zp: &Tensor,
    want: DType,
    what: &str,
) -> Result<Vec<i64>, OpError> {
    if zp.dtype() != want {
        return Err(OpError::invalid(
            op,
            format!("{what} has dtype {} but must be {want}", zp.dtype()),
        ));
    }
    int_values(op, zp, what)
}

/// For each element of a tensor of shape `x`, the flat index of its scale / zero point in a
/// parameter of shape `p`, per QuantizeLinear / DequantizeLinear: per tensor (one element),
/// per axis (1-D of length `x[axis]`), or blocked (`block > 0`: the shape of `x` with
/// `ceil(x[axis] / block)` along `axis`). `axis` is `None` where the op has no such attribute.
pub fn qdq_param_index(
    op: &str,
    x: &[usize],
    p: &[usize],
    axis: Option<i64>,
    block: i64,
) -> Result<Vec<usize>, OpError> {
    let n = prod(x);
    if prod(p) == 1 {
        return Ok(vec![0; n]);
    }
    let Some(axis) = axis else {
        return Err(OpError::invalid(
            op,
            format!("scale of shape {p:?} must be a scalar at this opset"),
        ));
    };
    let ax = crate::util::normalize_axis(op, axis, x.len())?;
    if x.is_empty() {
        return Err(OpError::invalid(
            op,
            format!("scale of shape {p:?} for a scalar input"),
        ));
    }
    let d = x[ax];
    let inner = prod(&x[ax + 1..]);
    if block < 0 {
        return Err(OpError::attribute(op, "block_size", "must not be negative"));
    }
    if block == 0 {
        if p.len() != 1 || p[0] != d {
            return Err(OpError::invalid(
                op,
                format!("per-axis scale of shape {p:?} for input {x:?} along axis {ax}"),
            ));
        }
        return Ok((0..n).map(|i| (i / inner.max(1)) % d.max(1)).collect());
    }
    let b = block as usize;
    let nb = d.div_ceil(b);
    let ok = p.len() == x.len()
        && p.iter()
            .zip(x)
            .enumerate()
            .all(|(i, (&pd, &xd))| if i == ax { pd == nb } else { pd == xd });
    if !ok {
        return Err(OpError::invalid(
            op,
            format!("blocked scale of shape {p:?} for input {x:?}, axis {ax}, block {b}"),
        ));
    }
    let mut idx = Vec::with_capacity(n);
    let inner1 = inner.max(1);
    for i in 0..n {
        let nn = i % inner1;
        let a = (i / inner1) % d.max(1);
        let o = i / (inner1 * d.max(1));
        idx.push((o * nb + a / b) * inner + nn);
    }
    Ok(idx)
}

/// Checks a zero point's shape against its scale's: equal, or both one element.
pub fn check_pair_shapes(op: &str, scale: &Tensor, zp: &Tensor) -> Result<(), OpError> {
    if scale.shape() == zp.shape() || (scale.len() == 1 && zp.len() == 1) {
        Ok(())
    } else {
        Err(OpError::invalid(
            op,
            format!(
                "zero point shape {:?} differs from scale shape {:?}",
                zp.shape(),
                scale.shape()
            ),
        ))
    }
}

/// Shapes of one numpy-style matrix product (1-D operands promoted, batch dims broadcast).
pub struct MatPlan {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// The operands' shapes after promotion of 1-D operands.
    pub a2: Vec<usize>,
    pub b2: Vec<usize>,
    /// For each output batch, the A and B batch numbers.
    pub a_idx: Vec<usize>,
    pub b_idx: Vec<usize>,
    pub out_shape: Vec<usize>,
}

impl MatPlan {
    pub fn new(op: &str, a: &[usize], b: &[usize]) -> Result<MatPlan, OpError> {
        if a.is_empty() || b.is_empty() {
            return Err(OpError::invalid(op, "operands must have rank >= 1"));
        }
        let a2: Vec<usize> = if a.len() == 1 {
            vec![1, a[0]]
        } else {
            a.to_vec()
        };
        let b2: Vec<usize> = if b.len() == 1 {
            vec![b[0], 1]
        } else {
            b.to_vec()
        };
        let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
        let (kb, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
        if k != kb {
            return Err(OpError::invalid(
                op,
                format!("inner dimensions differ: {a:?} x {b:?}"),
            ));
        }
        let ab = &a2[..a2.len() - 2];
        let bb = &b2[..b2.len() - 2];
        let batch = crate::util::broadcast_all(op, &[ab, bb])?;
        let a_idx = broadcast_index(&batch, ab);
        let b_idx = broadcast_index(&batch, bb);
        let mut out_shape = batch.clone();
        if a.len() > 1 {
            out_shape.push(m);
        }
        if b.len() > 1 {
            out_shape.push(n);
        }
        Ok(MatPlan {
            m,
            k,
            n,
            a2,
            b2,
            a_idx,
            b_idx,
            out_shape,
        })
    }

    /// Number of output matrices.
    pub fn batches(&self) -> usize {
        self.a_idx.len()
    }

    /// Index map of a per-row parameter of A (`rows`: true) or per-column parameter of B
    /// (`rows`: false), expanded to A's shape with K replaced by 1 (`[.., M, 1]`) or to B's
    /// shape with K replaced by 1 (`[.., 1, N]`). Accepts one element (per tensor), a 1-D
    /// vector of length M (rows) or N (columns), or an N-D tensor broadcastable to that
    /// shape; anything else is unsupported.
    pub fn param_index(&self, op: &str, p: &[usize], rows: bool) -> Result<Vec<usize>, OpError> {
        let mut target = if rows {
            self.a2.clone()
        } else {
            self.b2.clone()
        };
        let r = target.len();
        if rows {
            target[r - 1] = 1;
        } else {
            target[r - 2] = 1;
        }
        let n = prod(&target);
        if prod(p) == 1 {
            return Ok(vec![0; n]);
        }
        let shaped: Vec<usize> = if p.len() == 1 {
            let want = if rows { self.m } else { self.n };
            if p[0] != want {
                return Err(OpError::unsupported(
                    op,
                    format!("parameter of shape {p:?} for operand of shape {target:?}"),
                ));
            }
            if rows {
                vec![want, 1]
            } else {
                vec![1, want]
            }
        } else {
            p.to_vec()
        };
        let fits = shaped.len() <= r
            && shaped
                .iter()
                .rev()
                .zip(target.iter().rev())
                .all(|(&s, &t)| s == t || s == 1);
        if !fits {
            return Err(OpError::unsupported(
                op,
                format!("parameter of shape {p:?} for operand of shape {target:?}"),
            ));
        }
        Ok(broadcast_index(&target, &shaped))
    }
}

/// Subtracts an expanded zero point from a matrix operand: `rows` selects A (one value per
/// row: index `i / k`) or B (one per column).
pub fn subtract_zp(vals: &mut [i64], zp: &[i64], idx: &[usize], rows: bool, k: usize, cols: usize) {
    if zp.is_empty() {
        return;
    }
    for (i, v) in vals.iter_mut().enumerate() {
        let j = if rows {
            i / k.max(1)
        } else {
            // B is [.., K, N]: the parameter is [.., 1, N].
            let batch = i / (k * cols).max(1);
            batch * cols + i % cols.max(1)
        };
        if let Some(&z) = idx.get(j).and_then(|&t| zp.get(t)) {
            *v -= z;
        }
    }
}

/// Integer matrix product with 32-bit wrapping accumulation; returns one i64 per output
/// element holding the wrapped i32 value.
pub fn int_matmul(p: &MatPlan, a: &[i64], b: &[i64]) -> Vec<i64> {
    let (m, k, n) = (p.m, p.k, p.n);
    let mut y = vec![0i64; p.batches() * m * n];
    if m * n == 0 {
        return y;
    }
    for (bi, yb) in y.chunks_mut(m * n).enumerate() {
        let (ia, ib) = (p.a_idx[bi], p.b_idx[bi]);
        let am = &a[ia * m * k..(ia + 1) * m * k];
        let bm = &b[ib * k * n..(ib + 1) * k * n];
        for i in 0..m {
            let row = &mut yb[i * n..(i + 1) * n];
            for kk in 0..k {
                let av = am[i * k + kk] as i32;
                let brow = &bm[kk * n..(kk + 1) * n];
                for (c, &bv) in row.iter_mut().zip(brow) {
                    *c = (*c as i32).wrapping_add(av.wrapping_mul(bv as i32)) as i64;
                }
            }
        }
    }
    y
}

/// Checks the ints of a whole conv: `x` is N x C x D..., `w` is M x C/group x K...;
/// returns (n, c, m) and the resolved window.
pub fn conv_plan(
    op: &str,
    window: &Window,
    group: usize,
    x: &[usize],
    w: &[usize],
) -> Result<(usize, usize, usize, Resolved), OpError> {
    if x.len() < 3 {
        return Err(OpError::invalid(
            op,
            format!("input must be N x C x D1..., got shape {x:?}"),
        ));
    }
    if w.len() != x.len() {
        return Err(OpError::invalid(
            op,
            format!("weight shape {w:?} does not match input rank {}", x.len()),
        ));
    }
    let (n, c, m) = (x[0], x[1], w[0]);
    if w[1].checked_mul(group) != Some(c) || m % group != 0 {
        return Err(OpError::invalid(
            op,
            format!("weights {w:?} do not fit input {x:?} with group {group}"),
        ));
    }
    let r = window.resolve(op, &x[2..], Some(&w[2..]))?;
    Ok((n, c, m, r))
}

/// Grouped N-d integer convolution of zero-point-adjusted values (padding contributes 0),
/// with 32-bit wrapping accumulation. `x` is N x C x D..., `w` is M x C/group x K...
pub fn int_conv(
    x: &[i64],
    w: &[i64],
    dims: (usize, usize, usize),
    group: usize,
    input: &[usize],
    r: &Resolved,
) -> Vec<i64> {
    let (n, c, m) = dims;
    let in_plane = prod(input);
    let out_plane = prod(&r.output);
    let kk = prod(&r.kernel);
    let (cg, mg) = (c / group.max(1), m / group.max(1));
    let krows = cg * kk;
    let mut y = vec![0i64; n * m * out_plane];
    if y.is_empty() {
        return y;
    }
    let geom = GeomNd {
        c: cg,
        input: input.to_vec(),
        kernel: r.kernel.clone(),
        strides: r.strides.clone(),
        dilations: r.dilations.clone(),
        pads_begin: r.pads_begin.clone(),
        output: r.output.clone(),
    };
    let mut col = vec![0i64; krows * out_plane];
    for b in 0..n {
        for g in 0..group {
            let xg = &x[(b * c + g * cg) * in_plane..(b * c + (g + 1) * cg) * in_plane];
            im2col_nd(xg, &geom, 0i64, &mut col);
            for oc in 0..mg {
                let ch = g * mg + oc;
                let wr = &w[ch * krows..(ch + 1) * krows];
                let out = &mut y[(b * m + ch) * out_plane..(b * m + ch + 1) * out_plane];
                for (kr, &wv) in wr.iter().enumerate() {
                    let wv = wv as i32;
                    if wv == 0 {
                        continue;
                    }
                    let crow = &col[kr * out_plane..(kr + 1) * out_plane];
                    for (o, &cv) in out.iter_mut().zip(crow) {
                        *o = (*o as i32).wrapping_add(wv.wrapping_mul(cv as i32)) as i64;
                    }
                }
            }
        }
    }
    y
}

/// Requantizes one 32-bit accumulator: `acc * (s_in * s_w / s_y) + zp`, rounded half to
/// even and saturated to `[lo, hi]`. The result must not depend on the precision of the
/// arithmetic: it is computed exactly (f64), the way ONNX Runtime does (f32 multiplier and
/// product), and the way the ONNX reference does (multiplier in the scales' dtype, product in
/// f64); any disagreement, or a NaN, is `None`.
pub fn requantize(
    acc: i64,
    s_in: f64,
    s_w: f64,
    s_y: f64,
    scale_dtype: DType,
    zp: i64,
    (lo, hi): (i64, i64),
) -> Option<i64> {
    let fin = |v: f64| -> Option<i64> {
        if v.is_nan() {
            return None;
        }
        let r = v.round_ties_even() + zp as f64;
        Some(r.clamp(lo as f64, hi as f64) as i64)
    };
    let exact = fin(acc as f64 * (s_in * s_w / s_y))?;
    let m32 = ((s_in as f32) * (s_w as f32)) / (s_y as f32);
    let ort = fin(((acc as f32) * m32) as f64)?;
    let mref = round_to(scale_dtype, round_to(scale_dtype, s_in * s_w) / s_y);
    let refv = fin(acc as f64 * round_to(scale_dtype, mref))?;
    (exact == ort && exact == refv).then_some(exact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_half_and_bfloat() {
        // 1 + 2^-11 is halfway between 1 and the next f16 (1 + 2^-10): ties to even.
        assert_eq!(round_to(DType::F16, 1.0 + 2f64.powi(-11)), 1.0);
        assert_eq!(
            round_to(DType::F16, 1.0 + 3.0 * 2f64.powi(-11)),
            1.0 + 2.0 * 2f64.powi(-10)
        );
        assert_eq!(round_to(DType::F16, 65519.0), 65504.0);
        assert_eq!(round_to(DType::F16, 65520.0), f64::INFINITY);
        assert_eq!(round_to(DType::F16, -1e-8), -0.0);
        // Subnormal f16: quantum 2^-24.
        assert_eq!(round_to(DType::F16, 3.0 * 2f64.powi(-25)), 2f64.powi(-23));
        assert_eq!(round_to(DType::BF16, 1.0 + 2f64.powi(-8)), 1.0);
        assert_eq!(round_to(DType::F32, 0.1), 0.1f32 as f64);
    }

    #[test]
    fn per_axis_and_blocked_indices() {
        assert_eq!(
            qdq_param_index("Q", &[2, 3], &[3], Some(1), 0).unwrap(),
            vec![0, 1, 2, 0, 1, 2]
        );
        assert_eq!(
            qdq_param_index("Q", &[2, 3], &[2], Some(0), 0).unwrap(),
            vec![0, 0, 0, 1, 1, 1]
        );
        // x [2, 3], blocks of 2 along axis 1: scale [2, 2].
        assert_eq!(
            qdq_param_index("Q", &[2, 3], &[2, 2], Some(1), 2).unwrap(),
            vec![0, 0, 1, 2, 2, 3]
        );
        assert!(qdq_param_index("Q", &[2, 3], &[2, 3], Some(1), 2).is_err());
        assert!(qdq_param_index("Q", &[2, 3], &[3], None, 0).is_err());
    }

    #[test]
    fn matrix_parameters_per_row_and_column() {
        let p = MatPlan::new("M", &[2, 3], &[3, 4]).unwrap();
        assert_eq!(p.param_index("M", &[2], true).unwrap(), vec![0, 1]);
        assert_eq!(p.param_index("M", &[4], false).unwrap(), vec![0, 1, 2, 3]);
        assert!(p.param_index("M", &[3], true).is_err());
        let mut b = vec![5i64; 12];
        subtract_zp(&mut b, &[1, 2, 3, 4], &[0, 1, 2, 3], false, 3, 4);
        assert_eq!(&b[..5], &[4, 3, 2, 1, 4]);
    }

    #[test]
    fn requantize_agrees_or_refuses() {
        assert_eq!(
            requantize(100, 0.5, 0.5, 1.0, DType::F32, 3, (0, 255)),
            Some(28)
        );
        // 2.5 rounds to 2 (ties to even).
        assert_eq!(
            requantize(10, 0.5, 0.5, 1.0, DType::F32, 0, (0, 255)),
            Some(2)
        );
        assert_eq!(
            requantize(1, f64::NAN, 1.0, 1.0, DType::F32, 0, (0, 255)),
            None
        );
    }
}
