//! The input of a strided 1x1 convolution gathered at its output pixels, so that the GEMM
//! reads it in place as it reads a stride-1 pointwise layer's input.
//!
//! A 1x1 convolution with stride 2 (ResNet's downsampling shortcuts) is a GEMM whose
//! right-hand side is every other pixel of every other row. Packed as an implicit im2col,
//! each panel of the GEMM gathers its 16 columns per input channel again (a strided copy
//! per channel and panel). Gathered once into a `c x oh x ow` image
//! instead, the product is an ordinary pointwise one ([`crate::gemm::Rhs::Direct`]).
//! Measured on Zen 3 (AVX2, `examples/direct_bench.rs`, the two alternating call by call,
//! two runs at 1 and at 2 threads, the im2col's strided copies also with AVX2 shuffles):
//! gathered took 0.68-0.69x the implicit im2col's time on ResNet-50's 256 -> 512,
//! 56 -> 28 shortcut at 1 thread and 0.80-0.84x at 2; 0.83-0.87x and 0.91-0.93x on the
//! 512 -> 1024 one; 0.91x and 0.74-0.80x on 1024 -> 2048. In the whole model (`millrace
//! profile`, 1 thread, against the three profiles before it, the im2col's copies then
//! scalar) the first shortcut went from 3.30 to 2.95 ms, the second 2.92 to 2.81, the
//! third unchanged (3.02).
use rayon::prelude::*;
use std::cell::RefCell;

use crate::conv::Geom2d;
use crate::gemm::copy_strided;

thread_local! {
    /// Gathered images, a stack: a thread waiting for its convolution's jobs may run
    /// another convolution meanwhile (a branch of the graph).
    static GATHERED: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Whether [`with_subsampled`] takes `g`: a 1x1 window with a stride above 1 whose every
/// output pixel reads inside the image (no padding is read).
pub fn applies(g: &Geom2d) -> bool {
    g.kh == 1
        && g.kw == 1
        && (g.sh > 1 || g.sw > 1)
        && g.oh > 0
        && g.ow > 0
        && g.pt == 0
        && g.pl == 0
        && (g.oh - 1).checked_mul(g.sh).is_some_and(|r| r < g.h)
        && (g.ow - 1).checked_mul(g.sw).is_some_and(|c| c < g.w)
}

/// Runs `f` on the `c x oh x ow` image whose pixel `(oy, ox)` of channel `c` is `x`'s pixel
/// `(oy * sh, ox * sw)`: the right-hand side of the strided 1x1 convolution `g` as a
/// pointwise one. `None` (and `f` is not called) where [`applies`] is false or `x` is not
/// `c x h x w`. The image lives in a per-thread buffer reused from call to call.
pub fn with_subsampled<R>(x: &[f32], g: &Geom2d, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    if !applies(g) || Some(x.len()) != g.c.checked_mul(g.h)?.checked_mul(g.w) {
        return None;
    }
    let plane = g.oh.checked_mul(g.ow)?;
    let size = g.c.checked_mul(plane)?;
    let mut buf = GATHERED.with_borrow_mut(|s| s.pop()).unwrap_or_default();
    if buf.len() < size {
        buf.resize(size, 0.0);
    }
    let out = &mut buf[..size];
    let in_plane = g.h * g.w;
    let channel = |(ci, o): (usize, &mut [f32])| {
        let xc = &x[ci * in_plane..][..in_plane];
        for (oy, row) in o.chunks_exact_mut(g.ow).enumerate() {
            // In bounds: `(oh - 1) * sh < h` and `(ow - 1) * sw < w` (`applies`).
            let src = &xc[oy * g.sh * g.w..][..(g.ow - 1) * g.sw + 1];
            copy_strided(src, g.sw, row);
        }
    };
    // Across channels when there is enough to share: a 256 x 28 x 28 gather is about
    // 0.1 ms on one thread.
    if rayon::current_num_threads() > 1 && size >= 1 << 15 {
        out.par_chunks_mut(plane).enumerate().for_each(channel);
    } else {
        out.chunks_mut(plane).enumerate().for_each(channel);
    }
    let r = f(out);
    GATHERED.with_borrow_mut(|s| s.push(buf));
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_every_stride_and_size() {
        // (c, h, w, stride): even and odd sizes, rows shorter and longer than a vector,
        // strides 2 and 3 and unequal strides.
        for &(c, h, w, sh, sw) in &[
            (3, 56, 56, 2, 2),
            (2, 7, 7, 2, 2),
            (4, 33, 37, 2, 2),
            (2, 9, 10, 3, 3),
            (1, 5, 40, 1, 2),
            (2, 8, 8, 2, 1),
        ] {
            let g = Geom2d {
                c,
                h,
                w,
                kh: 1,
                kw: 1,
                sh,
                sw,
                dh: 1,
                dw: 1,
                pt: 0,
                pl: 0,
                oh: (h - 1) / sh + 1,
                ow: (w - 1) / sw + 1,
            };
            let x: Vec<f32> = (0..c * h * w).map(|i| i as f32).collect();
            let got = with_subsampled(&x, &g, |s| s.to_vec()).unwrap();
            let mut want = Vec::new();
            for ci in 0..c {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        want.push(x[(ci * h + oy * sh) * w + ox * sw]);
                    }
                }
            }
            assert_eq!(got, want, "{c}x{h}x{w} stride {sh}x{sw}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_gather() {
        let g = Geom2d::square(2, 8, 8, 1, 2, 1, 0);
        let x = vec![0.0; 2 * 64];
        assert!(with_subsampled(&x, &g, |_| ()).is_some());
        // Stride 1, a 3x3 window, padding, a short input, and an output past the image.
        assert!(with_subsampled(&x, &Geom2d::square(2, 8, 8, 1, 1, 1, 0), |_| ()).is_none());
        assert!(with_subsampled(&x, &Geom2d::square(2, 8, 8, 3, 2, 1, 0), |_| ()).is_none());
        assert!(with_subsampled(&x, &Geom2d::square(2, 8, 8, 1, 2, 1, 1), |_| ()).is_none());
        assert!(with_subsampled(&x[..10], &g, |_| ()).is_none());
        let past = Geom2d { oh: 5, ..g };
        assert!(with_subsampled(&x, &past, |_| ()).is_none());
    }
}
