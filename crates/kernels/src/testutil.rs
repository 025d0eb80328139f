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
