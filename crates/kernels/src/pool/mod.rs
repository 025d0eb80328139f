//! f32 NCHW 2-D pooling: max and average over windows, and global (whole-plane) max and
//! average.
//!
//! Windowed pooling runs on the engine of [`crate::depthwise`]: outputs vectorized along
//! the output width (AVX-512, AVX2 or portable; stride 1 and 2 vectorized, 2x2 and 3x3
//! windows unrolled) over a padded copy of each channel or, where that does not pay, a
//! checked scalar border around an unchecked interior; channels in parallel.
//!
//! Max takes the largest in-bounds value, ignoring NaN like ONNX Runtime (`-inf` for a
//! window entirely in padding). Average divides by the in-bounds tap count, or with
//! `count_include_pad` by the taps inside the padded image (a ceil-mode window can reach
//! past the end padding; those taps never count). The caller computes the output size, so
//! ceil mode is just a larger `oh` / `ow`.
//!
//! On AVX2, 3x3 stride-1 "same" max pools of small planes (Inception's pool branches) take
//! a fused two-pass kernel over whole planes (`same3x3` below), and stride-2 pools that
//! halve an even width one that splits even and odd columns as it folds the rows
//! (`halve`).
//!
//! Global pooling reduces each plane with 16 independent lanes (vectorizable) and
//! combines them at the end.
use crate::conv::Geom2d;
use crate::depthwise::{check_geom, run, Isa, Reduce};
use rayon::prelude::*;

mod s2;

pub use crate::depthwise::DepthwiseError as PoolError;

/// Max pool of `x` (`c*h*w`) into `out` (`c*oh*ow`); any window, stride, dilation, pads.
/// Runs the kernels of [`max_pool_isa`].
pub fn max_pool2d(x: &[f32], g: &Geom2d, out: &mut [f32]) -> Result<(), PoolError> {
    max_pool2d_with(max_pool_isa(g), x, g, out)
}

/// Output planes from this many pixels up keep the AVX-512 max-pool kernels on CPUs that
/// have them; smaller ones run the AVX2 kernels (see [`max_pool_isa`]).
const AVX512_POOL_PLANE: usize = 56 * 56;

/// The variant a max pool runs with: the detected one, except that on an AVX-512 CPU an
/// output plane under 56x56 pixels runs the AVX2 kernels (the stride-1 3x3 and stride-2
/// halving kernels, tuned after the AVX-512 paths), unless AVX-512's stride-2 kernel that
/// reads in place takes it (`s2`: 2x2 and 3x3 windows at stride 2 with output rows of 16
/// or more, any plane size; measured in its module). Measured
/// with `examples/pool_bench.rs` (GoogLeNet's and ResNet-50's max pools, the two
/// alternating call by call, best of 100-200): at 2 threads the AVX2 kernels took
/// 0.35-0.88x the AVX-512 ones' time on the 28x28, 14x14 and 7x7 outputs of a Zen 4
/// EPYC (0.44-0.96x on a Sapphire Rapids Xeon, where the 2x2 window to 7x7 took 1.06x),
/// but 1.08-1.23x on the 56x56 outputs of the 112x112 stride-2 pools.
pub fn max_pool_isa(g: &Geom2d) -> Isa {
    // The stride-2 kernel that reads in place is AVX-512's own (`s2`), for any plane.
    if s2::applies(Isa::detect(), g) {
        return Isa::detect();
    }
    // The pool kernels are the depthwise family's: below the plane size, the same choice.
    if g.oh.saturating_mul(g.ow) < AVX512_POOL_PLANE {
        Isa::for_depthwise()
    } else {
        Isa::detect()
    }
}

/// [`max_pool2d`] with an explicit instruction set (tests, benchmarks).
pub fn max_pool2d_with(isa: Isa, x: &[f32], g: &Geom2d, out: &mut [f32]) -> Result<(), PoolError> {
    check_geom("max_pool2d", g, x.len(), out.len())?;
    if s2::applies(isa, g) {
        s2::run(x, g, out);
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    if same3x3::applies(isa, g) {
        same3x3::run(x, g, out);
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    if halve::applies(isa, g) {
        halve::run(x, g, out);
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    if crate::depthwise::blocked::applies(isa, g, Reduce::Max) {
        crate::depthwise::blocked::run(isa, x, &[], None, g, Reduce::Max, out);
        return Ok(());
    }
    // Rows narrower than a vector or so run no faster in two passes (each pass is one
    // vector per row, its folds a dependent chain); the window kernel does those.
    if g.dh == 1 && g.dw == 1 && (g.sw == 1 || g.sw == 2) && g.w >= SEPARABLE_MIN_WIDTH {
        separable_max(isa, x, g, out);
    } else if flat_fits(g) {
        flat_max(isa, x, g, out);
    } else {
        run(isa, x, &[], None, g, Reduce::Max, out);
    }
    Ok(())
}

thread_local! {
    /// Separable max pooling's padded row (grown to the widest row seen on the thread).
    static ROW: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on the calling thread's scratch row ([`ROW`]), grown to at least `len`
/// values (its contents are whatever the last user left).
fn with_row<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    ROW.with_borrow_mut(|buf| {
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

/// Whether a whole-plane AVX2 max pool kernel (`same3x3`, `halve`) may run on `isa`:
/// AVX2 chosen and present, and (in tests) the channel-blocked path not forced.
#[cfg(target_arch = "x86_64")]
fn avx2_plane_kernel(isa: Isa) -> bool {
    #[cfg(test)]
    if crate::depthwise::tests::BLOCKED.with(|f| f.get()) == Some(true) {
        return false;
    }
    isa == Isa::Avx2 && isa.usable()
}

/// Values [`reserve_scratch`] sets aside per thread: the two half-width planes of the
/// largest output plane the stride-2 halving kernel takes (56x56) with their slack, which
/// also covers the separable path's padded rows up to 1024 wide and the small planes of
/// the whole-plane paths.
pub const ROW_RESERVE: usize = 2 * (56 * 56 + 2 * 8);

/// Grows the calling thread's padded row to [`ROW_RESERVE`], so later calls on it do not
/// allocate (see [`crate::reserve_scratch`]).
pub fn reserve_scratch() {
    ROW.with_borrow_mut(|r| {
        if r.len() < ROW_RESERVE {
            r.resize(ROW_RESERVE, 0.0)
        }
    });
}
/// The narrowest input plane [`separable_max`] takes (measured with
/// `examples/pool_bench.rs`: 2x faster at 112 wide, 1.1-1.3x at 28, even at 14, slower at 7).
const SEPARABLE_MIN_WIDTH: usize = 16;
/// Readable slack after a padded row's last tap: two vectors of the widest instruction set.
const ROW_SLACK: usize = 32;

/// Undilated max pooling with stride 1 or 2, as two vectorized passes per output row: the
/// max down the window's rows into a row padded with `-inf` on both sides, then the max
/// along it. Each input value is compared `kh` times per output row and each output `kw`
/// times, against `kh * kw` for the window kernel, and no padded copy of the channel is
/// made. NaN is skipped the same way (every fold starts at `-inf` and takes a value only
/// when it is greater).
fn separable_max(isa: Isa, x: &[f32], g: &Geom2d, out: &mut [f32]) {
    let (ip, op) = (g.h * g.w, g.oh * g.ow);
    if g.c == 0 || op == 0 {
        return;
    }
    let isa = if isa.usable() { isa } else { Isa::Portable };
    let out = &mut out[..g.c * op];
    let one = |(ci, oc): (usize, &mut [f32])| max_channel(isa, &x[ci * ip..(ci + 1) * ip], g, oc);
    per_channel(g.c, ip, op, out, one);
}

/// Runs `one(channel, its output plane)` for the `c` planes of `op` values in `out`, on the
/// pool's threads when the layer (`ip` inputs and `op` outputs per plane) is big enough.
fn per_channel(
    c: usize,
    ip: usize,
    op: usize,
    out: &mut [f32],
    one: impl Fn((usize, &mut [f32])) + Sync + Send,
) {
    if c > 1 && c * (ip + op) >= 1 << 15 && rayon::current_num_threads() > 1 {
        let min_len = (4096 / (ip + op)).max(1);
        out.par_chunks_mut(op)
            .with_min_len(min_len)
            .enumerate()
            .for_each(one);
    } else {
        out.chunks_mut(op).enumerate().for_each(one);
    }
}

/// Longest plane [`flat_max`] takes (its penalty rows live on the stack).
const FLAT_MAX: usize = 512;
/// Widest window [`flat_max`] takes.
const FLAT_KW: usize = 4;
/// `-inf` slack around [`flat_max`]'s row-max plane (at least `FLAT_KW`).
const FLAT_SLACK: usize = 4;

/// Whether [`flat_max`] handles `g`: stride 1, undilated, output as wide as the input
/// ("same" padding along the rows), small planes, narrow windows.
fn flat_fits(g: &Geom2d) -> bool {
    g.sh == 1
        && g.sw == 1
        && g.dh == 1
        && g.dw == 1
        && g.ow == g.w
        && g.pl < g.kw
        && g.kw <= FLAT_KW
        && g.oh * g.w <= FLAT_MAX
}

/// Stride-1 max pooling of small planes (7x7, 14x14: one or two vectors per row, where
/// per-row passes spend more on loop overhead than on compares), as passes over whole
/// planes: the max down the window's rows, each tap row one contiguous fold over all
/// output rows it reaches, then the max along the rows, each tap one contiguous fold over
/// the whole plane with a `-inf` penalty on the lanes whose tap falls off their row (so
/// folds may cross rows). The penalties depend only on the geometry and are built once per
/// call. NaN is skipped as by the other max kernels.
fn flat_max(isa: Isa, x: &[f32], g: &Geom2d, out: &mut [f32]) {
    let (ip, op) = (g.h * g.w, g.oh * g.ow);
    if g.c == 0 || op == 0 {
        return;
    }
    let isa = if isa.usable() { isa } else { Isa::Portable };
    let mut pen = [[0.0f32; FLAT_MAX]; FLAT_KW];
    for (kx, row) in pen.iter_mut().enumerate().take(g.kw) {
        let s = kx as isize - g.pl as isize;
        for (i, p) in row[..op].iter_mut().enumerate() {
            let ix = (i % g.w) as isize + s;
            if ix < 0 || ix >= g.w as isize {
                *p = f32::NEG_INFINITY;
            }
        }
    }
    let pen = &pen;
    let out = &mut out[..g.c * op];
    let one = |(ci, oc): (usize, &mut [f32])| {
        with_row(op + 2 * FLAT_SLACK, |v| {
            v.fill(f32::NEG_INFINITY);
            let xc = &x[ci * ip..(ci + 1) * ip];
            for ky in 0..g.kh {
                // Output row `oy` reads input row `oy + off`.
                let off = ky as isize - g.pt as isize;
                let a = (-off).max(0) as usize;
                let b = (g.h as isize - off).clamp(0, g.oh as isize) as usize;
                if a < b {
                    let src = &xc[(a as isize + off) as usize * g.w..][..(b - a) * g.w];
                    let dst = &mut v[FLAT_SLACK + a * g.w..][..(b - a) * g.w];
                    // SAFETY: `src` and `dst` hold the `(b - a) * w` values folded; `isa`
                    // is one the CPU runs.
                    unsafe {
                        crate::depthwise::max_into(
                            isa,
                            src.as_ptr(),
                            None,
                            src.len(),
                            dst.as_mut_ptr(),
                        )
                    };
                }
            }
            oc.fill(f32::NEG_INFINITY);
            for (kx, p) in pen.iter().enumerate().take(g.kw) {
                // Tap `kx` of output `i` is row-max `i + kx - pl`, inside the slack.
                let src = &v[FLAT_SLACK + kx - g.pl..][..op];
                // SAFETY: `src`, `p[..op]` and `oc` hold `op` values; `isa` as above.
                unsafe {
                    crate::depthwise::max_into(
                        isa,
                        src.as_ptr(),
                        Some(p.as_ptr()),
                        op,
                        oc.as_mut_ptr(),
                    )
                };
            }
        })
    };
    per_channel(g.c, ip, op, out, one);
}

/// One channel of [`separable_max`].
fn max_channel(isa: Isa, xc: &[f32], g: &Geom2d, oc: &mut [f32]) {
    // The padded row: `pl` of -inf, the window rows' max, -inf up to the last tap of the
    // last output, and slack for whole-vector reads.
    let taps = ((g.ow - 1) * g.sw + g.kw).max(g.pl + g.w);
    with_row(taps + ROW_SLACK, |row| {
        row.fill(f32::NEG_INFINITY);
        max_rows(isa, xc, g, row, oc);
    });
}

/// The output rows of one channel of [`separable_max`], through the padded `row`.
fn max_rows(isa: Isa, xc: &[f32], g: &Geom2d, row: &mut [f32], oc: &mut [f32]) {
    for (oy, orow) in oc.chunks_exact_mut(g.ow).take(g.oh).enumerate() {
        let y0 = (oy * g.sh) as isize - g.pt as isize;
        let ya = y0.max(0) as usize;
        let yb = (y0 + g.kh as isize).clamp(0, g.h as isize) as usize;
        let mid = &mut row[g.pl..g.pl + g.w];
        if ya < yb {
            let src = &xc[ya * g.w..yb * g.w];
            // SAFETY: `src` holds the `yb - ya` rows of `w` values read, `mid` the `w`
            // written; `isa` is one the CPU runs (checked in `separable_max`).
            unsafe {
                crate::depthwise::max_down(isa, src.as_ptr(), yb - ya, g.w, g.w, mid.as_mut_ptr())
            };
        } else {
            mid.fill(f32::NEG_INFINITY);
        }
        // SAFETY: the last output's last tap is `(ow - 1) * sw + kw - 1 < taps`, and `row`
        // has `ROW_SLACK` more values for whole-vector reads; `orow` holds `ow` values.
        unsafe {
            crate::depthwise::max_along(isa, g.sw, row.as_ptr(), g.kw, g.ow, orow.as_mut_ptr())
        };
    }
}

/// 3x3 stride-1 max pooling that keeps the plane's size (padding 1 all round: the pools of
/// Inception's fourth branch) on planes of at most [`same3x3::MAX_PLANE`] values, AVX2.
///
/// Each plane in two passes over whole planes, as [`flat_max`], but fused: the max down
/// the window's three rows is three contiguous folds into an L1-resident row-max plane
/// (the row above is the plane shifted by `w` values, so no row needs a border case),
/// then every output vector takes its three taps along the row in registers, the taps that
/// fall off a row end masked by adding `-inf`. Before: the channel-blocked path (8
/// channels transposed into a padded pixel-major copy, the max over nine taps, transposed
/// back). After: no copy, no transposes, 3 + 3 loads per output vector. On Zen 3
/// (`examples/pool_bench.rs`, the two alternating in one process, 400 calls, three runs
/// at 1 and 2 threads) it took 0.47-0.58x the blocked path's time on GoogLeNet's 28x28
/// pool branch, 0.49-0.54x on 14x14 and 0.59-0.65x on 7x7 (p50).
#[cfg(target_arch = "x86_64")]
mod same3x3 {
    use super::{avx2_plane_kernel, per_channel, with_row, Isa};
    use crate::conv::Geom2d;
    use crate::transpose::x86::mask8 as mask;
    use std::arch::x86_64::*;

    /// Largest plane taken: the row-max plane and its slack fit the thread's reserved row
    /// ([`super::ROW_RESERVE`]), so no call allocates.
    pub(super) const MAX_PLANE: usize = 1024;
    /// `-inf`-neutralized slack before and after the row-max plane: one vector.
    const SLACK: usize = 8;

    pub(super) fn applies(isa: Isa, g: &Geom2d) -> bool {
        avx2_plane_kernel(isa)
            && (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl) == (3, 3, 1, 1, 1, 1, 1, 1)
            && (g.oh, g.ow) == (g.h, g.w)
            && g.h * g.w <= MAX_PLANE
            && g.h * g.w > 0
    }

    /// Max pools every channel. The caller has checked the geometry against the buffers
    /// and that [`applies`] holds.
    pub(super) fn run(x: &[f32], g: &Geom2d, out: &mut [f32]) {
        let (w, hw) = (g.w, g.h * g.w);
        // `-inf` on the lanes whose left (right) tap falls off the row; a whole vector
        // past the plane so that the last vector's lanes read them.
        let mut pen = [[0.0f32; MAX_PLANE + 8]; 2];
        let [left, right] = &mut pen;
        for (i, (l, r)) in left.iter_mut().zip(right.iter_mut()).take(hw).enumerate() {
            if i % w == 0 {
                *l = f32::NEG_INFINITY;
            }
            if i % w == w - 1 {
                *r = f32::NEG_INFINITY;
            }
        }
        let pen = &pen;
        let out = &mut out[..g.c * hw];
        let one = |(ci, oc): (usize, &mut [f32])| {
            let xc = &x[ci * hw..(ci + 1) * hw];
            with_row(hw + 3 * SLACK, |buf| {
                // SAFETY: `applies` checked AVX2 (`usable`); `xc` and `oc` hold `hw`
                // values, `buf` `hw` and the slack, `pen` rows `hw` rounded up to a vector.
                unsafe { plane(xc.as_ptr(), w, hw, buf.as_mut_ptr(), pen, oc.as_mut_ptr()) };
            })
        };
        per_channel(g.c, hw, hw, out, one);
    }

    /// `dst[i] = max(-inf, s[i] for s in srcs)` (NaN skipped) for `i < n`; `dst` is
    /// written up to `n` rounded up to a vector, the sources read only below `n`. Not
    /// [`crate::depthwise::max_down`], whose tail is a masked store (it may not write past
    /// `n`): with it this kernel took 1.1-1.4x the time on GoogLeNet's 28x28 and 14x14
    /// pool branches (`pool_bench`, the two alternating in one process, 1 and 2 threads);
    /// here the slack takes the whole last vector.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn maxn<const N: usize>(srcs: [*const f32; N], n: usize, dst: *mut f32) {
        let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i + 8 <= n {
            let mut acc = ninf;
            for s in srcs {
                acc = _mm256_max_ps(_mm256_loadu_ps(s.add(i)), acc);
            }
            _mm256_storeu_ps(dst.add(i), acc);
            i += 8;
        }
        if i < n {
            let k = mask(n - i);
            let mut acc = ninf;
            for s in srcs {
                // Masked-off lanes read as 0 and do not count: `acc` is stored whole, but
                // only lanes below `n` are ever used.
                acc = _mm256_max_ps(_mm256_maskload_ps(s.add(i), k), acc);
            }
            _mm256_storeu_ps(dst.add(i), acc);
        }
    }

    /// One channel: `xc` the `hw` inputs (rows `w` long), `buf` the row-max plane with
    /// [`SLACK`] before and after, `oc` the `hw` outputs.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn plane(
        xc: *const f32,
        w: usize,
        hw: usize,
        buf: *mut f32,
        pen: &[[f32; MAX_PLANE + 8]; 2],
        oc: *mut f32,
    ) {
        let v = buf.add(SLACK);
        // Down the rows, each output row the max of the row above, itself and the one
        // below: the first and last rows lack one, and the rows between are one
        // contiguous run (the row above output row `y` is the plane shifted by `w`). A
        // run's last vector spills past it into the next, which is written after.
        if hw == w {
            maxn([xc], w, v);
        } else {
            maxn([xc, xc.add(w)], w, v);
            if hw > 2 * w {
                maxn([xc, xc.add(w), xc.add(2 * w)], hw - 2 * w, v.add(w));
            }
            maxn([xc.add(hw - 2 * w), xc.add(hw - w)], w, v.add(hw - w));
        }
        // Along the rows: the middle tap, then the left and right ones, penalized where
        // they leave the row (the slack around `v` keeps the reads in bounds; whatever it
        // holds, adding -inf gives -inf or NaN, which the max skips).
        let mut i = 0;
        while i < hw {
            let mid = _mm256_loadu_ps(v.add(i));
            let l = _mm256_add_ps(
                _mm256_loadu_ps(v.add(i).sub(1)),
                _mm256_loadu_ps(pen[0].as_ptr().add(i)),
            );
            let r = _mm256_add_ps(
                _mm256_loadu_ps(v.add(i + 1)),
                _mm256_loadu_ps(pen[1].as_ptr().add(i)),
            );
            let y = _mm256_max_ps(r, _mm256_max_ps(l, mid));
            if i + 8 <= hw {
                _mm256_storeu_ps(oc.add(i), y);
            } else {
                _mm256_maskstore_ps(oc.add(i), mask(hw - i), y);
            }
            i += 8;
        }
    }
}

/// Stride-2 max pooling with a 2x2 or 3x3 window that halves an even width (GoogLeNet's
/// and ResNet-50's downsampling pools: 112 -> 56, 56 -> 28), output rows of at least 16
/// and planes of at most [`halve::MAX_OUT`] values, AVX2.
///
/// Before: the separable kernel (per output row, the max down the window's rows into a
/// padded row, then the max along it with two loads and two shuffles per vector and tap)
/// or, for planes of 28x28 and less, the channel-blocked path (transposes in and out).
/// After, per plane: each output row's window rows are folded 16 columns at a time and
/// split at once into their even and odd columns (two shuffles per 16 values), into two
/// half-width planes; the output plane is then one contiguous pass, each output the max
/// of an even and an odd column and one neighbour, the neighbour masked with `-inf` at a
/// row's end. On Zen 3 (`examples/pool_bench.rs`, the two alternating in one process, 300
/// calls, two runs at 1 and 2 threads) it took 0.88-0.91x the separable kernel's time on
/// the 112 -> 56 pools of GoogLeNet and ResNet-50 (best and p50) and 0.86-0.93x the
/// blocked path's on GoogLeNet's 56 -> 28 pool.
#[cfg(target_arch = "x86_64")]
mod halve {
    use super::{avx2_plane_kernel, per_channel, with_row, Isa};
    use crate::conv::Geom2d;
    use crate::transpose::x86::mask8 as mask;
    use std::arch::x86_64::*;

    /// Largest output plane taken: its two half-width planes (and their slack) fit the
    /// thread's reserved row ([`super::ROW_RESERVE`]), so no call allocates.
    pub(super) const MAX_OUT: usize = 56 * 56;
    /// Slack before and after each half-width plane.
    const SLACK: usize = 8;
    /// Narrowest output rows taken: two vectors. Below, the channel-blocked path is as
    /// fast (GoogLeNet's 28 -> 14 pool, 1.0-1.03x) or faster (its 2x2 14 -> 7 pool: this
    /// kernel took 1.65-1.7x the time).
    const MIN_OW: usize = 16;

    pub(super) fn applies(isa: Isa, g: &Geom2d) -> bool {
        avx2_plane_kernel(isa)
            && (g.kh == 2 || g.kh == 3)
            && g.kw == g.kh
            && (g.sh, g.sw, g.dh, g.dw) == (2, 2, 1, 1)
            && g.pt <= 1
            && g.pl <= 1
            && g.w.is_multiple_of(2)
            && g.w > 0
            && g.ow == g.w / 2
            && g.ow >= MIN_OW
            && g.oh > 0
            && g.oh * g.ow <= MAX_OUT
    }

    /// Max pools every channel. The caller has checked the geometry against the buffers
    /// and that [`applies`] holds.
    pub(super) fn run(x: &[f32], g: &Geom2d, out: &mut [f32]) {
        let (ip, op) = (g.h * g.w, g.oh * g.ow);
        // `-inf` where an output's neighbour tap falls off its row: the last column
        // (right neighbour, no left padding) or the first (left neighbour, with it).
        let mut pen = [0.0f32; MAX_OUT + 8];
        let edge = if g.pl == 0 { g.ow - 1 } else { 0 };
        for (i, p) in pen.iter_mut().take(op).enumerate() {
            if i % g.ow == edge {
                *p = f32::NEG_INFINITY;
            }
        }
        let pen = &pen;
        let out = &mut out[..g.c * op];
        let one = |(ci, oc): (usize, &mut [f32])| {
            let xc = &x[ci * ip..(ci + 1) * ip];
            with_row(2 * (op + 2 * SLACK), |buf| {
                // SAFETY: `applies` checked AVX2 (`usable`) and the geometry; `xc` holds
                // `h * w` values, `oc` `op`, `buf` two half-width planes with slack,
                // `pen` `op` rounded up to a vector.
                unsafe { plane(xc.as_ptr(), g, buf.as_mut_ptr(), pen, oc.as_mut_ptr()) };
            })
        };
        per_channel(g.c, ip, op, out, one);
    }

    /// One channel: `xc` its `h x w` inputs, `buf` the even and odd half-width planes
    /// (each `oh * ow` values with [`SLACK`] before and after), `oc` its outputs.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn plane(
        xc: *const f32,
        g: &Geom2d,
        buf: *mut f32,
        pen: &[f32; MAX_OUT + 8],
        oc: *mut f32,
    ) {
        let (w, ow, op) = (g.w, g.ow, g.oh * g.ow);
        let even = buf.add(SLACK);
        let odd = buf.add(op + 3 * SLACK);
        let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
        for oy in 0..g.oh {
            // The window's rows inside the image.
            let y0 = (2 * oy) as isize - g.pt as isize;
            let ya = y0.max(0) as usize;
            let yb = ((y0 + g.kh as isize).max(0) as usize).min(g.h);
            let (e, o) = (even.add(oy * ow), odd.add(oy * ow));
            let mut c = 0;
            while c < w {
                let n = (w - c).min(16);
                let (ka, kb) = (mask(n), mask(n.saturating_sub(8)));
                let (mut a, mut b) = (ninf, ninf);
                for y in ya..yb {
                    let p = xc.add(y * w + c);
                    // Masked-off lanes read 0; they become columns past the row, which
                    // no output reads unmasked.
                    let (va, vb) = if n == 16 {
                        (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
                    } else {
                        (_mm256_maskload_ps(p, ka), _mm256_maskload_ps(p.add(8), kb))
                    };
                    a = _mm256_max_ps(va, a);
                    b = _mm256_max_ps(vb, b);
                }
                // Even columns of the 16 (0, 2, .., 14) and odd ones, in order. A row's
                // last 8 may spill into the next row's, written after it, or the slack.
                let (ev, od) = crate::transpose::x86::even_odd8(a, b);
                _mm256_storeu_ps(e.add(c / 2), ev);
                _mm256_storeu_ps(o.add(c / 2), od);
                c += 16;
            }
        }
        // Along the rows: output `i` of the plane takes even column `i` and odd column
        // `i` (window taps 2 ox - pl + 0 / 1 after the padding shift), and with a 3x3
        // window the next even column (no left padding) or the previous odd one (with
        // it), penalized where that leaves the row.
        let mut i = 0;
        while i < op {
            let (ev, od) = (_mm256_loadu_ps(even.add(i)), _mm256_loadu_ps(odd.add(i)));
            let mut y = if g.pl == 0 {
                _mm256_max_ps(od, ev)
            } else {
                // pl = 1: taps are odd column ox - 1, even column ox, odd column ox
                // (2x2: the first two).
                ev
            };
            let pv = _mm256_loadu_ps(pen.as_ptr().add(i));
            if g.pl == 0 {
                if g.kw == 3 {
                    y = _mm256_max_ps(_mm256_add_ps(_mm256_loadu_ps(even.add(i + 1)), pv), y);
                }
            } else {
                y = _mm256_max_ps(_mm256_add_ps(_mm256_loadu_ps(odd.add(i).sub(1)), pv), y);
                if g.kw == 3 {
                    y = _mm256_max_ps(od, y);
                }
            }
            if i + 8 <= op {
                _mm256_storeu_ps(oc.add(i), y);
            } else {
                _mm256_maskstore_ps(oc.add(i), mask(op - i), y);
            }
            i += 8;
        }
    }
}

/// Average pool of `x` (`c*h*w`) into `out` (`c*oh*ow`). `pads_end` is the (bottom, right)
/// padding, which only matters with `count_include_pad`.
pub fn avg_pool2d(
    x: &[f32],
    g: &Geom2d,
    pads_end: (usize, usize),
    count_include_pad: bool,
    out: &mut [f32],
) -> Result<(), PoolError> {
    avg_pool2d_with(Isa::detect(), x, g, pads_end, count_include_pad, out)
}

/// [`avg_pool2d`] with an explicit instruction set (tests, benchmarks).
pub fn avg_pool2d_with(
    isa: Isa,
    x: &[f32],
    g: &Geom2d,
    pads_end: (usize, usize),
    count_include_pad: bool,
    out: &mut [f32],
) -> Result<(), PoolError> {
    check_geom("avg_pool2d", g, x.len(), out.len())?;
    let red = Reduce::Avg {
        include_pad: count_include_pad,
        pb: pads_end.0.min(i32::MAX as usize),
        pr: pads_end.1.min(i32::MAX as usize),
    };
    run(isa, x, &[], None, g, red, out);
    Ok(())
}

/// Mean of each of the `planes` planes of `plane` values in `x`, into `out[..planes]`.
pub fn global_avg_pool(
    x: &[f32],
    planes: usize,
    plane: usize,
    out: &mut [f32],
) -> Result<(), PoolError> {
    global(x, planes, plane, out, "global_avg_pool", |p| {
        sum(p) / p.len() as f32
    })
}

/// Max of each of the `planes` planes of `plane` values in `x` (NaN ignored, `-inf` for an
/// empty plane), into `out[..planes]`.
pub fn global_max_pool(
    x: &[f32],
    planes: usize,
    plane: usize,
    out: &mut [f32],
) -> Result<(), PoolError> {
    global(x, planes, plane, out, "global_max_pool", max)
}

fn global(
    x: &[f32],
    planes: usize,
    plane: usize,
    out: &mut [f32],
    op: &str,
    f: impl Fn(&[f32]) -> f32 + Sync,
) -> Result<(), PoolError> {
    let n = planes
        .checked_mul(plane)
        .ok_or_else(|| PoolError::Invalid(format!("{op}: size overflows")))?;
    if x.len() < n || out.len() < planes {
        return Err(PoolError::Invalid(format!(
            "{op}: {planes} planes of {plane} need {n} inputs and {planes} outputs, got {} and {}",
            x.len(),
            out.len()
        )));
    }
    let out = &mut out[..planes];
    if plane == 0 {
        out.iter_mut().for_each(|o| *o = f(&[]));
        return Ok(());
    }
    let x = &x[..n];
    if n >= 1 << 16 && planes > 1 && rayon::current_num_threads() > 1 {
        let min_len = (8192 / plane).max(1);
        out.par_iter_mut()
            .zip(x.par_chunks(plane))
            .with_min_len(min_len)
            .for_each(|(o, p)| *o = f(p));
    } else {
        out.iter_mut()
            .zip(x.chunks(plane))
            .for_each(|(o, p)| *o = f(p));
    }
    Ok(())
}

const LANES: usize = 16;

/// Sum with `LANES` independent accumulators (the compiler vectorizes the lane loop).
fn sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for &x in chunks.remainder() {
        s += x;
    }
    s
}

fn max(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = if x > *a { x } else { *a };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &x in acc.iter().chain(chunks.remainder()) {
        if x > m {
            m = x;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_pool_isa_keeps_avx512_for_large_planes_only() {
        // GoogLeNet's 2x2 pool to 7x7 (narrow 3x3 windows take `s2` from `MIN_OW3`).
        let small = Geom2d::square(832, 14, 14, 2, 2, 1, 0);
        let large = Geom2d::square(64, 112, 112, 3, 2, 1, 1);
        assert!(small.oh * small.ow < AVX512_POOL_PLANE);
        assert!(large.oh * large.ow >= AVX512_POOL_PLANE);
        let want_small = match Isa::detect() {
            Isa::Avx512 if Isa::Avx2.usable() => Isa::Avx2,
            isa => isa,
        };
        assert_eq!(Isa::for_depthwise(), want_small);
        assert_eq!(max_pool_isa(&small), want_small);
        assert_eq!(max_pool_isa(&large), Isa::detect());
        // Whichever variant is chosen computes the same pool as the portable code.
        for g in [small, large] {
            let x = rnd(g.c * g.h * g.w, 7);
            let (mut a, mut b) = (vec![0.0; g.c * g.oh * g.ow], vec![0.0; g.c * g.oh * g.ow]);
            max_pool2d(&x, &g, &mut a).unwrap();
            max_pool2d_with(Isa::Portable, &x, &g, &mut b).unwrap();
            assert_eq!(a, b);
        }
    }

    use crate::testutil::rnd_lcg as rnd;

    /// Naive (max, sum, valid count, padded count) per output, in f64.
    fn naive(x: &[f32], g: &Geom2d, pb: usize, pr: usize) -> Vec<(f64, f64, usize, usize)> {
        let mut out = vec![];
        for c in 0..g.c {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let (mut m, mut s, mut n, mut np) = (f64::NEG_INFINITY, 0.0, 0, 0);
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
                            let ix = (ox * g.sw + kx * g.dw) as isize - g.pl as isize;
                            if iy < (g.h + pb) as isize && ix < (g.w + pr) as isize {
                                np += 1;
                            }
                            if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
                                let v = x[c * g.h * g.w + iy as usize * g.w + ix as usize] as f64;
                                m = m.max(v);
                                s += v;
                                n += 1;
                            }
                        }
                    }
                    out.push((m, s, n, np));
                }
            }
        }
        out
    }

    fn out_dim(n: usize, k: usize, s: usize, d: usize, p0: usize, p1: usize, ceil: bool) -> usize {
        let span = (k - 1) * d + 1;
        if n + p0 + p1 < span {
            return 0;
        }
        let r = n + p0 + p1 - span;
        if ceil {
            let mut o = r.div_ceil(s) + 1;
            // The last window must start inside the image or the begin padding.
            if (o - 1) * s >= n + p0 {
                o -= 1;
            }
            o
        } else {
            r / s + 1
        }
    }

    #[test]
    fn windowed_pools_match_naive_on_every_isa() {
        let sizes = [
            (1, 1),
            (2, 2),
            (3, 5),
            (7, 7),
            (9, 17),
            (14, 33),
            (5, 40),
            (31, 19),
            (3, 130),
            (4, 67),
            (56, 56),
        ];
        let windows = [
            (3, 2, 1),
            (3, 1, 1),
            (2, 2, 1),
            (2, 1, 1),
            (5, 1, 1),
            (3, 2, 2),
            (4, 3, 1),
            (1, 1, 1),
        ];
        let mut case = 0u64;
        // Each instruction set with and without the padded copy; with AVX-512 and AVX2 also
        // the channel-blocked path forced on (max pooling; 17 channels: full vectors and one);
        // with AVX-512 the stride-2 kernel (`s2`) on and off.
        for (isa, no_pad, blocked, s2) in Isa::available().into_iter().flat_map(|i| {
            let mut modes = vec![(i, false, Some(false), None), (i, true, Some(false), None)];
            if matches!(i, Isa::Avx512 | Isa::Avx2) {
                modes.push((i, false, Some(true), None));
            }
            if i == Isa::Avx512 {
                modes.push((i, false, Some(false), Some(false)));
            }
            modes
        }) {
            crate::depthwise::tests::NO_PAD.with(|f| f.set(no_pad));
            crate::depthwise::tests::BLOCKED.with(|f| f.set(blocked));
            s2::tests::S2.with(|f| f.set(s2));
            for &(h, w) in &sizes {
                for &(k, s, d) in &windows {
                    for (pt, pb) in [(0, 0), (1, 1), (0, 1), (2, 1)] {
                        for ceil in [false, true] {
                            if pt > (k - 1) * d || pb > (k - 1) * d {
                                continue;
                            }
                            case += 1;
                            let oh = out_dim(h, k, s, d, pt, pb, ceil);
                            let ow = out_dim(w, k, s, d, pt, pb, ceil);
                            // `square`'s window and padding before the image; the
                            // output size from the bottom padding and the rounding mode.
                            let c = if blocked == Some(true) { 17 } else { 2 };
                            let g = Geom2d {
                                oh,
                                ow,
                                ..Geom2d::square(c, h, w, k, s, d, pt)
                            };
                            let x = rnd(g.c * h * w, case);
                            let want = naive(&x, &g, pb, pb);
                            let mut mx = vec![f32::NAN; g.c * oh * ow + 1];
                            max_pool2d_with(isa, &x, &g, &mut mx).unwrap();
                            for incl in [false, true] {
                                let mut av = vec![f32::NAN; g.c * oh * ow + 1];
                                avg_pool2d_with(isa, &x, &g, (pb, pb), incl, &mut av).unwrap();
                                for (j, wv) in want.iter().enumerate() {
                                    let n = if incl { wv.3 } else { wv.2 };
                                    let a = wv.1 / n as f64;
                                    if n == 0 {
                                        assert!(av[j].is_nan());
                                    } else {
                                        assert!(
                                            (av[j] as f64 - a).abs() < 1e-5,
                                            "{isa:?} {g:?} incl {incl} at {j}: {} vs {a}",
                                            av[j]
                                        );
                                    }
                                }
                                assert!(av[g.c * oh * ow].is_nan());
                            }
                            for (j, wv) in want.iter().enumerate() {
                                assert_eq!(mx[j] as f64, wv.0, "{isa:?} {g:?} at {j}");
                            }
                            assert!(mx[g.c * oh * ow].is_nan());
                        }
                    }
                }
            }
        }
    }

    /// The fused 3x3 "same" max pool against the naive window: planes from one value to
    /// the largest taken, widths around the vector (1, 7, 8, 9, 14, 17), NaN inputs (a
    /// lone NaN skipped, a window of NaN only giving -inf as the other kernels), and no
    /// write past the output; and that it, not another path, ran.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn same3x3_max_matches_naive() {
        if !Isa::Avx2.usable() {
            return;
        }
        let mut case = 0;
        for (h, w) in [
            (1, 1),
            (1, 9),
            (5, 1),
            (2, 8),
            (7, 7),
            (14, 14),
            (3, 17),
            (28, 28),
            (9, 14),
            (32, 32),
        ] {
            let g = Geom2d::square(3, h, w, 3, 1, 1, 1);
            assert!(same3x3::applies(Isa::Avx2, &g), "{g:?}");
            case += 1;
            let mut x = rnd(3 * h * w, 40 + case);
            // A lone NaN in the first channel; the second channel all NaN.
            x[(h * w) / 2] = f32::NAN;
            x[h * w..2 * h * w].fill(f32::NAN);
            let want = naive(&x, &g, 1, 1);
            let mut mx = vec![1.5f32; 3 * h * w + 9];
            max_pool2d_with(Isa::Avx2, &x, &g, &mut mx).unwrap();
            for (j, wv) in want.iter().enumerate() {
                assert_eq!(mx[j] as f64, wv.0, "{g:?} at {j}");
            }
            assert!(mx[h * w..2 * h * w].iter().all(|&v| v == f32::NEG_INFINITY));
            assert!(
                mx[3 * h * w..].iter().all(|&v| v == 1.5),
                "wrote past the end"
            );
        }
        // Windows it does not take.
        for g in [
            Geom2d::square(1, 33, 33, 3, 1, 1, 1),
            Geom2d::square(1, 8, 8, 3, 2, 1, 1),
            Geom2d::square(1, 8, 8, 3, 1, 1, 0),
        ] {
            assert!(!same3x3::applies(Isa::Avx2, &g), "{g:?}");
        }
    }

    /// Max pools `g` (bottom and right padding `pb`) on `isa` against the naive window:
    /// random inputs from `seed` with a lone NaN in the first channel and a run of them at
    /// the start of the second, and nothing written past the output.
    fn max_matches_naive(isa: Isa, g: &Geom2d, pb: usize, seed: u64) {
        let (ip, op) = (g.h * g.w, g.oh * g.ow);
        let mut x = rnd(g.c * ip, seed);
        x[(seed as usize * 7) % ip] = f32::NAN;
        x[ip..ip + g.w.min(3)].fill(f32::NAN);
        let want = naive(&x, g, pb, pb);
        let mut mx = vec![2.5f32; g.c * op + 9];
        max_pool2d_with(isa, &x, g, &mut mx).unwrap();
        for (j, wv) in want.iter().enumerate() {
            assert_eq!(mx[j] as f64, wv.0, "{g:?} at {j}");
        }
        assert!(
            mx[g.c * op..].iter().all(|&v| v == 2.5),
            "wrote past the end"
        );
    }

    /// Stride-2 pools of two channels over planes `sizes` (h, w) and windows `windows`
    /// (kh, kw): padding of 0 to `max_pad` (at most 2) before and after, each smaller than the window, floor
    /// and ceil rounding; each with its padding after. Windows that would not fit the
    /// padded plane are left out.
    fn stride2_geoms(
        sizes: &[(usize, usize)],
        windows: &[(usize, usize)],
        max_pad: usize,
    ) -> Vec<(Geom2d, usize)> {
        let mut out = Vec::new();
        for &(h, w) in sizes {
            for &(kh, kw) in windows {
                let pads = [(0, 0), (1, 1), (1, 0), (0, 1), (2, 2), (2, 0)];
                for (pt, pb) in pads.into_iter().filter(|&(t, b)| t.max(b) <= max_pad) {
                    for ceil in [false, true] {
                        if pt.max(pb) >= kh.min(kw) || h + pt + pb < kh || w + pt + pb < kw {
                            continue;
                        }
                        let g = Geom2d {
                            kh,
                            kw,
                            oh: out_dim(h, kh, 2, 1, pt, pb, ceil),
                            ow: out_dim(w, kw, 2, 1, pt, pb, ceil),
                            ..Geom2d::square(2, h, w, 3, 2, 1, pt)
                        };
                        out.push((g, pb));
                    }
                }
            }
        }
        out
    }

    /// The stride-2 halving max pool against the naive window: 2x2 and 3x3 windows, no
    /// padding or one before, floor and ceil rounding, output widths from 16 (two
    /// vectors) to 56 with ragged tails, one-row and odd-height planes, NaN inputs, no write past the output; and
    /// that it, not another path, ran wherever it applies.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn halve_max_matches_naive() {
        if !Isa::Avx2.usable() {
            return;
        }
        let mut ran = 0;
        let sizes = [
            (2, 2),
            (1, 32),
            (5, 34),
            (7, 48),
            (9, 36),
            (28, 28),
            (56, 56),
            (3, 40),
            (112, 112),
            (4, 50),
        ];
        for (g, pb) in stride2_geoms(&sizes, &[(2, 2), (3, 3)], 1) {
            if !halve::applies(Isa::Avx2, &g) {
                assert!(
                    g.ow != g.w / 2 || g.ow < 16 || g.oh * g.ow > halve::MAX_OUT,
                    "{g:?}"
                );
                continue;
            }
            ran += 1;
            max_matches_naive(Isa::Avx2, &g, pb, 900 + ran);
        }
        assert!(ran >= 40, "{ran} runs");
    }

    /// The AVX-512 stride-2 max pool against the naive window: 2- and 3-wide windows of 1
    /// to 3 rows, padding before of 0 or 1 (and after, through the output size), floor and
    /// ceil rounding, odd and even widths whose rows end anywhere in a vector (16 to 65
    /// outputs), a one-row plane, NaN inputs (a lone NaN skipped, a row of them), no write
    /// past the output; and that it, not another path, ran wherever it applies.
    #[test]
    fn s2_max_matches_naive() {
        if !Isa::Avx512.usable() {
            return;
        }
        let mut ran = 0;
        let sizes = [
            (1, 32),
            (5, 33),
            (7, 47),
            (9, 50),
            (27, 35),
            (55, 55),
            (111, 111),
            (112, 112),
            (3, 130),
            (4, 67),
            (27, 27),
            (28, 28),
            (6, 23),
            (25, 24),
            (13, 29),
        ];
        let windows = [(3, 3), (2, 2), (1, 3), (3, 2), (2, 3)];
        for (g, pb) in stride2_geoms(&sizes, &windows, 2) {
            if !s2::applies(Isa::Avx512, &g) {
                let min = if (g.kh, g.kw) == (3, 3) {
                    s2::MIN_OW3
                } else {
                    s2::MIN_OW
                };
                assert!(g.ow < min, "{g:?}");
                continue;
            }
            ran += 1;
            max_matches_naive(Isa::Avx512, &g, pb, 700 + ran);
        }
        assert!(ran >= 150, "{ran} runs");
        // What the planner picks for SqueezeNet's and ResNet-50's pools on this CPU.
        for g in [
            Geom2d::square(64, 111, 111, 3, 2, 1, 0),
            Geom2d::square(64, 112, 112, 3, 2, 1, 1),
            Geom2d::square(256, 27, 27, 3, 2, 1, 0),
        ] {
            assert_eq!(max_pool_isa(&g), Isa::Avx512);
        }
    }

    #[test]
    fn max_ignores_nan() {
        let g = Geom2d {
            c: 1,
            h: 1,
            w: 20,
            kh: 1,
            kw: 2,
            sh: 1,
            sw: 1,
            dh: 1,
            dw: 1,
            pt: 0,
            pl: 0,
            oh: 1,
            ow: 19,
        };
        let mut x = vec![1.0f32; 20];
        x[3] = f32::NAN;
        for isa in Isa::available() {
            let mut out = vec![0.0; 19];
            max_pool2d_with(isa, &x, &g, &mut out).unwrap();
            assert!(out.iter().all(|&v| v == 1.0), "{isa:?} {out:?}");
        }
        // The small-plane path (7x7, 3x3 stride 1, pad 1), whose row folds cross rows
        // under a -inf penalty: NaN is skipped, +inf counts only in its own windows.
        let g = Geom2d {
            c: 2,
            h: 7,
            w: 7,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            dh: 1,
            dw: 1,
            pt: 1,
            pl: 1,
            oh: 7,
            ow: 7,
        };
        assert!(flat_fits(&g));
        let mut x = vec![1.0f32; 2 * 49];
        x[10] = f32::NAN; // (1, 3)
        x[13] = f32::INFINITY; // (1, 6): the right edge
        x[49 + 14] = f32::INFINITY; // channel 1, (2, 0): the left edge

        // Every instruction set, and the channel-blocked path forced on.
        let modes = Isa::available().into_iter().map(|i| (i, None)).chain(
            Isa::available()
                .into_iter()
                .filter(|i| matches!(i, Isa::Avx512 | Isa::Avx2))
                .map(|i| (i, Some(true))),
        );
        for (isa, blocked) in modes {
            crate::depthwise::tests::BLOCKED.with(|f| f.set(blocked));
            let mut out = vec![0.0; 2 * 49];
            max_pool2d_with(isa, &x, &g, &mut out).unwrap();
            for c in 0..2 {
                for oy in 0..7usize {
                    for ox in 0..7usize {
                        let (sy, sx) = if c == 0 { (1usize, 6usize) } else { (2, 0) };
                        let near = oy.abs_diff(sy) <= 1 && ox.abs_diff(sx) <= 1;
                        let want = if near { f32::INFINITY } else { 1.0 };
                        let got = out[c * 49 + oy * 7 + ox];
                        assert_eq!(got, want, "{isa:?} channel {c} ({oy}, {ox})");
                    }
                }
            }
        }
    }

    #[test]
    fn global_pools() {
        for &(planes, plane) in &[(3, 1), (2, 17), (5, 49), (64, 3136), (1, 0)] {
            let x = rnd(planes * plane, plane as u64);
            let mut avg = vec![0.0; planes];
            let mut mx = vec![0.0; planes];
            global_avg_pool(&x, planes, plane, &mut avg).unwrap();
            global_max_pool(&x, planes, plane, &mut mx).unwrap();
            for p in 0..planes {
                let s = &x[p * plane..(p + 1) * plane];
                let want = s.iter().map(|&v| v as f64).sum::<f64>() / plane as f64;
                if plane == 0 {
                    assert!(avg[p].is_nan());
                    assert_eq!(mx[p], f32::NEG_INFINITY);
                    continue;
                }
                assert!((avg[p] as f64 - want).abs() < 1e-5);
                let m = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                assert_eq!(mx[p], m);
            }
        }
        assert!(global_avg_pool(&[1.0; 5], 2, 3, &mut [0.0; 2]).is_err());
        assert!(global_max_pool(&[1.0; 6], 2, 3, &mut [0.0; 1]).is_err());
    }

    #[test]
    fn rejects_bad_buffers() {
        let g = Geom2d {
            c: 2,
            h: 4,
            w: 4,
            kh: 2,
            kw: 2,
            sh: 2,
            sw: 2,
            dh: 1,
            dw: 1,
            pt: 0,
            pl: 0,
            oh: 2,
            ow: 2,
        };
        assert!(max_pool2d(&[0.0; 31], &g, &mut [0.0; 8]).is_err());
        assert!(max_pool2d(&[0.0; 32], &g, &mut [0.0; 7]).is_err());
        assert!(avg_pool2d(&[0.0; 32], &g, (0, 0), false, &mut [0.0; 7]).is_err());
        let bad = Geom2d { kw: 0, ..g };
        assert!(max_pool2d(&[0.0; 32], &bad, &mut [0.0; 8]).is_err());
        assert!(max_pool2d(&[0.0; 32], &g, &mut [0.0; 8]).is_ok());
    }
}
