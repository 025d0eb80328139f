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
        let (p1, p2) = (p.add(w), p.add(2 * w));
        // Each load the first operand: `maxps` returns the second for NaN, so a NaN is
        // skipped as by the other max kernels.
        let l = _mm512_max_ps(_mm512_loadu_ps(p), ninf);
        let l = _mm512_max_ps(_mm512_loadu_ps(p1), l);
        let l = _mm512_max_ps(_mm512_loadu_ps(p2), l);
        let r = _mm512_max_ps(_mm512_loadu_ps(p.add(16)), ninf);
        let r = _mm512_max_ps(_mm512_loadu_ps(p1.add(16)), r);
        let r = _mm512_max_ps(_mm512_loadu_ps(p2.add(16)), r);
        let e = _mm512_max_ps(_mm512_castps128_ps512(_mm_load_ss(p.add(32))), ninf);
        let e = _mm512_max_ps(_mm512_castps128_ps512(_mm_load_ss(p1.add(32))), e);
        let e = _mm512_max_ps(_mm512_castps128_ps512(_mm_load_ss(p2.add(32))), e);
        let [mut t0, mut t1, mut t2] = taps(l, r, e, even, odd);
        if EDGE {
            t0 = _mm512_mask_mov_ps(ninf, k[0], t0);
            t1 = _mm512_mask_mov_ps(ninf, k[1], t1);
            t2 = _mm512_mask_mov_ps(ninf, k[2], t2);
        }
        store(out, _mm512_max_ps(t2, _mm512_max_ps(t1, t0)), n);
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
        let three = g.kw == 3;
        let op = g.oh * g.ow;
        // A 3x3 window's tap masks for the vector from `ox0`, `None` where every output it
        // stores has its 3 columns inside the row; the first 8 vectors' computed once per
        // plane (computed per vector instead, GoogLeNet's 28 -> 14 pool took 1.35x the
        // time at 1 thread, `pool_bench`).
        let edge_masks = |ox0: usize| {
            let n = (g.ow - ox0).min(16) as isize;
            let s = 2 * ox0 as isize - g.pl as isize;
            (s < 0 || s + 2 * n + 1 > w).then(|| [0, 1, 2].map(|t| tap_mask(s, t, w)))
        };
        let mut edges = [None; 8];
        for (e, ox0) in edges.iter_mut().zip(starts(g.ow)) {
            *e = edge_masks(ox0);
        }
        let edges = &edges[..g.ow.div_ceil(16).min(8)];
        for oy in 0..g.oh {
            // The window's rows inside the image (none: the outputs stay `-inf`).
            let iy0 = (2 * oy) as isize - g.pt as isize;
            let (ya, yb) = (iy0.max(0), (iy0 + g.kh as isize).min(h));
            let orow = out.as_mut_ptr().add(oy * g.ow);
            // A 3x3 window whose three rows are all inside the image (most rows): every
            // vector of the row through `window3`, the rows' loads unrolled. A vector
            // whose 33 columns leave the row reads on into the rows before or after
            // (where those lie in the plane) and masks out the taps that fall outside.
            if three && yb - ya == 3 {
                let first = ya * w;
                for (i, ox0) in starts(g.ow).enumerate() {
                    // A narrow row's vector stores whole where the plane has room: its
                    // lanes past the row go to the next row's first outputs, which are
                    // stored after it.
                    let room = op - (oy * g.ow + ox0);
                    let n = if room >= 16 { 16 } else { g.ow - ox0 };
                    let s = 2 * ox0 as isize - g.pl as isize;
                    let o = orow.add(ox0);
                    let at = first + s;
                    let p = x.as_ptr().wrapping_offset(at);
                    if s >= 0 && s + 33 <= w {
                        window3::<false>(p, w as usize, o, n, [0; 3], even, odd, ninf);
                        continue;
                    }
                    // The vector's 33 columns leave the row (a row's first or last, or
                    // all of a narrow row's): where the 3 rows' 33 values lie in the
                    // plane, read on into the rows before or after, and mask out the
                    // taps outside the row where a stored output has one.
                    if at < 0 || at + 2 * w + 33 > h * w {
                        general(x, g, ya, yb, ox0, o, even, odd, ninf);
                    } else if let Some(k) = edges.get(i).copied().unwrap_or_else(|| edge_masks(ox0))
                    {
                        window3::<true>(p, w as usize, o, n, k, even, odd, ninf);
                    } else {
                        window3::<false>(p, w as usize, o, n, [0; 3], even, odd, ninf);
                    }
                }
                continue;
            }
            for ox0 in starts(g.ow) {
                general(x, g, ya, yb, ox0, orow.add(ox0), even, odd, ninf);
            }
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
