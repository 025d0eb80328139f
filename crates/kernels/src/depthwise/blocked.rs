//! Depthwise convolution vectorized across channels: 16 channels per vector on AVX-512,
//! 8 on AVX2.
//!
//! The row kernels of [`super`] vectorize along an output row, which wastes lanes and pays
//! per-row overheads on the small planes of a network's late layers (MobileNetV2 runs 576
//! and 960 channels at 14x14 and 7x7) and on stride-2 rows. Here a group of 16 channels is
//! transposed, a band of rows at a time, into a zero-padded pixel-major copy (each pixel a
//! vector of the 16 channels' values), every output is one vector of 16 channels summed
//! over the window's taps with the tap's 16 weights, and the outputs are transposed back to
//! NCHW. All lanes are used whatever the plane size, stride or dilation, and there are no
//! borders to special-case: the copy holds the padding.
//!
//! Before (per channel): pad-copy the plane, then per output row 1 to 4 vectors of 16
//! outputs, each a chain over the taps. After (per 16 channels and band of rows): 16x16
//! transposes in, 8 independent output vectors per step over the taps, 16x16 transposes out.
//!
//! The AVX2 kernel (8 channels) transposes its 8 accumulators (8 consecutive outputs of
//! the band) in registers and stores them straight into the 8 channels' planes, without
//! an output buffer; its whole 8 x 8 blocks (a row's partial last block taken as the 8
//! columns ending it, a band's partial last block of outputs as the 8 outputs ending
//! it) run as straight-line code; 3x3 windows unroll their taps; a full group's weights
//! are transposed 8 taps at a time (the rest gathered one tap at a time). On Zen 3
//! (`examples/dw_bench.rs`, MobileNetV2's 17 layers, with the previous kernel kept behind
//! a temporary switch and run alternately in one process) the blocked layers took
//! 0.59-0.69x the time at 1 thread, and MobileNetV2 0.92-0.94x at 1 and 2 threads.
//!
//! Work is split over (channel group, row band) pairs on the current rayon pool.
// Its callers dispatch to it on x86-64 only; elsewhere the geometry helpers go unused.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_imports))]
use super::{Isa, Reduce};
use crate::activation::Activation;
use crate::conv::Geom2d;
#[cfg(target_arch = "x86_64")]
use crate::SyncPtr;
use rayon::prelude::*;

/// Channels per vector.
const L: usize = 16;

/// Most pixels in one band's padded copy (each `L` floats): bounds the per-thread scratch.
const BAND_PX: usize = 1024;

/// Most kernel taps (the weights of a group live in a stack array).
const MAX_TAPS: usize = 64;

/// Floats of per-thread scratch the blocked path needs at most: a band's padded input and
/// its outputs.
pub(crate) const SCRATCH: usize = 2 * BAND_PX * L;

thread_local! {
    static BUF: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Grows the calling thread's scratch to [`SCRATCH`] floats.
pub(crate) fn reserve_scratch() {
    BUF.with_borrow_mut(|b| {
        if b.len() < SCRATCH {
            b.resize(SCRATCH, 0.0);
        }
    });
}

/// Width of the padded copy: the columns the windows of one output row span.
fn padded_width(g: &Geom2d) -> usize {
    (g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1
}

/// Padded rows the band of output rows `oy0..oy0 + rows` reads.
fn band_height(g: &Geom2d, rows: usize) -> usize {
    (rows - 1) * g.sh + (g.kh - 1) * g.dh + 1
}

/// Output rows per band: as many as keep the band's padded copy within [`BAND_PX`].
#[cfg(target_arch = "x86_64")]
fn band_rows(g: &Geom2d) -> usize {
    let wp = padded_width(g);
    let mut rows = 1;
    while rows < g.oh && band_height(g, rows + 1) * wp <= BAND_PX {
        rows += 1;
    }
    rows
}

/// Output planes up to this many pixels take the blocked path at stride 1.
const SMALL_PLANE: usize = 256;

/// Whether the blocked path takes this convolution: AVX-512 or AVX2 asked for and present,
/// enough channels to fill most lanes, a window that fits the weight array and a padded
/// output row that fits a band; and a layer where it wins. Measured on AVX-512 against the
/// row path on MobileNetV2's 17 depthwise layers (`blocked_vs_rows` in this module's benchmarks), the
/// blocked path takes 0.2x to 0.5x the time on 7x7 planes and stride-2 14x14 ones, about
/// 0.8x on 14x14 at stride 1 and 0.6x to 0.9x on the other stride-2 layers, but 1.3x to
/// 1.6x on stride-1 planes of 28x28 and more, where the row path fills its vectors and the
/// transposes cost more than they save.
///
/// Max pooling (`Reduce::Max`, the padded copy filled with `-inf`) is taken only for output
/// planes of [`SMALL_POOL`] pixels or fewer ([`SMALL_POOL_AVX2`] on AVX2): on AVX-512,
/// against the separable and whole-plane max kernels (`examples/pool_bench.rs`, best of
/// 100, 2 threads) it takes 0.4x the time on GoogLeNet's 14x14 -> 7x7 pool and 0.6-0.7x on
/// its 7x7 pool branch, about the same on 14x14 and 28x28 outputs, and 1.4-1.7x on the
/// 56x56 outputs of the 112x112 stride-2 pools, where the separable kernel fills its
/// vectors. Average pooling is never taken.
pub(crate) fn applies(isa: Isa, g: &Geom2d, red: Reduce) -> bool {
    if !matches!(isa, Isa::Avx512 | Isa::Avx2)
        || !isa.usable()
        || !matches!(red, Reduce::Conv(_) | Reduce::Max)
        || !fits(g)
    {
        return false;
    }
    #[cfg(test)]
    if let Some(force) = super::tests::BLOCKED.with(|f| f.get()) {
        return force;
    }
    let plane = g.oh * g.ow;
    let small = if isa == Isa::Avx512 {
        SMALL_PLANE
    } else if super::rows3x3::applies(g) {
        SMALL_PLANE_ROWS3X3
    } else {
        SMALL_PLANE_AVX2
    };
    g.c >= 8
        && match red {
            Reduce::Max if isa == Isa::Avx512 => plane <= SMALL_POOL,
            Reduce::Max => plane <= SMALL_POOL_AVX2,
            _ => (g.sh >= 2 && g.sw >= 2) || plane <= small,
        }
}

/// [`SMALL_PLANE`] for AVX2, whose row path has half the lanes. On Zen 3
/// (`blocked_vs_rows`, 1 and 2 threads), with the AVX2 band kernel that transposes its
/// accumulators out in registers, the blocked path took 0.43x the row path's time on
/// MobileNetV2's 28x28 layers at stride 1, 0.42-0.48x on 56x56 at stride 2, 0.87-0.93x on
/// 56x56 at stride 1 and 0.96-1.02x on 112x112 at stride 1 (left to the row path).
const SMALL_PLANE_AVX2: usize = 56 * 56;

/// [`SMALL_PLANE_AVX2`] for the 3x3 windows that the row-pair kernel
/// ([`super::rows3x3`]) computes at stride 1. On Zen 3 (`examples/dw_bench.rs`, the
/// policies alternating in one process, 1 and 2 threads) the row-pair kernel took 0.53x
/// the blocked path's time on MobileNetV2's 112x112 layer, 0.62x on 56x56 and 0.93-0.94x
/// on 28x28, but 1.2-1.3x on 14x14. At stride 2 the blocked path stays: the row-pair
/// kernel over the split copy took 1.1-1.2x its time on 112x112 and 1.6-1.7x on 56x56.
const SMALL_PLANE_ROWS3X3: usize = 14 * 14;

/// Output planes up to this many pixels take the blocked path for max pooling.
const SMALL_POOL: usize = 64;

/// [`SMALL_POOL`] for AVX2. On Zen 3 (`max_blocked_vs_rows` in this module's benchmarks,
/// 1 and 2 threads, two runs) the blocked path took 0.47-0.90x the time of the separable
/// and window kernels on the stride-2 pools of GoogLeNet and SqueezeNet with outputs of
/// 28x28 and less, 0.66-0.77x on GoogLeNet's 3x3 stride-1 pools on 28x28 and 7x7 planes,
/// 0.96-1.10x on its 14x14 ones, and 1.02-1.16x on the 56x56 outputs of the 112x112
/// stride-2 pools (ResNet-50's, GoogLeNet's and SqueezeNet's first).
const SMALL_POOL_AVX2: usize = 28 * 28;

pub(crate) fn fits(g: &Geom2d) -> bool {
    g.oh > 0
        && g.ow > 0
        && g.kh * g.kw <= MAX_TAPS
        && band_height(g, 1).saturating_mul(padded_width(g)) <= BAND_PX
}

/// `out = act(depthwise(x, w) + bias)` (`red` = `Conv(act)`) or the window maximum
/// (`red` = `Max`, NaN skipped, `w` and `bias` unused) over all channels. The caller has
/// checked the geometry against the buffers ([`super::check_geom`]), the weights and the
/// bias, that [`applies`] holds (so the CPU has `isa`: AVX-512F or AVX2 with FMA).
#[cfg(target_arch = "x86_64")]
pub(crate) fn run(
    isa: Isa,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Geom2d,
    red: Reduce,
    out: &mut [f32],
) {
    let (act, max) = match red {
        Reduce::Conv(act) => (act, false),
        _ => (Activation::None, true),
    };
    // Channels per group: a vector of the instruction set's.
    let lanes = if isa == Isa::Avx512 { L } else { L / 2 };
    let groups = g.c.div_ceil(lanes);
    let rows = band_rows(g);
    let bands = g.oh.div_ceil(rows);
    let op = g.oh * g.ow;
    let out = SyncPtr(out.as_mut_ptr());
    let task = |t: usize| {
        let (gi, bi) = (t / bands, t % bands);
        let c0 = gi * lanes;
        let oy0 = bi * rows;
        let band = Band {
            c0,
            cn: lanes.min(g.c - c0),
            oy0,
            oy1: (oy0 + rows).min(g.oh),
        };
        BUF.with_borrow_mut(|buf| {
            if buf.len() < SCRATCH {
                buf.resize(SCRATCH, 0.0);
            }
            // SAFETY: `isa` is present and is AVX-512 or AVX2 (`applies`, checked by the
            // caller); `band` lies inside the geometry, which the caller checked against
            // `x`, `w`, `bias` and `out`; `buf` holds SCRATCH floats, enough for a band
            // (`fits`); tasks write disjoint (channel, row) ranges of `out`.
            unsafe {
                if isa == Isa::Avx512 {
                    x86::band(x, w, bias, g, act, max, &band, buf, out.get(), op)
                } else {
                    x86::band_avx2(x, w, bias, g, act, max, &band, buf, out.get(), op)
                }
            };
        });
        if !matches!(
            act,
            Activation::None | Activation::Relu | Activation::Clip { .. }
        ) {
            for ch in band.c0..band.c0 + band.cn {
                // SAFETY: this task's own (channel, row band) range of `out`, in bounds.
                let row = unsafe {
                    std::slice::from_raw_parts_mut(
                        out.get().add(ch * op + band.oy0 * g.ow),
                        (band.oy1 - band.oy0) * g.ow,
                    )
                };
                act.apply_slice(row);
            }
        }
    };
    let tasks = groups * bands;
    let work = g.c * op * g.kh * g.kw;
    if tasks > 1 && work >= 1 << 16 && rayon::current_num_threads() > 1 {
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
}

/// Channels `c0..c0 + cn` (`cn <= L`), output rows `oy0..oy1`.
#[cfg(target_arch = "x86_64")]
struct Band {
    c0: usize,
    cn: usize,
    oy0: usize,
    oy1: usize,
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{band_height, padded_width, Band, Geom2d, L, MAX_TAPS};
    use crate::activation::Activation;
    use crate::transpose::x86::{lanes as mask, transpose16, transpose8};
    use std::arch::x86_64::*;

    /// One band: transpose in, convolve (or take the maximum: `max`), transpose out.
    ///
    /// # Safety
    /// AVX-512F; `band` inside `g`; `x`, `w` (unless `max`), `bias` checked against `g`; `buf` holds
    /// [`super::SCRATCH`] floats; `out` points at `g.c * op` writable floats of which this
    /// band's (channel, row) range is written by no one else meanwhile.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn band(
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        g: &Geom2d,
        act: Activation,
        max: bool,
        b: &Band,
        buf: &mut [f32],
        out: *mut f32,
        op: usize,
    ) {
        let wp = padded_width(g);
        let rows = b.oy1 - b.oy0;
        let hb = band_height(g, rows);
        let (tin, tout) = buf.split_at_mut(hb * wp * L);
        let tin = tin.as_mut_ptr();
        let tout = tout.as_mut_ptr();
        let plane = g.h * g.w;
        let cm = mask(b.cn);

        // The group's weights, tap-major: wt[t] holds the 16 channels' weights of tap t.
        let kk = g.kh * g.kw;
        let mut wt = [_mm512_setzero_ps(); MAX_TAPS];
        for (t, wv) in wt.iter_mut().enumerate().take(if max { 0 } else { kk }) {
            let mut lanes = [0.0f32; L];
            for (j, l) in lanes.iter_mut().enumerate().take(b.cn) {
                *l = w[(b.c0 + j) * kk + t];
            }
            *wv = _mm512_loadu_ps(lanes.as_ptr());
        }
        let bv = match bias {
            Some(bs) => _mm512_maskz_loadu_ps(cm, bs.as_ptr().add(b.c0)),
            None => _mm512_setzero_ps(),
        };

        // Transpose in: padded row r is image row oy0 * sh + r - pt. The padding holds the
        // reduction's neutral value.
        let zero = _mm512_setzero_ps();
        let pad = if max {
            _mm512_set1_ps(f32::NEG_INFINITY)
        } else {
            zero
        };
        let ncopy = g.w.min(wp.saturating_sub(g.pl));
        let xc = x.as_ptr().add(b.c0 * plane);
        for r in 0..hb {
            let dst = tin.add(r * wp * L);
            let iy = (b.oy0 * g.sh + r) as isize - g.pt as isize;
            if iy < 0 || iy >= g.h as isize || ncopy == 0 {
                for p in 0..wp {
                    _mm512_storeu_ps(dst.add(p * L), pad);
                }
                continue;
            }
            let lead = g.pl.min(wp);
            for p in 0..lead {
                _mm512_storeu_ps(dst.add(p * L), pad);
            }
            for p in g.pl + ncopy..wp {
                _mm512_storeu_ps(dst.add(p * L), pad);
            }
            let src = xc.add(iy as usize * g.w);
            let mut ix = 0;
            while ix < ncopy {
                let n = (ncopy - ix).min(L);
                let pm = mask(n);
                // Rows past the group's channels load nothing (mask 0) from a valid row.
                let mut v = [zero; 16];
                for (j, vj) in v.iter_mut().enumerate() {
                    let m = if j < b.cn { pm } else { 0 };
                    *vj = _mm512_maskz_loadu_ps(m, src.add(j.min(b.cn - 1) * plane + ix));
                }
                transpose16(&mut v);
                let d = dst.add((g.pl + ix) * L);
                if n == L {
                    for (j, vj) in v.iter().enumerate() {
                        _mm512_storeu_ps(d.add(j * L), *vj);
                    }
                } else {
                    for (j, vj) in v.iter().enumerate() {
                        if j < n {
                            _mm512_storeu_ps(d.add(j * L), *vj);
                        }
                    }
                }
                ix += n;
            }
        }

        // Convolve: output (oy, ox) of the band into tout[(oy - oy0) * ow + ox].
        // Other activations are applied to the finished rows (in `run`).
        let (relu, clamp, _) = act.in_tile();
        let (lo, hi) = clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        let post = Post {
            relu,
            clamp: clamp.is_some(),
            lo: _mm512_set1_ps(lo),
            hi: _mm512_set1_ps(hi),
        };
        // Tap offsets (in floats) from a window's first tap.
        let mut offs = [0usize; MAX_TAPS];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                offs[ky * g.kw + kx] = (ky * g.dh * wp + kx * g.dw) * L;
            }
        }
        // Outputs in groups of U (rows run together: a 7-wide plane still fills a group),
        // U independent FMA chains over the taps.
        const U: usize = 8;
        let n_out = rows * g.ow;
        let start = |o: usize| {
            let (r, ox) = (o / g.ow, o % g.ow);
            (r * g.sh * wp + ox * g.sw) * L
        };
        let mut o = 0;
        while o < n_out {
            let n = (n_out - o).min(U);
            let mut base = [0usize; U];
            for (u, bu) in base.iter_mut().enumerate() {
                *bu = start(o + u.min(n - 1));
            }
            let mut acc = [if max { pad } else { bv }; U];
            if max {
                // `maxps(v, acc)` keeps acc when v is NaN: NaN is skipped.
                for &off in offs.iter().take(kk) {
                    for (a, &bu) in acc.iter_mut().zip(&base) {
                        *a = _mm512_max_ps(_mm512_loadu_ps(tin.add(bu + off)), *a);
                    }
                }
            } else {
                for (&wv, &off) in wt.iter().zip(&offs).take(kk) {
                    for (a, &bu) in acc.iter_mut().zip(&base) {
                        *a = _mm512_fmadd_ps(wv, _mm512_loadu_ps(tin.add(bu + off)), *a);
                    }
                }
            }
            for (u, a) in acc.iter().enumerate().take(n) {
                _mm512_storeu_ps(tout.add((o + u) * L), post.apply(*a));
            }
            o += n;
        }

        // Transpose out: the band's outputs are one run of each channel's plane.
        let dst0 = out.add(b.c0 * op + b.oy0 * g.ow);
        let mut p = 0;
        while p < n_out {
            let n = (n_out - p).min(L);
            let mut v = [zero; 16];
            if n == L {
                for (j, vj) in v.iter_mut().enumerate() {
                    *vj = _mm512_loadu_ps(tout.add((p + j) * L));
                }
            } else {
                for (j, vj) in v.iter_mut().enumerate() {
                    if j < n {
                        *vj = _mm512_loadu_ps(tout.add((p + j) * L));
                    }
                }
            }
            transpose16(&mut v);
            let pm = mask(n);
            for (j, vj) in v.iter().enumerate() {
                let m = if j < b.cn { pm } else { 0 };
                _mm512_mask_storeu_ps(dst0.add(j.min(b.cn - 1) * op + p), m, *vj);
            }
            p += n;
        }
    }

    /// [`band`] for AVX2: 8 channels per vector (`b.cn <= 8`), 8 x 8 transposes.
    ///
    /// # Safety
    /// As [`band`], with AVX2 and FMA for AVX-512F.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn band_avx2(
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        g: &Geom2d,
        act: Activation,
        max: bool,
        b: &Band,
        buf: &mut [f32],
        out: *mut f32,
        op: usize,
    ) {
        const L8: usize = 8;
        let wp = padded_width(g);
        let rows = b.oy1 - b.oy0;
        let hb = band_height(g, rows);
        let tin = buf[..hb * wp * L8].as_mut_ptr();
        let plane = g.h * g.w;
        let lane_ids = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let zero = _mm256_setzero_ps();

        // The group's weights, tap-major, and its bias.
        let kk = g.kh * g.kw;
        // Only the first `kk` entries are written and read.
        let mut wt_buf = std::mem::MaybeUninit::<[__m256; MAX_TAPS]>::uninit();
        let wt = wt_buf.as_mut_ptr() as *mut __m256;
        let mut t = 0;
        if !max && b.cn == L8 {
            // Eight taps at a time: the group's 8 rows of weights transposed.
            while t + L8 <= kk {
                let mut v = [zero; 8];
                for (j, vj) in v.iter_mut().enumerate() {
                    *vj = _mm256_loadu_ps(w.as_ptr().add((b.c0 + j) * kk + t));
                }
                transpose8(&mut v);
                for (i, vi) in v.iter().enumerate() {
                    wt.add(t + i).write(*vi);
                }
                t += L8;
            }
        }
        while t < if max { 0 } else { kk } {
            let mut lanes = [0.0f32; L8];
            for (j, l) in lanes.iter_mut().enumerate().take(b.cn) {
                *l = w[(b.c0 + j) * kk + t];
            }
            wt.add(t).write(_mm256_loadu_ps(lanes.as_ptr()));
            t += 1;
        }
        let wt = std::slice::from_raw_parts(wt, if max { 0 } else { kk });
        let bv = match bias {
            Some(bs) => {
                let mut lanes = [0.0f32; L8];
                lanes[..b.cn].copy_from_slice(&bs[b.c0..b.c0 + b.cn]);
                _mm256_loadu_ps(lanes.as_ptr())
            }
            None => _mm256_setzero_ps(),
        };

        // Transpose in, as in `band`.
        let pad = if max {
            _mm256_set1_ps(f32::NEG_INFINITY)
        } else {
            zero
        };
        let ncopy = g.w.min(wp.saturating_sub(g.pl));
        let xc = x.as_ptr().add(b.c0 * plane);
        for r in 0..hb {
            let dst = tin.add(r * wp * L8);
            let iy = (b.oy0 * g.sh + r) as isize - g.pt as isize;
            if iy < 0 || iy >= g.h as isize || ncopy == 0 {
                for p in 0..wp {
                    _mm256_storeu_ps(dst.add(p * L8), pad);
                }
                continue;
            }
            for p in 0..g.pl.min(wp) {
                _mm256_storeu_ps(dst.add(p * L8), pad);
            }
            for p in g.pl + ncopy..wp {
                _mm256_storeu_ps(dst.add(p * L8), pad);
            }
            let src = xc.add(iy as usize * g.w);
            let mut ix = 0;
            while ix < ncopy {
                let n = (ncopy - ix).min(L8);
                let d = dst.add((g.pl + ix) * L8);
                if b.cn == L8 && ncopy >= L8 {
                    // A whole 8 x 8 block: straight-line loads, transpose and stores; a
                    // row's last partial block is taken as the 8 columns ending the row,
                    // overlapping the block before it (rewriting the same values).
                    let at = ix.min(ncopy - L8);
                    let mut v = [zero; 8];
                    for (j, vj) in v.iter_mut().enumerate() {
                        *vj = _mm256_loadu_ps(src.add(j * plane + at));
                    }
                    transpose8(&mut v);
                    let d = dst.add((g.pl + at) * L8);
                    for (j, vj) in v.iter().enumerate() {
                        _mm256_storeu_ps(d.add(j * L8), *vj);
                    }
                    ix += n;
                    continue;
                }
                let row0 = b.c0 * plane + iy as usize * g.w + ix;
                if b.cn == L8 && row0 + (L8 - 1) * plane + L8 <= x.len() {
                    // A copied run narrower than 8: whole loads reading past it (still
                    // inside `x`); the lanes past `n` become pixels that are not stored.
                    let mut v = [zero; 8];
                    for (j, vj) in v.iter_mut().enumerate() {
                        *vj = _mm256_loadu_ps(src.add(j * plane + ix));
                    }
                    transpose8(&mut v);
                    for (j, vj) in v.iter().enumerate().take(n) {
                        _mm256_storeu_ps(d.add(j * L8), *vj);
                    }
                    ix += n;
                    continue;
                }
                // Lanes below `n` (`maskload` reads only those).
                let pm = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lane_ids);
                // Rows past the group's channels stay zero.
                let mut v = [zero; 8];
                for (j, vj) in v.iter_mut().enumerate().take(b.cn) {
                    let s = src.add(j * plane + ix);
                    *vj = if n == L8 {
                        _mm256_loadu_ps(s)
                    } else {
                        _mm256_maskload_ps(s, pm)
                    };
                }
                transpose8(&mut v);
                for (j, vj) in v.iter().enumerate().take(n) {
                    _mm256_storeu_ps(d.add(j * L8), *vj);
                }
                ix += n;
            }
        }

        // Convolve (or take the maximum) 8 outputs at a time, as in `band`, then transpose
        // the 8 accumulators (output-major) in registers into 8 channel runs and store
        // them: the band's outputs are one run of each channel's plane, so outputs
        // `o..o + 8` of the band are 8 consecutive floats of each channel.
        let (relu, clamp, _) = act.in_tile();
        let (lo, hi) = clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        let (lo, hi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
        let mut offs = [0usize; MAX_TAPS];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                offs[ky * g.kw + kx] = (ky * g.dh * wp + kx * g.dw) * L8;
            }
        }
        const U: usize = 8;
        let k3 = g.kh == 3 && g.kw == 3 && g.dh == 1 && g.dw == 1;
        let dst0 = out.add(b.c0 * op + b.oy0 * g.ow);
        let n_out = rows * g.ow;
        // The window start of output `o` (row `r`, column `ox`), stepped without dividing.
        let (rstep, xstep) = (g.sh * wp * L8, g.sw * L8);
        let (mut r, mut ox) = (0usize, 0usize);
        let mut o = 0;
        while o < n_out {
            let mut n = (n_out - o).min(U);
            if n < U && n_out >= U {
                // The last partial block: the U outputs ending the band, overlapping the
                // block before (recomputing the same values), so that all stores are whole.
                o = n_out - U;
                n = U;
                (r, ox) = (o / g.ow, o % g.ow);
            }
            let mut base = [0usize; U];
            let (mut rr, mut xx) = (r, ox);
            for (u, bu) in base.iter_mut().enumerate() {
                *bu = rr * rstep + xx * xstep;
                if u + 1 < n {
                    xx += 1;
                    if xx == g.ow {
                        xx = 0;
                        rr += 1;
                    }
                }
            }
            ox += n;
            while ox >= g.ow {
                ox -= g.ow;
                r += 1;
            }
            let mut acc = [if max { pad } else { bv }; U];
            if max {
                // `maxps(v, acc)` keeps acc when v is NaN: NaN is skipped.
                for &off in offs.iter().take(kk) {
                    for (a, &bu) in acc.iter_mut().zip(&base) {
                        *a = _mm256_max_ps(_mm256_loadu_ps(tin.add(bu + off)), *a);
                    }
                }
            } else if k3 {
                // 3x3, undilated: the taps unrolled, each row of the window one pointer.
                for ky in 0..3 {
                    let row = tin.add(ky * wp * L8);
                    for kx in 0..3 {
                        let wv = wt[ky * 3 + kx];
                        for (a, &bu) in acc.iter_mut().zip(&base) {
                            *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(row.add(bu + kx * L8)), *a);
                        }
                    }
                }
            } else {
                for (&wv, &off) in wt.iter().zip(&offs).take(kk) {
                    for (a, &bu) in acc.iter_mut().zip(&base) {
                        *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(tin.add(bu + off)), *a);
                    }
                }
            }
            for v in acc.iter_mut() {
                if relu {
                    // NaN and -0 become +0 (`max` returns its second operand for those).
                    *v = _mm256_max_ps(*v, zero);
                }
                if clamp.is_some() {
                    // NaN is kept (bounds first).
                    *v = _mm256_min_ps(hi, _mm256_max_ps(lo, *v));
                }
            }
            transpose8(&mut acc);
            let d = dst0.add(o);
            if n == L8 && b.cn == L8 {
                for (j, v) in acc.iter().enumerate() {
                    _mm256_storeu_ps(d.add(j * op), *v);
                }
            } else {
                for (j, v) in acc.iter().enumerate().take(b.cn) {
                    if n == L8 {
                        _mm256_storeu_ps(d.add(j * op), *v);
                    } else {
                        // A masked store is slow on some CPUs (AMD): through a buffer.
                        let mut lanes = [0.0f32; L8];
                        _mm256_storeu_ps(lanes.as_mut_ptr(), *v);
                        std::ptr::copy_nonoverlapping(lanes.as_ptr(), d.add(j * op), n);
                    }
                }
            }
            o += n;
        }
    }

    /// Relu (NaN to +0, as `maxps` returns its second operand) or Clip (NaN kept: bounds
    /// first) in registers.
    struct Post {
        relu: bool,
        clamp: bool,
        lo: __m512,
        hi: __m512,
    }

    impl Post {
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn apply(&self, v: __m512) -> __m512 {
            let v = if self.relu {
                _mm512_max_ps(v, _mm512_setzero_ps())
            } else {
                v
            };
            if self.clamp {
                _mm512_min_ps(self.hi, _mm512_max_ps(self.lo, v))
            } else {
                v
            }
        }
    }
}
