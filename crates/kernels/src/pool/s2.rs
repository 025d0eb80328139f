//! Max pooling at stride 2 on AVX-512, read in place.
//!
//! The AVX2 kernels for these pools copy first: the halving kernel (`halve`) folds the
//! window's rows into even and odd half-width planes and takes the max along those in a
//! second pass, and only for even widths whose outputs are half of them; odd widths
//! (SqueezeNet's 111 -> 55, 55 -> 27 and 27 -> 13 pools, `ceil_mode`) went to the
//! channel-blocked path, which transposes every channel group into a pixel-major copy and
//! back, or to the separable one. Here each channel's output row is 16 outputs per vector
//! and nothing is copied: for each of the window's rows two loads take the 32 input
//! columns `2 * ox - pl ..` of 16 outputs (and a scalar load the 33rd, for a 3-wide
//! window), folded down the rows; then one permute picks the even columns (tap 0), another
//! the odd ones (tap 1), and a lane shift of the even ones with the 33rd column gives tap
//! 2. Columns outside the image are masked out of the loads (they read `-inf`), rows
//! outside it are skipped; a row's last vector is a masked store where it cannot be
//! stored whole (below).
//!
//! A 3x3 window whose three rows lie inside the image (every output row but those
//! touching padding) takes `window3`: its nine loads unrolled and no masked loads. The
//! last vector of a row of at least 16 outputs is its last 16 (overlapping the vector
//! before, the same values stored twice), so it too stores whole and usually reads
//! inside the row; a vector whose 33 columns still leave the row (the first where the
//! padding is before it, the last where a ceil-mode window runs past the row, every
//! vector of a row narrower than 16) reads on into the neighbouring rows of the plane
//! and sets the taps outside the row to `-inf` with one masked move each; a narrow row's
//! vector stores whole where its plane has room, its lanes past the row landing on the
//! next row's first outputs, which are stored after it. Against the kernel before
//! (masked loads in a loop over the window's rows for every such vector), one thread,
//! `examples/pool_bench.rs`: SqueezeNet 1.1's 111 -> 55 pool 0.89x the time, its
//! 55 -> 27 one 0.68x, ResNet-50's 112 -> 56 one 0.74-0.78x, and SqueezeNet's 27 -> 13
//! one 0.89x the AVX2 channel-blocked path that ran it. In the models at 1 thread
//! (`scripts/nodes_ab.py`, 6 rounds) SqueezeNet's three pools 0.83x, ResNet-50's 0.79x;
//! at 2 threads the pools are bound by where their input lies: SqueezeNet's three 0.86x,
//! GoogLeNet's three stride-2 3x3 ones 0.81x and ResNet-50's 0.81x while the two vCPUs
//! share a cache (`millrace peak --round-trip-only` about 45 ns), but SqueezeNet's
//! 27 -> 13 pool 1.2x (0.026 -> 0.031-0.034 ms) while they do not (320-400 ns), and the
//! whole models within 0.5% either way (`scripts/bench_builds.py`, 8 rounds).
//!
//! A 3x3 window's output rows go two at a time (`pair3`) where both windows lie inside
//! the image: the five input rows are loaded once, the middle one (the first row's third,
//! the second's first) folded once for both; and where every vector of a row reads
//! inside it (no left padding, no ceil-mode column past the row: SqueezeNet's odd
//! widths) the row pair runs without a test per vector. `examples/pool_bench.rs` on the
//! Zen 5 guest, 2 threads, against one row at a time: SqueezeNet 1.1's 111 -> 55 pool
//! 32.3 -> 21.1 us, 55 -> 27 16.3 -> 10.4, 27 -> 13 11.5 -> 8.8, GoogLeNet's
//! 112 -> 56 and 56 -> 28 0.68x and 0.79x, ResNet-50's 0.81x; in the models
//! (`scripts/nodes_ab.py`, 4-6 rounds) SqueezeNet's three pools 0.77x (0.061 -> 0.048 ms),
//! GoogLeNet's 0.90x, ResNet-50's unchanged (0.059 ms, bound by where its input lies).
//!
//! Before: fold the rows into even and odd half-planes (or transpose channel groups),
//! then a second pass over the copy. After: one pass, loads, folds and permutes in
//! registers, one store per 16 outputs.
//!
//! NaN is skipped as by the other max kernels: every fold starts at `-inf` and takes a
//! value only when it is greater (a window of NaN alone gives `-inf`).
//!
//! Only rows of at least [`MIN_OW`] outputs are taken ([`MIN_OW3`] for 3x3 windows): see
//! there for what was measured.
//! Channels run in parallel on the current rayon pool ([`super::per_channel`]).
use super::{per_channel, Isa};
use crate::conv::Geom2d;

/// Narrowest output row taken (see [`applies`]) for 2-wide windows and windows of fewer
/// than 3 rows: one full vector. Measured with
/// `examples/pool_bench.rs` on a Zen 4 EPYC against the AVX2 kernels (best of 200-300, the
/// two alternating call by call; they ran these pools before, but for the two 112 -> 56
/// ones, which ran AVX-512's separable path: 0.75x and 0.86x in the models with
/// `scripts/nodes_ab.py`): SqueezeNet's 111 -> 55 pool took 0.61x their time at 2 threads
/// (0.66x at 1), its 55 -> 27 one 0.85x (0.84x), GoogLeNet's 112 -> 56 0.86x (0.86x) and
/// 56 -> 28 1.0x (0.78x), ResNet-50's 112 -> 56 1.0x (0.97x); but the rows of 13 and 14
/// outputs (SqueezeNet's 27 -> 13, GoogLeNet's 28 -> 14) 1.27x and 1.20x (1.17x and
/// 1.04x), and GoogLeNet's 2x2 14 -> 7 1.11x: those stayed on the channel-blocked path,
/// which fills its lanes whatever the width, until 3x3 windows had [`MIN_OW3`].
pub(super) const MIN_OW: usize = 16;

/// Narrowest output row taken for 3x3 windows, whose rows inside the image take the
/// unrolled kernel (`window3`) even where a vector's 33 columns leave a narrow row.
/// `examples/pool_bench.rs` and one-thread runs over 256-832 channels on the Zen 5 guest,
/// against the AVX2 kernels: 13 and 14 outputs (SqueezeNet's 27 -> 13, GoogLeNet's
/// 28 -> 14) 0.85-0.89x their time, 12 outputs 0.86-0.89x, 11 0.95x, 10 and 9 1.08x,
/// 8 and 7 1.3-1.8x.
pub(super) const MIN_OW3: usize = 11;

/// Whether this kernel takes the pool on `isa`: AVX-512 chosen and present, a 2- or
/// 3-wide window of at most 3 rows at stride 2 without dilation, padding inside the
/// window, and output rows at least [`MIN_OW`] wide ([`MIN_OW3`] for 3x3 windows).
pub(super) fn applies(isa: Isa, g: &Geom2d) -> bool {
    #[cfg(test)]
    if crate::depthwise::tests::BLOCKED.with(|f| f.get()) == Some(true)
        || tests::S2.with(|f| f.get()) == Some(false)
    {
        return false;
    }
    isa == Isa::Avx512
        && isa.usable()
        && (g.kw == 2 || g.kw == 3)
        && (1..=3).contains(&g.kh)
        && (g.sh, g.sw, g.dh, g.dw) == (2, 2, 1, 1)
        && g.pl < g.kw
        && g.pt < g.kh
        && g.ow
            >= if (g.kh, g.kw) == (3, 3) {
                MIN_OW3
            } else {
                MIN_OW
            }
}

/// Max pools every channel. The caller has checked the geometry against the buffers and
/// that [`applies`] holds.
pub(super) fn run(x: &[f32], g: &Geom2d, out: &mut [f32]) {
    let (ip, op) = (g.h * g.w, g.oh * g.ow);
    if g.c == 0 || op == 0 {
        return;
    }
    let out = &mut out[..g.c * op];
    let one = |(ci, oc): (usize, &mut [f32])| {
        let xc = &x[ci * ip..(ci + 1) * ip];

        #[cfg(target_arch = "x86_64")]
        // SAFETY: `applies` found AVX-512F usable; `xc` holds the channel's `h * w`
        // inputs and `oc` its `oh * ow` outputs.
        unsafe {
            x86::plane(xc, g, oc)
        };
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (xc, oc);
            unreachable!("the stride-2 max pool runs only where `applies` found AVX-512")
        }
    };
    per_channel(g.c, ip, op, out, one);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use crate::conv::Geom2d;
    use crate::transpose::x86::{lane_range16, lanes, row_mask16 as mask};
    use std::arch::x86_64::*;

    /// Where a row of `ow` outputs starts its vectors: every 16 outputs, the last vector
    /// of a row of at least 16 the last 16 (overlapping the one before it, the same
    /// values stored twice) so that it stores whole and usually reads inside the image.
    fn starts(ow: usize) -> impl Iterator<Item = usize> {
        (0..ow)
            .step_by(16)
            .map(move |o| if ow - o < 16 && ow >= 16 { ow - 16 } else { o })
    }

    /// Lanes `j` of 16 whose column `s + 2j + t` lies in `0..w`: the outputs whose tap
    /// `t` is inside the row.
    fn tap_mask(s: isize, t: isize, w: isize) -> __mmask16 {
        // 0 <= s + 2j + t < w; ceil(a / 2) for any sign.
        let half_up = |a: isize| (a + 1).div_euclid(2);
        lane_range16(half_up(-s - t), half_up(w - s - t))
    }

    /// Taps 0, 1 and 2 of 16 outputs from the window rows' maxima over 32 columns
    /// (`l`, `r`) and the 33rd (lane 0 of `e`): the even columns, the odd ones, and the
    /// even ones shifted by a lane with the 33rd after them.
    #[inline(always)]
    unsafe fn taps(l: __m512, r: __m512, e: __m512, even: __m512i, odd: __m512i) -> [__m512; 3] {
        let t0 = _mm512_permutex2var_ps(l, even, r);
        let t1 = _mm512_permutex2var_ps(l, odd, r);
        let t2 = _mm512_castsi512_ps(_mm512_alignr_epi32(
            _mm512_castps_si512(e),
            _mm512_castps_si512(t0),
            1,
        ));
        [t0, t1, t2]
    }

    /// Stores the first `n` lanes of `y` at `out` (all 16, unmasked, for `n >= 16`).
    #[inline(always)]
    unsafe fn store(out: *mut f32, y: __m512, n: usize) {
        if n >= 16 {
            _mm512_storeu_ps(out, y);
        } else {
            _mm512_mask_storeu_ps(out, lanes(n), y);
        }
    }

    /// `n` (at most 16) outputs of a 3x3 window at stride 2 whose first input is at `p`
    /// in the first of 3 rows `w` apart. 33 values from each row's `p` are read whatever
    /// the row's width; with `EDGE`, the taps whose lanes are clear in `k` (for taps 0, 1,
    /// 2: their column outside the row, the value read belonging to a neighbouring row)
    /// count as `-inf`. The lanes past `n` are not stored.
    ///
    /// # Safety
    /// AVX-512F; `p .. p + 2w + 33` readable, `out .. out + n` writable.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn window3<const EDGE: bool>(
        p: *const f32,
        w: usize,
        out: *mut f32,
        n: usize,
        k: [__mmask16; 3],
        even: __m512i,
        odd: __m512i,
        ninf: __m512,
    ) {
        let acc = fold::<3>(p, w, [ninf; 3]);
        finish::<EDGE>(acc, k, out, n, even, odd, ninf);
    }

    /// Stores the first `n` of 16 outputs from the window rows' maxima `[l, r, e]` (see
    /// [`fold`]): the max of the three taps, those whose lanes are clear in `k` counting
    /// as `-inf` with `EDGE`.
    ///
    /// # Safety
    /// AVX-512F; `out .. out + n` writable.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn finish<const EDGE: bool>(
        [l, r, e]: [__m512; 3],
        k: [__mmask16; 3],
        out: *mut f32,
        n: usize,
        even: __m512i,
        odd: __m512i,
        ninf: __m512,
    ) {
        let [mut t0, mut t1, mut t2] = taps(l, r, e, even, odd);
        if EDGE {
            t0 = _mm512_mask_mov_ps(ninf, k[0], t0);
            t1 = _mm512_mask_mov_ps(ninf, k[1], t1);
            t2 = _mm512_mask_mov_ps(ninf, k[2], t2);
        }
        store(out, _mm512_max_ps(t2, _mm512_max_ps(t1, t0)), n);
    }

    /// The 3x3 window's row maxima of 16 outputs from `p` in `ROWS` rows `w` apart:
    /// the 32 columns (`l`, `r`) and the 33rd (lane 0 of `e`), folded onto `acc`.
    #[inline(always)]
    unsafe fn fold<const ROWS: usize>(p: *const f32, w: usize, acc: [__m512; 3]) -> [__m512; 3] {
        let [mut l, mut r, mut e] = acc;
        for k in 0..ROWS {
            let q = p.add(k * w);
            // Each load the first operand: `maxps` returns the second for NaN, so a NaN
            // is skipped as by the other max kernels.
            l = _mm512_max_ps(_mm512_loadu_ps(q), l);
            r = _mm512_max_ps(_mm512_loadu_ps(q.add(16)), r);
            e = _mm512_max_ps(_mm512_castps128_ps512(_mm_load_ss(q.add(32))), e);
        }
        [l, r, e]
    }

    /// 16 outputs of each of two output rows (`out` and `out + ow`) of a 3x3 window at
    /// stride 2 from the five input rows at `p` (`w` apart), the middle row (the first
    /// output row's third, the second's first) loaded once; the first `n[0]` and `n[1]`
    /// lanes stored. With `EDGE`, the taps whose lanes are clear in `k` count as `-inf`,
    /// as in [`window3`].
    ///
    /// # Safety
    /// AVX-512F; `p .. p + 4w + 33` readable, `out .. out + n[0]` and
    /// `out + ow .. out + ow + n[1]` writable.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn pair3<const EDGE: bool>(
        p: *const f32,
        w: usize,
        out: *mut f32,
        ow: usize,
        n: [usize; 2],
        k: [__mmask16; 3],
        even: __m512i,
        odd: __m512i,
        ninf: __m512,
    ) {
        let mid = fold::<1>(p.add(2 * w), w, [ninf; 3]);
        for (row, (first, n)) in [(p, n[0]), (p.add(3 * w), n[1])].into_iter().enumerate() {
            let acc = fold::<2>(first, w, mid);
            finish::<EDGE>(acc, k, out.add(row * ow), n, even, odd, ninf);
        }
    }

    /// A 3x3 window's tap masks for the vector from `ox0` of a row, `None` where every
    /// output it stores has its 3 columns inside the row.
    fn edge_masks(g: &Geom2d, ox0: usize) -> Option<[__mmask16; 3]> {
        let w = g.w as isize;
        let n = (g.ow - ox0).min(16) as isize;
        let s = 2 * ox0 as isize - g.pl as isize;
        (s < 0 || s + 2 * n + 1 > w).then(|| [0, 1, 2].map(|t| tap_mask(s, t, w)))
    }

    /// Lanes stored of the vector from `ox0` of output row `oy`: a narrow row's vector
    /// stores whole where the plane has room, its lanes past the row going to the next
    /// row's first outputs, which are stored after it.
    fn stored(g: &Geom2d, oy: usize, ox0: usize) -> usize {
        let room = g.oh * g.ow - (oy * g.ow + ox0);
        if room >= 16 {
            16
        } else {
            g.ow - ox0
        }
    }

    /// One channel: `x` its `h x w` plane, `out` its `oh x ow` plane.
    ///
    /// # Safety
    /// AVX-512F; `x` holds `g.h * g.w` values and `out` `g.oh * g.ow`; the window as
    /// [`super::applies`] takes it.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn plane(x: &[f32], g: &Geom2d, out: &mut [f32]) {
        let (h, w) = (g.h as isize, g.w as isize);
        let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        // The first 8 vectors' tap masks computed once per plane (computed per vector
        // instead, GoogLeNet's 28 -> 14 pool took 1.35x the time at 1 thread,
        // `pool_bench`).
        let mut edges = [None; 8];
        for (e, ox0) in edges.iter_mut().zip(starts(g.ow)) {
            *e = edge_masks(g, ox0);
        }
        let edges = &edges[..g.ow.div_ceil(16).min(8)];
        let mask_of =
            |i: usize, ox0: usize| edges.get(i).copied().unwrap_or_else(|| edge_masks(g, ox0));
        let mut oy = 0;
        if (g.kh, g.kw) == (3, 3) {
            // Output rows above the first whose window lies inside the image (top
            // padding) one at a time, then two at a time while both windows lie inside.
            let first = g.pt.div_ceil(2).min(g.oh);
            for oy0 in 0..first {
                row(x, g, oy0, out, &mask_of, even, odd, ninf);
            }
            oy = first;
            // Every vector's 33 columns inside the row and 16 lanes stored (rows of 16 or
            // more): no test per vector.
            let inside = g.ow >= 16 && g.pl == 0 && 2 * (g.ow - 16) + 33 <= g.w;
            while oy + 1 < g.oh && (2 * oy + 5) as isize - g.pt as isize <= h {
                let top = (2 * oy - g.pt) as isize * w;
                let o = out.as_mut_ptr().add(oy * g.ow);
                if inside {
                    let p = x.as_ptr().offset(top);
                    for ox0 in starts(g.ow) {
                        let (p, o) = (p.add(2 * ox0), o.add(ox0));
                        pair3::<false>(p, g.w, o, g.ow, [16; 2], [0; 3], even, odd, ninf);
                    }
                    oy += 2;
                    continue;
                }
                for (i, ox0) in starts(g.ow).enumerate() {
                    let s = 2 * ox0 as isize - g.pl as isize;
                    let at = top + s;
                    let p = x.as_ptr().wrapping_offset(at);
                    let n = [stored(g, oy, ox0), stored(g, oy + 1, ox0)];
                    if s >= 0 && s + 33 <= w {
                        pair3::<false>(p, g.w, o.add(ox0), g.ow, n, [0; 3], even, odd, ninf);
                    } else if at >= 0 && at + 4 * w + 33 <= h * w {
                        // The 33 columns leave the row: read on into the rows before or
                        // after, masking out the taps outside the row.
                        match mask_of(i, ox0) {
                            Some(k) => {
                                pair3::<true>(p, g.w, o.add(ox0), g.ow, n, k, even, odd, ninf)
                            }
                            None => {
                                pair3::<false>(p, g.w, o.add(ox0), g.ow, n, [0; 3], even, odd, ninf)
                            }
                        }
                    } else {
                        for y in [oy, oy + 1] {
                            let ya = (2 * y - g.pt) as isize;
                            let o = out.as_mut_ptr().add(y * g.ow + ox0);
                            general(x, g, ya, ya + 3, ox0, o, even, odd, ninf);
                        }
                    }
                }
                oy += 2;
            }
        }
        for oy in oy..g.oh {
            row(x, g, oy, out, &mask_of, even, odd, ninf);
        }
    }

    /// Output row `oy` of one channel, as [`plane`] takes it; `mask_of(i, ox0)` the
    /// row's `i`-th vector's tap masks ([`edge_masks`]).
    ///
    /// # Safety
    /// As [`plane`]'s.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn row(
        x: &[f32],
        g: &Geom2d,
        oy: usize,
        out: &mut [f32],
        mask_of: &impl Fn(usize, usize) -> Option<[__mmask16; 3]>,
        even: __m512i,
        odd: __m512i,
        ninf: __m512,
    ) {
        let (h, w) = (g.h as isize, g.w as isize);
        // The window's rows inside the image (none: the outputs stay `-inf`).
        let iy0 = (2 * oy) as isize - g.pt as isize;
        let (ya, yb) = (iy0.max(0), (iy0 + g.kh as isize).min(h));
        let orow = out.as_mut_ptr().add(oy * g.ow);
        // A 3x3 window whose three rows are all inside the image: every vector of the row
        // through `window3`, the rows' loads unrolled. A vector whose 33 columns leave
        // the row reads on into the rows before or after (where those lie in the plane)
        // and masks out the taps that fall outside.
        if g.kw == 3 && yb - ya == 3 {
            let first = ya * w;
            for (i, ox0) in starts(g.ow).enumerate() {
                let n = stored(g, oy, ox0);
                let s = 2 * ox0 as isize - g.pl as isize;
                let o = orow.add(ox0);
                let at = first + s;
                let p = x.as_ptr().wrapping_offset(at);
                if s >= 0 && s + 33 <= w {
                    window3::<false>(p, w as usize, o, n, [0; 3], even, odd, ninf);
                } else if at < 0 || at + 2 * w + 33 > h * w {
                    general(x, g, ya, yb, ox0, o, even, odd, ninf);
                } else if let Some(k) = mask_of(i, ox0) {
                    window3::<true>(p, w as usize, o, n, k, even, odd, ninf);
                } else {
                    window3::<false>(p, w as usize, o, n, [0; 3], even, odd, ninf);
                }
            }
            return;
        }
        for ox0 in starts(g.ow) {
            general(x, g, ya, yb, ox0, orow.add(ox0), even, odd, ninf);
        }
    }

    /// The (at most 16) outputs from `ox0` of an output row whose window has rows
    /// `ya..yb` inside the image, stored at `out`: any window [`super::applies`] takes,
    /// loads masked where they leave the row.
    ///
    /// # Safety
    /// As [`plane`]'s; `out .. out + min(16, ow - ox0)` writable.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn general(
        x: &[f32],
        g: &Geom2d,
        ya: isize,
        yb: isize,
        ox0: usize,
        out: *mut f32,
        even: __m512i,
        odd: __m512i,
        ninf: __m512,
    ) {
        let w = g.w as isize;
        let three = g.kw == 3;
        // Columns a vector's loads span: 32, and the 33rd for the third tap.
        let span = if three { 33 } else { 32 };
        let s = 2 * ox0 as isize - g.pl as isize;
        let (mut l, mut r, mut e) = (ninf, ninf, ninf);
        if s >= 0 && s + span <= w {
            for y in ya..yb {
                let p = x.as_ptr().offset(y * w + s);
                l = _mm512_max_ps(_mm512_loadu_ps(p), l);
                r = _mm512_max_ps(_mm512_loadu_ps(p.add(16)), r);
                if three {
                    let v = _mm512_castps128_ps512(_mm_load_ss(p.add(32)));
                    e = _mm512_max_ps(v, e);
                }
            }
        } else {
            let (m0, m1) = (mask(s, w), mask(s + 16, w));
            let m2 = if three { mask(s + 32, w) & 1 } else { 0 };
            for y in ya..yb {
                // Masked-off lanes are not read: the pointers may lie outside the row.
                let p = x.as_ptr().wrapping_offset(y * w + s);
                l = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, m0, p), l);
                r = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, m1, p.wrapping_add(16)), r);
                e = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, m2, p.wrapping_add(32)), e);
            }
        }
        let [t0, t1, t2] = taps(l, r, e, even, odd);
        let mut y = _mm512_max_ps(t1, t0);
        if three {
            y = _mm512_max_ps(t2, y);
        }
        store(out, y, g.ow - ox0);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    thread_local! {
        /// `Some(false)` keeps this kernel off every pool (the other paths' tests).
        pub(crate) static S2: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
    }
}
