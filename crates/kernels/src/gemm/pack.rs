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

/// Copies a short run without a call to `memcpy` (panel widths are 4 to 32 floats).
#[inline(always)]
fn copy_short(src: &[f32], dst: &mut [f32]) {
    match (src.len(), dst.len()) {
        (14, 14) => dst.copy_from_slice(&src[..14]),
        (16, 16) => dst.copy_from_slice(&src[..16]),
        (32, 32) => dst.copy_from_slice(&src[..32]),
        (6, 6) => dst.copy_from_slice(&src[..6]),
        (4, 4) => dst.copy_from_slice(&src[..4]),
        _ => dst.iter_mut().zip(src).for_each(|(d, s)| *d = *s),
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
        let kk_per_c = g.kh * g.kw;
        let (mut ci, mut ky, mut kx) = (k0 / kk_per_c, (k0 % kk_per_c) / g.kw, k0 % g.kw);
        for kk in 0..kc {
            let dst = &mut out[kk * w + j0..kk * w + j0 + run];
            let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
            if iy < 0 || iy >= g.h as isize {
                dst.fill(0.0);
            } else {
                let row = &self.x[(ci * g.h + iy as usize) * g.w..][..g.w];
                let offx = (kx * g.dw) as isize - g.pl as isize;
                // Output columns ox0..ox0+run; those reading inside the row:
                let (lo, hi) = valid_range(g.ow, g.w, g.sw, offx);
                let lo = lo.clamp(ox0, ox0 + run) - ox0;
                let hi = hi.clamp(ox0, ox0 + run) - ox0;
                dst[..lo].fill(0.0);
                dst[hi.max(lo)..].fill(0.0);
                if lo < hi {
                    let ix0 = (((ox0 + lo) * g.sw) as isize + offx) as usize;
                    if g.sw == 1 {
                        copy_short(&row[ix0..ix0 + (hi - lo)], &mut dst[lo..hi]);
                    } else {
                        for (j, d) in dst[lo..hi].iter_mut().enumerate() {
                            *d = row[ix0 + j * g.sw];
                        }
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
        ] {
            let c = 3;
            let oh = (h + 2 * p - d * (k - 1) - 1) / s + 1;
            let ow = (w + 2 * p - d * (k - 1) - 1) / s + 1;
            let g = Geom2d {
                c,
                h,
                w,
                kh: k,
                kw: k,
                sh: s,
                sw: s,
                dh: d,
                dw: d,
                pt: p,
                pl: p,
                oh,
                ow,
            };
            let x: Vec<f32> = (0..c * h * w).map(|i| i as f32 + 1.0).collect();
            let kk = c * k * k;
            let mut col = vec![0.0; kk * oh * ow];
            im2col_2d(&x, &g, 0.0, &mut col);
            let src = Im2col::new(&x, g).unwrap();
            for width in [1, 4, 14] {
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
