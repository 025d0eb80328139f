//! Convolution of an image with few channels (a network's first layer, on RGB) vectorized
//! along output pixels, on AVX-512.
//!
//! The GEMM over shifted rows ([`crate::gemm::conv_shifted`]) runs these layers as weights
//! times copies of the input rows, one copy per kernel column, and the direct kernel
//! ([`crate::direct`]) turns every tile around to store NCHW. Here a tile is 8 output
//! channels by 3 vectors of 16 output pixels: per kernel tap it loads the 3 pixel vectors
//! of input, broadcasts the tap's 8 weights and runs 24 FMAs; its accumulators are rows
//! of NCHW output, stored as they are (masked where a row ends), after the bias, the
//! residual and Relu / Clip.
//!
//! The input is first copied, a band of output rows at a time, into a small buffer whose
//! rows are split by column phase: `q[c][r][p][j] = x[c][iy0 + r - pt][s * j + p - pl]`
//! (zero outside the image) for stride `s` and phase `p < s`. Tap `(c, ky, kx)` of the
//! pixels `ox .. ox + 16` of band row `oy` is then the contiguous run
//! `q[c][s * oy + ky][kx % s][ox + kx / s ..]`: one unaligned load, whatever the stride.
//! Each input value is copied about once per band (the `kh - s` input rows a band shares
//! with the next are copied again), by a masked load and, for stride 2, a permute per 16
//! values, instead of `kw / s` times (the shifted rows) or a gather per tap (im2col).
//!
//! Before (shifted rows, the GEMM): per band, `Cin * kw` copies of each input row; per
//! tile of 14 channels by 32 pixels, 27 steps of 2 loads, 14 broadcasts and 28 FMAs, and
//! a GEMM tile's bookkeeping. After: per band, one phase-split copy of each input row; per
//! tile of 8 channels by 48 pixels, 27 steps of 3 loads, 8 broadcasts and 24 FMAs.
//!
//! Needs AVX-512F, dilation 1, the same stride (1 or 2) on both axes and at most
//! [`MAX_CIN`] input channels.
use crate::activation::Activation;
use crate::conv::{act_rows, for_each_band, ConvIo, Geom2d};
use crate::SyncPtr;
use std::cell::RefCell;

/// Invalid geometry, weights or buffers for [`conv_shallow`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shallow conv: {0}")]
pub struct ShallowError(String);

fn err(msg: impl Into<String>) -> ShallowError {
    ShallowError(msg.into())
}

/// Most input channels this path takes (see [`applies`]).
pub const MAX_CIN: usize = 4;

/// Most taps of the window (`kh * kw`): 11 x 11.
pub const MAX_TAPS: usize = 121;

/// Output channels per tile (one broadcast each per tap).
const OC: usize = 8;

/// Pixel vectors (of 16) per tile.
const PV: usize = 3;

/// Lanes of a vector.
const LANES: usize = 16;

/// Weights prepacked for [`conv_shallow`]: blocks of [`OC`] output channels, each
/// `[cin][kh][kw][OC]`, the channels past `m` zero.
#[derive(Debug, Clone)]
pub struct ShallowWeights {
    m: usize,
    cin: usize,
    kh: usize,
    kw: usize,
    w: Vec<f32>,
}

/// Whether the CPU runs the kernel (AVX-512F; detected once).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::gemm::Kernel::detect().name == "avx512"
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether [`conv_shallow`] takes a convolution over `cin` input channels with a
/// `kh x kw` window, strides `sh x sw` and dilations `dh x dw`, one group: on AVX-512,
/// at most [`MAX_CIN`] input channels, a window of 2 to [`MAX_TAPS`] taps, the same
/// stride (1 or 2) on both axes, dilation 1.
pub fn applies(
    cin: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
) -> bool {
    available()
        && (1..=MAX_CIN).contains(&cin)
        && (2..=MAX_TAPS).contains(&kh.saturating_mul(kw))
        && sh == sw
        && (sh == 1 || sh == 2)
        && dh == 1
        && dw == 1
}

impl ShallowWeights {
    /// Packs `weights` (`[m][cin][kh][kw]`, row-major).
    pub fn new(
        weights: &[f32],
        m: usize,
        cin: usize,
        kh: usize,
        kw: usize,
    ) -> Result<ShallowWeights, ShallowError> {
        let taps = kh.checked_mul(kw).filter(|&t| (1..=MAX_TAPS).contains(&t));
        let k = taps.and_then(|t| t.checked_mul(cin));
        let Some(k) = k.filter(|_| (1..=MAX_CIN).contains(&cin)) else {
            return Err(err(format!(
                "{cin} input channels and a {kh}x{kw} window: at most {MAX_CIN} channels and {MAX_TAPS} taps"
            )));
        };
        if m == 0 || m.checked_mul(k) != Some(weights.len()) {
            return Err(err(format!(
                "{} weights for {m} x {cin} x {kh} x {kw}",
                weights.len()
            )));
        }
        let blocks = m.div_ceil(OC);
        let mut w = vec![0.0f32; blocks * k * OC];
        for (o, src) in weights.chunks_exact(k).enumerate() {
            let panel = &mut w[(o / OC) * k * OC..][..k * OC];
            for (t, &v) in src.iter().enumerate() {
                panel[t * OC + o % OC] = v;
            }
        }
        Ok(ShallowWeights { m, cin, kh, kw, w })
    }

    /// Bytes held (for memory plans).
    pub fn bytes(&self) -> usize {
        self.w.len() * 4
    }
}

thread_local! {
    /// The calling thread's band buffer, kept between calls.
    static BAND: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Values of the band buffer [`reserve_scratch`] reserves: a band of ResNet-50's 7x7
/// stem (3 channels, 11 input rows of two 115-value phases: 7590) and of any 3x3 first
/// layer up to 224 wide.
pub const BAND_RESERVE: usize = 1 << 13;

/// Grows the calling thread's band buffer to [`BAND_RESERVE`], so later calls on it do not
/// allocate (a larger layer grows it once on first use).
pub fn reserve_scratch() {
    BAND.with_borrow_mut(|q| {
        if q.len() < BAND_RESERVE {
            q.resize(BAND_RESERVE, 0.0)
        }
    });
}

/// The band layout of one layer: output rows per band and the buffer's strides.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Output rows per band.
    band: usize,
    /// Pixel vectors per output row.
    pvr: usize,
    /// Values of one phase row: `pvr * 16 + (kw - 1) / s`.
    len: usize,
    /// Values of one input row (its `s` phases).
    row: usize,
    /// Input rows of a full band.
    rows: usize,
    /// Values of one channel's rows.
    chan: usize,
    /// Values of the band buffer.
    size: usize,
}

impl Layout {
    fn new(g: &Geom2d) -> Option<Layout> {
        let s = g.sw;
        let pvr = g.ow.div_ceil(LANES);
        // Three rows where a row's pixel vectors do not divide into tiles of three, so
        // that only a band's last tile can be short.
        let band = if pvr.is_multiple_of(PV) { 1 } else { PV }.min(g.oh);
        let len = pvr.checked_mul(LANES)?.checked_add((g.kw - 1) / s)?;
        let row = len.checked_mul(s)?;
        let rows = (band - 1).checked_mul(g.sh)?.checked_add(g.kh)?;
        let chan = rows.checked_mul(row)?;
        let size = chan.checked_mul(g.c)?;
        Some(Layout {
            band,
            pvr,
            len,
            row,
            rows,
            chan,
            size,
        })
    }
}

/// `y = act(conv(x, w) + bias + residual)` for one NCHW image `x` (`g.c x g.h x g.w`)
/// into `y` (`m x g.oh x g.ow`), on the current rayon pool. Any padding; stride 1 or 2
/// (the same on both axes); dilation 1.
pub fn conv_shallow(
    x: &[f32],
    g: &Geom2d,
    w: &ShallowWeights,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Activation,
    y: &mut [f32],
) -> Result<(), ShallowError> {
    if !applies(w.cin, w.kh, w.kw, g.sh, g.sw, g.dh, g.dw) {
        return Err(err(format!(
            "needs AVX-512, equal strides of 1 or 2 and dilation 1, got strides {}x{}, dilations {}x{}",
            g.sh, g.sw, g.dh, g.dw
        )));
    }
    let plane = ConvIo {
        w: [w.m, w.cin, w.kh, w.kw],
        x,
        y,
        residual,
        bias,
    }
    .check(g)
    .map_err(err)?;
    if plane == 0 {
        return Ok(());
    }
    let lay = Layout::new(g).ok_or_else(|| err("geometry overflows"))?;
    // Tap (c, ky, kx)'s offset from a pixel vector's origin in the band buffer.
    let s = g.sw;
    let mut offs = [0usize; MAX_CIN * MAX_TAPS];
    let k = w.cin * w.kh * w.kw;
    for (t, o) in offs.iter_mut().take(k).enumerate() {
        let (c, ky, kx) = (t / (w.kh * w.kw), (t / w.kw) % w.kh, t % w.kw);
        *o = c * lay.chan + ky * lay.row + (kx % s) * lay.len + kx / s;
    }
    let offs = &offs[..k];
    let (relu, clamp, post) = act.in_tile();
    let bands = g.oh.div_ceil(lay.band);
    let yp = SyncPtr(y.as_mut_ptr());
    let one_band = |i: usize| {
        let oy0 = i * lay.band;
        let rows = lay.band.min(g.oh - oy0);
        BAND.with_borrow_mut(|q| {
            if q.len() < lay.size {
                q.resize(lay.size, 0.0);
            }
            let q = &mut q[..lay.size];
            // SAFETY: AVX-512F (checked by `applies`, false elsewhere than x86-64); the
            // band's output rows are written by this job alone; `q` holds the layout's
            // `size` values.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                x86::band(
                    x,
                    g,
                    &lay,
                    oy0,
                    rows,
                    q,
                    w,
                    offs,
                    bias,
                    residual,
                    (relu, clamp),
                    yp,
                )
            };
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (q, offs, relu, clamp, rows, bias, residual, &yp);
        });
        if post {
            // SAFETY: this job's rows, inside `y` (checked above).
            unsafe { act_rows(act, &yp, w.m, plane, g.ow, (oy0, rows)) };
        }
    };
    for_each_band(bands, one_band);
    Ok(())
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Layout, ShallowWeights, LANES, OC, PV};
    use crate::conv::Geom2d;
    use crate::transpose::x86::lane_range16 as lanes;
    use crate::SyncPtr;
    use std::arch::x86_64::*;

    /// Fills the band buffer `q` for the band whose first output row is `oy0`: `rows`
    /// output rows read input rows `oy0 * s - pt ..` (`lay.rows` of them for a full band).
    /// For stride 2 both phases come from the same two loads (their even and odd lanes);
    /// only the vectors at a row's ends are masked.
    #[target_feature(enable = "avx512f")]
    unsafe fn fill(x: &[f32], g: &Geom2d, lay: &Layout, oy0: usize, q: &mut [f32]) {
        let s = g.sw;
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let w = g.w as isize;
        for c in 0..g.c {
            for r in 0..lay.rows {
                let dst = &mut q[c * lay.chan + r * lay.row..][..lay.row];
                let iy = (oy0 * g.sh + r) as isize - g.pt as isize;
                if iy < 0 || iy >= g.h as isize {
                    dst.fill(0.0);
                    continue;
                }
                let base = x[(c * g.h + iy as usize) * g.w..][..g.w].as_ptr();
                let d = dst.as_mut_ptr();
                let mut j0 = 0;
                while j0 < lay.len {
                    // Input column of phase column j: s * j + p - pl.
                    let i0 = (s * j0) as isize - g.pl as isize;
                    let n = (lay.len - j0).min(LANES);
                    let whole = n == LANES && i0 >= 0 && i0 + (s * LANES) as isize <= w;
                    if s == 1 {
                        let v = if whole {
                            _mm512_loadu_ps(base.offset(i0))
                        } else {
                            let m = lanes(-i0, w - i0) & lanes(0, n as isize);
                            // SAFETY: only lanes inside the row are read.
                            _mm512_maskz_loadu_ps(m, base.wrapping_offset(i0))
                        };
                        _mm512_mask_storeu_ps(d.add(j0), lanes(0, n as isize), v);
                    } else {
                        // Lanes `l` of the two loads are columns i0 + l and i0 + 16 + l.
                        let (a, b) = if whole {
                            (
                                _mm512_loadu_ps(base.offset(i0)),
                                _mm512_loadu_ps(base.offset(i0 + 16)),
                            )
                        } else {
                            let m0 = lanes(-i0, w - i0);
                            let m1 = lanes(-i0 - 16, w - i0 - 16);
                            (
                                _mm512_maskz_loadu_ps(m0, base.wrapping_offset(i0)),
                                _mm512_maskz_loadu_ps(m1, base.wrapping_offset(i0 + 16)),
                            )
                        };
                        let keep = lanes(0, n as isize);
                        _mm512_mask_storeu_ps(d.add(j0), keep, _mm512_permutex2var_ps(a, even, b));
                        _mm512_mask_storeu_ps(
                            d.add(lay.len + j0),
                            keep,
                            _mm512_permutex2var_ps(a, odd, b),
                        );
                    }
                    j0 += n;
                }
            }
        }
    }

    /// The output of one tile: per pixel vector, its first channel's pixels, the
    /// residual's, and the mask of the pixels that exist.
    struct Dst {
        y: [*mut f32; PV],
        res: [*const f32; PV],
        mask: [u16; PV],
        /// Values between two channels' planes.
        ld: usize,
        bias: *const f32,
        /// Channels of the block that exist (at most `OC`).
        oc: usize,
        relu: bool,
        clamp: Option<(f32, f32)>,
    }

    /// One tile: `N` pixel vectors (at most `PV`) by [`OC`] channels, `k` taps at
    /// `offs` from each vector's origin `xs`, weights `[k][OC]`.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const N: usize>(xs: [*const f32; PV], offs: &[usize], w: *const f32, d: &Dst) {
        let mut acc = [[_mm512_setzero_ps(); N]; OC];
        for (t, &o) in offs.iter().enumerate() {
            let mut xv = [_mm512_setzero_ps(); N];
            for (p, v) in xv.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(xs[p].add(o));
            }
            let wt = w.add(t * OC);
            for (c, row) in acc.iter_mut().enumerate() {
                let b = _mm512_set1_ps(*wt.add(c));
                for (a, &v) in row.iter_mut().zip(xv.iter()) {
                    *a = _mm512_fmadd_ps(v, b, *a);
                }
            }
        }
        // The epilogue, each step one branch for the whole tile.
        let zero = _mm512_setzero_ps();
        for (c, row) in acc.iter_mut().enumerate() {
            if !d.bias.is_null() && c < d.oc {
                let b = _mm512_set1_ps(*d.bias.add(c));
                row.iter_mut().for_each(|a| *a = _mm512_add_ps(*a, b));
            }
        }
        if !d.res[0].is_null() {
            for (c, row) in acc.iter_mut().enumerate().take(d.oc) {
                for (p, a) in row.iter_mut().enumerate() {
                    let r = _mm512_maskz_loadu_ps(d.mask[p], d.res[p].add(c * d.ld));
                    *a = _mm512_add_ps(*a, r);
                }
            }
        }
        if d.relu {
            acc.iter_mut()
                .flatten()
                .for_each(|a| *a = _mm512_max_ps(*a, zero));
        }
        if let Some((lo, hi)) = d.clamp {
            let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
            acc.iter_mut()
                .flatten()
                .for_each(|a| *a = _mm512_min_ps(hi, _mm512_max_ps(lo, *a)));
        }
        if d.oc == OC {
            for (c, row) in acc.iter().enumerate() {
                for (p, &a) in row.iter().enumerate() {
                    _mm512_mask_storeu_ps(d.y[p].add(c * d.ld), d.mask[p], a);
                }
            }
        } else {
            for (c, row) in acc.iter().enumerate().take(d.oc) {
                for (p, &a) in row.iter().enumerate() {
                    _mm512_mask_storeu_ps(d.y[p].add(c * d.ld), d.mask[p], a);
                }
            }
        }
    }

    /// Fills the band buffer and runs the band's tiles: channel blocks outermost, the
    /// band's pixel vectors in raster order, three per tile.
    ///
    /// # Safety
    /// AVX-512F; `q` holds `lay.size` values; `y` points at an `m x oh x ow` output whose
    /// rows `oy0 .. oy0 + rows` no other thread touches; `bias` and `residual` (when
    /// given) are checked against `m` and the output size; `offs` are the layout's tap
    /// offsets for `w`'s window.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn band(
        x: &[f32],
        g: &Geom2d,
        lay: &Layout,
        oy0: usize,
        rows: usize,
        q: &mut [f32],
        w: &ShallowWeights,
        offs: &[usize],
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        (relu, clamp): (bool, Option<(f32, f32)>),
        y: SyncPtr,
    ) {
        fill(x, g, lay, oy0, q);
        let plane = g.oh * g.ow;
        let k = offs.len();
        let vecs = rows * lay.pvr;
        let qp = q.as_ptr();
        for ob in 0..w.m.div_ceil(OC) {
            let o0 = ob * OC;
            let wp = w.w.as_ptr().add(ob * k * OC);
            for v0 in (0..vecs).step_by(PV) {
                let n = PV.min(vecs - v0);
                let mut xs = [qp; PV];
                let mut d = Dst {
                    y: [y.get(); PV],
                    res: [std::ptr::null(); PV],
                    mask: [0; PV],
                    ld: plane,
                    bias: bias.map_or(std::ptr::null(), |b| b.as_ptr().add(o0)),
                    oc: OC.min(w.m - o0),
                    relu,
                    clamp,
                };
                let (mut r, mut vx) = (v0 / lay.pvr, v0 % lay.pvr);
                for (p, xp) in xs.iter_mut().enumerate().take(n) {
                    if p > 0 {
                        vx += 1;
                        if vx == lay.pvr {
                            (r, vx) = (r + 1, 0);
                        }
                    }
                    let ox = vx * LANES;
                    *xp = qp.add(r * g.sh * lay.row + ox);
                    let off = o0 * plane + (oy0 + r) * g.ow + ox;
                    d.y[p] = y.get().add(off);
                    d.res[p] = residual.map_or(std::ptr::null(), |rv| rv.as_ptr().add(off));
                    d.mask[p] = lanes(0, (g.ow - ox) as isize);
                }
                match n {
                    3 => tile::<3>(xs, offs, wp, &d),
                    2 => tile::<2>(xs, offs, wp, &d),
                    _ => tile::<1>(xs, offs, wp, &d),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{conv_naive as naive, rnd};

    /// (c, h, w, m, kh, kw, stride, pad top, pad left): the first layers of MobileNetV2,
    /// SqueezeNet 1.1 (no padding) and ResNet-50 (7x7) at reduced size, with ragged widths
    /// (rows that end inside a vector, rows of fewer than 16 pixels, of a multiple of 48),
    /// channel counts that end inside a block, an asymmetric window and padding, stride 1.
    const CASES: [[usize; 9]; 10] = [
        [3, 32, 32, 32, 3, 3, 2, 1, 1],
        [3, 23, 29, 64, 3, 3, 2, 0, 0],
        [3, 30, 30, 64, 7, 7, 2, 3, 3],
        [1, 9, 40, 5, 3, 3, 1, 1, 1],
        [4, 17, 97, 13, 5, 3, 2, 2, 1],
        [2, 12, 96, 24, 3, 3, 1, 0, 2],
        [3, 40, 7, 9, 3, 3, 1, 1, 1],
        [3, 5, 5, 3, 3, 3, 2, 0, 0],
        [3, 50, 222, 16, 3, 3, 2, 0, 0],
        [2, 3, 3, 7, 3, 3, 1, 1, 1],
    ];

    fn run(threads: usize, act: Activation, with_res: bool) {
        if !available() {
            return;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for (i, &[c, h, wd, m, kh, kw, s, pt, pl]) in CASES.iter().enumerate() {
            let out = |n: usize, k: usize, p: usize| (n + 2 * p - k) / s + 1;
            let g = Geom2d {
                c,
                h,
                w: wd,
                kh,
                kw,
                sh: s,
                sw: s,
                dh: 1,
                dw: 1,
                pt,
                pl,
                oh: out(h, kh, pt),
                ow: out(wd, kw, pl),
            };
            let x = rnd(c * h * wd, 1 + i as u64);
            let w = rnd(m * c * kh * kw, 2 + i as u64);
            let bias = rnd(m, 3 + i as u64);
            let n = m * g.oh * g.ow;
            let res = rnd(n, 4 + i as u64);
            let mut want = naive(&x, &w, &bias, &g, m);
            if with_res {
                want.iter_mut().zip(&res).for_each(|(a, r)| *a += r);
            }
            want.iter_mut().for_each(|v| *v = act.apply(*v));
            let sw = ShallowWeights::new(&w, m, c, kh, kw).unwrap();
            let mut y = vec![f32::NAN; n];
            pool.install(|| {
                conv_shallow(
                    &x,
                    &g,
                    &sw,
                    Some(&bias),
                    with_res.then_some(&res[..]),
                    act,
                    &mut y,
                )
            })
            .unwrap();
            for (j, (a, b)) in y.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "case {i} ({threads} threads, {act:?}, residual {with_res}) at {j}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn matches_naive() {
        for threads in [1, 2, 3] {
            run(threads, Activation::Relu, false);
        }
        run(2, Activation::None, true);
        run(1, Activation::Clip { lo: 0.0, hi: 6.0 }, false);
        run(2, Activation::Silu, true);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(ShallowWeights::new(&[0.0; 10], 2, 1, 2, 2).is_err());
        assert!(ShallowWeights::new(&[0.0; 5 * 9], 1, 5, 3, 3).is_err());
        assert!(ShallowWeights::new(&[0.0; 0], 0, 1, 3, 3).is_err());
        assert!(ShallowWeights::new(&[0.0; 12 * 12], 1, 1, 12, 12).is_err());
        if !available() {
            return;
        }
        let sw = ShallowWeights::new(&[0.5; 2 * 3 * 9], 2, 3, 3, 3).unwrap();
        let g = Geom2d::square(3, 8, 8, 3, 2, 1, 1);
        let x = vec![1.0; 3 * 64];
        let mut y = vec![0.0; 2 * g.oh * g.ow];
        assert!(conv_shallow(&x[1..], &g, &sw, None, None, Activation::None, &mut y).is_err());
        assert!(conv_shallow(&x, &g, &sw, Some(&[0.0]), None, Activation::None, &mut y).is_err());
        assert!(conv_shallow(&x, &g, &sw, None, None, Activation::None, &mut y[1..]).is_err());
        let g3 = Geom2d::square(3, 8, 8, 3, 3, 1, 1);
        let mut y3 = vec![0.0; 2 * g3.oh * g3.ow];
        assert!(conv_shallow(&x, &g3, &sw, None, None, Activation::None, &mut y3).is_err());
        let gd = Geom2d::square(3, 8, 8, 3, 1, 2, 2);
        let mut yd = vec![0.0; 2 * gd.oh * gd.ow];
        assert!(conv_shallow(&x, &gd, &sw, None, None, Activation::None, &mut yd).is_err());
        conv_shallow(&x, &g, &sw, None, None, Activation::None, &mut y).unwrap();
        assert!(y.iter().all(|&v| v.is_finite()));
    }
}
