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
                out[kk * w..kk * w + valid].copy_from_slice(&self.data[s..s + valid]);
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
        let kk_per_c = g.kh * g.kw;
        let (oy0, ox0) = (p0 / g.ow, p0 % g.ow);
        // All positions in one output row: each (c, ky, kx) is one strided run of the input.
        if ox0 + valid <= g.ow {
            if valid < w {
                out.fill(0.0);
            }
            for (kk, k) in (k0..k0 + kc).enumerate() {
                let ci = k / kk_per_c;
                let ky = (k % kk_per_c) / g.kw;
                let kx = k % g.kw;
                let dst = &mut out[kk * w..kk * w + valid];
                let iy = (oy0 * g.sh + ky * g.dh) as isize - g.pt as isize;
                if iy < 0 || iy >= g.h as isize {
                    dst.fill(0.0);
                    continue;
                }
                let row = &self.x[(ci * g.h + iy as usize) * g.w..][..g.w];
                let offx = (kx * g.dw) as isize - g.pl as isize;
                // Output columns ox0..ox0+valid; those reading inside the row:
                let (lo, hi) = valid_range(g.ow, g.w, g.sw, offx);
                let lo = lo.clamp(ox0, ox0 + valid) - ox0;
                let hi = hi.clamp(ox0, ox0 + valid) - ox0;
                dst[..lo].fill(0.0);
                dst[hi.max(lo)..].fill(0.0);
                if lo < hi {
                    let ix0 = ((ox0 + lo) * g.sw) as isize + offx;
                    let ix0 = ix0 as usize;
                    if g.sw == 1 {
                        dst[lo..hi].copy_from_slice(&row[ix0..ix0 + (hi - lo)]);
                    } else {
                        for (j, d) in dst[lo..hi].iter_mut().enumerate() {
                            *d = row[ix0 + j * g.sw];
                        }
                    }
                }
            }
            return;
        }
        // General case: positions span several output rows.
        out.fill(0.0);
        for j in 0..valid {
            let p = p0 + j;
            let (oy, ox) = (p / g.ow, p % g.ow);
            let by = (oy * g.sh) as isize - g.pt as isize;
            let bx = (ox * g.sw) as isize - g.pl as isize;
            for (kk, k) in (k0..k0 + kc).enumerate() {
                let ci = k / kk_per_c;
                let ky = (k % kk_per_c) / g.kw;
                let kx = k % g.kw;
                let iy = by + (ky * g.dh) as isize;
                let ix = bx + (kx * g.dw) as isize;
                if iy >= 0 && iy < g.h as isize && ix >= 0 && ix < g.w as isize {
                    out[kk * w + j] = self.x[(ci * g.h + iy as usize) * g.w + ix as usize];
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
