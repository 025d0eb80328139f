//! 3x3 depthwise convolution over a padded channel, two output rows at a time sharing the
//! input rows they read (AVX2 + FMA).
//!
//! The general window engine (`interior_impl!` in `mod.rs`) computes each vector of outputs on
//! its own: nine loads, one per tap, from a job list that carries masks and pointers for
//! any window, stride and tail. For the 3x3 windows of MobileNet-style networks this kernel
//! keeps the nine weights in registers and computes a 2 x 2 block of vectors (two output
//! rows, 16 outputs each): every input vector it loads feeds the taps of both rows that
//! read it, so stride 1 loads 4 input rows for 2 output rows (24 loads for 36 FMAs,
//! against 36 for 36) and stride 2 loads 5 for 2. The taps of each output are summed in
//! the same order as the window engine (bias, then row by row, column by column), so the
//! results are identical.
//!
//! Before: one vector per job, nine loads, a job list rebuilt per four vectors. After: a
//! 2 x 2 block of vectors per step, the weights in registers, the row's last vector
//! overlapping the one before it (recomputing, not masking, the outputs they share).
//!
//! Stride 2 reads the split copy of [`super::split_row`]: even columns, then odd ones, so
//! every tap is a contiguous load.
//!
//! On Zen 3 (`examples/dw_bench.rs`, MobileNetV2's 17 layers at 1 thread, the old code
//! behind a temporary switch, alternating in one process) it took 0.38-0.57x the general
//! loop's time at stride 1 (112x112 to 14x14 planes) and 0.65-0.96x at stride 2; against
//! the channel-blocked path, 0.53x on 112x112, 0.62x on 56x56, 0.93x on 28x28 and 1.2-1.3x
//! on 14x14 at stride 1, 1.1-1.7x at stride 2, which [`super::blocked::applies`] follows.
//! MobileNetV2 as a whole: 0.975-0.984x the time at 1 thread, 0.95-1.0x at 2 (p50 of 150
//! runs each, alternating).
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

/// Whether the kernel computes this window: 3x3, undilated, stride 1 or 2 (the same both
/// ways), at least one vector wide.
pub(super) fn applies(g: &crate::conv::Geom2d) -> bool {
    g.kh == 3
        && g.kw == 3
        && g.dh == 1
        && g.dw == 1
        && g.sh == g.sw
        && (g.sh == 1 || g.sh == 2)
        && g.ow >= 8
}

/// The activation applied in registers: none, Relu, or Clip.
#[derive(Clone, Copy)]
pub(super) enum Post {
    None,
    Relu,
    Clip(f32, f32),
}

/// One padded channel: `oh` output rows of `ow` from the copy at `x` (rows `wp` apart;
/// at stride 2 each row split, its odd columns from `half` on).
pub(super) struct Plane {
    pub x: *const f32,
    pub wp: usize,
    pub half: usize,
    pub oh: usize,
    pub ow: usize,
    pub out: *mut f32,
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::{Plane, Post};
    use std::arch::x86_64::*;

    /// `act(bias + sum of the 3x3 taps)` for every output of the plane, stride `S`.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `w` holds 9 weights. Stride 1: the copy holds
    /// `oh + 2` rows of `wp >= ow + 2` values. Stride 2: `2 * oh + 1` rows of
    /// `wp >= 2 * ow + 1` values, each split with `half = wp.div_ceil(2)`. `out` holds
    /// `oh * ow` values, and `ow >= 8`.
    #[target_feature(enable = "avx2,fma")]
    pub(in super::super) unsafe fn conv3x3<const S: usize>(
        p: &Plane,
        w: &[f32; 9],
        bias: f32,
        post: Post,
    ) {
        match post {
            Post::None => plane::<S, 0>(p, w, bias, 0.0, 0.0),
            Post::Relu => plane::<S, 1>(p, w, bias, 0.0, 0.0),
            Post::Clip(lo, hi) => plane::<S, 2>(p, w, bias, lo, hi),
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn plane<const S: usize, const P: u8>(
        p: &Plane,
        w: &[f32; 9],
        bias: f32,
        lo: f32,
        hi: f32,
    ) {
        let wv: [__m256; 9] = std::array::from_fn(|i| _mm256_set1_ps(w[i]));
        let k = Consts {
            wv,
            bias: _mm256_set1_ps(bias),
            lo: _mm256_set1_ps(lo),
            hi: _mm256_set1_ps(hi),
            wp: p.wp,
            // Column of tap `kx` (and of each vector's first output) in a row of the copy.
            col: if S == 1 { [0, 1, 2] } else { [0, p.half, 1] },
            ow: p.ow,
        };
        let mut oy = 0;
        while oy < p.oh {
            let two = oy + 2 <= p.oh;
            let src = p.x.add(oy * S * p.wp);
            let out = p.out.add(oy * p.ow);
            let mut x = 0;
            macro_rules! at {
                ($nv:literal, $x:expr) => {
                    if two {
                        block::<S, P, 2, $nv>(&k, src.add($x), out.add($x))
                    } else {
                        block::<S, P, 1, $nv>(&k, src.add($x), out.add($x))
                    }
                };
            }
            while x + 16 <= p.ow {
                at!(2, x);
                x += 16;
            }
            if x + 8 <= p.ow {
                at!(1, x);
                x += 8;
            }
            if x < p.ow {
                // The last vector ends the row, overlapping the one before.
                at!(1, p.ow - 8);
            }
            oy += if two { 2 } else { 1 };
        }
    }

    /// What every block of a plane shares.
    struct Consts {
        wv: [__m256; 9],
        bias: __m256,
        lo: __m256,
        hi: __m256,
        wp: usize,
        col: [usize; 3],
        ow: usize,
    }

    /// `R` output rows by `NV` vectors from the copy's row at `src`, output at `out`.
    #[inline(always)]
    unsafe fn block<const S: usize, const P: u8, const R: usize, const NV: usize>(
        k: &Consts,
        src: *const f32,
        out: *mut f32,
    ) {
        let mut acc = [[k.bias; NV]; R];
        // Input row `i` of the block feeds output row `r` through kernel row `i - S * r`.
        for i in 0..S * (R - 1) + 3 {
            for kx in 0..3 {
                let row = src.add(i * k.wp + k.col[kx]);
                for v in 0..NV {
                    let xv = _mm256_loadu_ps(row.add(8 * v));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        if i >= S * r && i - S * r < 3 {
                            let ky = i - S * r;
                            acc[v] = _mm256_fmadd_ps(xv, k.wv[ky * 3 + kx], acc[v]);
                        }
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, &a) in acc.iter().enumerate() {
                let y = match P {
                    // As the window engine: NaN and -0 give +0.
                    1 => _mm256_max_ps(a, _mm256_setzero_ps()),
                    2 => _mm256_min_ps(k.hi, _mm256_max_ps(k.lo, a)),
                    _ => a,
                };
                _mm256_storeu_ps(out.add(r * k.ow + 8 * v), y);
            }
        }
    }
}
