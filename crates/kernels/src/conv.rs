//! Convolution helpers: im2col (2-D and N-d), col2im (N-d), and a direct depthwise 2-D kernel.
//!
//! Layouts are row-major. A "col" buffer has one row per (input channel, kernel offset)
//! pair, channel-major then kernel offsets row-major, and one column per output position.
use rayon::prelude::*;
use std::ops::{Add, Mul};

/// Geometry of one 2-D convolution window sweep over a `c x h x w` image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geom2d {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    /// Padding before the first row / column.
    pub pt: usize,
    pub pl: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geom2d {
    /// A `k x k` window with one stride, dilation and padding in both directions over a
    /// `c x h x w` image; the output size rounds down, and is 0 where the window does not
    /// fit the padded image.
    pub fn square(c: usize, h: usize, w: usize, k: usize, s: usize, d: usize, p: usize) -> Geom2d {
        let out = |n: usize| {
            let span = k.saturating_sub(1) * d + 1;
            (n + 2 * p)
                .checked_sub(span)
                .map_or(0, |r| r / s.max(1) + 1)
        };
        Geom2d {
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
            oh: out(h),
            ow: out(w),
        }
    }
}

/// The operands of one image's convolution, checked by [`ConvIo::check`].
pub(crate) struct ConvIo<'a> {
    /// The weights' shape `[m, cin, kh, kw]`.
    pub w: [usize; 4],
    pub x: &'a [f32],
    pub y: &'a [f32],
    pub residual: Option<&'a [f32]>,
    pub bias: Option<&'a [f32]>,
}

impl ConvIo<'_> {
    /// Checks the operands against `g`: the weights' channels and window, an input of
    /// `c x h x w` values, an output (and residual) of `m x oh x ow`, a bias of `m`.
    /// Returns the output plane `oh * ow`.
    pub(crate) fn check(&self, g: &Geom2d) -> Result<usize, String> {
        let [m, cin, kh, kw] = self.w;
        if g.c != cin || g.kh != kh || g.kw != kw {
            return Err(format!(
                "input of {} channels and a {}x{} window for weights {m}x{cin}x{kh}x{kw}",
                g.c, g.kh, g.kw
            ));
        }
        let plane = g.oh.checked_mul(g.ow).ok_or("geometry overflows")?;
        let out_len = m.checked_mul(plane).ok_or("geometry overflows")?;
        if self.y.len() != out_len || self.residual.is_some_and(|r| r.len() != out_len) {
            return Err("output or residual size differs from m x oh x ow".into());
        }
        if Some(self.x.len()) != g.c.checked_mul(g.h).and_then(|n| n.checked_mul(g.w)) {
            return Err("input size differs from c x h x w".into());
        }
        if self.bias.is_some_and(|b| b.len() != m) {
            return Err("bias length differs from the output channels".into());
        }
        Ok(plane)
    }
}

/// Runs `band(i)` for every band `i < bands` of a convolution's output rows, on the
/// current rayon pool where there are several bands and threads (the first-layer kernels,
/// `shallow` and `gemm::shifted`, each band one job).
pub(crate) fn for_each_band(bands: usize, band: impl Fn(usize) + Sync + Send) {
    if bands > 1 && rayon::current_num_threads() > 1 {
        (0..bands).into_par_iter().for_each(band);
    } else {
        (0..bands).for_each(band);
    }
}

/// Applies `act` to output rows `oy0 .. oy0 + rows` (each `ow` wide) of the `m` planes
/// (`plane` values apart) at `y`: the activations a band's tiles do not fuse.
///
/// # Safety
/// Those rows lie inside the buffer `y` points into, and no other thread touches them
/// during the call.
pub(crate) unsafe fn act_rows(
    act: crate::activation::Activation,
    y: &crate::SyncPtr,
    m: usize,
    plane: usize,
    ow: usize,
    (oy0, rows): (usize, usize),
) {
    for ch in 0..m {
        // SAFETY: rows of channel `ch` inside the buffer (the caller's contract).
        let part = unsafe {
            std::slice::from_raw_parts_mut(y.get().add(ch * plane + oy0 * ow), rows * ow)
        };
        act.apply_slice(part);
    }
}

/// Range of output positions `o` in `0..n_out` with `0 <= o * s + off < n_in`.
#[inline]
pub fn valid_range(n_out: usize, n_in: usize, s: usize, off: isize) -> (usize, usize) {
    let s = s.max(1) as isize;
    let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
    let room = n_in as isize - off;
    let hi = if room <= 0 { 0 } else { (room + s - 1) / s };
    let lo = (lo.max(0) as usize).min(n_out);
    let hi = (hi.max(0) as usize).min(n_out);
    (lo, hi.max(lo))
}

/// Fills `col` (`c*kh*kw` rows of `oh*ow`) from image `x` (`c x h x w`).
pub fn im2col_2d<T: Copy + Send + Sync>(x: &[T], g: &Geom2d, zero: T, col: &mut [T]) {
    let plane = g.oh * g.ow;
    if plane == 0 {
        return;
    }
    let kk = g.kh * g.kw;
    col[..g.c * kk * plane]
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(r, row)| {
            let ci = r / kk;
            let ki = (r % kk) / g.kw;
            let kj = r % g.kw;
            let img = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
            let offy = (ki * g.dh) as isize - g.pt as isize;
            let offx = (kj * g.dw) as isize - g.pl as isize;
            let (xlo, xhi) = valid_range(g.ow, g.w, g.sw, offx);
            for oy in 0..g.oh {
                let out = &mut row[oy * g.ow..(oy + 1) * g.ow];
                let iy = (oy * g.sh) as isize + offy;
                if iy < 0 || iy >= g.h as isize {
                    out.fill(zero);
                    continue;
                }
                let src = &img[iy as usize * g.w..(iy as usize + 1) * g.w];
                out[..xlo].fill(zero);
                out[xhi..].fill(zero);
                if xlo < xhi {
                    let ix0 = (xlo * g.sw) as isize + offx;
                    let ix0 = ix0 as usize;
                    if g.sw == 1 {
                        out[xlo..xhi].copy_from_slice(&src[ix0..ix0 + (xhi - xlo)]);
                    } else {
                        for (k, o) in out[xlo..xhi].iter_mut().enumerate() {
                            *o = src[ix0 + k * g.sw];
                        }
                    }
                }
            }
        });
}

/// Direct depthwise 2-D convolution of one channel: `out` (`oh*ow`) = bias + window sums of
/// `x` (`h*w`) against kernel `k` (`kh*kw`). `g.c` is ignored.
pub fn depthwise_2d<T>(x: &[T], k: &[T], bias: T, g: &Geom2d, out: &mut [T])
where
    T: Copy + Add<Output = T> + Mul<Output = T>,
{
    let out = &mut out[..g.oh * g.ow];
    out.fill(bias);
    for ki in 0..g.kh {
        let offy = (ki * g.dh) as isize - g.pt as isize;
        let (ylo, yhi) = valid_range(g.oh, g.h, g.sh, offy);
        for kj in 0..g.kw {
            let wv = k[ki * g.kw + kj];
            let offx = (kj * g.dw) as isize - g.pl as isize;
            let (xlo, xhi) = valid_range(g.ow, g.w, g.sw, offx);
            if xlo >= xhi {
                continue;
            }
            for oy in ylo..yhi {
                let iy = ((oy * g.sh) as isize + offy) as usize;
                let src = &x[iy * g.w..(iy + 1) * g.w];
                let dst = &mut out[oy * g.ow + xlo..oy * g.ow + xhi];
                let ix0 = ((xlo * g.sw) as isize + offx) as usize;
                if g.sw == 1 {
                    for (o, &v) in dst.iter_mut().zip(&src[ix0..ix0 + (xhi - xlo)]) {
                        *o = *o + v * wv;
                    }
                } else {
                    for (j, o) in dst.iter_mut().enumerate() {
                        *o = *o + src[ix0 + j * g.sw] * wv;
                    }
                }
            }
        }
    }
}

/// Geometry of an N-d window sweep (any number of spatial dims).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeomNd {
    pub c: usize,
    /// Image spatial shape.
    pub input: Vec<usize>,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads_begin: Vec<usize>,
    /// Window-position grid (output of a convolution, input of a transposed one).
    pub output: Vec<usize>,
}

impl GeomNd {
    fn kernel_offsets(&self, kidx: usize) -> Vec<isize> {
        let n = self.kernel.len();
        let mut off = vec![0isize; n];
        let mut rem = kidx;
        for d in (0..n).rev() {
            let kd = rem % self.kernel[d].max(1);
            rem /= self.kernel[d].max(1);
            off[d] = (kd * self.dilations[d]) as isize - self.pads_begin[d] as isize;
        }
        off
    }

    /// For each window position, the flat image index for kernel offset `off`, or None.
    fn for_each_pos(&self, off: &[isize], mut f: impl FnMut(usize, Option<usize>)) {
        let n = self.output.len();
        let total: usize = self.output.iter().product();
        let mut counter = vec![0usize; n];
        for p in 0..total {
            let mut idx = 0usize;
            let mut ok = true;
            for d in 0..n {
                let i = (counter[d] * self.strides[d]) as isize + off[d];
                if i < 0 || i >= self.input[d] as isize {
                    ok = false;
                    break;
                }
                idx = idx * self.input[d] + i as usize;
            }
            f(p, if ok { Some(idx) } else { None });
            for d in (0..n).rev() {
                counter[d] += 1;
                if counter[d] < self.output[d] {
                    break;
                }
                counter[d] = 0;
            }
        }
    }
}

/// N-d im2col: `col` gets `c * prod(kernel)` rows of `prod(output)`.
pub fn im2col_nd<T: Copy + Send + Sync>(x: &[T], g: &GeomNd, zero: T, col: &mut [T]) {
    let plane: usize = g.output.iter().product();
    let kk: usize = g.kernel.iter().product();
    let img: usize = g.input.iter().product();
    if plane == 0 {
        return;
    }
    col[..g.c * kk * plane]
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(r, row)| {
            let ci = r / kk.max(1);
            let src = &x[ci * img..(ci + 1) * img];
            let off = g.kernel_offsets(r % kk.max(1));
            g.for_each_pos(&off, |p, i| row[p] = i.map_or(zero, |i| src[i]));
        });
}

/// N-d col2im: adds each `col` entry into image `y` (`c x prod(input)`), the adjoint of
/// [`im2col_nd`]. `y` must be initialized by the caller.
pub fn col2im_nd<T>(col: &[T], g: &GeomNd, y: &mut [T])
where
    T: Copy + Send + Sync + Add<Output = T>,
{
    let plane: usize = g.output.iter().product();
    let kk: usize = g.kernel.iter().product();
    let img: usize = g.input.iter().product();
    if img == 0 || plane == 0 {
        return;
    }
    y[..g.c * img]
        .par_chunks_mut(img)
        .enumerate()
        .for_each(|(ci, dst)| {
            for kidx in 0..kk {
                let row = &col[(ci * kk + kidx) * plane..(ci * kk + kidx + 1) * plane];
                let off = g.kernel_offsets(kidx);
                g.for_each_pos(&off, |p, i| {
                    if let Some(i) = i {
                        dst[i] = dst[i] + row[p];
                    }
                });
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom() -> Geom2d {
        Geom2d {
            c: 2,
            h: 4,
            w: 5,
            kh: 3,
            kw: 2,
            sh: 2,
            sw: 1,
            dh: 1,
            dw: 2,
            pt: 1,
            pl: 1,
            oh: 2,
            ow: 4,
        }
    }

    #[test]
    fn im2col_2d_matches_nd() {
        let g = geom();
        let x: Vec<f32> = (0..g.c * g.h * g.w).map(|v| v as f32).collect();
        let rows = g.c * g.kh * g.kw;
        let mut a = vec![0.0; rows * g.oh * g.ow];
        let mut b = vec![0.0; rows * g.oh * g.ow];
        im2col_2d(&x, &g, 0.0, &mut a);
        let gn = GeomNd {
            c: g.c,
            input: vec![g.h, g.w],
            kernel: vec![g.kh, g.kw],
            strides: vec![g.sh, g.sw],
            dilations: vec![g.dh, g.dw],
            pads_begin: vec![g.pt, g.pl],
            output: vec![g.oh, g.ow],
        };
        im2col_nd(&x, &gn, 0.0, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn valid_range_bounds() {
        assert_eq!(valid_range(5, 5, 1, -1), (1, 5));
        assert_eq!(valid_range(3, 5, 2, 1), (0, 2));
        assert_eq!(valid_range(3, 2, 1, 5), (0, 0));
    }
}
