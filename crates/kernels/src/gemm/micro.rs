//! Microkernels: `tile[MR x NR] = sum over k of a[k][0..MR] (x) b[k][0..NR]`.
//!
//! `a` is a packed `A` panel (`kc` groups of `MR`), `b` a packed `B` panel (`kc` groups of
//! `NR`); the tile is row-major with leading dimension `NR`. The accumulators live in
//! registers for the whole `kc` loop: `A` values are broadcast, `B` rows are vectors.
//! Each kernel is compiled for its instruction set with `#[target_feature]` and chosen at
//! run time by [`super::Kernel::detect`].

/// Signature shared by all microkernels.
///
/// # Safety
/// `a` must hold `kc * MR` floats, `b` `kc * NR`, `tile` `MR * NR`, and the CPU must have
/// the kernel's instruction set.
pub type MicroFn = unsafe fn(kc: usize, a: *const f32, b: *const f32, tile: *mut f32);

/// Portable kernel (any CPU): 4 x 16 with plain arrays the compiler vectorizes.
pub const GENERIC_MR: usize = 4;
pub const GENERIC_NR: usize = 16;

/// # Safety
/// See [`MicroFn`].
pub unsafe fn generic(kc: usize, a: *const f32, b: *const f32, tile: *mut f32) {
    const MR: usize = GENERIC_MR;
    const NR: usize = GENERIC_NR;
    let a = std::slice::from_raw_parts(a, kc * MR);
    let b = std::slice::from_raw_parts(b, kc * NR);
    let mut acc = [[0.0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for i in 0..MR {
            let ai = ap[i];
            for j in 0..NR {
                acc[i][j] += ai * bp[j];
            }
        }
    }
    let tile = std::slice::from_raw_parts_mut(tile, MR * NR);
    for i in 0..MR {
        tile[i * NR..(i + 1) * NR].copy_from_slice(&acc[i]);
    }
}

#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use std::arch::x86_64::*;

    pub const AVX2_MR: usize = 6;
    pub const AVX2_NR: usize = 16;

    /// AVX2 + FMA: 6 x 16, twelve ymm accumulators.
    ///
    /// # Safety
    /// See [`super::MicroFn`]; needs AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(kc: usize, a: *const f32, b: *const f32, tile: *mut f32) {
        const MR: usize = AVX2_MR;
        const NR: usize = AVX2_NR;
        let mut c = [[_mm256_setzero_ps(); 2]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for (i, ci) in c.iter_mut().enumerate() {
                let ai = _mm256_broadcast_ss(&*a.add(i));
                ci[0] = _mm256_fmadd_ps(ai, b0, ci[0]);
                ci[1] = _mm256_fmadd_ps(ai, b1, ci[1]);
            }
            a = a.add(MR);
            b = b.add(NR);
        }
        for (i, ci) in c.iter().enumerate() {
            _mm256_storeu_ps(tile.add(i * NR), ci[0]);
            _mm256_storeu_ps(tile.add(i * NR + 8), ci[1]);
        }
    }

    pub const AVX512_MR: usize = 14;
    pub const AVX512_NR: usize = 32;

    /// AVX-512F: 14 x 32, twenty-eight zmm accumulators, broadcasts from memory.
    ///
    /// # Safety
    /// See [`super::MicroFn`]; needs AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn avx512(kc: usize, a: *const f32, b: *const f32, tile: *mut f32) {
        const MR: usize = AVX512_MR;
        const NR: usize = AVX512_NR;
        let mut c = [[_mm512_setzero_ps(); 2]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for (i, ci) in c.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a.add(i));
                ci[0] = _mm512_fmadd_ps(ai, b0, ci[0]);
                ci[1] = _mm512_fmadd_ps(ai, b1, ci[1]);
            }
            a = a.add(MR);
            b = b.add(NR);
        }
        for (i, ci) in c.iter().enumerate() {
            _mm512_storeu_ps(tile.add(i * NR), ci[0]);
            _mm512_storeu_ps(tile.add(i * NR + 16), ci[1]);
        }
    }
}
