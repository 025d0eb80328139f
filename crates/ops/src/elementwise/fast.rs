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
use millrace_kernels::vmath::{self, Bin, Func, Operands, Other};
use rayon::prelude::*;

/// Elements below which the work stays on one thread.
pub const PAR_MIN: usize = 1 << 16;
/// Elements per parallel task.
const TASK: usize = 1 << 14;

/// `f` of every element of `x` into a new vector.
pub fn unary(f: Func, x: &[f32]) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    unary_into(f, x, &mut y);
    y
}

/// `f` of every element of `x` into `y` (of `x`'s length).
pub fn unary_into(f: Func, x: &[f32], y: &mut [f32]) {
    if x.len() < PAR_MIN {
        vmath::map(f, x, y);
    } else {
        y.par_chunks_mut(TASK)
            .zip(x.par_chunks(TASK))
            .for_each(|(o, i)| vmath::map(f, i, o));
    }
}

/// `f` of every element of `io`, in place.
pub fn unary_inplace(f: Func, io: &mut [f32]) {
    if io.len() < PAR_MIN {
        vmath::map_inplace(f, io);
    } else {
        io.par_chunks_mut(TASK)
            .for_each(|o| vmath::map_inplace(f, o));
    }
}

/// How the broadcast operand maps onto the output `[outer, mid, inner]`: it holds `mid`
/// values, the same for every `outer` index, each repeated `inner` times.
fn block(out: &[usize], s: &[usize]) -> Option<(usize, usize, usize)> {
    if s.len() > out.len() {
        return None;
    }
    let off = out.len() - s.len();
    let dim = |i: usize| if i < off { 1 } else { s[i - off] };
    let lo = (0..out.len()).find(|&i| dim(i) != 1)?;
    let hi = (0..out.len()).rev().find(|&i| dim(i) != 1)? + 1;
    if (lo..hi).any(|i| dim(i) != out[i]) {
        return None;
    }
    let p = |r: &[usize]| r.iter().product::<usize>();
    Some((p(&out[..lo]), p(&out[lo..hi]), p(&out[hi..])))
}

/// How the two operands of a binary op lie against an output of `n` elements.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// Both of the output's size.
    Both,
    /// The full-size operand, and a one-element one.
    Scalar,
    /// The full-size operand, and one of `mid` values repeating per output row.
    Row { mid: usize },
    /// The full-size operand, and one of `mid` values each spread over `inner` outputs.
    Spread { mid: usize, inner: usize },
}

/// The layout, and whether `a` is the full-size operand (`b` when false); `None` when the
/// fast path does not cover these shapes.
fn layout(out: &[usize], ash: &[usize], bsh: &[usize], n: usize) -> Option<(Layout, bool)> {
    let an: usize = ash.iter().product();
    let bn: usize = bsh.iter().product();
    if an == n && bn == n {
        return Some((Layout::Both, true));
    }
    let (full_a, small) = if an == n {
        (true, bsh)
    } else if bn == n {
        (false, ash)
    } else {
        return None;
    };
    if small.iter().product::<usize>() == 1 {
        return Some((Layout::Scalar, full_a));
    }
    let (_, mid, inner) = block(out, small)?;
    Some((
        if inner == 1 {
            Layout::Row { mid }
        } else {
            Layout::Spread { mid, inner }
        },
        full_a,
    ))
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
    if layout(&out, ash, bsh, n).is_none() && n != 0 {
        return Ok(None);
    }
    let mut y = vec![0f32; n];
    binary_into(op, a, ash, b, bsh, &out, &mut y);
    Ok(Some((out, y)))
}

/// `y = a op b` for an output of shape `out` (the broadcast of `ash` and `bsh`, which the
/// caller checked, as it checked the operands hold their shapes' sizes). False, with `y`
/// untouched, for a layout this path does not cover.
pub fn binary_into(
    op: Bin,
    a: &[f32],
    ash: &[usize],
    b: &[f32],
    bsh: &[usize],
    out: &[usize],
    y: &mut [f32],
) -> bool {
    let n = y.len();
    if n == 0 {
        return true;
    }
    let Some((lay, full_a)) = layout(out, ash, bsh, n) else {
        return false;
    };
    let (f, s) = if full_a { (a, b) } else { (b, a) };
    // The operands in their order, `f`'s part `fr` against `s`'s part `sr`.
    let both = |fr: &[f32], sr: &[f32], o: &mut [f32]| {
        if full_a {
            vmath::binary(op, Operands::Both(fr, sr), o)
        } else {
            vmath::binary(op, Operands::Both(sr, fr), o)
        }
    };
    let scalar = |fr: &[f32], v: f32, o: &mut [f32]| {
        if full_a {
            vmath::binary(op, Operands::ScalarB(fr, v), o)
        } else {
            vmath::binary(op, Operands::ScalarA(v, fr), o)
        }
    };
    match lay {
        Layout::Both => par_rows(y, TASK, |r, o| {
            let i = r * TASK..r * TASK + o.len();
            both(&f[i.clone()], &s[i], o)
        }),
        Layout::Scalar => par_rows(y, TASK, |r, o| {
            scalar(&f[r * TASK..r * TASK + o.len()], s[0], o)
        }),
        Layout::Row { mid } => par_rows(y, mid, |r, o| both(&f[r * mid..(r + 1) * mid], s, o)),
        Layout::Spread { mid, inner } => par_rows(y, inner, |r, o| {
            scalar(&f[r * inner..(r + 1) * inner], s[r % mid], o)
        }),
    }
    true
}

/// `io = a op b` in place, where `io` holds operand `a` (`io_is_a`) or `b` on entry and
/// has the output's shape `out`; `other` is the other operand, of shape `osh`. False,
/// with `io` untouched, for a layout this path does not cover.
pub fn binary_inplace(
    op: Bin,
    io: &mut [f32],
    io_is_a: bool,
    other: &[f32],
    osh: &[usize],
    out: &[usize],
) -> bool {
    let n = io.len();
    if n == 0 {
        return true;
    }
    let Some((lay, _)) = layout(out, out, osh, n) else {
        return false;
    };
    let run = |o: &mut [f32], v: Other<'_>| vmath::binary_inplace(op, o, v, io_is_a);
    match lay {
        Layout::Both => par_rows(io, TASK, |r, o| {
            run(o, Other::Slice(&other[r * TASK..r * TASK + o.len()]))
        }),
        Layout::Scalar => par_rows(io, TASK, |_, o| run(o, Other::Scalar(other[0]))),
        Layout::Row { mid } => par_rows(io, mid, |_, o| run(o, Other::Slice(other))),
        Layout::Spread { mid, inner } => {
            par_rows(io, inner, |r, o| run(o, Other::Scalar(other[r % mid])))
        }
    }
    true
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
