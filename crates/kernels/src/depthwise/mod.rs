//! Direct depthwise 2-D convolution (one filter per channel) and the window engine it shares
//! with 2-D max / average pooling ([`crate::pool`]).
//!
//! An *interior* output reads only in-bounds input for every kernel tap, so it needs no
//! bounds checks. Interior outputs are computed vectorized along the output width: 16
//! outputs per vector with AVX-512, 8 with AVX2+FMA, 1 in the portable build, four
//! independent vectors in flight (the `kh * kw` taps of one vector form a dependent FMA
//! chain). Stride 1 loads contiguous input; stride 2 over a padded copy loads contiguous
//! input too, the copy's rows being split into their even columns and then their odd
//! ones (on MobileNetV2's 112x112 stride-2 layer at 1 thread, `blocked_vs_rows`, Zen 3:
//! 0.38-0.46x the time of the unsplit path, which loads two vectors and keeps the even
//! lanes, as stride 2 still does without a copy). Row tails use masked loads and stores.
//! Each accumulator takes all taps in registers and is stored once, with the bias added at the start and Relu / Clip applied
//! in registers; other activations run over the channel's output right after, while it is
//! in cache. The common windows (3x3 and 5x5 convolutions, 2x2 and 3x3 pools) are compiled
//! with the window size as a constant so the tap loops unroll.
//!
//! To make every output interior, a channel is first copied into a thread-local buffer
//! padded with the reduction's neutral value (0 for convolution and average, `-inf` for
//! max); average pooling then divides each window sum by its tap count, the product of a
//! row count and a column count. Where the copy does not pay (stride-2 windows with
//! dilated columns on large images, strides above 2, huge padding), rows and columns whose
//! windows cross the border go through a checked scalar loop and only the rest is
//! vectorized.
//!
//! On AVX2, 3x3 convolution windows at stride 1 and 2 go to `rows3x3.rs` instead of the
//! general interior loop: two output rows at a time sharing their input rows, the nine
//! weights in registers (its measurements, and the choice against the channel-blocked path
//! in `blocked.rs`, are documented there). [`depthwise2d`] runs the AVX2 kernels on
//! AVX-512 CPUs too ([`Isa::for_depthwise`]), except for 3x3 windows at stride 1 or 2
//! on rows of 11-13 outputs or more, which go to the AVX-512 kernel of `inplace3x3.rs`
//! on either instruction set: it reads each channel in place, 16 outputs per vector.
//!
//! Channels are independent and run in parallel on the current rayon pool when the layer
//! is big enough to pay for it.
pub(crate) mod blocked;
mod inplace3x3;
mod rows3x3;

use crate::activation::Activation;
use crate::conv::{valid_range, Geom2d};
use rayon::prelude::*;
use std::sync::OnceLock;

/// Invalid geometry or buffer sizes for a depthwise convolution or pooling kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepthwiseError {
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: String) -> DepthwiseError {
    DepthwiseError::Invalid(msg)
}

/// An instruction set the window kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    /// The fastest variant this CPU runs (detected once).
    pub fn detect() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| Isa::available()[0])
    }

    /// Every variant this CPU runs, fastest first; `Portable` is always last.
    // Off x86-64 only the portable entry is pushed.
    #[cfg_attr(not(target_arch = "x86_64"), allow(clippy::vec_init_then_push))]
    pub fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                v.push(Isa::Avx512);
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(Isa::Avx2);
            }
        }
        v.push(Isa::Portable);
        v
    }

    /// The variant depthwise convolutions run with: the AVX2 kernels wherever the CPU has
    /// them, AVX-512 CPUs included. Those kernels (the row-pair 3x3 kernel of `rows3x3`,
    /// the channel-blocked path transposing in registers) were tuned after the AVX-512
    /// ones and beat them on both AVX-512 machines measured (`examples/dw_bench.rs`,
    /// MobileNetV2's 17 layers, the two alternating round by round): all 17 layers together
    /// took 0.74x the AVX-512 kernels' time on a Zen 4 EPYC at 2 threads (0.58-0.91x per
    /// layer) and 0.84x on a Sapphire Rapids Xeon (0.67-1.0x per layer; 0.86x at 1 thread,
    /// 0.83x with the operands out of cache).
    pub fn for_depthwise() -> Isa {
        match Isa::detect() {
            Isa::Avx512 if Isa::Avx2.usable() => Isa::Avx2,
            isa => isa,
        }
    }

    pub(crate) fn usable(self) -> bool {
        // Cached: this runs on every call, which must not allocate.
        static AVAILABLE: OnceLock<Vec<Isa>> = OnceLock::new();
        AVAILABLE.get_or_init(Isa::available).contains(&self)
    }
}

/// `out = act(depthwise_conv(x, w) + bias)` for one NCHW image with depth multiplier 1.
///
/// `g.c` is the channel count (= group count = output channels); `x` holds `c*h*w` values,
/// `w` `c*kh*kw`, `bias` (if any) `c`, `out` `c*oh*ow` (longer buffers: only the prefix is
/// used). Any kernel size, stride, dilation and padding; `g.oh` / `g.ow` are the caller's
/// (floor or ceil mode). Taps outside the image read zero. Runs the kernels of
/// [`Isa::for_depthwise`].
pub fn depthwise2d(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Geom2d,
    act: Activation,
    out: &mut [f32],
) -> Result<(), DepthwiseError> {
    depthwise2d_with(Isa::for_depthwise(), x, w, bias, g, act, out)
}

/// [`depthwise2d`] with an explicit instruction set (for tests and benchmarks); an `isa`
/// this CPU cannot run falls back to the portable code.
pub fn depthwise2d_with(
    isa: Isa,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Geom2d,
    act: Activation,
    out: &mut [f32],
) -> Result<(), DepthwiseError> {
    check_geom("depthwise2d", g, x.len(), out.len())?;
    let kk = g.kh * g.kw;
    let wn =
        g.c.checked_mul(kk)
            .ok_or_else(|| invalid("depthwise2d: weight size overflows".into()))?;
    if w.len() < wn {
        return Err(invalid(format!(
            "depthwise2d: weights have {} values, need {wn}",
            w.len()
        )));
    }
    if let Some(b) = bias {
        if b.len() < g.c {
            return Err(invalid(format!(
                "depthwise2d: bias has {} values, need {}",
                b.len(),
                g.c
            )));
        }
    }
    // The AVX-512 in-place 3x3 kernel, for either x86 ISA asked for: the AVX2 one is
    // what `depthwise2d` asks for on AVX-512 CPUs (see `Isa::for_depthwise`).
    if matches!(isa, Isa::Avx512 | Isa::Avx2) && inplace3x3::applies(g) {
        inplace3x3::run(x, w, bias, g, act, out);
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    if blocked::applies(isa, g, Reduce::Conv(act)) {
        blocked::run(isa, x, w, bias, g, Reduce::Conv(act), out);
        return Ok(());
    }
    run(isa, x, w, bias, g, Reduce::Conv(act), out);
    Ok(())
}

/// Checks a window geometry against the input and output buffer lengths.
pub(crate) fn check_geom(
    op: &str,
    g: &Geom2d,
    xlen: usize,
    outlen: usize,
) -> Result<(), DepthwiseError> {
    if g.kh == 0 || g.kw == 0 || g.sh == 0 || g.sw == 0 || g.dh == 0 || g.dw == 0 {
        return Err(invalid(format!(
            "{op}: kernel, strides and dilations must be positive, got {g:?}"
        )));
    }
    // Keeps every index computation below far from overflow.
    const MAX: usize = i32::MAX as usize;
    let dims = [
        g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, g.oh, g.ow,
    ];
    if dims.iter().any(|&d| d > MAX) {
        return Err(invalid(format!("{op}: geometry too large: {g:?}")));
    }
    let size = |a: usize, b: usize, c: usize| a.checked_mul(b).and_then(|v| v.checked_mul(c));
    let xn = size(g.c, g.h, g.w).ok_or_else(|| invalid(format!("{op}: input overflows")))?;
    let on = size(g.c, g.oh, g.ow).ok_or_else(|| invalid(format!("{op}: output overflows")))?;
    if xlen < xn {
        return Err(invalid(format!(
            "{op}: input has {xlen} values, need {xn} for {g:?}"
        )));
    }
    if outlen < on {
        return Err(invalid(format!(
            "{op}: output has {outlen} values, need {on} for {g:?}"
        )));
    }
    Ok(())
}

/// What a window computes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reduce {
    /// Weighted sum + bias, then the activation.
    Conv(Activation),
    /// Maximum of the in-bounds taps (`-inf` for an empty window).
    Max,
    /// Mean; with `include_pad` the divisor counts taps inside the padded image (bottom and
    /// right padding `pb`, `pr`), otherwise only in-bounds taps.
    Avg {
        include_pad: bool,
        pb: usize,
        pr: usize,
    },
}

const OP_CONV: u8 = 0;
const OP_MAX: u8 = 1;
const OP_AVG: u8 = 2;

/// The interior kernels' column mode for a stride-2 window over a padded copy whose rows
/// are split into their even columns, then their odd ones: tap `kx` of output `ox` is even
/// column `ox + kx / 2` for even `kx`, odd column `ox + kx / 2` for odd `kx`, so every tap
/// loads contiguous values (no permutes, one load per vector instead of two).
const SPLIT: usize = 3;

/// Output elements below which a layer runs on the calling thread.
const PAR_MIN: usize = 1 << 15;

/// Runs the window engine over every channel. Geometry and buffers must be checked.
pub(crate) fn run(
    isa: Isa,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Geom2d,
    red: Reduce,
    out: &mut [f32],
) {
    let isa = if isa.usable() { isa } else { Isa::Portable };
    let kk = g.kh * g.kw;
    per_channel(x, g, out, |ci, xc, oc| {
        let wc = if matches!(red, Reduce::Conv(_)) {
            &w[ci * kk..(ci + 1) * kk]
        } else {
            &[][..]
        };
        let b = bias.map_or(0.0, |b| b[ci]);
        channel(isa, xc, wc, b, g, red, oc);
    });
}

/// Calls `one(channel, input plane, output plane)` for every channel of `x` and `out`
/// (checked against `g`): on the current rayon pool when the layer has [`PAR_MIN`]
/// outputs or more, channels of small planes several to a task.
pub(crate) fn per_channel(
    x: &[f32],
    g: &Geom2d,
    out: &mut [f32],
    one: impl Fn(usize, &[f32], &mut [f32]) + Sync + Send,
) {
    let (ip, op) = (g.h * g.w, g.oh * g.ow);
    if g.c == 0 || op == 0 {
        return;
    }
    let out = &mut out[..g.c * op];
    let each = |(ci, oc): (usize, &mut [f32])| one(ci, &x[ci * ip..(ci + 1) * ip], oc);
    if g.c > 1 && g.c * op >= PAR_MIN && rayon::current_num_threads() > 1 {
        let min_len = (4096 / op).max(1);
        out.par_chunks_mut(op)
            .with_min_len(min_len)
            .enumerate()
            .for_each(each);
    } else {
        out.chunks_mut(op).enumerate().for_each(each);
    }
}

/// Output rows (or columns) whose first and last taps both fall inside the input.
fn interior(n_out: usize, n_in: usize, s: usize, k: usize, d: usize, pad: usize) -> (usize, usize) {
    let (a0, b0) = valid_range(n_out, n_in, s, -(pad as isize));
    let (a1, b1) = valid_range(n_out, n_in, s, ((k - 1) * d) as isize - pad as isize);
    let lo = a0.max(a1);
    (lo, b0.min(b1).max(lo))
}

/// Arguments of one interior row segment. Pointers are raw so that one struct serves every
/// instruction set; `run` guarantees every address they produce is in bounds.
struct Args {
    /// The channel's input plane.
    x: *const f32,
    win: usize,
    /// Input row of the first tap row.
    iy0: usize,
    /// Mode [`SPLIT`]: where a row's odd columns start (its even ones come first).
    half: usize,
    kh: usize,
    kw: usize,
    dh: usize,
    dw: usize,
    pl: usize,
    /// Output rows: `rows` of them, input rows `sh` apart, outputs `ostride` apart.
    sh: usize,
    rows: usize,
    ostride: usize,
    /// Output columns `x0..x1` of the rows at `out`.
    x0: usize,
    x1: usize,
    /// The channel's `kh * kw` weights (convolution only).
    w: *const f32,
    /// Accumulator start: bias, `-inf` or 0.
    init: f32,
    /// Convolution: 0 none, 1 Relu, 2 Clip, 3 applied afterwards. Average: unused.
    post: u8,
    lo: f32,
    hi: f32,
    /// Average divisor.
    div: f32,
    out: *mut f32,
}

/// Largest zero-padded channel copy (in values) the padded path makes.
const SCRATCH_MAX: usize = 1 << 22;

/// Padded-copy values [`reserve_scratch`] sets aside per thread: every plane up to 254x254
/// with its borders (MobileNet's largest, 112x112, needs 114x114). Larger planes grow the
/// buffer on first use.
pub const SCRATCH_RESERVE: usize = 1 << 16;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Sizes the calling thread's padded-copy buffer to [`SCRATCH_RESERVE`] values. Channels
/// are spread over whichever pool threads are free, so a thread that padded nothing in one
/// run may pad in the next: calling this on every pool thread when a session starts
/// (`pool.broadcast(|_| millrace_kernels::reserve_scratch())`) keeps later runs from
/// allocating.
pub fn reserve_scratch() {
    blocked::reserve_scratch();
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SCRATCH_RESERVE {
            s.resize(SCRATCH_RESERVE, 0.0);
        }
    });
}

/// Size `(rows, cols)` of the padded copy of a channel in which every window of `g` lies,
/// if the padded path applies (stride 1 or 2, not too large).
fn padded_dims(g: &Geom2d) -> Option<(usize, usize)> {
    if !(g.sw == 1 || g.sw == 2) || g.h == 0 || g.w == 0 {
        return None;
    }
    #[cfg(test)]
    if tests::NO_PAD.with(|f| f.get()) {
        return None;
    }
    let span = |o: usize, s: usize, k: usize, d: usize| {
        (o - 1)
            .checked_mul(s)?
            .checked_add((k - 1).checked_mul(d)?)?
            .checked_add(1)
    };
    let hp = span(g.oh, g.sh, g.kh, g.dh)?.max(g.pt + g.h);
    let wp = span(g.ow, g.sw, g.kw, g.dw)?.max(g.pl + g.w);
    let n = hp.checked_mul(wp)?;
    // Only when the copy is not much bigger than the image (huge pads or strides), and for
    // a stride-2 window with dilated columns only on small planes: there the copy costs
    // more than the borders it saves. Undilated stride-2 windows take the split copy.
    let small = g.sw == 1 || split_columns(g) || g.h * g.w <= 8192;
    (small && n <= SCRATCH_MAX && n <= 4 * (g.h * g.w).max(256)).then_some((hp, wp))
}

/// Whether the padded copy splits its rows into even and odd columns ([`SPLIT`]).
fn split_columns(g: &Geom2d) -> bool {
    g.sw == 2 && g.dw == 1
}

/// Writes one padded row, split: `fill` in the `pl` columns before `src` and in the rest
/// after it, column `c` of the padded row at `row[c / 2]` (even `c`) or
/// `row[half + c / 2]` (odd `c`), `half = row.len().div_ceil(2)`.
fn split_row(src: &[f32], pl: usize, fill: f32, row: &mut [f32]) {
    let (even, odd) = row.split_at_mut(row.len().div_ceil(2));
    // `src[i]` is padded column `pl + i`: its even values go to the columns of pl's parity.
    // Each half gets `fill` around the run the source writes.
    let n = src.len() / 2;
    let (runs, evens_first) = if pl.is_multiple_of(2) {
        ([(pl / 2, n + src.len() % 2), (pl / 2, n)], true)
    } else {
        ([(pl / 2 + 1, n), (pl / 2, n + src.len() % 2)], false)
    };
    let [even, odd] = [(even, runs[0]), (odd, runs[1])].map(|(half, (at, len))| {
        let (before, rest) = half.split_at_mut(at);
        let (run, after) = rest.split_at_mut(len);
        before.fill(fill);
        after.fill(fill);
        run
    });
    let (first, second) = if evens_first {
        (even, odd)
    } else {
        (odd, even)
    };
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86_64; pair `m` reads src[2m..2m + 8] and writes
        // first[m..m + 4], second[m..m + 4], all in bounds while m + 4 <= n.
        unsafe {
            while done + 4 <= n {
                let a = _mm_loadu_ps(src.as_ptr().add(2 * done));
                let b = _mm_loadu_ps(src.as_ptr().add(2 * done + 4));
                _mm_storeu_ps(first.as_mut_ptr().add(done), _mm_shuffle_ps::<0x88>(a, b));
                _mm_storeu_ps(second.as_mut_ptr().add(done), _mm_shuffle_ps::<0xDD>(a, b));
                done += 4;
            }
        }
    }
    for m in done..n {
        first[m] = src[2 * m];
        second[m] = src[2 * m + 1];
    }
    if src.len() % 2 == 1 {
        first[n] = src[2 * n];
    }
}

fn channel(isa: Isa, xc: &[f32], wc: &[f32], bias: f32, g: &Geom2d, red: Reduce, oc: &mut [f32]) {
    let (op, init, post, lo, hi, div) = match red {
        Reduce::Conv(act) => {
            let (post, lo, hi) = match act {
                Activation::None => (0, 0.0, 0.0),
                Activation::Relu => (1, 0.0, 0.0),
                Activation::Clip { lo, hi } => (2, lo, hi),
                _ => (3, 0.0, 0.0),
            };
            (OP_CONV, bias, post, lo, hi, 1.0)
        }
        Reduce::Max => (OP_MAX, f32::NEG_INFINITY, 0, 0.0, 0.0, 1.0),
        Reduce::Avg { .. } => (OP_AVG, 0.0, 0, 0.0, 0.0, (g.kh * g.kw) as f32),
    };
    let args = |x: *const f32, win: usize, iy0: usize, pl: usize, rows, x0, x1, out| Args {
        x,
        win,
        iy0,
        half: 0,
        sh: g.sh,
        rows,
        ostride: g.ow,
        kh: g.kh,
        kw: g.kw,
        dh: g.dh,
        dw: g.dw,
        pl,
        x0,
        x1,
        w: wc.as_ptr(),
        init,
        post,
        lo,
        hi,
        div,
        out,
    };
    let finish = |row: &mut [f32]| {
        if let Reduce::Conv(act) = red {
            if post == 3 {
                act.apply_slice(row);
            }
        }
    };
    if let Some((hp, wp)) = padded_dims(g) {
        // Copy the channel into a buffer padded with the reduction's neutral value (0 for
        // convolution, -inf for max), so that every output is an interior one.
        let fill = if op == OP_MAX { f32::NEG_INFINITY } else { 0.0 };
        let split = split_columns(g);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < hp * wp {
                s.resize(hp * wp, 0.0);
            }
            let buf = &mut s[..hp * wp];
            buf[..g.pt * wp].fill(fill);
            for (r, src) in buf[g.pt * wp..].chunks_mut(wp).zip(xc.chunks(g.w)) {
                if split {
                    split_row(src, g.pl, fill, r);
                } else {
                    r[..g.pl].fill(fill);
                    r[g.pl..g.pl + g.w].copy_from_slice(src);
                    r[g.pl + g.w..].fill(fill);
                }
            }
            buf[(g.pt + g.h) * wp..].fill(fill);
            let mut a = args(buf.as_ptr(), wp, 0, 0, g.oh, 0, g.ow, oc.as_mut_ptr());
            if op == OP_AVG {
                a.div = 1.0; // window sums; divided by the per-output counts below
            }
            let mode = if split {
                a.half = wp.div_ceil(2);
                SPLIT
            } else {
                g.sw
            };
            #[cfg(target_arch = "x86_64")]
            if let (true, Ok(w9)) = (
                isa == Isa::Avx2 && op == OP_CONV && rows3x3::applies(g),
                <&[f32; 9]>::try_from(wc),
            ) {
                #[cfg(test)]
                tests::ROWS3X3_RUNS.with(|n| n.set(n.get() + 1));
                let p = rows3x3::Plane {
                    x: buf.as_ptr(),
                    wp,
                    half: a.half,
                    oh: g.oh,
                    ow: g.ow,
                    out: oc.as_mut_ptr(),
                };
                let post = match post {
                    1 => rows3x3::Post::Relu,
                    2 => rows3x3::Post::Clip(lo, hi),
                    _ => rows3x3::Post::None,
                };
                // SAFETY: `padded_dims` sized the copy to hold every tap of every output
                // (oh + 2 rows of at least ow + 2 at stride 1; 2 * oh + 1 split rows of at
                // least 2 * ow + 1 at stride 2), `applies` checked ow >= 8, `oc` holds
                // oh * ow outputs, and `run` checked that this CPU has AVX2 and FMA.
                unsafe {
                    if g.sw == 1 {
                        rows3x3::avx2::conv3x3::<1>(&p, w9, bias, post)
                    } else {
                        rows3x3::avx2::conv3x3::<2>(&p, w9, bias, post)
                    }
                }
                finish(&mut oc[..g.oh * g.ow]);
                return;
            }
            // SAFETY: `padded_dims` sized the hp x wp buffer so that every tap of every
            // output (row oy*sh + ky*dh < hp, column ox*sw + kx*dw < wp) is inside it; in
            // a split row, column c is at c / 2 (even c) or half + c / 2 (odd c), inside
            // the row's wp values; vector loads touch only those addresses (partial and
            // stride-2 loads are masked); `wc` holds kh*kw weights for convolution, `oc`
            // oh*ow outputs; `isa` was checked in `run`.
            unsafe { dispatch(isa, op, g.kh, g.kw, mode, &a) };
            finish(&mut oc[..g.oh * g.ow]);
            if let Reduce::Avg {
                include_pad,
                pb,
                pr,
            } = red
            {
                avg_counts(g, include_pad, pb, pr, &mut oc[..g.oh * g.ow]);
            }
        });
        return;
    }
    let (ylo, yhi) = interior(g.oh, g.h, g.sh, g.kh, g.dh, g.pt);
    let (xlo, xhi) = interior(g.ow, g.w, g.sw, g.kw, g.dw, g.pl);
    let simd = (g.sw == 1 || g.sw == 2) && xlo < xhi;
    for oy in 0..g.oh {
        let row = &mut oc[oy * g.ow..(oy + 1) * g.ow];
        if simd && oy >= ylo && oy < yhi {
            for (ox, o) in row.iter_mut().enumerate().take(xlo) {
                *o = border(xc, wc, bias, g, red, oy, ox);
            }
            for (ox, o) in row.iter_mut().enumerate().skip(xhi) {
                *o = border(xc, wc, bias, g, red, oy, ox);
            }
            let a = args(
                xc.as_ptr(),
                g.w,
                oy * g.sh - g.pt,
                g.pl,
                1,
                xlo,
                xhi,
                row.as_mut_ptr(),
            );
            // SAFETY: rows ylo..yhi and columns xlo..xhi are the outputs whose every tap
            // (iy0 + ky*dh, ox*sw - pl + kx*dw) lies inside the h x w plane `xc` (see
            // `interior`); the vector loads read only those addresses (partial and stride-2
            // loads are masked), `wc` holds kh*kw weights for OP_CONV, `row` holds ow
            // outputs, and `isa` was checked to run on this CPU in `run`.
            unsafe { dispatch(isa, op, g.kh, g.kw, g.sw, &a) };
            finish(&mut row[xlo..xhi]);
        } else {
            for (ox, o) in row.iter_mut().enumerate() {
                *o = border(xc, wc, bias, g, red, oy, ox);
            }
        }
    }
}

/// Divides window sums by their tap counts. The count of output `(oy, ox)` is the product
/// of the counted kernel rows at `oy` and counted kernel columns at `ox` (in bounds, or with
/// `include_pad` inside the padded image); an empty window gives 0/0 = NaN.
fn avg_counts(g: &Geom2d, include_pad: bool, pb: usize, pr: usize, oc: &mut [f32]) {
    let counts = |o: usize, n: usize, s: usize, k: usize, d: usize, p0: usize, p1: usize| {
        let (lo, hi) = if include_pad {
            (-(p0 as isize), (n + p1) as isize)
        } else {
            (0, n as isize)
        };
        (0..o)
            .map(|i| {
                let c = (0..k)
                    .filter(|&t| {
                        let v = (i * s + t * d) as isize - p0 as isize;
                        v >= lo && v < hi
                    })
                    .count();
                c as f32
            })
            .collect::<Vec<f32>>()
    };
    let cy = counts(g.oh, g.h, g.sh, g.kh, g.dh, g.pt, pb);
    let cx = counts(g.ow, g.w, g.sw, g.kw, g.dw, g.pl, pr);
    for (row, &ny) in oc.chunks_mut(g.ow).zip(&cy) {
        for (o, &nx) in row.iter_mut().zip(&cx) {
            *o /= ny * nx;
        }
    }
}

/// One output with every tap bounds-checked.
#[inline]
fn border(xc: &[f32], wc: &[f32], bias: f32, g: &Geom2d, red: Reduce, oy: usize, ox: usize) -> f32 {
    let (h, w) = (g.h as isize, g.w as isize);
    let y0 = (oy * g.sh) as isize - g.pt as isize;
    let x0 = (ox * g.sw) as isize - g.pl as isize;
    match red {
        Reduce::Conv(act) => {
            let mut s = bias;
            for ky in 0..g.kh {
                let iy = y0 + (ky * g.dh) as isize;
                if iy < 0 || iy >= h {
                    continue;
                }
                for kx in 0..g.kw {
                    let ix = x0 + (kx * g.dw) as isize;
                    if ix >= 0 && ix < w {
                        s += xc[iy as usize * g.w + ix as usize] * wc[ky * g.kw + kx];
                    }
                }
            }
            act.apply(s)
        }
        Reduce::Max => {
            let mut m = f32::NEG_INFINITY;
            for ky in 0..g.kh {
                let iy = y0 + (ky * g.dh) as isize;
                if iy < 0 || iy >= h {
                    continue;
                }
                for kx in 0..g.kw {
                    let ix = x0 + (kx * g.dw) as isize;
                    if ix >= 0 && ix < w {
                        let v = xc[iy as usize * g.w + ix as usize];
                        if v > m {
                            m = v;
                        }
                    }
                }
            }
            m
        }
        Reduce::Avg {
            include_pad,
            pb,
            pr,
        } => {
            let (mut s, mut n, mut np) = (0.0f32, 0usize, 0usize);
            for ky in 0..g.kh {
                let iy = y0 + (ky * g.dh) as isize;
                let in_pad_y = iy < h + pb as isize;
                for kx in 0..g.kw {
                    let ix = x0 + (kx * g.dw) as isize;
                    if in_pad_y && ix < w + pr as isize {
                        np += 1;
                    }
                    if iy >= 0 && iy < h && ix >= 0 && ix < w {
                        s += xc[iy as usize * g.w + ix as usize];
                        n += 1;
                    }
                }
            }
            s / (if include_pad { np } else { n }) as f32
        }
    }
}

/// Picks the compiled interior variant for the window; `sw` is the stride (1 or 2) or
/// [`SPLIT`].
///
/// # Safety
/// As for the `interior` functions: `a` describes in-bounds addresses and `isa` runs here.
unsafe fn dispatch(isa: Isa, op: u8, kh: usize, kw: usize, sw: usize, a: &Args) {
    macro_rules! pick {
        ($m:ident) => {
            match (op, kh, kw, sw) {
                (OP_CONV, 3, 3, SPLIT) => $m::interior::<OP_CONV, 3, 3, SPLIT>(a),
                (OP_CONV, 5, 5, SPLIT) => $m::interior::<OP_CONV, 5, 5, SPLIT>(a),
                (OP_CONV, _, _, SPLIT) => $m::interior::<OP_CONV, 0, 0, SPLIT>(a),
                (OP_MAX, 3, 3, SPLIT) => $m::interior::<OP_MAX, 3, 3, SPLIT>(a),
                (OP_MAX, 2, 2, SPLIT) => $m::interior::<OP_MAX, 2, 2, SPLIT>(a),
                (OP_MAX, _, _, SPLIT) => $m::interior::<OP_MAX, 0, 0, SPLIT>(a),
                (_, 3, 3, SPLIT) => $m::interior::<OP_AVG, 3, 3, SPLIT>(a),
                (_, 2, 2, SPLIT) => $m::interior::<OP_AVG, 2, 2, SPLIT>(a),
                (_, _, _, SPLIT) => $m::interior::<OP_AVG, 0, 0, SPLIT>(a),
                (OP_CONV, 3, 3, 1) => $m::interior::<OP_CONV, 3, 3, 1>(a),
                (OP_CONV, 3, 3, 2) => $m::interior::<OP_CONV, 3, 3, 2>(a),
                (OP_CONV, 5, 5, 1) => $m::interior::<OP_CONV, 5, 5, 1>(a),
                (OP_CONV, 5, 5, 2) => $m::interior::<OP_CONV, 5, 5, 2>(a),
                (OP_CONV, _, _, 1) => $m::interior::<OP_CONV, 0, 0, 1>(a),
                (OP_CONV, _, _, _) => $m::interior::<OP_CONV, 0, 0, 2>(a),
                (OP_MAX, 3, 3, 1) => $m::interior::<OP_MAX, 3, 3, 1>(a),
                (OP_MAX, 3, 3, 2) => $m::interior::<OP_MAX, 3, 3, 2>(a),
                (OP_MAX, 2, 2, 2) => $m::interior::<OP_MAX, 2, 2, 2>(a),
                (OP_MAX, _, _, 1) => $m::interior::<OP_MAX, 0, 0, 1>(a),
                (OP_MAX, _, _, _) => $m::interior::<OP_MAX, 0, 0, 2>(a),
                (_, 3, 3, 1) => $m::interior::<OP_AVG, 3, 3, 1>(a),
                (_, 3, 3, 2) => $m::interior::<OP_AVG, 3, 3, 2>(a),
                (_, 2, 2, 2) => $m::interior::<OP_AVG, 2, 2, 2>(a),
                (_, _, _, 1) => $m::interior::<OP_AVG, 0, 0, 1>(a),
                (_, _, _, _) => $m::interior::<OP_AVG, 0, 0, 2>(a),
            }
        };
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => pick!(avx512),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => pick!(avx2),
        _ => pick!(portable),
    }
}

/// Independent accumulators in flight per interior step (hides the FMA latency of one
/// accumulator's `kh * kw` dependent taps).
const U: usize = 4;

/// The interior loop, written once over the primitives that each instruction-set module
/// defines: vector `V` of `L` lanes, lane mask `K` (`mask(n)`: the first `n` lanes), `splat`,
/// `load` / masked `load_k`, stride-2 `load_s2` / `load_s2_k` (even lanes of two loads),
/// `store` / `store_k`, `fma`,
/// `maxv` / `minv` (x86 semantics: `maxv(a, b) = a > b ? a : b`), `add`, `div`.
macro_rules! interior_impl {
    ($(#[$attr:meta])*) => {
        /// One vector of outputs: input window origin, output address, load masks.
        #[derive(Clone, Copy)]
        struct Job {
            base: *const f32,
            out: *mut f32,
            ka: K,
            kb: K,
            /// Store mask: the job's `n` outputs.
            ko: K,
        }

        /// Accumulates all taps of `M` independent jobs, then stores them.
        $(#[$attr])*
        #[inline]
        unsafe fn run_jobs<
            const OP: u8,
            const KH: usize,
            const KW: usize,
            const SW: usize,
            const M: usize,
            const FULL: bool,
        >(
            a: &Args,
            jobs: &[Job; M],
        ) {
            let kh = if KH > 0 { KH } else { a.kh };
            let kw = if KW > 0 { KW } else { a.kw };
            let mut acc = [splat(a.init); M];
            for ky in 0..kh {
                for kx in 0..kw {
                    let col = if SW == SPLIT { (kx & 1) * a.half + kx / 2 } else { kx * a.dw };
                    let off = ky * a.dh * a.win + col;
                    let wv = if OP == OP_CONV { splat(*a.w.add(ky * kw + kx)) } else { splat(0.0) };
                    for m in 0..M {
                        let p = jobs[m].base.add(off);
                        let v = match (SW, FULL) {
                            (2, true) => load_s2(p),
                            (2, false) => load_s2_k(p, jobs[m].ka, jobs[m].kb),
                            (_, true) => load(p),
                            (_, false) => load_k(p, jobs[m].ka),
                        };
                        acc[m] = match OP {
                            OP_CONV => fma(v, wv, acc[m]),
                            OP_MAX => maxv(v, acc[m]),
                            _ => add(acc[m], v),
                        };
                    }
                }
            }
            for m in 0..M {
                let v = match OP {
                    OP_CONV => match a.post {
                        1 => maxv(acc[m], splat(0.0)), // NaN and -0 give +0, as Relu
                        2 => minv(splat(a.hi), maxv(splat(a.lo), acc[m])),
                        _ => acc[m],
                    },
                    OP_AVG => div(acc[m], splat(a.div)),
                    _ => acc[m],
                };
                if FULL {
                    store(jobs[m].out, v);
                } else {
                    store_k(jobs[m].out, v, jobs[m].ko);
                }
            }
        }

        /// Computes outputs `a.x0..a.x1` of `a.rows` consecutive interior output rows,
        /// stride `SW` (1 or 2, or [`SPLIT`]: 2 over split rows), `U` vectors at a time.
        ///
        /// # Safety
        /// Every tap of every output in the range must be inside the plane at `a.x`, the
        /// weights at `a.w` (convolution) and outputs at `a.out` valid, and the CPU must
        /// support this module's instruction set.
        $(#[$attr])*
        pub(super) unsafe fn interior<const OP: u8, const KH: usize, const KW: usize, const SW: usize>(
            a: &Args,
        ) {
            let idle = Job { base: a.x, out: a.out, ka: mask(0), kb: mask(0), ko: mask(0) };
            let mut jobs = [idle; U];
            let mut nj = 0;
            let mut full = true;
            for r in 0..a.rows {
                let row = a.x.add((a.iy0 + r * a.sh) * a.win);
                let out = a.out.add(r * a.ostride);
                let mut ox = a.x0;
                while ox < a.x1 {
                    let n = (a.x1 - ox).min(L);
                    let (ka, kb) = if SW != 2 {
                        (mask(n), mask(0))
                    } else {
                        // Lanes 0..2n-1 of the two loads.
                        (mask((2 * n - 1).min(L)), mask((2 * n - 1).saturating_sub(L)))
                    };
                    let step = if SW == 2 { 2 } else { 1 };
                    jobs[nj] = Job { base: row.add(ox * step - a.pl), out: out.add(ox), ka, kb, ko: mask(n) };
                    nj += 1;
                    full &= n == L;
                    if nj == U {
                        if full {
                            run_jobs::<OP, KH, KW, SW, U, true>(a, &jobs);
                        } else {
                            run_jobs::<OP, KH, KW, SW, U, false>(a, &jobs);
                        }
                        nj = 0;
                        full = true;
                    }
                    ox += L;
                }
            }
            for job in &jobs[..nj] {
                run_jobs::<OP, KH, KW, SW, 1, false>(a, std::array::from_ref(job));
            }
        }
    };
}

/// The two row passes of separable max pooling ([`crate::pool`]), written once over the
/// same primitives as [`interior_impl`]. Every fold starts at `-inf` and takes a value
/// only when it is greater (`maxv(v, acc)`), so NaN is skipped as by the window kernel.
macro_rules! rows_impl {
    ($(#[$attr:meta])*) => {
        /// `dst[x] = max(-inf, src[r * stride + x] for r < rows)` for `x < n`.
        $(#[$attr])*
        #[inline]
        pub(crate) unsafe fn max_down(
            src: *const f32,
            rows: usize,
            stride: usize,
            n: usize,
            dst: *mut f32,
        ) {
            let mut x = 0;
            while x < n {
                let m = (n - x).min(L);
                let k = mask(m);
                let mut acc = splat(f32::NEG_INFINITY);
                for r in 0..rows {
                    let p = src.add(r * stride + x);
                    let v = if m == L { load(p) } else { load_k(p, k) };
                    acc = maxv(v, acc);
                }
                if m == L {
                    store(dst.add(x), acc);
                } else {
                    store_k(dst.add(x), acc, k);
                }
                x += L;
            }
        }

        /// `dst[x] = max(dst[x], src[x] + pen[x])` for `x < n` (`pen` 0 or -inf: a tap that
        /// must not count; `+inf - inf` is NaN, which the fold skips too).
        $(#[$attr])*
        #[inline]
        pub(crate) unsafe fn max_into(src: *const f32, pen: Option<*const f32>, n: usize, dst: *mut f32) {
            let mut x = 0;
            while x < n {
                let m = (n - x).min(L);
                let k = mask(m);
                let (mut v, acc) = if m == L {
                    (load(src.add(x)), load(dst.add(x)))
                } else {
                    (load_k(src.add(x), k), load_k(dst.add(x), k))
                };
                if let Some(pen) = pen {
                    let p = if m == L { load(pen.add(x)) } else { load_k(pen.add(x), k) };
                    v = add(v, p);
                }
                let r = maxv(v, acc);
                if m == L {
                    store(dst.add(x), r);
                } else {
                    store_k(dst.add(x), r, k);
                }
                x += L;
            }
        }

        /// `dst[o] = max(-inf, src[o * SW + kx] for kx < kw)` for `o < n`; `src` must be
        /// readable `2 * L` values past the last tap.
        $(#[$attr])*
        #[inline]
        pub(crate) unsafe fn max_along<const SW: usize>(
            src: *const f32,
            kw: usize,
            n: usize,
            dst: *mut f32,
        ) {
            let mut o = 0;
            while o < n {
                let m = (n - o).min(L);
                let mut acc = splat(f32::NEG_INFINITY);
                for kx in 0..kw {
                    let p = src.add(o * SW + kx);
                    let v = if SW == 1 { load(p) } else { load_s2(p) };
                    acc = maxv(v, acc);
                }
                if m == L {
                    store(dst.add(o), acc);
                } else {
                    store_k(dst.add(o), acc, mask(m));
                }
                o += L;
            }
        }
    };
}

/// Separable max pooling's vertical pass on `isa` (see `rows_impl`).
///
/// # Safety
/// `rows` rows of `n` values, `stride` apart from `src`, must be readable and `dst[..n]`
/// writable; `isa` must be one this CPU runs.
pub(crate) unsafe fn max_down(
    isa: Isa,
    src: *const f32,
    rows: usize,
    stride: usize,
    n: usize,
    dst: *mut f32,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::max_down(src, rows, stride, n, dst),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::max_down(src, rows, stride, n, dst),
        _ => portable::max_down(src, rows, stride, n, dst),
    }
}

/// `dst[x] = max(dst[x], src[x] + pen[x])` for `x < n` on `isa` (see `rows_impl`).
///
/// # Safety
/// `src[..n]`, `pen[..n]` (if given) must be readable, `dst[..n]` readable and writable;
/// `isa` must be one this CPU runs.
pub(crate) unsafe fn max_into(
    isa: Isa,
    src: *const f32,
    pen: Option<*const f32>,
    n: usize,
    dst: *mut f32,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::max_into(src, pen, n, dst),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::max_into(src, pen, n, dst),
        _ => portable::max_into(src, pen, n, dst),
    }
}

/// Separable max pooling's horizontal pass on `isa`, stride `sw` of 1 or 2 (see
/// `rows_impl`).
///
/// # Safety
/// `src` must be readable up to `(n - 1) * sw + kw + 32` values, `dst[..n]` writable;
/// `isa` must be one this CPU runs.
pub(crate) unsafe fn max_along(
    isa: Isa,
    sw: usize,
    src: *const f32,
    kw: usize,
    n: usize,
    dst: *mut f32,
) {
    macro_rules! go {
        ($m:ident) => {
            if sw == 1 {
                $m::max_along::<1>(src, kw, n, dst)
            } else {
                $m::max_along::<2>(src, kw, n, dst)
            }
        };
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => go!(avx512),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => go!(avx2),
        _ => go!(portable),
    }
}

mod portable {
    use super::{Args, OP_AVG, OP_CONV, OP_MAX, SPLIT, U};
    type V = f32;
    type K = ();
    const L: usize = 1;
    #[inline(always)]
    fn mask(_n: usize) -> K {}
    #[inline(always)]
    fn splat(v: f32) -> V {
        v
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> V {
        *p
    }
    #[inline(always)]
    unsafe fn load_s2(p: *const f32) -> V {
        *p
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: V) {
        *p = v
    }
    #[inline(always)]
    unsafe fn load_k(p: *const f32, _k: K) -> V {
        *p
    }
    #[inline(always)]
    unsafe fn load_s2_k(p: *const f32, _ka: K, _kb: K) -> V {
        *p
    }
    #[inline(always)]
    unsafe fn store_k(p: *mut f32, v: V, _k: K) {
        *p = v
    }
    #[inline(always)]
    fn fma(a: V, b: V, c: V) -> V {
        a * b + c
    }
    #[inline(always)]
    fn maxv(a: V, b: V) -> V {
        if a > b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn minv(a: V, b: V) -> V {
        if a < b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn add(a: V, b: V) -> V {
        a + b
    }
    #[inline(always)]
    fn div(a: V, b: V) -> V {
        a / b
    }
    interior_impl!();
    rows_impl!();
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Args, OP_AVG, OP_CONV, OP_MAX, SPLIT, U};
    use std::arch::x86_64::*;
    type V = __m512;
    type K = __mmask16;
    const L: usize = 16;
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn mask(n: usize) -> K {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as K
        }
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn splat(v: f32) -> V {
        _mm512_set1_ps(v)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load(p: *const f32) -> V {
        _mm512_loadu_ps(p)
    }
    /// `p[0], p[2], ..., p[30]`, reading only `p[0..31]`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load_s2(p: *const f32) -> V {
        load_s2_k(p, 0xffff, 0x7fff)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store(p: *mut f32, v: V) {
        _mm512_storeu_ps(p, v)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load_k(p: *const f32, k: K) -> V {
        _mm512_maskz_loadu_ps(k, p)
    }
    /// Even lanes of the masked loads at `p` and `p + 16`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load_s2_k(p: *const f32, ka: K, kb: K) -> V {
        let a = _mm512_maskz_loadu_ps(ka, p);
        let b = _mm512_maskz_loadu_ps(kb, p.add(16));
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        _mm512_permutex2var_ps(a, even, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store_k(p: *mut f32, v: V, k: K) {
        _mm512_mask_storeu_ps(p, k, v)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn fma(a: V, b: V, c: V) -> V {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn maxv(a: V, b: V) -> V {
        _mm512_max_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn minv(a: V, b: V) -> V {
        _mm512_min_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn add(a: V, b: V) -> V {
        _mm512_add_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn div(a: V, b: V) -> V {
        _mm512_div_ps(a, b)
    }
    interior_impl!(#[target_feature(enable = "avx512f")]);
    rows_impl!(#[target_feature(enable = "avx512f")]);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Args, OP_AVG, OP_CONV, OP_MAX, SPLIT, U};
    use std::arch::x86_64::*;
    type V = __m256;
    type K = __m256i;
    const L: usize = 8;
    /// Lanes `0..n` set.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn mask(n: usize) -> K {
        crate::transpose::x86::mask8(n)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn splat(v: f32) -> V {
        _mm256_set1_ps(v)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load(p: *const f32) -> V {
        _mm256_loadu_ps(p)
    }
    /// `p[0], p[2], ..., p[14]`, reading only `p[0..15]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load_s2(p: *const f32) -> V {
        let a = _mm256_loadu_ps(p);
        let b = _mm256_maskload_ps(p.add(8), mask(7));
        crate::transpose::x86::evens8(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store(p: *mut f32, v: V) {
        _mm256_storeu_ps(p, v)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load_k(p: *const f32, k: K) -> V {
        _mm256_maskload_ps(p, k)
    }
    /// Even lanes of the masked loads at `p` and `p + 8`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load_s2_k(p: *const f32, ka: K, kb: K) -> V {
        let a = _mm256_maskload_ps(p, ka);
        let b = _mm256_maskload_ps(p.add(8), kb);
        crate::transpose::x86::evens8(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store_k(p: *mut f32, v: V, k: K) {
        _mm256_maskstore_ps(p, k, v)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn fma(a: V, b: V, c: V) -> V {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn maxv(a: V, b: V) -> V {
        _mm256_max_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn minv(a: V, b: V) -> V {
        _mm256_min_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn add(a: V, b: V) -> V {
        _mm256_add_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn div(a: V, b: V) -> V {
        _mm256_div_ps(a, b)
    }
    interior_impl!(#[target_feature(enable = "avx2,fma")]);
    rows_impl!(#[target_feature(enable = "avx2,fma")]);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// On any CPU with AVX2 (AVX-512 ones included) `depthwise2d` runs the AVX2 kernels:
    /// a 3x3 stride-1 layer on a 56x56 plane goes to the row-pair kernel where the
    /// AVX-512 in-place kernel does not take it (kept off here; on AVX-512 CPUs it takes
    /// the layer, run count 0), and its output matches the portable code's.
    #[test]
    fn depthwise_runs_avx2_kernels_where_the_cpu_has_them() {
        let isa = Isa::for_depthwise();
        assert!(isa.usable());
        if !Isa::Avx2.usable() {
            assert_eq!(isa, Isa::detect());
            return;
        }
        assert_eq!(isa, Isa::Avx2);
        let g = Geom2d::square(3, 56, 56, 3, 1, 1, 1);
        let x = rnd(3 * 56 * 56, 11);
        let w = rnd(27, 12);
        let act = Activation::Clip { lo: 0.0, hi: 6.0 };
        let (mut a, mut b) = (vec![0.0; 3 * 56 * 56], vec![0.0; 3 * 56 * 56]);
        ROWS3X3_RUNS.with(|n| n.set(0));
        depthwise2d(&x, &w, None, &g, act, &mut a).unwrap();
        let inplace = Isa::Avx512.usable();
        assert_eq!(ROWS3X3_RUNS.with(|n| n.get()), if inplace { 0 } else { 3 });
        ROWS3X3_RUNS.with(|n| n.set(0));
        INPLACE.with(|f| f.set(Some(false)));
        depthwise2d(&x, &w, None, &g, act, &mut a).unwrap();
        INPLACE.with(|f| f.set(None));
        assert_eq!(ROWS3X3_RUNS.with(|n| n.get()), 3);
        depthwise2d_with(Isa::Portable, &x, &w, None, &g, act, &mut b).unwrap();
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{p} vs {q}");
        }
    }

    thread_local! {
        /// Forces the border + interior path (tests of both paths).
        pub(crate) static NO_PAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        /// Channels the 3x3 row-pair kernel ([`rows3x3`]) computed on this thread.
        pub(crate) static ROWS3X3_RUNS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        /// Forces the channel-blocked path on (`Some(true)`, wherever it fits) or off.
        pub(crate) static BLOCKED: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
        /// `Some(false)` keeps the in-place 3x3 kernel (`inplace3x3`) off every layer,
        /// `Some(true)` puts it on every one it computes, whatever the width.
        pub(crate) static INPLACE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
    }

    use crate::testutil::rnd_lcg as rnd;

    /// `got` matches the naive sums `want` (1e-5 relative), NaN where they are NaN.
    fn assert_close(got: &[f32], want: &[f64], ctx: impl Fn() -> String) {
        for (j, (&got, &want)) in got.iter().zip(want).enumerate() {
            assert!(
                got.is_nan() == want.is_nan()
                    && (got.is_nan() || (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs())),
                "{} at {j}: {got} vs {want}",
                ctx()
            );
        }
    }

    fn naive(x: &[f32], w: &[f32], b: Option<&[f32]>, g: &Geom2d, act: Activation) -> Vec<f64> {
        let mut out = vec![0.0f64; g.c * g.oh * g.ow];
        for c in 0..g.c {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut s = b.map_or(0.0, |b| b[c] as f64);
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
                            let ix = (ox * g.sw + kx * g.dw) as isize - g.pl as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
                                s += x[c * g.h * g.w + iy as usize * g.w + ix as usize] as f64
                                    * w[c * g.kh * g.kw + ky * g.kw + kx] as f64;
                            }
                        }
                    }
                    out[(c * g.oh + oy) * g.ow + ox] = act.apply(s as f32) as f64;
                }
            }
        }
        out
    }

    /// (h, w, k, s, d, pad) covering tiny, odd and ragged shapes.
    fn shapes() -> Vec<(usize, usize, usize, usize, usize, usize)> {
        let mut v = vec![];
        for &(h, w) in &[
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
        ] {
            for &(k, s, d) in &[
                (3, 1, 1),
                (3, 2, 1),
                (5, 1, 1),
                (5, 2, 1),
                (1, 1, 1),
                (2, 2, 1),
                (3, 1, 2),
                (4, 3, 1),
                (7, 2, 1),
                (3, 2, 2),
            ] {
                for pad in [0, 1, 2] {
                    v.push((h, w, k, s, d, pad));
                }
            }
        }
        v
    }

    #[test]
    fn every_isa_matches_naive() {
        let acts = [
            Activation::None,
            Activation::Relu,
            Activation::Clip { lo: -0.1, hi: 0.3 },
            Activation::Silu,
        ];
        for (isa, no_pad) in Isa::available()
            .into_iter()
            .flat_map(|i| [(i, false), (i, true)])
        {
            NO_PAD.with(|f| f.set(no_pad));
            BLOCKED.with(|f| f.set(Some(false)));
            for (i, &(h, w, k, s, d, pad)) in shapes().iter().enumerate() {
                let c = 3;
                let g = Geom2d::square(c, h, w, k, s, d, pad);
                let (oh, ow) = (g.oh, g.ow);
                let x = rnd(c * h * w, i as u64);
                let wt = rnd(c * k * k, 1000 + i as u64);
                let b = rnd(c, 77);
                let act = acts[i % acts.len()];
                let bias = if i % 2 == 0 { Some(&b[..]) } else { None };
                let mut out = vec![f32::NAN; c * oh * ow + 3];
                depthwise2d_with(isa, &x, &wt, bias, &g, act, &mut out).unwrap();
                let want = naive(&x, &wt, bias, &g, act);
                for (j, (&got, &want)) in out.iter().zip(&want).enumerate() {
                    assert!(
                        (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{isa:?} no_pad {no_pad} {g:?} act {act:?} at {j}: {got} vs {want}"
                    );
                }
                assert!(
                    out[c * oh * ow..].iter().all(|v| v.is_nan()),
                    "wrote past the end"
                );
            }
        }
    }

    /// The 3x3 row-pair kernel against the naive sum: every output width from one vector
    /// to past two (the overlapping last vector), odd and even row counts (the single-row
    /// tail), pads 0 to 2, strides 1 and 2, the in-register activations and one applied
    /// after, a NaN input; and that the kernel, not the window engine, computed them.
    #[test]
    fn rows3x3_matches_naive() {
        if !Isa::Avx2.usable() {
            return;
        }
        let acts = [
            Activation::Clip { lo: 0.0, hi: 6.0 },
            Activation::None,
            Activation::Relu,
            Activation::Clip { lo: -0.1, hi: 0.3 },
            Activation::Silu,
        ];
        BLOCKED.with(|f| f.set(Some(false)));
        let mut i = 0;
        for s in [1usize, 2] {
            for ow in (8usize..=18).chain([24, 31, 56]) {
                for oh in [1usize, 2, 3, 6] {
                    for pad in [0usize, 1, 2] {
                        // The input size giving `oh x ow` outputs.
                        let (Some(h), Some(w)) = (
                            ((oh - 1) * s + 3).checked_sub(2 * pad).filter(|&h| h > 0),
                            ((ow - 1) * s + 3).checked_sub(2 * pad),
                        ) else {
                            continue;
                        };
                        let g = Geom2d::square(2, h, w, 3, s, 1, pad);
                        assert!(g.oh == oh && g.ow == ow && rows3x3::applies(&g), "{g:?}");
                        i += 1;
                        let mut x = rnd(2 * h * w, i);
                        if i % 7 == 0 {
                            let at = (i as usize * 13) % x.len();
                            x[at] = f32::NAN;
                        }
                        let wt = rnd(2 * 9, 300 + i);
                        let b = rnd(2, 5);
                        let act = acts[i as usize % acts.len()];
                        let bias = (i % 3 != 0).then_some(&b[..]);
                        let mut out = vec![f32::INFINITY; 2 * g.oh * g.ow + 4];
                        ROWS3X3_RUNS.with(|n| n.set(0));
                        INPLACE.with(|f| f.set(Some(false)));
                        depthwise2d_with(Isa::Avx2, &x, &wt, bias, &g, act, &mut out).unwrap();
                        INPLACE.with(|f| f.set(None));
                        assert_eq!(ROWS3X3_RUNS.with(|n| n.get()), 2, "{g:?}");
                        let want = naive(&x, &wt, bias, &g, act);
                        assert_close(&out, &want, || format!("{g:?} act {act:?}"));
                        assert!(
                            out[2 * g.oh * g.ow..].iter().all(|v| *v == f32::INFINITY),
                            "wrote past the end"
                        );
                    }
                }
            }
        }
        BLOCKED.with(|f| f.set(None));
    }

    /// The channel-blocked path (16 channels per vector) against the naive sum: channel
    /// counts around the vector width, every shape of [`shapes`] (forced on wherever it
    /// fits, even below its channel threshold), and bands of rows (a tall plane).
    #[test]
    fn blocked_path_matches_naive() {
        for isa in [Isa::Avx512, Isa::Avx2] {
            if isa.usable() {
                blocked_matches_naive(isa);
            }
        }
    }

    fn blocked_matches_naive(isa: Isa) {
        let acts = [
            Activation::Relu,
            Activation::None,
            Activation::Clip { lo: -0.1, hi: 0.3 },
            Activation::Silu,
        ];
        type Case = (usize, (usize, usize, usize, usize, usize, usize));
        let mut cases: Vec<Case> = shapes()
            .into_iter()
            .enumerate()
            .map(|(i, s)| ([1, 8, 16, 17, 33][i % 5], s))
            .collect();
        cases.push((24, (70, 9, 3, 1, 1, 1)));
        cases.push((19, (61, 113, 3, 2, 1, 1)));
        cases.push((16, (12, 12, 5, 1, 2, 4)));
        let mut blocked_runs = 0;
        for (i, &(c, (h, w, k, s, d, pad))) in cases.iter().enumerate() {
            let g = Geom2d::square(c, h, w, k, s, d, pad);
            let (oh, ow) = (g.oh, g.ow);
            BLOCKED.with(|f| f.set(Some(true)));
            blocked_runs += usize::from(blocked::applies(isa, &g, Reduce::Conv(Activation::None)));
            let x = rnd(c * h * w, i as u64);
            let wt = rnd(c * k * k, 500 + i as u64);
            let b = rnd(c, 9);
            let act = acts[i % acts.len()];
            let bias = if i % 3 == 0 { None } else { Some(&b[..]) };
            let mut out = vec![f32::NAN; c * oh * ow + 5];
            depthwise2d_with(isa, &x, &wt, bias, &g, act, &mut out).unwrap();
            BLOCKED.with(|f| f.set(None));
            let want = naive(&x, &wt, bias, &g, act);
            for (j, (&got, &want)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{isa:?} {g:?} act {act:?} at {j}: {got} vs {want}"
                );
            }
            assert!(
                out[c * oh * ow..].iter().all(|v| v.is_nan()),
                "wrote past the end"
            );
        }
        assert!(
            blocked_runs > cases.len() / 2,
            "{blocked_runs} blocked runs"
        );
    }

    /// The AVX-512 in-place 3x3 kernel against the naive sum, at stride 1 and 2: row
    /// widths around its vectors' edges (narrower than one vector, interior and masked
    /// loads, a last vector overlapping the one before, the stride-1 steps whose next
    /// vector is partly or wholly past the row), pads 0 to 2 and uneven ones, an output
    /// taller and wider than the windows that fit (ceil mode: rows and columns that read
    /// only padding), odd and even output heights (a last row alone), small stride-1
    /// planes computed flat, each fused activation and one applied after, NaN inputs;
    /// and that the kernel took these layers (forced on below its width thresholds).
    #[test]
    fn inplace3x3_matches_naive() {
        if !Isa::Avx512.usable() {
            return;
        }
        let acts = [
            Activation::None,
            Activation::Relu,
            Activation::Clip { lo: -0.2, hi: 0.4 },
            Activation::Silu,
        ];
        let mut i = 0u64;
        INPLACE.with(|f| f.set(Some(true)));
        for (s, widths) in [
            (
                1,
                &[
                    1usize, 5, 14, 15, 16, 17, 18, 30, 31, 32, 33, 34, 47, 56, 65,
                ][..],
            ),
            (
                2,
                &[
                    3, 20, 31, 32, 33, 34, 35, 36, 97, 98, 111, 112, 113, 129, 130, 160,
                ][..],
            ),
        ] {
            for &w in widths {
                for (h, pt, pl, extra) in [
                    (7, 1, 1, 0),
                    (9, 0, 0, 0),
                    (6, 2, 2, 0),
                    (8, 1, 0, 1),
                    (5, 0, 2, 2),
                    (1, 1, 1, 0),
                    (4, 1, 1, 0),
                    // Stride 1, output rows as wide as the input's: small planes go
                    // flat (no padding and two columns past the image; two rows of
                    // padding above).
                    (6, 0, 0, 2),
                    (5, 2, 1, 0),
                ] {
                    let c = 3;
                    let mut g = Geom2d::square(c, h, w, 3, s, 1, 1);
                    g.pt = pt;
                    g.pl = pl;
                    let (Some(oh), Some(ow)) = (
                        (h + 2 * pt).checked_sub(3).map(|v| v / s + 1 + extra),
                        (w + 2 * pl).checked_sub(3).map(|v| v / s + 1 + extra),
                    ) else {
                        continue;
                    };
                    (g.oh, g.ow) = (oh, ow);
                    assert!(inplace3x3::applies(&g), "{g:?}");
                    let mut x = rnd(c * h * w, i);
                    if i.is_multiple_of(3) {
                        let at = (i as usize * 7) % x.len();
                        x[at] = f32::NAN;
                    }
                    let wt = rnd(c * 9, 500 + i);
                    let b = rnd(c, 9);
                    let act = acts[i as usize % acts.len()];
                    let bias = i.is_multiple_of(2).then_some(&b[..]);
                    for isa in [Isa::Avx512, Isa::Avx2] {
                        let mut out = vec![f32::INFINITY; c * g.oh * g.ow + 5];
                        depthwise2d_with(isa, &x, &wt, bias, &g, act, &mut out).unwrap();
                        let want = naive(&x, &wt, bias, &g, act);
                        assert_close(&out, &want, || format!("{g:?} {act:?}"));
                        assert!(out[c * g.oh * g.ow..].iter().all(|v| *v == f32::INFINITY));
                    }
                    i += 1;
                }
            }
        }
        INPLACE.with(|f| f.set(None));
    }

    /// The in-place kernel's width thresholds: MobileNetV2's stride-1 planes all go to it
    /// (the 7x7 ones flat), at stride 2 those with outputs 14 wide or more.
    #[test]
    fn inplace3x3_takes_rows_from_its_thresholds() {
        if !Isa::Avx512.usable() {
            return;
        }
        let on = |h: usize, s: usize| inplace3x3::applies(&Geom2d::square(8, h, h, 3, s, 1, 1));
        // 7x7 at stride 1 goes flat; 7 wide but taller does not.
        assert!(on(7, 1) && on(14, 1) && on(56, 1) && on(112, 1));
        let mut tall = Geom2d::square(8, 30, 7, 3, 1, 1, 1);
        assert!(!inplace3x3::applies(&tall));
        tall.h = 27;
        tall.oh = 27;
        assert!(inplace3x3::applies(&tall));
        assert!(!on(14, 2) && on(28, 2) && on(112, 2));
        // Not a 3x3 window at stride 1 or 2 without dilation.
        assert!(!inplace3x3::applies(&Geom2d::square(8, 56, 56, 3, 3, 1, 1)));
        assert!(!inplace3x3::applies(&Geom2d::square(8, 56, 56, 3, 1, 2, 2)));
        assert!(!inplace3x3::applies(&Geom2d::square(8, 56, 56, 5, 1, 1, 2)));
    }

    /// NaN inputs through the blocked path's fused activations: Relu gives +0, Clip and
    /// no activation keep NaN (as the row path and `Activation::apply`).
    #[test]
    fn blocked_path_activations_and_nan() {
        for isa in [Isa::Avx512, Isa::Avx2] {
            if isa.usable() {
                blocked_nan(isa);
            }
        }
    }

    fn blocked_nan(isa: Isa) {
        let g = Geom2d {
            c: 16,
            h: 4,
            w: 4,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            dh: 1,
            dw: 1,
            pt: 1,
            pl: 1,
            oh: 4,
            ow: 4,
        };
        let mut x = rnd(16 * 16, 3);
        x[5] = f32::NAN;
        let wt = rnd(16 * 9, 4);
        for act in [
            Activation::None,
            Activation::Relu,
            Activation::Clip { lo: 0.0, hi: 6.0 },
        ] {
            let mut out = vec![0.0; 16 * 16];
            BLOCKED.with(|f| f.set(Some(true)));
            depthwise2d_with(isa, &x, &wt, None, &g, act, &mut out).unwrap();
            BLOCKED.with(|f| f.set(None));
            let want = naive(&x, &wt, None, &g, act);
            for (got, want) in out.iter().zip(&want) {
                assert!(
                    got.is_nan() == want.is_nan()
                        && (got.is_nan() || (*got as f64 - want).abs() <= 1e-5),
                    "{act:?}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn asymmetric_and_ceil_geometry() {
        // Different pads per side and an output larger than floor mode (ceil mode).
        for isa in Isa::available() {
            let g = Geom2d {
                c: 2,
                h: 10,
                w: 23,
                kh: 3,
                kw: 5,
                sh: 2,
                sw: 1,
                dh: 1,
                dw: 2,
                pt: 0,
                pl: 3,
                oh: 6,
                ow: 24,
            };
            let x = rnd(g.c * g.h * g.w, 5);
            let wt = rnd(g.c * g.kh * g.kw, 6);
            let mut out = vec![0.0; g.c * g.oh * g.ow];
            depthwise2d_with(isa, &x, &wt, None, &g, Activation::None, &mut out).unwrap();
            let want = naive(&x, &wt, None, &g, Activation::None);
            for (got, want) in out.iter().zip(&want) {
                assert!((*got as f64 - want).abs() < 1e-5, "{isa:?}");
            }
        }
    }

    #[test]
    fn parallel_large_layer() {
        let g = Geom2d {
            c: 40,
            h: 56,
            w: 56,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            dh: 1,
            dw: 1,
            pt: 1,
            pl: 1,
            oh: 56,
            ow: 56,
        };
        let x = rnd(g.c * g.h * g.w, 1);
        let wt = rnd(g.c * 9, 2);
        let b = rnd(g.c, 3);
        let act = Activation::Clip { lo: 0.0, hi: 6.0 };
        let mut out = vec![0.0; g.c * g.oh * g.ow];
        depthwise2d(&x, &wt, Some(&b), &g, act, &mut out).unwrap();
        let want = naive(&x, &wt, Some(&b), &g, act);
        for (got, want) in out.iter().zip(&want) {
            assert!((*got as f64 - want).abs() < 1e-5);
        }
    }

    /// A split row holds the padded row's even columns, then its odd ones, for every
    /// parity of the left pad and the width, with the SSE2 loop and its scalar tail.
    #[test]
    fn split_row_matches_the_padded_row() {
        for pl in 0..4 {
            for w in 1..20 {
                for pr in 0..3 {
                    let src: Vec<f32> = (0..w).map(|i| i as f32 + 1.0).collect();
                    let mut padded = vec![-1.0f32; pl];
                    padded.extend_from_slice(&src);
                    padded.resize(pl + w + pr, -1.0);
                    let want: Vec<f32> = padded
                        .iter()
                        .step_by(2)
                        .chain(padded.iter().skip(1).step_by(2))
                        .copied()
                        .collect();
                    let mut row = vec![f32::NAN; padded.len()];
                    split_row(&src, pl, -1.0, &mut row);
                    assert_eq!(row, want, "pl {pl} w {w} pr {pr}");
                }
            }
        }
    }

    #[test]
    fn rejects_bad_buffers() {
        let g = Geom2d {
            c: 2,
            h: 4,
            w: 4,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            dh: 1,
            dw: 1,
            pt: 1,
            pl: 1,
            oh: 4,
            ow: 4,
        };
        let x = vec![0.0; 32];
        let w = vec![0.0; 18];
        let mut out = vec![0.0; 32];
        assert!(depthwise2d(&x[..31], &w, None, &g, Activation::None, &mut out).is_err());
        assert!(depthwise2d(&x, &w[..17], None, &g, Activation::None, &mut out).is_err());
        assert!(depthwise2d(&x, &w, Some(&[0.0]), &g, Activation::None, &mut out).is_err());
        assert!(depthwise2d(&x, &w, None, &g, Activation::None, &mut out[..31]).is_err());
        let bad = Geom2d { sh: 0, ..g };
        assert!(depthwise2d(&x, &w, None, &bad, Activation::None, &mut out).is_err());
        let huge = Geom2d {
            h: usize::MAX / 2,
            ..g
        };
        assert!(depthwise2d(&x, &w, None, &huge, Activation::None, &mut out).is_err());
        assert!(depthwise2d(&x, &w, None, &g, Activation::None, &mut out).is_ok());
    }
}

/// MobileNetV2 depthwise layers: `cargo test --release -p millrace-kernels
/// bench_mobilenet -- --ignored --nocapture`.
#[cfg(test)]
mod bench {
    use super::tests::BLOCKED;
    use super::*;
    use std::time::Instant;

    fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
        f();
        let mut best = f64::INFINITY;
        for _ in 0..reps {
            let t = Instant::now();
            f();
            best = best.min(t.elapsed().as_secs_f64());
        }
        best
    }

    /// Median seconds per call of `run` on the row path and on the blocked path (forced
    /// through [`BLOCKED`]) in `pool`: 30 rounds of 5 calls each way, the order flipping
    /// every round so that a busy machine slows both alike.
    fn rows_vs_blocked(pool: &rayon::ThreadPool, mut run: impl FnMut() + Send) -> (f64, f64) {
        let mut t = Vec::new();
        for round in 0..30 {
            for v in 0..2 {
                let blocked = (v == 1) ^ (round % 2 == 1);
                let e = pool.install(|| {
                    BLOCKED.with(|f| f.set(Some(blocked)));
                    let t0 = Instant::now();
                    for _ in 0..5 {
                        run();
                    }
                    t0.elapsed().as_secs_f64() / 5.0
                });
                t.push((blocked, e));
            }
        }
        let med = |blocked: bool| {
            let mut v: Vec<f64> = t
                .iter()
                .filter(|(b, _)| *b == blocked)
                .map(|(_, e)| *e)
                .collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        (med(false), med(true))
    }

    /// Max pooling on the channel-blocked path against the separable and window kernels,
    /// on the pooling layers of ResNet-50, GoogLeNet and SqueezeNet 1.1, alternating run
    /// by run: `cargo test --release -p millrace-kernels max_blocked_vs_rows -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore]
    fn max_blocked_vs_rows() {
        // (c, h, k, stride, pad, out)
        let layers = [
            (64, 112, 3, 2, 1, 56),
            (192, 56, 3, 2, 0, 28),
            (480, 28, 3, 2, 0, 14),
            (832, 14, 3, 2, 0, 7),
            (192, 28, 3, 1, 1, 28),
            (480, 14, 3, 1, 1, 14),
            (528, 14, 3, 1, 1, 14),
            (832, 7, 3, 1, 1, 7),
            (64, 111, 3, 2, 0, 55),
            (128, 55, 3, 2, 0, 27),
            (256, 27, 3, 2, 0, 13),
        ];
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.broadcast(|_| crate::reserve_scratch());
            for (c, h, k, s, p, o) in layers {
                // The output size as listed: GoogLeNet's pools round up.
                let g = Geom2d {
                    oh: o,
                    ow: o,
                    ..Geom2d::square(c, h, h, k, s, 1, p)
                };
                if !blocked::fits(&g) {
                    println!("{threads}t {h}x{h} c {c} s{s}: does not fit a band");
                    continue;
                }
                let x: Vec<f32> = (0..c * h * h).map(|i| (i % 13) as f32 * 0.1).collect();
                let mut out = vec![0.0f32; c * o * o];
                let (r, bl) = rows_vs_blocked(&pool, || {
                    crate::pool::max_pool2d(&x, &g, &mut out).unwrap();
                });
                println!(
                    "{threads}t {h:3}x{h:3} c {c:4} s{s} -> {o:3}: rows {:7.1} us  blocked {:7.1} us  {:.2}x",
                    r * 1e6,
                    bl * 1e6,
                    bl / r
                );
            }
        }
    }

    /// The channel-blocked path against the row path on MobileNetV2's depthwise layers,
    /// alternating run by run: `cargo test --release -p millrace-kernels bench::blocked_vs_rows --
    /// --ignored --nocapture`.
    #[test]
    #[ignore]
    fn blocked_vs_rows() {
        // (h, c, stride), 3x3 pad 1: all 17 of MobileNetV2's, in order.
        let layers = [
            (112, 32, 1),
            (112, 96, 2),
            (56, 144, 1),
            (56, 144, 2),
            (28, 192, 1),
            (28, 192, 1),
            (28, 192, 2),
            (14, 384, 1),
            (14, 384, 1),
            (14, 384, 1),
            (14, 384, 1),
            (14, 576, 1),
            (14, 576, 1),
            (14, 576, 2),
            (7, 960, 1),
            (7, 960, 1),
            (7, 960, 1),
        ];
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.broadcast(|_| crate::reserve_scratch());
            let mut total = [0.0; 2];
            for (h, c, s) in layers {
                let g = Geom2d::square(c, h, h, 3, s, 1, 1);
                let o = g.oh;
                let x: Vec<f32> = (0..c * h * h).map(|i| (i % 13) as f32 * 0.1).collect();
                let wt: Vec<f32> = (0..c * 9).map(|i| (i % 7) as f32 * 0.1).collect();
                let b = vec![0.5f32; c];
                let mut out = vec![0.0f32; c * o * o];
                let act = Activation::Clip { lo: 0.0, hi: 6.0 };
                let (r, bl) = rows_vs_blocked(&pool, || {
                    depthwise2d(&x, &wt, Some(&b), &g, act, &mut out).unwrap();
                });
                total[0] += r;
                total[1] += bl;
                println!(
                    "{threads}t {h:3}x{h:3} c {c:4} s{s}: rows {:7.1} us  blocked {:7.1} us  {:.2}x",
                    r * 1e6,
                    bl * 1e6,
                    bl / r
                );
            }
            println!(
                "{threads}t total: rows {:.1} us  blocked {:.1} us  {:.2}x",
                total[0] * 1e6,
                total[1] * 1e6,
                total[1] / total[0]
            );
        }
    }

    #[test]
    #[ignore]
    fn bench_mobilenet() {
        // (h, w, c, stride), all 3x3 pad 1.
        let layers = [
            (112, 112, 32, 1),
            (112, 112, 96, 2),
            (56, 56, 144, 1),
            (56, 56, 144, 2),
            (28, 28, 192, 1),
            (14, 14, 384, 1),
            (14, 14, 576, 1),
            (7, 7, 960, 1),
        ];
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let two = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        println!("layer                 | scalar 1t        | avx512 1t        | avx2 1t          | portable 1t      | best 2t");
        for (h, w, c, s) in layers {
            let o = |n: usize| (n + 2 - 3) / s + 1;
            let g = Geom2d {
                c,
                h,
                w,
                kh: 3,
                kw: 3,
                sh: s,
                sw: s,
                dh: 1,
                dw: 1,
                pt: 1,
                pl: 1,
                oh: o(h),
                ow: o(w),
            };
            let x: Vec<f32> = (0..c * h * w).map(|i| (i % 13) as f32 * 0.1).collect();
            let wt: Vec<f32> = (0..c * 9).map(|i| (i % 7) as f32 * 0.1).collect();
            let b = vec![0.5f32; c];
            let mut out = vec![0.0f32; c * g.oh * g.ow];
            let flops = 2.0 * (c * g.oh * g.ow * 9) as f64;
            let bytes = 4.0 * (c * h * w + c * g.oh * g.ow + c * 10) as f64;
            let reps = 20;
            let fmt = |t: f64| format!("{:6.1} GF {:5.1} GB/s", flops / t / 1e9, bytes / t / 1e9);
            let act = Activation::Clip { lo: 0.0, hi: 6.0 };
            let ts = one.install(|| {
                best_of(reps, || {
                    let op = g.oh * g.ow;
                    for ci in 0..c {
                        crate::conv::depthwise_2d(
                            &x[ci * h * w..(ci + 1) * h * w],
                            &wt[ci * 9..(ci + 1) * 9],
                            b[ci],
                            &g,
                            &mut out[ci * op..(ci + 1) * op],
                        );
                        act.apply_slice(&mut out[ci * op..(ci + 1) * op]);
                    }
                })
            });
            let mut cols = vec![fmt(ts)];
            for isa in [Isa::Avx512, Isa::Avx2, Isa::Portable] {
                if !isa.usable() {
                    cols.push("-".into());
                    continue;
                }
                let t = one.install(|| {
                    best_of(reps, || {
                        depthwise2d_with(isa, &x, &wt, Some(&b), &g, act, &mut out).unwrap()
                    })
                });
                cols.push(fmt(t));
            }
            let t2 = two.install(|| {
                best_of(reps, || {
                    depthwise2d(&x, &wt, Some(&b), &g, act, &mut out).unwrap()
                })
            });
            cols.push(fmt(t2));
            println!(
                "{h:3}x{w:3}x{c:4} s{s} ({:4.0}us) | {}",
                ts * 1e6,
                cols.join(" | ")
            );
        }
    }
}
