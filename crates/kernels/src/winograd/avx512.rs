//! AVX-512 transforms of `F(4x4, 3x3)`, written with intrinsics.
//!
//! The portable transforms ([`super::input_impl`], [`super::output_impl`]) put 16
//! neighbouring tiles in a vector's lanes, so their horizontal passes read and write every
//! fourth value (tiles are 4 columns apart), one value at a time. Here those passes stay
//! in vectors:
//!
//! * Input: the vertical pass (`B^T` over 6 image rows) runs on 16 columns at a time with
//!   masked loads (the padding is the masked-off lanes and skipped rows, no padded copy).
//!   The horizontal pass computes `B^T` at every column from six shifted loads, then keeps
//!   each fourth lane (the tiles' first columns) with two lane permutes per 16 tiles.
//! * Output: `A^T` over the 6 rows of transformed values, then over the 6 columns, with
//!   tiles in the lanes; the 4 columns of each tile are interleaved back into image
//!   columns by a 4 x 4 transpose (unpacks within 128-bit lanes, then 128-bit shuffles),
//!   and bias, residual and activation are applied to whole rows before masked stores.
//!
//! On Zen 5 at 1 thread they took ResNet-50's 128@28 layer's input transform from 180 to
//! 61 us and its output transform from 122 to 34 us, against the portable ones.
//!
//! Measured, not kept: running a block of tile rows at a time through all three steps
//! (input transform, the 36 products, output transform) in per-thread buffers, so the
//! transformed values stay in L2. On ResNet-50's 64@56 layer it took 1.5-1.9x the time
//! of the three whole-layer steps at 1 thread (blocks of 14 and 28 tiles: the products
//! are too narrow for the GEMM, which packs their ragged panel and runs its partial
//! kernels 250-500 times) and 0.95-1.1x at 2.
use super::TileGeo;
use crate::activation::Activation;
use crate::transpose::x86::{lanes, row_mask16};
use std::arch::x86_64::*;

/// `B^T d` (6 x 6).
#[inline(always)]
unsafe fn bt6(d: [__m512; 6]) -> [__m512; 6] {
    let four = _mm512_set1_ps(4.0);
    let five = _mm512_set1_ps(5.0);
    let t0 = _mm512_fnmadd_ps(four, d[2], d[4]);
    let t1 = _mm512_fnmadd_ps(four, d[1], d[3]);
    let t2 = _mm512_sub_ps(d[4], d[2]);
    let t3 = _mm512_sub_ps(d[3], d[1]);
    let t3 = _mm512_add_ps(t3, t3);
    [
        _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4])),
        _mm512_add_ps(t0, t1),
        _mm512_sub_ps(t0, t1),
        _mm512_add_ps(t2, t3),
        _mm512_sub_ps(t2, t3),
        _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5])),
    ]
}

/// `A^T m` (4 x 6).
#[inline(always)]
unsafe fn at6(m: [__m512; 6]) -> [__m512; 4] {
    let s1 = _mm512_add_ps(m[1], m[2]);
    let d1 = _mm512_sub_ps(m[1], m[2]);
    let s2 = _mm512_add_ps(m[3], m[4]);
    let d2 = _mm512_sub_ps(m[3], m[4]);
    [
        _mm512_add_ps(_mm512_add_ps(m[0], s1), s2),
        _mm512_fmadd_ps(_mm512_set1_ps(2.0), d2, d1),
        _mm512_fmadd_ps(_mm512_set1_ps(4.0), s2, s1),
        _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0), d2, d1), m[5]),
    ]
}

/// Floats of the vertical-pass buffer [`input_f4`] needs for `geo`.
pub(super) fn vert_len(geo: &TileGeo) -> usize {
    6 * (geo.ntx.div_ceil(4) + 1) * 16
}

/// `B^T` along a row of the vertical pass at every column of the 16-column block at
/// `row`: lane `l` of output `j` is `sum_c B^T[j][c] row[l + c]`.
///
/// # Safety
/// `row` must be valid for 21 reads.
#[inline(always)]
unsafe fn hblock(row: *const f32) -> [__m512; 6] {
    bt6([
        _mm512_loadu_ps(row),
        _mm512_loadu_ps(row.add(1)),
        _mm512_loadu_ps(row.add(2)),
        _mm512_loadu_ps(row.add(3)),
        _mm512_loadu_ps(row.add(4)),
        _mm512_loadu_ps(row.add(5)),
    ])
}

/// The input transform of one channel `x` (`h x w`) into `v` (`[pos][tile]`, 36 runs of
/// `geo.tp`), `vert` a buffer of at least [`vert_len`] floats.
///
/// # Safety
/// The CPU must support AVX-512F. `x` must hold `h * w` values, `v` `35 * geo.tp` plus
/// the tiles, and `geo` must describe a 3x3 stride-1 layer tiled by 4 (`nty`, `ntx` the
/// tile grid of the output, `tp >= nty * ntx + 16`).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn input_f4(geo: &TileGeo, x: &[f32], v: &mut [f32], vert: &mut [f32]) {
    let g = &geo.g;
    let (ntx, tp) = (geo.ntx, geo.tp);
    let nbh = ntx.div_ceil(4);
    let wv = (nbh + 1) * 16;
    debug_assert!(
        vert.len() >= 6 * wv && x.len() >= g.h * g.w && v.len() >= 35 * tp + geo.nty * ntx
    );
    let every4 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    let halves = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    let (xp, vp, vert) = (x.as_ptr(), v.as_mut_ptr(), vert.as_mut_ptr());
    for ty in 0..geo.nty {
        // Vertical pass: vert[i][c] = (B^T rows)[i] at strip column c (image column
        // c - pl), zero outside the image.
        for cs in (0..wv).step_by(16) {
            let mask = row_mask16(cs as isize - g.pl as isize, g.w as isize);
            let mut d = [_mm512_setzero_ps(); 6];
            for (r, dr) in d.iter_mut().enumerate() {
                let y = ty * 4 + r;
                if mask != 0 && y >= g.pt && y - g.pt < g.h {
                    // Lanes off the image are masked off (not read).
                    let p = xp.wrapping_add((y - g.pt) * g.w + cs).wrapping_sub(g.pl);
                    *dr = _mm512_maskz_loadu_ps(mask, p);
                }
            }
            for (i, o) in bt6(d).into_iter().enumerate() {
                _mm512_storeu_ps(vert.add(i * wv + cs), o);
            }
        }
        // Horizontal pass, 16 tiles (four 16-column blocks) at a time.
        let t0 = ty * ntx;
        for b0 in (0..nbh).step_by(4) {
            let n = (ntx - b0 * 4).min(16);
            let mask = lanes(n);
            for i in 0..6 {
                let row = vert.add(i * wv + b0 * 16);
                // Blocks past the last hold no tile; their lanes are not stored.
                let h0 = hblock(row);
                let h1 = if b0 + 1 < nbh {
                    hblock(row.add(16))
                } else {
                    h0
                };
                let mut out = [_mm512_setzero_ps(); 6];
                for j in 0..6 {
                    out[j] = _mm512_permutex2var_ps(h0[j], every4, h1[j]);
                }
                if n > 8 {
                    let h2 = hblock(row.add(32));
                    let h3 = if b0 + 3 < nbh {
                        hblock(row.add(48))
                    } else {
                        h2
                    };
                    for j in 0..6 {
                        let hi = _mm512_permutex2var_ps(h2[j], every4, h3[j]);
                        out[j] = _mm512_permutex2var_ps(out[j], halves, hi);
                    }
                }
                for (j, o) in out.into_iter().enumerate() {
                    _mm512_mask_storeu_ps(vp.add((i * 6 + j) * tp + t0 + b0 * 4), mask, o);
                }
            }
        }
    }
}

/// The output transform of one output channel: `mc` (position `p`, tile `t` at
/// `p * geo.mps + t`) into `out` (`oh x ow`), adding `bias` and `res` (`oh x ow`) and
/// applying `act`.
///
/// # Safety
/// The CPU must support AVX-512F. `mc` must hold `35 * geo.mps` values plus the tiles
/// and 15 (the last tile's vector), `out` and `res` `oh * ow`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn output_f4(
    geo: &TileGeo,
    mc: &[f32],
    bias: f32,
    res: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
) {
    let g = &geo.g;
    let (ntx, mps) = (geo.ntx, geo.mps);
    let (oh, ow) = (g.oh, g.ow);
    debug_assert!(mc.len() >= 35 * mps + geo.nty * ntx + 15 && out.len() >= oh * ow);
    debug_assert!(res.is_none_or(|r| r.len() >= oh * ow));
    let (mp, op) = (mc.as_ptr(), out.as_mut_ptr());
    let rp = res.map(|r| r.as_ptr());
    let vbias = _mm512_set1_ps(bias);
    let zero = _mm512_setzero_ps();
    for ty in 0..geo.nty {
        let t0 = ty * ntx;
        let rows = 4.min(oh - ty * 4);
        for tx0 in (0..ntx).step_by(16) {
            // Lanes past the row's tiles read the next row's or the padding.
            // `A^T` down each column j of the transformed tile: by_col[j][a].
            let by_col: [[__m512; 4]; 6] = std::array::from_fn(|j| {
                at6(std::array::from_fn(|i| {
                    _mm512_loadu_ps(mp.add((i * 6 + j) * mps + t0 + tx0))
                }))
            });
            let s: [[__m512; 6]; 4] =
                std::array::from_fn(|a| std::array::from_fn(|j| by_col[j][a]));
            let col0 = tx0 * 4;
            for (a, sa) in s.into_iter().enumerate().take(rows) {
                let [b0, b1, b2, b3] = at6(sa);
                // Interleave: image column 4 t + b from lane t of b-th vector.
                let u0 = _mm512_unpacklo_ps(b0, b1);
                let u1 = _mm512_unpackhi_ps(b0, b1);
                let u2 = _mm512_unpacklo_ps(b2, b3);
                let u3 = _mm512_unpackhi_ps(b2, b3);
                let pd = _mm512_castps_pd;
                let w0 = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(u0), pd(u2)));
                let w1 = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(u0), pd(u2)));
                let w2 = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(u1), pd(u3)));
                let w3 = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(u1), pd(u3)));
                let z0 = _mm512_shuffle_f32x4::<0x44>(w0, w1);
                let z1 = _mm512_shuffle_f32x4::<0x44>(w2, w3);
                let z2 = _mm512_shuffle_f32x4::<0xEE>(w0, w1);
                let z3 = _mm512_shuffle_f32x4::<0xEE>(w2, w3);
                let cols = [
                    _mm512_shuffle_f32x4::<0x88>(z0, z1),
                    _mm512_shuffle_f32x4::<0xDD>(z0, z1),
                    _mm512_shuffle_f32x4::<0x88>(z2, z3),
                    _mm512_shuffle_f32x4::<0xDD>(z2, z3),
                ];
                let y = ty * 4 + a;
                for (k, c) in cols.into_iter().enumerate() {
                    let col = col0 + 16 * k;
                    if col >= ow {
                        break;
                    }
                    let mask = lanes(ow - col);
                    let at = y * ow + col;
                    let mut val = _mm512_add_ps(c, vbias);
                    if let Some(rp) = rp {
                        val = _mm512_add_ps(val, _mm512_maskz_loadu_ps(mask, rp.add(at)));
                    }
                    match act {
                        Activation::None => {}
                        Activation::Relu => val = _mm512_max_ps(val, zero),
                        act => {
                            let mut tmp = [0.0f32; 16];
                            _mm512_storeu_ps(tmp.as_mut_ptr(), val);
                            act.apply_slice(&mut tmp[..(ow - col).min(16)]);
                            val = _mm512_loadu_ps(tmp.as_ptr());
                        }
                    }
                    _mm512_mask_storeu_ps(op.add(at), mask, val);
                }
            }
        }
    }
}
