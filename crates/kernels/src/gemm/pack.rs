//! Operands as sources of packed panels.
//!
//! The microkernel reads `A` as panels of `MR` rows and `B` as panels of `NR` columns, each
//! stored depth-major (`kc` groups of `MR` or `NR` values). A [`PanelSource`] produces such
//! a panel from wherever the operand lives: a strided matrix, or an image read through an
//! implicit im2col (no im2col buffer is ever built).
use crate::conv::{valid_range, Geom2d};

/// An operand with `len` rows (of `A`) or columns (of `B`) and depth `K`, packed on demand.
pub trait PanelSource: Sync {
    /// Rows of `A` (M) or columns of `B` (N).
    fn len(&self) -> usize;
    /// The shared dimension K.
    fn depth(&self) -> usize;
    /// Writes `out[kk * w + j] = elem(p0 + j, k0 + kk)` for `kk < kc`, `j < w`, with zeros
    /// where `p0 + j >= len()`. `out` holds at least `kc * w` values; the caller guarantees
    /// `p0 < len()` and `k0 + kc <= depth()`.
    fn pack(&self, p0: usize, w: usize, k0: usize, kc: usize, out: &mut [f32]);

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Copies a short run without a call to `memcpy` (panel runs are 1 to 32 floats): two
/// fixed-size copies that may overlap, the way memcpy handles small sizes itself.
#[inline(always)]
fn copy_short(src: &[f32], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let (src, dst) = (&src[..n], &mut dst[..n]);
    fn two<const K: usize>(src: &[f32], dst: &mut [f32]) {
        let n = src.len();
        let head: [f32; K] = src[..K].try_into().unwrap_or([0.0; K]);
        let tail: [f32; K] = src[n - K..].try_into().unwrap_or([0.0; K]);
        dst[..K].copy_from_slice(&head);
        dst[n - K..].copy_from_slice(&tail);
    }
    match n {
        32.. => {
            let mut i = 0;
            while i + 32 <= n {
                let c: [f32; 32] = src[i..i + 32].try_into().unwrap_or([0.0; 32]);
                dst[i..i + 32].copy_from_slice(&c);
                i += 32;
            }
            if i < n {
                copy_short(&src[i..], &mut dst[i..]);
            }
        }
        16..=31 => two::<16>(src, dst),
        8..=15 => two::<8>(src, dst),
        4..=7 => two::<4>(src, dst),
        _ => dst.iter_mut().zip(src).for_each(|(d, s)| *d = *s),
    }
}

/// `dst[j] = src[j * stride]`; stride 2 (the common downsampling convolution) uses
/// AVX-512 permutes or AVX2 shuffles where the CPU has them. Also gathers the input of
/// strided 1x1 convolutions ([`crate::subsample`]).
#[inline]
pub(crate) fn copy_strided(src: &[f32], stride: usize, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if stride == 2 && dst.len() >= 16 && has_avx512() {
        // SAFETY: AVX-512F is present; the helper bounds every access by the slices.
        unsafe { x86::stride2_avx512(src, dst) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if stride == 2 && dst.len() >= 8 && has_avx2() {
        // SAFETY: AVX2 is present; the helper bounds every access by the slices.
        unsafe { x86::stride2_avx2(src, dst) };
        return;
    }
    for (d, s) in dst.iter_mut().zip(src.iter().step_by(stride)) {
        *d = *s;
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx512f"))
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2"))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Im2col;
    use crate::transpose::x86::{lanes, transpose16, transpose8};
    use std::arch::x86_64::*;

    /// Longest run (panel width) [`pack_run_avx512`] packs.
    pub const RUN_MAX: usize = 64;

    /// Bits `0..8` of `x` spread to the even bits `0, 2, .., 14`.
    #[inline(always)]
    fn spread(x: u16) -> u16 {
        let x = x & 0xFF;
        let x = (x | (x << 4)) & 0x0F0F;
        let x = (x | (x << 2)) & 0x3333;
        (x | (x << 1)) & 0x5555
    }

    /// [`Im2col::pack_run`] for strides 1 and 2 with masked AVX-512 moves: each depth row
    /// of the run is one to four 16-lane stores, the window columns that fall off the image
    /// row loaded as zeros by the load mask (no separate fills), and the kernel row's input
    /// row found once for its `kw` columns.
    ///
    /// # Safety
    /// AVX-512F; `run <= w <= RUN_MAX`; `out` holds `kc * w` values; `oy, ox0 .. ox0 + run`
    /// are output positions and `k0 + kc <= depth` (as [`super::PanelSource::pack`]).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn pack_run_avx512(
        src: &Im2col<'_>,
        oy: usize,
        ox0: usize,
        run: usize,
        j0: usize,
        w: usize,
        k0: usize,
        kc: usize,
        out: &mut [f32],
    ) {
        let g = &src.g;
        // Per kernel column: the mask of run positions that read inside the row (one
        // 64-bit mask, 16 bits per chunk), and the offset of position 0 from the row start
        // (negative when position 0 reads left of the row).
        const MAX_KW: usize = 16;
        let mut cols = [(0u64, 0isize); MAX_KW];
        let per_kx = g.kw <= MAX_KW;
        let span = |kx: usize| {
            let (lo, hi, ix0) = src.col_span(kx, ox0, run);
            let m = if lo < hi {
                let upto = |n: usize| if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
                upto(hi) & !upto(lo)
            } else {
                0
            };
            (m, ix0 as isize - (lo * g.sw) as isize)
        };
        if per_kx {
            for (kx, c) in cols.iter_mut().enumerate().take(g.kw) {
                *c = span(kx);
            }
        }
        let chunks = run.div_ceil(16);
        let idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let zero = _mm512_setzero_ps();
        let kk_per_c = g.kh * g.kw;
        let (mut ci, mut ky, mut kx) = (k0 / kk_per_c, (k0 % kk_per_c) / g.kw, k0 % g.kw);
        let plane = g.h * g.w;
        let base = out.as_mut_ptr().add(j0);
        let x = src.x.as_ptr();
        let mut kk = 0;
        while kk < kc {
            // Depth rows kk .. kk + n share the input row of (ci, ky).
            let n = (g.kw - kx).min(kc - kk);
            let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
            if iy < 0 || iy >= g.h as isize {
                for t in 0..n {
                    let dst = base.add((kk + t) * w);
                    for c in 0..chunks {
                        let sm = lanes(run - 16 * c);
                        _mm512_mask_storeu_ps(dst.add(16 * c), sm, zero);
                    }
                }
            } else {
                let row = x.add(ci * plane + iy as usize * g.w);
                for t in 0..n {
                    let (m, off) = if per_kx { cols[kx + t] } else { span(kx + t) };
                    let dst = base.add((kk + t) * w);
                    let first = row.wrapping_offset(off);
                    for c in 0..chunks {
                        let sm = lanes(run - 16 * c);
                        let pm = ((m >> (16 * c)) & 0xFFFF) as u16;
                        let v = if g.sw == 1 {
                            _mm512_maskz_loadu_ps(pm, first.wrapping_add(16 * c))
                        } else {
                            let s = first.wrapping_add(32 * c);
                            let a = _mm512_maskz_loadu_ps(spread(pm), s);
                            let b = _mm512_maskz_loadu_ps(spread(pm >> 8), s.wrapping_add(16));
                            _mm512_permutex2var_ps(a, idx, b)
                        };
                        _mm512_mask_storeu_ps(dst.add(16 * c), sm, v);
                    }
                }
            }
            kk += n;
            kx = 0;
            ky += 1;
            if ky == g.kh {
                ky = 0;
                ci += 1;
            }
        }
    }

    /// Panel columns `j < valid` from matrix rows `p0 + j` (rows `sp` apart, depth
    /// contiguous), depth `k0 .. k0 + kc`: `out[kk * w + j] = data[(p0 + j) * sp + k0 + kk]`.
    /// Blocks of 16 rows by 16 depths are loaded as 16 vectors, transposed in registers and
    /// stored as 16 depth rows of the panel, instead of one scalar move per element (a
    /// transformer's activations packed as `A`, attention keys packed as `B`).
    ///
    /// # Safety
    /// AVX-512F; rows `p0 .. p0 + valid` at depths `k0 .. k0 + kc` inside `data`;
    /// `valid <= w`; `out` holds `kc * w` values (columns `valid..w` are left as they are).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn pack_rows_avx512(
        data: &[f32],
        sp: usize,
        p0: usize,
        valid: usize,
        w: usize,
        k0: usize,
        kc: usize,
        out: &mut [f32],
    ) {
        let src = data.as_ptr();
        let dst = out.as_mut_ptr();
        let zero = _mm512_setzero_ps();
        let mut j0 = 0;
        while j0 < valid {
            let rows = (valid - j0).min(16);
            let store = lanes(rows);
            let mut kk0 = 0;
            while kk0 < kc {
                let depth = (kc - kk0).min(16);
                let load = lanes(depth);
                let mut v = [zero; 16];
                for (i, vi) in v.iter_mut().enumerate() {
                    if i < rows {
                        let at = (p0 + j0 + i) * sp + k0 + kk0;
                        *vi = _mm512_maskz_loadu_ps(load, src.add(at));
                    }
                }
                transpose16(&mut v);
                for (t, vt) in v.iter().enumerate() {
                    if t < depth {
                        _mm512_mask_storeu_ps(dst.add((kk0 + t) * w + j0), store, *vt);
                    }
                }
                kk0 += depth;
            }
            j0 += rows;
        }
    }

    /// [`pack_rows_avx512`] for AVX2: blocks of 8 rows by 8 depths, loaded as 8 vectors
    /// (masked past the last depth), transposed in registers and stored as 8 depth rows.
    /// A group of fewer than 8 panel columns (the AVX2 kernel's `A` panels are 6 rows) is
    /// stored 8 lanes wide all the same, its extra lanes spilling into the next depth rows'
    /// first columns: depth rows go in ascending order and the groups from the last to the
    /// first, so every spilled value is overwritten with the right one afterwards. Only a
    /// store that would pass the end of the panel goes through a stack copy. bert_small on
    /// Zen 3 spent a fifth of its time in the scalar loop this replaces.
    ///
    /// # Safety
    /// AVX2; rows `p0 .. p0 + valid` at depths `k0 .. k0 + kc` inside `data`;
    /// `valid <= w`; `out` holds `kc * w` values (columns `valid..w` are left as they are,
    /// except that columns of a group of fewer than 8 may be overwritten with zeros).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2")]
    pub unsafe fn pack_rows_avx2(
        data: &[f32],
        sp: usize,
        p0: usize,
        valid: usize,
        w: usize,
        k0: usize,
        kc: usize,
        out: &mut [f32],
    ) {
        let src = data.as_ptr();
        let out = &mut out[..kc * w];
        let end = out.len();
        let dst = out.as_mut_ptr();
        let zero = _mm256_setzero_ps();
        let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        // Column groups of 8, the last (possibly narrower) first.
        let groups = w.div_ceil(8);
        for g in (0..groups).rev() {
            let j0 = 8 * g;
            let width = (w - j0).min(8);
            let rows = valid.saturating_sub(j0).min(8);
            let mut kk0 = 0;
            while kk0 < kc {
                let depth = (kc - kk0).min(8);
                let mut v = [zero; 8];
                if rows > 0 {
                    let load = _mm256_cmpgt_epi32(_mm256_set1_epi32(depth as i32), idx);
                    for (i, vi) in v.iter_mut().enumerate().take(rows) {
                        let at = src.add((p0 + j0 + i) * sp + k0 + kk0);
                        *vi = if depth == 8 {
                            _mm256_loadu_ps(at)
                        } else {
                            _mm256_maskload_ps(at, load)
                        };
                    }
                    transpose8(&mut v);
                }
                for (t, vt) in v.iter().enumerate().take(depth) {
                    let at = (kk0 + t) * w + j0;
                    if width == 8 || at + 8 <= end {
                        _mm256_storeu_ps(dst.add(at), *vt);
                    } else {
                        let mut tmp = [0f32; 8];
                        _mm256_storeu_ps(tmp.as_mut_ptr(), *vt);
                        std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst.add(at), width);
                    }
                }
                kk0 += depth;
            }
        }
    }

    /// `dst[j] = src[2 j]`: 16 outputs from two 16-float loads and one permute.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn stride2_avx512(src: &[f32], dst: &mut [f32]) {
        let n = dst.len().min(src.len().div_ceil(2));
        let idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let mut j = 0;
        // Full blocks read src[2j .. 2j+32); keep them inside src.
        while j + 16 <= n && 2 * j + 32 <= src.len() {
            let a = _mm512_loadu_ps(src.as_ptr().add(2 * j));
            let b = _mm512_loadu_ps(src.as_ptr().add(2 * j + 16));
            _mm512_storeu_ps(dst.as_mut_ptr().add(j), _mm512_permutex2var_ps(a, idx, b));
            j += 16;
        }
        for k in j..n {
            dst[k] = src[2 * k];
        }
    }

    /// `dst[j] = src[2 j]`: 8 outputs from two 8-float loads, a shuffle and a lane
    /// permute.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn stride2_avx2(src: &[f32], dst: &mut [f32]) {
        let n = dst.len().min(src.len().div_ceil(2));
        let mut j = 0;
        // Full blocks read src[2j .. 2j+16); keep them inside src.
        while j + 8 <= n && 2 * j + 16 <= src.len() {
            let a = _mm256_loadu_ps(src.as_ptr().add(2 * j));
            let b = _mm256_loadu_ps(src.as_ptr().add(2 * j + 8));
            _mm256_storeu_ps(dst.as_mut_ptr().add(j), crate::transpose::x86::evens8(a, b));
            j += 8;
        }
        for k in j..n {
            dst[k] = src[2 * k];
        }
    }
}

/// A dense matrix: element `(p, k)` at `data[p * stride_p + k * stride_k]`.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    data: &'a [f32],
    len: usize,
    depth: usize,
    stride_p: usize,
    stride_k: usize,
}

impl<'a> Strided<'a> {
    /// `None` when an element would lie outside `data`.
    pub fn new(
        data: &'a [f32],
        len: usize,
        depth: usize,
        stride_p: usize,
        stride_k: usize,
    ) -> Option<Strided<'a>> {
        if len > 0 && depth > 0 {
            let last = (len - 1)
                .checked_mul(stride_p)?
                .checked_add((depth - 1).checked_mul(stride_k)?)?;
            if last >= data.len() {
                return None;
            }
        }
        Some(Strided {
            data,
            len,
            depth,
            stride_p,
            stride_k,
        })
    }

    /// Row-major `len x depth` (rows of `A`, or `B` given as `N x K`, i.e. transposed).
    pub fn rows(data: &'a [f32], len: usize, depth: usize) -> Option<Strided<'a>> {
        Strided::new(data, len, depth, depth, 1)
    }

    /// Row-major `depth x len` (`B` given as `K x N`, or `A` given transposed).
    pub fn cols(data: &'a [f32], len: usize, depth: usize) -> Option<Strided<'a>> {
        Strided::new(data, len, depth, 1, len)
    }
}

impl PanelSource for Strided<'_> {
    fn len(&self) -> usize {
        self.len
    }
    fn depth(&self) -> usize {
        self.depth
    }
    fn pack(&self, p0: usize, w: usize, k0: usize, kc: usize, out: &mut [f32]) {
        let out = &mut out[..kc * w];
        let valid = w.min(self.len - p0);
        if valid < w {
            out.fill(0.0);
        }
        let (sp, sk) = (self.stride_p, self.stride_k);
        if sp == 1 {
            for kk in 0..kc {
                let s = p0 + (k0 + kk) * sk;
                copy_short(&self.data[s..s + valid], &mut out[kk * w..kk * w + valid]);
            }
        } else if sk == 1 {
            #[cfg(target_arch = "x86_64")]
            if has_avx512() {
                // SAFETY: AVX-512F is present; `new` checked that every element of the
                // matrix lies inside `data`, and `out` holds `kc * w` values.
                unsafe { x86::pack_rows_avx512(self.data, sp, p0, valid, w, k0, kc, out) };
                return;
            }
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                // SAFETY: AVX2 is present; `new` checked that every element of the matrix
                // lies inside `data`, and `out` holds `kc * w` values.
                unsafe { x86::pack_rows_avx2(self.data, sp, p0, valid, w, k0, kc, out) };
                return;
            }
            for j in 0..valid {
                let s = (p0 + j) * sp + k0;
                for (kk, &v) in self.data[s..s + kc].iter().enumerate() {
                    out[kk * w + j] = v;
                }
            }
        } else {
            for kk in 0..kc {
                for j in 0..valid {
                    out[kk * w + j] = self.data[(p0 + j) * sp + (k0 + kk) * sk];
                }
            }
        }
    }
}

/// One image (`c x h x w`) seen as the `A` operand of a convolution: row `p` is output
/// position `p` (row-major over `oh x ow`), column `k` is `(channel, ky, kx)` channel-major.
#[derive(Clone, Copy, Debug)]
pub struct Im2col<'a> {
    x: &'a [f32],
    g: Geom2d,
}

impl<'a> Im2col<'a> {
    /// `None` when `x` is shorter than `c * h * w`.
    pub fn new(x: &'a [f32], g: Geom2d) -> Option<Im2col<'a>> {
        let need = g.c.checked_mul(g.h)?.checked_mul(g.w)?;
        (x.len() >= need && g.sh > 0 && g.sw > 0).then_some(Im2col { x, g })
    }
}

impl PanelSource for Im2col<'_> {
    fn len(&self) -> usize {
        self.g.oh * self.g.ow
    }
    fn depth(&self) -> usize {
        self.g.c * self.g.kh * self.g.kw
    }
    fn pack(&self, p0: usize, w: usize, k0: usize, kc: usize, out: &mut [f32]) {
        let g = &self.g;
        let out = &mut out[..kc * w];
        let valid = w.min(self.len() - p0);
        if valid < w {
            out.fill(0.0);
        }
        // Cut the panel's positions into runs within one output row; each (c, ky, kx) of a
        // run is one strided (for stride 1: contiguous) run of the input.
        let mut j = 0;
        while j < valid {
            let p = p0 + j;
            let (oy, ox0) = (p / g.ow, p % g.ow);
            let run = (g.ow - ox0).min(valid - j);
            #[cfg(target_arch = "x86_64")]
            if (g.sw == 1 || g.sw == 2) && w <= x86::RUN_MAX && has_avx512() {
                // SAFETY: AVX-512F is present; `run <= w <= RUN_MAX`, and the panel rows
                // `kk * w + j .. + run` for `kk < kc` lie inside `out` (`kc * w` values).
                unsafe { x86::pack_run_avx512(self, oy, ox0, run, j, w, k0, kc, out) };
                j += run;
                continue;
            }
            self.pack_run(oy, ox0, run, j, w, k0, kc, out);
            j += run;
        }
    }
}

impl Im2col<'_> {
    /// Packs output positions `(oy, ox0..ox0+run)` into panel columns `j0..j0+run`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn pack_run(
        &self,
        oy: usize,
        ox0: usize,
        run: usize,
        j0: usize,
        w: usize,
        k0: usize,
        kc: usize,
        out: &mut [f32],
    ) {
        let g = &self.g;
        // Per kernel column: the part of the run that reads inside the image row, and
        // where it starts in the row. Computed once per run, not once per depth.
        const MAX_KW: usize = 16;
        let mut cols = [(0usize, 0usize, 0usize); MAX_KW];
        let per_kx = g.kw <= MAX_KW;
        if per_kx {
            for (kx, c) in cols.iter_mut().enumerate().take(g.kw) {
                *c = self.col_span(kx, ox0, run);
            }
        }
        let kk_per_c = g.kh * g.kw;
        let (mut ci, mut ky, mut kx) = (k0 / kk_per_c, (k0 % kk_per_c) / g.kw, k0 % g.kw);
        let plane = g.h * g.w;
        for kk in 0..kc {
            let dst = &mut out[kk * w + j0..kk * w + j0 + run];
            let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
            if iy < 0 || iy >= g.h as isize {
                dst.fill(0.0);
            } else {
                let row = &self.x[ci * plane + iy as usize * g.w..][..g.w];
                let (lo, hi, ix0) = if per_kx {
                    cols[kx]
                } else {
                    self.col_span(kx, ox0, run)
                };
                if lo > 0 {
                    dst[..lo].fill(0.0);
                }
                if hi < run {
                    dst[hi.max(lo)..].fill(0.0);
                }
                if lo < hi {
                    if g.sw == 1 {
                        copy_short(&row[ix0..ix0 + (hi - lo)], &mut dst[lo..hi]);
                    } else {
                        let src = &row[ix0..ix0 + (hi - lo - 1) * g.sw + 1];
                        copy_strided(src, g.sw, &mut dst[lo..hi]);
                    }
                }
            }
            kx += 1;
            if kx == g.kw {
                kx = 0;
                ky += 1;
                if ky == g.kh {
                    ky = 0;
                    ci += 1;
                }
            }
        }
    }

    /// For kernel column `kx` and output columns `ox0..ox0+run`: the run-relative range
    /// `lo..hi` that reads inside the row, and the input column of `lo`.
    fn col_span(&self, kx: usize, ox0: usize, run: usize) -> (usize, usize, usize) {
        let g = &self.g;
        let offx = (kx * g.dw) as isize - g.pl as isize;
        let (lo, hi) = valid_range(g.ow, g.w, g.sw, offx);
        let lo = lo.clamp(ox0, ox0 + run) - ox0;
        let hi = hi.clamp(ox0, ox0 + run) - ox0;
        if lo >= hi {
            return (0, 0, 0);
        }
        let ix0 = (((ox0 + lo) * g.sw) as isize + offx) as usize;
        (lo, hi, ix0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::im2col_2d;

    #[test]
    fn im2col_source_matches_explicit_im2col() {
        for (h, w, k, s, p, d) in [
            (7, 7, 3, 1, 1, 1),
            (9, 8, 3, 2, 1, 1),
            (5, 6, 1, 1, 0, 1),
            (8, 8, 3, 1, 2, 2),
            (6, 5, 7, 2, 3, 1),
            (11, 40, 3, 2, 1, 1),
            (5, 70, 3, 1, 1, 1),
            (9, 37, 1, 2, 0, 1),
            (12, 30, 5, 2, 2, 2),
        ] {
            let c = 3;
            let g = Geom2d::square(c, h, w, k, s, d, p);
            let (oh, ow) = (g.oh, g.ow);
            let x: Vec<f32> = (0..c * h * w).map(|i| i as f32 + 1.0).collect();
            let kk = c * k * k;
            let mut col = vec![0.0; kk * oh * ow];
            im2col_2d(&x, &g, 0.0, &mut col);
            let src = Im2col::new(&x, g).unwrap();
            for width in [1, 4, 14, 17, 32, 48, 64, 65] {
                let mut p0 = 0;
                while p0 < oh * ow {
                    for k0 in [0, 1, kk / 2] {
                        let kc = kk - k0;
                        let mut out = vec![f32::NAN; kc * width];
                        src.pack(p0, width, k0, kc, &mut out);
                        for q in 0..kc {
                            for j in 0..width {
                                let want = if p0 + j < oh * ow {
                                    col[(k0 + q) * oh * ow + p0 + j]
                                } else {
                                    0.0
                                };
                                assert_eq!(out[q * width + j], want, "p0={p0} j={j} k={}", k0 + q);
                            }
                        }
                    }
                    p0 += width;
                }
            }
        }
    }

    /// Row-major sources (depth contiguous) over panel widths, offsets and depth ranges
    /// that cut the 16 x 16 and 8 x 8 transpose blocks everywhere (the AVX-512 or AVX2
    /// path where present); nothing past the panel is written.
    #[test]
    fn row_major_source_packs_like_scalar() {
        let (len, depth, sp) = (37, 50, 53);
        let data: Vec<f32> = (0..len * sp).map(|i| i as f32 * 0.5 - 3.0).collect();
        let src = Strided::new(&data, len, depth, sp, 1).unwrap();
        for w in [1, 2, 6, 8, 9, 14, 16, 17, 32] {
            for p0 in [0, 3, 20, 36] {
                for (k0, kc) in [(0, 50), (5, 16), (17, 33), (49, 1), (3, 7)] {
                    let mut out = vec![f32::NAN; kc * w + 9];
                    src.pack(p0, w, k0, kc, &mut out);
                    assert!(out[kc * w..].iter().all(|v| v.is_nan()), "w {w} wrote past");
                    for kk in 0..kc {
                        for j in 0..w {
                            let want = if p0 + j < len {
                                data[(p0 + j) * sp + k0 + kk]
                            } else {
                                0.0
                            };
                            assert_eq!(
                                out[kk * w + j],
                                want,
                                "w {w} p0 {p0} k0 {k0} kk {kk} j {j}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn strided_source_packs_all_layouts() {
        let data: Vec<f32> = (0..60).map(|i| i as f32).collect();
        for (sp, sk) in [(1, 5), (6, 1), (2, 13)] {
            let src = Strided::new(&data, 5, 4, sp, sk).unwrap();
            let mut out = vec![f32::NAN; 3 * 4];
            src.pack(3, 4, 1, 3, &mut out);
            for kk in 0..3 {
                for j in 0..4 {
                    let want = if 3 + j < 5 {
                        data[(3 + j) * sp + (1 + kk) * sk]
                    } else {
                        0.0
                    };
                    assert_eq!(out[kk * 4 + j], want);
                }
            }
        }
        assert!(Strided::new(&data, 5, 5, 14, 1).is_none());
    }
}
