//! 3x3 depthwise convolution at stride 2 on AVX-512, read in place.
//!
//! The other paths at stride 2 copy the input first: the channel-blocked path
//! ([`super::blocked`]) transposes each group of channels into a pixel-major padded copy
//! and the outputs back, the row path splits a padded copy's rows into even and odd
//! columns. At stride 2 the input is four times the output, so those copies move most of
//! the layer's bytes (MobileNetV2's 112x112 layer of 96 channels reads 4.8 MB for 1.2 MB
//! of output). Here each channel's output row is 16 outputs per vector, and the input is
//! read where it lies: for each of the three input rows of an output row, two loads take
//! the 32 input columns `2 * ox - pl ..` of 16 outputs, one permute picks the even columns
//! (tap 0), another the odd ones (tap 1), and a lane shift of the even ones with the 33rd
//! column gives tap 2. Columns and rows outside the image are masked out of the loads (they
//! read zero, the padding); the last vector of a row is a masked store.
//!
//! Before: copy (transpose or split) the input, then the window loop over the copy.
//! After: per output row, up to [`VECS`] vectors of 16 outputs, each the bias plus one
//! three-FMA chain per input row, the input permuted in registers. (Written first with an
//! array of accumulators indexed in loops, the sums lived on the stack: 1.5-1.8x the
//! blocked path's time.)
//!
//! Only rows of at least [`MIN_OW`] outputs are taken: see there for what was measured.
//! Channels run in parallel on the current rayon pool ([`super::per_channel`]).
use crate::activation::Activation;
use crate::conv::Geom2d;

/// Output vectors of a row computed together (independent FMA chains).
const VECS: usize = 4;

/// Whether this kernel takes the layer: an AVX-512 CPU, a 3x3 window at stride 2 without
/// dilation, padding of at most 2, and output rows at least [`MIN_OW`] wide.
pub(crate) fn applies(g: &Geom2d) -> bool {
    #[cfg(test)]
    if super::tests::S2X3.with(|f| f.get()) == Some(false) {
        return false;
    }
    available()
        && (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw) == (3, 3, 2, 2, 1, 1)
        && g.pt <= 2
        && g.pl <= 2
        && g.ow >= MIN_OW
}

/// Narrowest output row taken (see [`applies`]). On Zen 4, in MobileNetV2 against the
/// channel-blocked AVX2 path (`scripts/nodes_ab.py`, 10 rounds, 2 threads) the 112x112
/// layer of 96 channels (56 wide rows: four vectors, the first and last masked) took
/// 0.79x the time, but the 56x56 one of 144 channels (28 wide rows: two masked vectors)
/// 1.17x; `examples/dw_bench.rs` at 1 thread, 0.83-1.14x and 1.07-1.14x. Narrower rows
/// stay on the blocked path, which fills its lanes whatever the width.
const MIN_OW: usize = 48;

fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out = act(depthwise3x3_s2(x, w) + bias)` over all channels. The caller has checked the
/// geometry against the buffers and [`applies`].
pub(crate) fn run(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Geom2d,
    act: Activation,
    out: &mut [f32],
) {
    super::per_channel(x, g, out, |ci, xc, oc| {
        let mut wc = [0.0f32; 9];
        wc.copy_from_slice(&w[ci * 9..ci * 9 + 9]);
        let b = bias.map_or(0.0, |b| b[ci]);
        channel(xc, &wc, b, g, act, oc);
    });
}

/// One channel: `x` is its `h x w` plane, `out` its `oh x ow` plane.
fn channel(x: &[f32], w: &[f32; 9], bias: f32, g: &Geom2d, act: Activation, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `applies` found AVX-512F; the caller checked the plane sizes.
        unsafe { x86::channel(x, w, bias, g, act, out) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, w, bias, g, act, out);
        unreachable!("s2x3 runs only where `applies` found AVX-512")
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::VECS;
    use crate::activation::Activation;
    use crate::conv::Geom2d;
    use crate::transpose::x86::row_mask16 as mask;
    use std::arch::x86_64::*;

    /// The window's constants: tap weights, bias, permute indices, activation bounds.
    struct Consts {
        w: [__m512; 9],
        bias: __m512,
        even: __m512i,
        odd: __m512i,
        relu: bool,
        clamp: bool,
        lo: __m512,
        hi: __m512,
    }

    /// # Safety
    /// AVX-512F; `x` holds `g.h * g.w` values and `out` `g.oh * g.ow`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn channel(
        x: &[f32],
        wt: &[f32; 9],
        bias: f32,
        g: &Geom2d,
        act: Activation,
        out: &mut [f32],
    ) {
        let (relu, clamp, post) = act.in_tile();
        let (lo, hi) = clamp.unwrap_or((0.0, 0.0));
        let k = Consts {
            w: std::array::from_fn(|i| _mm512_set1_ps(wt[i])),
            bias: _mm512_set1_ps(bias),
            even: _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
            odd: _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
            relu,
            clamp: clamp.is_some(),
            lo: _mm512_set1_ps(lo),
            hi: _mm512_set1_ps(hi),
        };
        let ow = g.ow;
        for oy in 0..g.oh {
            let mut ox0 = 0;
            while ox0 < ow {
                let nv = (ow - ox0).div_ceil(16).min(VECS);
                match nv {
                    4 => vectors::<4>(x, g, &k, oy, ox0, out),
                    3 => vectors::<3>(x, g, &k, oy, ox0, out),
                    2 => vectors::<2>(x, g, &k, oy, ox0, out),
                    _ => vectors::<1>(x, g, &k, oy, ox0, out),
                }
                ox0 += 16 * nv;
            }
            if post {
                act.apply_slice(&mut out[oy * ow..(oy + 1) * ow]);
            }
        }
    }

    /// `N` vectors of output row `oy` from column `ox0` (the last one masked at the row's
    /// end), each an independent chain over the 9 taps.
    ///
    /// # Safety
    /// As [`channel`]; `ox0 + 16 * (N - 1) < g.ow`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn vectors<const N: usize>(
        x: &[f32],
        g: &Geom2d,
        k: &Consts,
        oy: usize,
        ox0: usize,
        out: &mut [f32],
    ) {
        let (h, w) = (g.h as isize, g.w as isize);
        let iy0 = 2 * oy as isize - g.pt as isize;
        // The three input rows, null where outside the image (they read zero).
        let rows: [*const f32; 3] = std::array::from_fn(|ky| {
            let iy = iy0 + ky as isize;
            if iy < 0 || iy >= h {
                std::ptr::null()
            } else {
                x.as_ptr().wrapping_offset(iy * w)
            }
        });
        let orow = out.as_mut_ptr().add(oy * g.ow);
        // Each vector's sum is one chain in a register, stored as soon as it is done;
        // out-of-order execution overlaps the chains of consecutive vectors.
        for v in 0..N {
            let s = 2 * (ox0 + 16 * v) as isize - g.pl as isize;
            let mut y = window(&rows, s, w, k);
            if k.relu {
                // maxps returns its second operand for NaN (and -0): +0.
                y = _mm512_max_ps(y, _mm512_setzero_ps());
            }
            if k.clamp {
                // Bounds first: a NaN in the second operand comes through.
                y = _mm512_min_ps(k.hi, _mm512_max_ps(k.lo, y));
            }
            let o = ox0 + 16 * v;
            let n = (g.ow - o).min(16);
            let m = ((1u32 << n) - 1) as __mmask16;
            _mm512_mask_storeu_ps(orow.add(o), m, y);
        }
    }

    /// Bias plus the 9 taps of the 16 outputs whose windows start at column `s` of
    /// `rows` (each `w` wide; null rows read zero): one short chain per row, summed at the
    /// end, rather than one chain of 9 dependent FMAs.
    ///
    /// # Safety
    /// AVX-512F (inlined into [`vectors`]); non-null rows hold `w` values.
    #[inline(always)]
    unsafe fn window(rows: &[*const f32; 3], s: isize, w: isize, k: &Consts) -> __m512 {
        // The loads' masks, the same for the three rows; `None` inside the row.
        let masks =
            (s < 0 || s + 33 > w).then(|| (mask(s, w), mask(s + 16, w), mask(s + 32, w) & 1));
        let r0 = row_taps(rows[0], s, masks, k, 0);
        let r1 = row_taps(rows[1], s, masks, k, 3);
        let r2 = row_taps(rows[2], s, masks, k, 6);
        _mm512_add_ps(_mm512_add_ps(k.bias, r0), _mm512_add_ps(r1, r2))
    }

    /// The three taps `t..t + 3` of one input row (zero for a null row).
    ///
    /// # Safety
    /// As [`window`].
    #[inline(always)]
    unsafe fn row_taps(
        row: *const f32,
        s: isize,
        masks: Option<(__mmask16, __mmask16, __mmask16)>,
        k: &Consts,
        t: usize,
    ) -> __m512 {
        if row.is_null() {
            return _mm512_setzero_ps();
        }
        let (l, r, e) = match masks {
            None => (
                _mm512_loadu_ps(row.offset(s)),
                _mm512_loadu_ps(row.offset(s + 16)),
                _mm512_castps128_ps512(_mm_load_ss(row.offset(s + 32))),
            ),
            // Masked-off lanes are not read: the pointers may lie outside the row.
            Some((m0, m1, m2)) => (
                _mm512_maskz_loadu_ps(m0, row.wrapping_offset(s)),
                _mm512_maskz_loadu_ps(m1, row.wrapping_offset(s + 16)),
                _mm512_maskz_loadu_ps(m2, row.wrapping_offset(s + 32)),
            ),
        };
        let t0 = _mm512_permutex2var_ps(l, k.even, r);
        let t1 = _mm512_permutex2var_ps(l, k.odd, r);
        // Lanes 1..16 of t0, then lane 0 of e: columns s + 2j + 2.
        let t2 = _mm512_castsi512_ps(_mm512_alignr_epi32(
            _mm512_castps_si512(e),
            _mm512_castps_si512(t0),
            1,
        ));
        let a = _mm512_mul_ps(t0, k.w[t]);
        let a = _mm512_fmadd_ps(t1, k.w[t + 1], a);
        _mm512_fmadd_ps(t2, k.w[t + 2], a)
    }
}
