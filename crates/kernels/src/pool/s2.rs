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
//! outside it are skipped; the last vector of a row is a masked store.
//!
//! Before: fold the rows into even and odd half-planes (or transpose channel groups),
//! then a second pass over the copy. After: one pass, loads, folds and permutes in
//! registers, one store per 16 outputs.
//!
//! NaN is skipped as by the other max kernels: every fold starts at `-inf` and takes a
//! value only when it is greater (a window of NaN alone gives `-inf`).
//!
//! Only rows of at least [`MIN_OW`] outputs are taken: see there for what was measured.
//! Channels run in parallel on the current rayon pool ([`super::per_channel`]).
use super::{per_channel, Isa};
use crate::conv::Geom2d;

/// Narrowest output row taken (see [`applies`]): one full vector. Measured with
/// `examples/pool_bench.rs` on a Zen 4 EPYC against the AVX2 kernels (best of 200-300, the
/// two alternating call by call; they ran these pools before, but for the two 112 -> 56
/// ones, which ran AVX-512's separable path: 0.75x and 0.86x in the models with
/// `scripts/nodes_ab.py`): SqueezeNet's 111 -> 55 pool took 0.61x their time at 2 threads
/// (0.66x at 1), its 55 -> 27 one 0.85x (0.84x), GoogLeNet's 112 -> 56 0.86x (0.86x) and
/// 56 -> 28 1.0x (0.78x), ResNet-50's 112 -> 56 1.0x (0.97x); but the rows of 13 and 14
/// outputs (SqueezeNet's 27 -> 13, GoogLeNet's 28 -> 14) 1.27x and 1.20x (1.17x and
/// 1.04x), and GoogLeNet's 2x2 14 -> 7 1.11x: those stay on the channel-blocked path,
/// which fills its lanes whatever the width.
pub(super) const MIN_OW: usize = 16;

/// Whether this kernel takes the pool on `isa`: AVX-512 chosen and present, a 2- or
/// 3-wide window of at most 3 rows at stride 2 without dilation, padding inside the
/// window, and output rows at least [`MIN_OW`] wide.
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
        && g.ow >= MIN_OW
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
    use crate::transpose::x86::row_mask16 as mask;
    use std::arch::x86_64::*;

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
        // Columns a vector's loads span: 32, and the 33rd for the third tap.
        let span = if three { 33 } else { 32 };
        for oy in 0..g.oh {
            // The window's rows inside the image (none: the outputs stay `-inf`).
            let iy0 = (2 * oy) as isize - g.pt as isize;
            let (ya, yb) = (iy0.max(0), (iy0 + g.kh as isize).min(h));
            let orow = out.as_mut_ptr().add(oy * g.ow);
            // A 3x3 window whose three rows are all inside the image (most rows): its
            // loads unrolled, and whole vectors stored unmasked. Against the row loop and
            // masked stores alone (`scripts/nodes_ab.py`, 2 threads, the builds
            // alternating): ResNet-50's 112 -> 56 pool 0.73x the time, SqueezeNet 1.1's
            // 111 -> 55 one 0.95x, its 55 -> 27 one 1.02x (inside the spread).
            let rows3 = three && yb - ya == 3;
            let mut ox0 = 0;
            while ox0 < g.ow {
                let s = 2 * ox0 as isize - g.pl as isize;
                let (mut l, mut r, mut e) = (ninf, ninf, ninf);
                let inside = s >= 0 && s + span <= w;
                if rows3 && inside {
                    let p0 = x.as_ptr().offset(ya * w + s);
                    let (p1, p2) = (p0.offset(w), p0.offset(2 * w));
                    // The three rows' loads unrolled, each as the first operand: `maxps`
                    // returns the second for NaN, so a NaN is skipped as in the loops
                    // below. (A macro: a closure would be compiled without AVX-512.)
                    macro_rules! fold {
                        ($p:ident => $load:expr) => {{
                            let $p = p0;
                            let a = _mm512_max_ps($load, ninf);
                            let $p = p1;
                            let a = _mm512_max_ps($load, a);
                            let $p = p2;
                            _mm512_max_ps($load, a)
                        }};
                    }
                    l = fold!(p => _mm512_loadu_ps(p));
                    r = fold!(p => _mm512_loadu_ps(p.add(16)));
                    e = fold!(p => _mm512_castps128_ps512(_mm_load_ss(p.add(32))));
                } else if inside {
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
                        // Masked-off lanes are not read: the pointers may lie outside
                        // the row.
                        let p = x.as_ptr().wrapping_offset(y * w + s);
                        l = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, m0, p), l);
                        r = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, m1, p.wrapping_add(16)), r);
                        e = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, m2, p.wrapping_add(32)), e);
                    }
                }
                // Taps 0 and 1: the even and odd columns of the 32.
                let t0 = _mm512_permutex2var_ps(l, even, r);
                let mut y = _mm512_max_ps(_mm512_permutex2var_ps(l, odd, r), t0);
                if three {
                    // Lanes 1..16 of t0, then lane 0 of e: columns s + 2j + 2.
                    let t2 = _mm512_castsi512_ps(_mm512_alignr_epi32(
                        _mm512_castps_si512(e),
                        _mm512_castps_si512(t0),
                        1,
                    ));
                    y = _mm512_max_ps(t2, y);
                }
                let n = g.ow - ox0;
                if n >= 16 {
                    _mm512_storeu_ps(orow.add(ox0), y);
                } else {
                    _mm512_mask_storeu_ps(orow.add(ox0), ((1u32 << n) - 1) as __mmask16, y);
                }
                ox0 += 16;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    thread_local! {
        /// `Some(false)` keeps this kernel off every pool (the other paths' tests).
        pub(crate) static S2: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
    }
}
