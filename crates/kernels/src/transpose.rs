//! In-register transposes shared by the kernels that change a block's orientation, and
//! the lane helpers several kernels share (tail and row masks, even / odd splits).

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    /// Transposes 16 vectors: `r[i]` lane `j` becomes `r[j]` lane `i` (64 shuffles).
    ///
    /// # Safety
    /// The CPU must have AVX-512F; inline it into a function compiled for AVX-512.
    #[inline(always)]
    pub(crate) unsafe fn transpose16(r: &mut [__m512; 16]) {
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // u[4i + m], 128-bit lane l: column 4l + m of rows 4i..4i + 4.
        let mut u = [_mm512_setzero_ps(); 16];
        for i in 0..4 {
            let (a, b) = (_mm512_castps_pd(t[4 * i]), _mm512_castps_pd(t[4 * i + 2]));
            let (c, d) = (
                _mm512_castps_pd(t[4 * i + 1]),
                _mm512_castps_pd(t[4 * i + 3]),
            );
            u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
            u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
            u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
        }
        // A 4x4 transpose of 128-bit lanes among u[m], u[4 + m], u[8 + m], u[12 + m].
        for m in 0..4 {
            let s0 = _mm512_shuffle_f32x4::<0x88>(u[m], u[4 + m]);
            let s1 = _mm512_shuffle_f32x4::<0xdd>(u[m], u[4 + m]);
            let s2 = _mm512_shuffle_f32x4::<0x88>(u[8 + m], u[12 + m]);
            let s3 = _mm512_shuffle_f32x4::<0xdd>(u[8 + m], u[12 + m]);
            r[m] = _mm512_shuffle_f32x4::<0x88>(s0, s2);
            r[4 + m] = _mm512_shuffle_f32x4::<0x88>(s1, s3);
            r[8 + m] = _mm512_shuffle_f32x4::<0xdd>(s0, s2);
            r[12 + m] = _mm512_shuffle_f32x4::<0xdd>(s1, s3);
        }
    }

    /// The AVX-512 mask of lanes `0..16` of a load at column `start` of a row `w` wide
    /// that lie inside it (`start` may be negative or past the row: no lanes).
    #[inline(always)]
    pub(crate) fn row_mask16(start: isize, w: isize) -> __mmask16 {
        lane_range16(-start, w - start)
    }

    /// The AVX-512 mask of lanes `lo..hi` (clamped to `0..16`; none where `hi <= lo`).
    #[inline(always)]
    pub(crate) fn lane_range16(lo: isize, hi: isize) -> __mmask16 {
        let (lo, hi) = (lo.clamp(0, 16), hi.clamp(0, 16));
        if hi <= lo {
            0
        } else {
            (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as __mmask16
        }
    }

    /// An AVX2 load / store mask with lanes `0..n` set (all of them for `n >= 8`).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn mask8(n: usize) -> __m256i {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n.min(8) as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    /// The even-indexed values of the 16 in `a` then `b`, in order (2 shuffles).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn evens8(a: __m256, b: __m256) -> __m256 {
        // [a0 a2 b0 b2 | a4 a6 b4 b6], then the 64-bit lanes in the order 0, 2, 1, 3.
        let s = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(s)))
    }

    /// The even-indexed and the odd-indexed values of the 16 in `a` then `b`, each in
    /// order (4 shuffles).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn even_odd8(a: __m256, b: __m256) -> (__m256, __m256) {
        let o = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
        let o = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(o)));
        (evens8(a, b), o)
    }

    /// Transposes 8 vectors: `r[i]` lane `j` becomes `r[j]` lane `i` (24 shuffles).
    ///
    /// # Safety
    /// The CPU must have AVX; inline it into a function compiled for AVX2.
    #[inline(always)]
    pub(crate) unsafe fn transpose8(r: &mut [__m256; 8]) {
        let mut t = [_mm256_setzero_ps(); 8];
        for i in 0..4 {
            t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // u[4h + m], 128-bit lane l: column 4l + m of rows 4h..4h + 4.
        let mut u = [_mm256_setzero_ps(); 8];
        for h in 0..2 {
            u[4 * h] = _mm256_shuffle_ps::<0x44>(t[4 * h], t[4 * h + 2]);
            u[4 * h + 1] = _mm256_shuffle_ps::<0xEE>(t[4 * h], t[4 * h + 2]);
            u[4 * h + 2] = _mm256_shuffle_ps::<0x44>(t[4 * h + 1], t[4 * h + 3]);
            u[4 * h + 3] = _mm256_shuffle_ps::<0xEE>(t[4 * h + 1], t[4 * h + 3]);
        }
        for m in 0..4 {
            r[m] = _mm256_permute2f128_ps::<0x20>(u[m], u[4 + m]);
            r[4 + m] = _mm256_permute2f128_ps::<0x31>(u[m], u[4 + m]);
        }
    }

    /// The first `n` lanes (all 16 for `n >= 16`).
    #[inline(always)]
    pub(crate) fn lanes(n: usize) -> __mmask16 {
        if n >= 16 {
            0xFFFF
        } else {
            (1u16 << n) - 1
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[target_feature(enable = "avx512f")]
        unsafe fn transposed(m: &[f32; 256]) -> [f32; 256] {
            let mut r = [_mm512_setzero_ps(); 16];
            for (i, v) in r.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(m.as_ptr().add(16 * i));
            }
            transpose16(&mut r);
            let mut got = [0.0f32; 256];
            for (i, v) in r.iter().enumerate() {
                _mm512_storeu_ps(got.as_mut_ptr().add(16 * i), *v);
            }
            got
        }

        #[target_feature(enable = "avx2")]
        unsafe fn transposed8(m: &[f32; 64]) -> [f32; 64] {
            let mut r = [_mm256_setzero_ps(); 8];
            for (i, v) in r.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(m.as_ptr().add(8 * i));
            }
            transpose8(&mut r);
            let mut got = [0.0f32; 64];
            for (i, v) in r.iter().enumerate() {
                _mm256_storeu_ps(got.as_mut_ptr().add(8 * i), *v);
            }
            got
        }

        #[test]
        fn transpose8_transposes() {
            if !is_x86_feature_detected!("avx2") {
                return;
            }
            let m: [f32; 64] = std::array::from_fn(|v| v as f32);
            // SAFETY: AVX2 checked above.
            let got = unsafe { transposed8(&m) };
            for i in 0..8 {
                for j in 0..8 {
                    assert_eq!(got[8 * i + j], m[8 * j + i]);
                }
            }
        }

        #[test]
        fn transpose16_transposes() {
            if !is_x86_feature_detected!("avx512f") {
                return;
            }
            let m: [f32; 256] = std::array::from_fn(|v| v as f32);
            // SAFETY: AVX-512F checked above.
            let got = unsafe { transposed(&m) };
            for i in 0..16 {
                for j in 0..16 {
                    assert_eq!(got[16 * i + j], m[16 * j + i]);
                }
            }
            assert_eq!(lanes(3), 0b111);
            assert_eq!(lanes(16), 0xFFFF);
            assert_eq!(lanes(40), 0xFFFF);
        }
    }
}
