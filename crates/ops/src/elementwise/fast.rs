//! f32 fast paths of the elementwise ops, on [`millrace_kernels::vmath`]'s vectorized
//! kernels (AVX-512 / AVX2 / portable).
//!
//! Binary ops handle, without per-element index arithmetic: equal sizes, a one-element
//! operand, and one operand broadcast along a contiguous block of the output's axes, e.g.
//! `[N, C, H, W] op [C, 1, 1]` (one scalar per row of `H W`), `[.., H] op [H]` (the
//! operand repeats per row) and `[B, S, H] op [B, S, 1]`. The output is allocated once;
//! tensors of at least [`PAR_MIN`] elements are split over the rayon pool. Anything else
//! returns `None` and the caller's generic broadcasting loop runs.
use crate::util::broadcast_all;
use millrace_ir::OpError;
use millrace_kernels::vmath::{self, Bin, Func, Operands};
use rayon::prelude::*;

/// Elements below which the work stays on one thread.
pub const PAR_MIN: usize = 1 << 16;
/// Elements per parallel task.
const TASK: usize = 1 << 14;

/// `f` of every element of `x` into a new vector.
pub fn unary(f: Func, x: &[f32]) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    if x.len() < PAR_MIN {
        vmath::map(f, x, &mut y);
    } else {
        y.par_chunks_mut(TASK)
            .zip(x.par_chunks(TASK))
            .for_each(|(o, i)| vmath::map(f, i, o));
    }
    y
}

/// How the broadcast operand maps onto the output `[outer, mid, inner]`: it holds `mid`
/// values, the same for every `outer` index, each repeated `inner` times.
fn block(out: &[usize], s: &[usize]) -> Option<(usize, usize, usize)> {
    let off = out.len() - s.len();
    let dim = |i: usize| if i < off { 1 } else { s[i - off] };
    let used: Vec<usize> = (0..out.len()).filter(|&i| dim(i) != 1).collect();
    let (lo, hi) = match (used.first(), used.last()) {
        (Some(&lo), Some(&hi)) => (lo, hi + 1),
        _ => return None, // one element: handled as a scalar
    };
    if (lo..hi).any(|i| dim(i) != out[i]) {
        return None;
    }
    let p = |r: &[usize]| r.iter().product::<usize>();
    Some((p(&out[..lo]), p(&out[lo..hi]), p(&out[hi..])))
}

/// An output shape and its values.
pub type Shaped = (Vec<usize>, Vec<f32>);

/// `a op b` with numpy broadcasting, or `None` for a layout this path does not cover.
pub fn binary(
    op_name: &str,
    op: Bin,
    a: &[f32],
    ash: &[usize],
    b: &[f32],
    bsh: &[usize],
) -> Result<Option<Shaped>, OpError> {
    let out = if ash == bsh {
        ash.to_vec()
    } else {
        broadcast_all(op_name, &[ash, bsh])?
    };
    let n: usize = out.iter().product();
    let mut y = vec![0f32; n];
    if n == 0 {
        return Ok(Some((out, y)));
    }
    if a.len() == n && b.len() == n {
        par_rows(&mut y, TASK, |r, o| {
            let s = r * TASK..r * TASK + o.len();
            vmath::binary(op, Operands::Both(&a[s.clone()], &b[s]), o)
        });
    } else if b.len() == 1 && a.len() == n {
        par_rows(&mut y, TASK, |r, o| {
            let s = r * TASK..r * TASK + o.len();
            vmath::binary(op, Operands::ScalarB(&a[s], b[0]), o)
        });
    } else if a.len() == 1 && b.len() == n {
        par_rows(&mut y, TASK, |r, o| {
            let s = r * TASK..r * TASK + o.len();
            vmath::binary(op, Operands::ScalarA(a[0], &b[s]), o)
        });
    } else if a.len() == n {
        let Some((_, mid, inner)) = block(&out, bsh) else {
            return Ok(None);
        };
        if inner == 1 {
            par_rows(&mut y, mid, |r, o| {
                vmath::binary(op, Operands::Both(&a[r * mid..(r + 1) * mid], b), o)
            });
        } else {
            par_rows(&mut y, inner, |r, o| {
                let s = r * inner..(r + 1) * inner;
                vmath::binary(op, Operands::ScalarB(&a[s], b[r % mid]), o)
            });
        }
    } else if b.len() == n {
        let Some((_, mid, inner)) = block(&out, ash) else {
            return Ok(None);
        };
        if inner == 1 {
            par_rows(&mut y, mid, |r, o| {
                vmath::binary(op, Operands::Both(a, &b[r * mid..(r + 1) * mid]), o)
            });
        } else {
            par_rows(&mut y, inner, |r, o| {
                let s = r * inner..(r + 1) * inner;
                vmath::binary(op, Operands::ScalarA(a[r % mid], &b[s]), o)
            });
        }
    } else {
        return Ok(None);
    }
    Ok(Some((out, y)))
}

/// Calls `f(row index, row)` for each `len`-element row of `y` (the last may be short),
/// in parallel over groups of rows for big outputs.
fn par_rows(y: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if y.len() < PAR_MIN {
        y.chunks_mut(len).enumerate().for_each(|(r, o)| f(r, o));
    } else {
        let per = (TASK / len).max(1);
        y.par_chunks_mut(per * len)
            .enumerate()
            .for_each(|(g, grp)| {
                grp.chunks_mut(len)
                    .enumerate()
                    .for_each(|(r, o)| f(g * per + r, o))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elementwise::broadcast::map2;

    #[test]
    fn matches_generic_broadcast() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[2, 3, 4, 5], &[1, 3, 1, 1]),
            (&[2, 3, 4, 5], &[3, 1, 1]),
            (&[2, 3, 4, 5], &[5]),
            (&[2, 3, 4, 5], &[4, 5]),
            (&[2, 3, 4], &[2, 3, 1]),
            (&[3, 1], &[3, 4]),
            (&[1, 3, 1, 1], &[2, 3, 4, 5]),
            (&[1], &[2, 2]),
            (&[2, 2], &[]),
            (&[4, 5], &[4, 5]),
            (&[1, 5], &[5]),
            (&[2, 1, 4], &[3, 1]),
            (&[2, 0, 3], &[3]),
            (&[64, 32, 64], &[32, 1]),
            (&[64, 32, 64], &[64]),
            (&[64, 32, 64], &[64, 32, 64]),
            (&[64, 32, 64], &[1]),
        ];
        for (ash, bsh) in cases {
            let na: usize = ash.iter().product();
            let nb: usize = bsh.iter().product();
            let mut a: Vec<f32> = (0..na).map(|i| (i % 13) as f32 - 6.0).collect();
            let b: Vec<f32> = (0..nb).map(|i| (i % 7) as f32 * 0.5 + 0.25).collect();
            if na > 2 {
                a[1] = f32::NAN;
            }
            for op in [Bin::Add, Bin::Sub, Bin::Mul, Bin::Div, Bin::Max, Bin::Min] {
                let want = map2("T", &a, ash, &b, bsh, |&p, &q| op.scalar(p, q)).unwrap();
                match binary("T", op, &a, ash, &b, bsh).unwrap() {
                    Some((s, v)) => {
                        assert_eq!(s, want.0);
                        assert_eq!(v.len(), want.1.len());
                        for (g, w) in v.iter().zip(&want.1) {
                            assert!(
                                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                                "{ash:?} {bsh:?} {op:?}"
                            );
                        }
                    }
                    None => assert_eq!((*ash, *bsh), (&[2, 1, 4][..], &[3, 1][..])),
                }
            }
        }
        assert!(binary("T", Bin::Add, &[1.0, 2.0], &[2], &[1.0; 3], &[3]).is_err());
    }

    #[test]
    fn unary_big_and_small() {
        for n in [0, 5, 100_000] {
            let x: Vec<f32> = (0..n).map(|i| (i % 100) as f32 * 0.1 - 5.0).collect();
            let y = unary(Func::Relu, &x);
            assert!(y.iter().zip(&x).all(|(y, x)| *y == x.max(0.0)));
        }
    }
}
