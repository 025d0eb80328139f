//! Convolution of an image with few channels (a network's first layer, on RGB) as a GEMM
//! whose right operand is read in place from shifted copies of the input rows.
//!
//! The implicit-im2col GEMM ([`super::Im2col`]) packs a panel of the im2col matrix for every
//! block of the product: with `K = Cin * kh * kw` as small as 27 (a 3x3 window on three
//! channels) the microkernel's work per packed value is small and the packing, a masked
//! gather per kernel tap (stride 2: two loads and a permute per 16 values), took about a
//! third of the layer's time (`perf` on `examples/direct_bench.rs`, MobileNetV2's first
//! layer). The direct kernel ([`crate::direct`]) has no packing but turns every tile around
//! (16 x 16 transposes) to store NCHW, a fixed cost spread over only `K` steps.
//!
//! Here the weights' columns are reordered `(ky, c, kx)` and the input is copied, a band of
//! output rows at a time, into a buffer whose row `r` holds, for every channel `c` and
//! kernel column `kx`, the values that output columns `0..ow` read at that tap:
//! `q[r][c][kx][ox] = x[c][r - pt][ox * s + kx * dw - pl]` (zero outside the image). Depth
//! `(ky, c, kx)` of output row `oy` is then row `(s * oy + ky) * Cin * kw + c * kw + kx` of
//! the buffer seen as a matrix `owp` wide: one stride for all `K` depths. So the GEMM
//! microkernels read `B` in place (`ldb = owp`), tile after tile of one output row, with
//! the bias, residual and Relu / Clip in their epilogue, and store NCHW rows directly.
//! Each input value is copied about `kw / s` times (the `kh - s` input rows a band shares
//! with the next are copied again) instead of `kh * kw / s^2` times, with contiguous moves.
//!
//! Before (implicit im2col): per 32-column block, pack `K x 32` values by gathers, then
//! the tiles. After: per band of output rows, copy `((band - 1) * s + kh) * Cin * kw` rows
//! of `ow` values; the tiles read them where they lie.
//!
//! Needs dilation 1 along the rows (the depth stride is uniform only then), the same
//! stride on both axes and `K` within one depth block of the kernel. On AVX-512 the
//! layers of stride 1 or 2 and dilation 1 run on [`crate::shallow`] instead (0.8-0.9x
//! this path's time); this path keeps the others and the CPUs without AVX-512.
use super::micro::TileOut;
use super::pack::copy_strided;
use super::{Kernel, Packed, Strided};
use crate::activation::Activation;
use crate::conv::{act_rows, for_each_band, valid_range, ConvIo, Geom2d};
use crate::SyncPtr;

/// Invalid geometry, weights or buffers for [`conv_shifted`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shifted-row conv: {0}")]
pub struct ShiftedError(String);

fn err(msg: impl Into<String>) -> ShiftedError {
    ShiftedError(msg.into())
}

/// Most input channels this path takes (see [`applies`]).
pub const MAX_CIN: usize = 4;

/// Most output rows in one band: a band's buffer holds `(rows - 1) * s + kh` input rows
/// of `Cin * kw` shifted copies (fewer rows where that exceeds the thread's reserved
/// packing buffer).
const BAND_ROWS: usize = 8;

/// Weights prepacked for [`conv_shifted`]: `[m][ky][c][kx]` as `A` panels of the detected
/// GEMM kernel.
#[derive(Debug)]
pub struct ShiftedWeights {
    /// `m` rows (`packed.len`), `K = cin * kh * kw` deep.
    packed: Packed,
    cin: usize,
    kh: usize,
    kw: usize,
}

/// Whether [`conv_shifted`] takes a convolution of `m` output channels over `cin` input
/// channels with a `kh x kw` window, strides `sh x sw` and row dilation `dh`, one group:
/// few input channels (at most [`MAX_CIN`]), a window wider than one tap, equal strides,
/// row dilation 1, and `K = cin * kh * kw` within one depth block of the kernel.
pub fn applies(
    m: usize,
    cin: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    dh: usize,
) -> bool {
    let k = cin.saturating_mul(kh).saturating_mul(kw);
    m > 0
        && (1..=MAX_CIN).contains(&cin)
        && kh.saturating_mul(kw) > 1
        && sh == sw
        && sh >= 1
        && dh == 1
        && k <= Kernel::detect().kc
}

impl ShiftedWeights {
    /// Packs `weights` (`[m][cin][kh][kw]`, row-major) for the detected GEMM kernel.
    pub fn new(
        weights: &[f32],
        m: usize,
        cin: usize,
        kh: usize,
        kw: usize,
    ) -> Result<ShiftedWeights, ShiftedError> {
        ShiftedWeights::with_kernel(weights, m, cin, kh, kw, Kernel::detect())
    }

    /// [`ShiftedWeights::new`] for an explicit kernel (tests run every kernel the CPU has).
    pub fn with_kernel(
        weights: &[f32],
        m: usize,
        cin: usize,
        kh: usize,
        kw: usize,
        kernel: &'static Kernel,
    ) -> Result<ShiftedWeights, ShiftedError> {
        let k = cin
            .checked_mul(kh)
            .and_then(|v| v.checked_mul(kw))
            .ok_or_else(|| err("weight size overflows"))?;
        if k == 0 || m == 0 || m.checked_mul(k) != Some(weights.len()) {
            return Err(err(format!(
                "{} weights for {m} x {cin} x {kh} x {kw}",
                weights.len()
            )));
        }
        if k > kernel.kc {
            return Err(err(format!(
                "{k} weights per channel exceed the kernel's depth block ({})",
                kernel.kc
            )));
        }
        // Columns reordered (c, ky, kx) -> (ky, c, kx).
        let mut perm = vec![0.0f32; weights.len()];
        for (dst, src) in perm.chunks_exact_mut(k).zip(weights.chunks_exact(k)) {
            for c in 0..cin {
                for ky in 0..kh {
                    let s = &src[(c * kh + ky) * kw..][..kw];
                    dst[(ky * cin + c) * kw..][..kw].copy_from_slice(s);
                }
            }
        }
        let src = Strided::rows(&perm, m, k).ok_or_else(|| err("weights too short"))?;
        Ok(ShiftedWeights {
            packed: Packed::lhs_with_kernel(&src, kernel),
            cin,
            kh,
            kw,
        })
    }

    /// Bytes held (for memory plans).
    pub fn bytes(&self) -> usize {
        self.packed.bytes()
    }
}

/// `y = act(conv(x, w) + bias + residual)` for one NCHW image `x` (`g.c x g.h x g.w`)
/// into `y` (`m x g.oh x g.ow`), on the current rayon pool. Any padding, column dilation
/// and stride (the same on both axes); row dilation 1.
pub fn conv_shifted(
    x: &[f32],
    g: &Geom2d,
    w: &ShiftedWeights,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Activation,
    y: &mut [f32],
) -> Result<(), ShiftedError> {
    if g.sh != g.sw || g.sh == 0 || g.dh != 1 || g.dw == 0 {
        return Err(err(format!(
            "needs equal nonzero strides and row dilation 1, got strides {}x{}, dilations {}x{}",
            g.sh, g.sw, g.dh, g.dw
        )));
    }
    let plane = ConvIo {
        w: [w.packed.len, w.cin, w.kh, w.kw],
        x,
        y,
        residual,
        bias,
    }
    .check(g)
    .map_err(err)?;
    let overflow = || err("geometry overflows");
    if plane == 0 {
        return Ok(());
    }
    let s = g.sh;
    let kernel = w.packed.kernel;
    let owp =
        g.ow.checked_next_multiple_of(kernel.nr)
            .ok_or_else(overflow)?;
    let row_len =
        g.c.checked_mul(g.kw)
            .and_then(|v| v.checked_mul(owp))
            .ok_or_else(overflow)?;
    let band_rows = |rows: usize| (rows - 1) * s + g.kh;
    // The band lives in the thread's packing buffer for `B`, which sessions reserve on
    // every pool thread ([`super::reserve_scratch`]): as many rows as fit it, so that a
    // run allocates nothing (a single row larger than it grows it on first use).
    let cap = super::pack_bounds(Kernel::detect()).1;
    let fits = |rows: usize| {
        band_rows(rows)
            .checked_mul(row_len)
            .is_some_and(|n| n <= cap)
    };
    let band = (1..=BAND_ROWS.min(g.oh))
        .rev()
        .find(|&r| fits(r))
        .unwrap_or(1);
    let buf_len = band_rows(band).checked_mul(row_len).ok_or_else(overflow)?;
    let (relu, clamp, post_act) = act.in_tile();
    let bands = g.oh.div_ceil(band);
    let yp = SyncPtr(y.as_mut_ptr());
    let one_band = |i: usize| {
        let oy0 = i * band;
        let rows = band.min(g.oh - oy0);
        super::PACK_B.with_borrow_mut(|q| {
            if q.len() < buf_len {
                q.resize(buf_len, 0.0);
            }
            let q = &mut q[..band_rows(rows) * row_len];
            fill_band(x, g, oy0 * s, owp, q);
            // SAFETY: the band's output rows `oy0 .. oy0 + rows` are written by this job
            // alone; every B read stays inside `q` (its rows are `owp` wide, a multiple of
            // `nr`, and output row `oy0 + r` reads buffer rows `r * s .. r * s + kh`).
            unsafe {
                band_tiles(
                    kernel,
                    &w.packed,
                    q,
                    g,
                    (oy0, rows, owp, row_len),
                    bias,
                    residual,
                    (relu, clamp),
                    yp,
                )
            };
        });
        if post_act {
            // SAFETY: this job's rows, inside `y` (checked above).
            unsafe { act_rows(act, &yp, w.packed.len, plane, g.ow, (oy0, rows)) };
        }
    };
    for_each_band(bands, one_band);
    Ok(())
}

/// For kernel column `kx`: the output columns `lo..hi` that read inside an input row, and
/// the input column of `lo`.
fn col_span(g: &Geom2d, kx: usize) -> (usize, usize, usize) {
    let off = (kx * g.dw) as isize - g.pl as isize;
    let (lo, hi) = valid_range(g.ow, g.w, g.sw, off);
    let ix0 = (lo * g.sw) as isize + off;
    (lo, hi, ix0.max(0) as usize)
}

/// Kernel columns whose [`col_span`]s a band fill keeps on the stack; wider windows
/// compute them per row.
const SPANS: usize = 16;

/// Fills the band buffer from padded input row `iy0` on: row `r` is
/// `[c][kx][0..owp]`, `q[r][c][kx][ox] = x[c][iy0 + r - pt][ox * s + kx * dw - pl]`, zero
/// outside the image and past `ow`.
fn fill_band(x: &[f32], g: &Geom2d, iy0: usize, owp: usize, q: &mut [f32]) {
    let s = g.sw;
    let row_len = g.c * g.kw * owp;
    let mut spans = [(0, 0, 0); SPANS];
    for (kx, sp) in spans.iter_mut().enumerate().take(g.kw) {
        *sp = col_span(g, kx);
    }
    for (r, qr) in q.chunks_exact_mut(row_len).enumerate() {
        let iy = (iy0 + r) as isize - g.pt as isize;
        if iy < 0 || iy >= g.h as isize {
            qr.fill(0.0);
            continue;
        }
        let iy = iy as usize;
        for (c, qc) in qr.chunks_exact_mut(g.kw * owp).enumerate() {
            let xr = &x[(c * g.h + iy) * g.w..][..g.w];
            for (kx, dst) in qc.chunks_exact_mut(owp).enumerate() {
                let (lo, hi, ix0) = spans.get(kx).copied().unwrap_or_else(|| col_span(g, kx));
                dst[..lo].fill(0.0);
                dst[hi..].fill(0.0);
                if lo < hi {
                    let n = hi - lo;
                    let src = &xr[ix0..ix0 + (n - 1) * s + 1];
                    if s == 1 {
                        dst[lo..hi].copy_from_slice(src);
                    } else {
                        copy_strided(src, s, &mut dst[lo..hi]);
                    }
                }
            }
        }
    }
}

/// The tiles of output rows `oy0 .. oy0 + rows`, each `nr` columns by `mr` channels, row
/// panels of `A` outermost: a panel stays in L1 while it meets the whole band, and each of
/// its channels is written as one run of `rows * ow` values. On Zen 4
/// (`examples/direct_bench.rs`, 1 thread, the orders behind a switch) the row panels
/// innermost (a tile's `B` kept in L1 for all panels) took 1.17-1.2x the implicit-im2col
/// GEMM's time on SqueezeNet 1.1's first layer (64 channels) against 0.86-0.88x this
/// way, and 0.86x against 0.78x on MobileNetV2's. Bands of 8 rows: 16 split too coarsely
/// over 2 threads (1.03-1.15x the GEMM), 4 measured like 8.
///
/// # Safety
/// `q` holds the band (`(rows - 1) * s + kh` rows of `row_len`); `y` points at an
/// `m x oh x ow` output whose rows `oy0 .. oy0 + rows` no other thread touches; `bias` and
/// `residual` (when given) are checked against `m` and the output size.
#[allow(clippy::too_many_arguments)]
unsafe fn band_tiles(
    kernel: &'static Kernel,
    a: &Packed,
    q: &[f32],
    g: &Geom2d,
    (oy0, rows, owp, row_len): (usize, usize, usize, usize),
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    (relu, clamp): (bool, Option<(f32, f32)>),
    y: SyncPtr,
) {
    let (mr, nr) = (kernel.mr, kernel.nr);
    let (m, k) = (a.len, a.k);
    let plane = g.oh * g.ow;
    let panels = m.div_ceil(mr);
    let tile = |r: usize, j0: usize, p: usize| {
        let oy = oy0 + r;
        let b_row = q.as_ptr().add(r * g.sh * row_len);
        let nv = nr.min(g.ow - j0);
        let i0 = p * mr;
        let mv = mr.min(m - i0);
        let off = i0 * plane + oy * g.ow + j0;
        let o = TileOut {
            c: y.get().add(off),
            ldc: plane,
            mv,
            nv,
            alpha: 1.0,
            add_old: 0.0,
            last: true,
            bias_row: bias.map_or(std::ptr::null(), |b| b.as_ptr().add(i0)),
            bias_col: std::ptr::null(),
            res: residual.map_or(std::ptr::null(), |v| v.as_ptr().add(off)),
            ldr: plane,
            relu,
            clamp,
            pf_a: std::ptr::null(),
            pf_b: 0,
        };
        let ap = a.data.as_ptr().add(p * mr * k);
        (kernel.micro(mv, nv))(k, ap, b_row.add(j0), owp, &o);
    };
    for p in 0..panels {
        for r in 0..rows {
            for j0 in (0..g.ow).step_by(nr) {
                tile(r, j0, p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{conv_naive as naive, rnd};

    #[test]
    fn matches_naive() {
        // (c, h, w, m, k, stride, col dilation, pad): the first layers of MobileNetV2,
        // SqueezeNet (no padding) and ResNet-50 (7x7) at reduced size, ragged widths and
        // channel panels, strides 1 to 3, a dilated column and an asymmetric window.
        let cases = [
            (3, 32, 32, 32, 3, 2, 1, 1),
            (3, 23, 29, 64, 3, 2, 1, 0),
            (3, 30, 30, 64, 7, 2, 1, 3),
            (1, 17, 40, 5, 3, 1, 1, 1),
            (2, 19, 21, 33, 5, 3, 1, 2),
            (4, 16, 37, 17, 3, 1, 2, 2),
            (3, 5, 5, 8, 3, 1, 1, 0),
        ];
        for (c, h, wd, m, k, s, dw, p) in cases {
            let mut g = Geom2d::square(c, h, wd, k, s, 1, p);
            g.dw = dw;
            g.ow = (wd + 2 * p - (k - 1) * dw - 1) / s + 1;
            let x = rnd(c * h * wd, 1);
            let w = rnd(m * c * k * k, 2);
            let b = rnd(m, 3);
            let want = naive(&x, &w, &b, &g, m);
            for kernel in Kernel::available() {
                let sw = ShiftedWeights::with_kernel(&w, m, c, k, k, kernel).unwrap();
                for threads in [1, 2] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut y = vec![f32::NAN; m * g.oh * g.ow];
                    pool.install(|| {
                        conv_shifted(&x, &g, &sw, Some(&b), None, Activation::None, &mut y).unwrap()
                    });
                    for (i, (a, e)) in y.iter().zip(&want).enumerate() {
                        assert!(
                            (a - e).abs() <= 1e-4 * (1.0 + e.abs()),
                            "{} {c} {h}x{wd} m{m} k{k} s{s} dw{dw} p{p} at {i}: {a} vs {e}",
                            kernel.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn windows_wider_than_the_stack_spans() {
        // A 3 x 19 window: kernel columns past `SPANS` compute their spans per row.
        let (c, h, wd, m) = (2, 9, 40, 7);
        let mut g = Geom2d::square(c, h, wd, 3, 1, 1, 1);
        g.kw = SPANS + 3;
        g.pl = 4;
        g.ow = wd + 2 * g.pl - g.kw + 1;
        let x = rnd(c * h * wd, 8);
        let w = rnd(m * c * g.kh * g.kw, 9);
        let b = rnd(m, 10);
        let want = naive(&x, &w, &b, &g, m);
        for kernel in Kernel::available() {
            let sw = ShiftedWeights::with_kernel(&w, m, c, g.kh, g.kw, kernel).unwrap();
            let mut y = vec![f32::NAN; want.len()];
            conv_shifted(&x, &g, &sw, Some(&b), None, Activation::None, &mut y).unwrap();
            for (i, (a, e)) in y.iter().zip(&want).enumerate() {
                assert!(
                    (a - e).abs() <= 1e-4 * (1.0 + e.abs()),
                    "{} at {i}: {a} vs {e}",
                    kernel.name
                );
            }
        }
    }

    #[test]
    fn fuses_residual_and_activations() {
        let (c, h, wd, m) = (3, 20, 26, 20);
        let g = Geom2d::square(c, h, wd, 3, 2, 1, 1);
        let x = rnd(c * h * wd, 4);
        let w = rnd(m * c * 9, 5);
        let b = rnd(m, 6);
        let res = rnd(m * g.oh * g.ow, 7);
        let base = naive(&x, &w, &b, &g, m);
        for kernel in Kernel::available() {
            let sw = ShiftedWeights::with_kernel(&w, m, c, 3, 3, kernel).unwrap();
            for act in [
                Activation::Relu,
                Activation::Clip { lo: 0.0, hi: 0.5 },
                Activation::Sigmoid,
            ] {
                let mut y = vec![0.0; base.len()];
                conv_shifted(&x, &g, &sw, Some(&b), Some(&res), act, &mut y).unwrap();
                for (i, (a, (e, r))) in y.iter().zip(base.iter().zip(&res)).enumerate() {
                    let e = act.apply(e + r);
                    assert!(
                        (a - e).abs() <= 1e-4 * (1.0 + e.abs()),
                        "{} {act:?} at {i}: {a} vs {e}",
                        kernel.name
                    );
                }
            }
        }
    }

    #[test]
    fn rejects_bad_buffers_and_geometry() {
        let g = Geom2d::square(3, 8, 8, 3, 2, 1, 1);
        let w = rnd(4 * 27, 1);
        let sw = ShiftedWeights::new(&w, 4, 3, 3, 3).unwrap();
        let x = rnd(3 * 64, 2);
        let mut y = vec![0.0; 4 * g.oh * g.ow];
        assert!(conv_shifted(&x[1..], &g, &sw, None, None, Activation::None, &mut y).is_err());
        assert!(conv_shifted(&x, &g, &sw, None, None, Activation::None, &mut y[1..]).is_err());
        assert!(
            conv_shifted(&x, &g, &sw, Some(&[0.0; 3]), None, Activation::None, &mut y).is_err()
        );
        let g2 = Geom2d { dh: 2, ..g };
        assert!(conv_shifted(&x, &g2, &sw, None, None, Activation::None, &mut y).is_err());
        let g3 = Geom2d { c: 2, ..g };
        assert!(conv_shifted(&x, &g3, &sw, None, None, Activation::None, &mut y).is_err());
        assert!(ShiftedWeights::new(&w[1..], 4, 3, 3, 3).is_err());
        assert!(applies(32, 3, 3, 3, 2, 2, 1));
        assert!(!applies(32, 16, 3, 3, 1, 1, 1));
        assert!(!applies(32, 3, 1, 1, 1, 1, 1));
        assert!(!applies(32, 3, 3, 3, 2, 1, 1));
    }
}
