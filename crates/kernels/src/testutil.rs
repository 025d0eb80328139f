//! Pseudo-random test data shared by the kernels' unit tests and, through a `#[path]`
//! module, their benchmarks (`examples/common`): the same values on every run.

/// `n` values in [-1, 1) from `seed` (xorshift): the GEMM and Winograd tests, the benchmarks.
pub(crate) fn rnd(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `n` values in [-1, 1) from `seed` (a linear congruential generator): the depthwise and
/// pooling tests.
pub(crate) fn rnd_lcg(n: usize, seed: u64) -> Vec<f32> {
    let step = |s: u64| {
        s.wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
    };
    let mut s = step(seed);
    (0..n)
        .map(|_| {
            s = step(s);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A direct convolution in f64 of one NCHW image (`g.c x g.h x g.w`) with weights
/// `[m][c][kh][kw]` and a bias: the reference of the first-layer kernels' tests (any
/// stride, dilation and padding; one group). Unit tests only: the benchmarks, which
/// include this file, have no `crate::conv`.
#[cfg(test)]
pub(crate) fn conv_naive(
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    g: &crate::conv::Geom2d,
    m: usize,
) -> Vec<f32> {
    let mut y = vec![0.0; m * g.oh * g.ow];
    for o in 0..m {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let mut acc = bias[o] as f64;
                for c in 0..g.c {
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
                            let ix = (ox * g.sw + kx * g.dw) as isize - g.pl as isize;
                            if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                continue;
                            }
                            let xv = x[(c * g.h + iy as usize) * g.w + ix as usize];
                            let wv = w[((o * g.c + c) * g.kh + ky) * g.kw + kx];
                            acc += xv as f64 * wv as f64;
                        }
                    }
                }
                y[(o * g.oh + oy) * g.ow + ox] = acc as f32;
            }
        }
    }
    y
}
