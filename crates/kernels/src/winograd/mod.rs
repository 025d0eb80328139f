//! Winograd convolution for 3x3, stride-1, dilation-1 layers (NCHW; one image, or a batch
//! whose images' tiles sit side by side in the products, [`winograd3x3_batch`]).
//!
//! `F(m x m, 3 x 3)` computes an `m x m` output tile from an `alpha x alpha` input tile
//! (`alpha = m + 2`) with `alpha^2` multiplies per (input, output) channel pair instead of
//! `9 m^2`:
//!
//! ```text
//! Y = A^T [ sum over ci of (G g G^T) (.) (B^T d B) ] A
//! ```
//!
//! * The filter transforms `U = G g G^T` are computed once (model compile time, in f64) and
//!   kept as `alpha^2` matrices `cout x cin`, each a [`Packed`] left operand of the GEMM
//!   ([`WinogradWeights`]).
//! * Input transform: each `alpha x alpha` input tile (stride `m`, zeros outside the
//!   image) of each channel becomes `V = B^T d B`, stored as `alpha^2` matrices
//!   `cin x tiles` (layout `[ci][pos][tile]`, each run of tiles padded by one vector, so
//!   the transforms load and store whole vectors). Done per channel in
//!   parallel: a vertical pass over whole rows (contiguous, 16 columns at a time) then a
//!   horizontal pass over groups of 16 tiles (strided loads the compiler turns into
//!   permutes).
//! * `alpha^2` GEMMs `[cout x cin] x [cin x tiles]`: the transformed filters prepacked as
//!   the left operand, the transformed input read in place as the right one
//!   ([`Rhs::Direct`], a 1x1 convolution over the tile grid), written as `[pos][co][tile]`;
//!   the positions run in parallel (each GEMM may split further). (With the tiles as the
//!   left operand, as before, the output tiles were stored transposed, one value at a
//!   time; this way the GEMM phase takes 0.7x that time on ResNet-50's 128@28 layer at 1
//!   and 2 threads, 0.53x on 64@56 at 2, on Zen 5.)
//! * Output transform per output channel in parallel: `A^T M A`, plus bias and residual,
//!   then the activation, written straight into the output (partial tiles clipped).
//!
//! Each of those phases reads what the other threads wrote in the one before. A layer
//! with few input channels runs instead [`by_bands`] where its plane has tile rows for 6
//! or more per thread (each thread takes a band of tile rows through all three phases
//! in its own scratch, every output channel) or else [`by_channels`] (each thread takes
//! whole panels of output channels through all three phases, the input transform
//! repeated on every thread).
//!
//! Scratch (`alpha^2 (tiles + 16) (cin + cout)` floats) is caller-given
//! ([`winograd3x3_with_scratch`], [`scratch_len`]) or a buffer the calling thread keeps
//! and grows ([`winograd3x3`]). [`prefer_winograd`] says when to use which variant.
//!
//! Two variants: `F(2x2, 3x3)` (alpha 4, 2.25x fewer multiplies, very accurate) and
//! `F(4x4, 3x3)` (alpha 6, points 0, +-1, +-2, inf; 4x fewer multiplies, a few times the
//! rounding error of direct convolution, ~2-3e-6 relative on ResNet-50 layers). The transforms are
//! written once over 16-lane vectors and compiled for AVX2 and portable code; on AVX-512,
//! `F(4x4)` has its own transforms in intrinsics ([`avx512`]), whose horizontal passes
//! stay in vectors. The ISA follows the GEMM kernel the weights were packed for.
//! [`preferred_over_direct`] says where AVX-512 CPUs take Winograd before the direct
//! kernel.
use crate::activation::Activation;
use crate::conv::Geom2d;
use crate::gemm::{
    gemm_ex_one_thread, Epilogue, GemmError, Kernel, Lhs, Out, Packed, Rhs, Strided,
};
use rayon::prelude::*;
use std::cell::RefCell;

#[cfg(target_arch = "x86_64")]
mod avx512;
use std::ops::{Add, Mul, Sub};

/// Which Winograd algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WinogradVariant {
    /// `F(2x2, 3x3)`: 4x4 input tiles, 16 products per tile (vs 36 direct).
    F2x2,
    /// `F(4x4, 3x3)`: 6x6 input tiles, 36 products per tile (vs 144 direct).
    F4x4,
}

impl WinogradVariant {
    /// Output tile side `m`.
    pub fn m(self) -> usize {
        match self {
            WinogradVariant::F2x2 => 2,
            WinogradVariant::F4x4 => 4,
        }
    }
    /// Input tile side `alpha = m + 2`.
    pub fn alpha(self) -> usize {
        self.m() + 2
    }
}

/// Why a Winograd call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WinogradError {
    #[error("winograd: {0}")]
    Shape(String),
    #[error(transparent)]
    Gemm(#[from] GemmError),
}

fn err(msg: impl Into<String>) -> WinogradError {
    WinogradError::Shape(msg.into())
}

/// `G` for F(2x2, 3x3) (4 x 3).
const G2: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// `G` for F(4x4, 3x3) (6 x 3), interpolation points 0, 1, -1, 2, -2, inf.
const G4: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// 3x3 filters transformed for the Winograd GEMMs (prepare once, share across calls).
#[derive(Clone, Debug)]
pub struct WinogradWeights {
    variant: WinogradVariant,
    cin: usize,
    cout: usize,
    /// One `cout x cin` matrix per transform position (`alpha^2`, row-major positions),
    /// each packed as the GEMM's left operand.
    lhs: Vec<Packed>,
}

impl WinogradWeights {
    /// Transforms OIHW weights `w` (`cout x cin x 3 x 3`) for the detected GEMM kernel.
    pub fn new(
        w: &[f32],
        cout: usize,
        cin: usize,
        variant: WinogradVariant,
    ) -> Result<WinogradWeights, WinogradError> {
        WinogradWeights::with_kernel(w, cout, cin, variant, Kernel::detect())
    }

    /// [`WinogradWeights::new`] for an explicit GEMM kernel (its ISA also runs the
    /// transforms).
    pub fn with_kernel(
        w: &[f32],
        cout: usize,
        cin: usize,
        variant: WinogradVariant,
        kernel: &'static Kernel,
    ) -> Result<WinogradWeights, WinogradError> {
        if cout == 0 || cin == 0 {
            return Err(err(format!("{cout} output / {cin} input channels")));
        }
        let pairs = cout
            .checked_mul(cin)
            .ok_or_else(|| err("channel count overflows"))?;
        if pairs.checked_mul(9) != Some(w.len()) {
            return Err(err(format!(
                "weights hold {} values, {cout}x{cin}x3x3 needs {}",
                w.len(),
                pairs.saturating_mul(9)
            )));
        }
        let g: &[[f64; 3]] = match variant {
            WinogradVariant::F2x2 => &G2,
            WinogradVariant::F4x4 => &G4,
        };
        let a = variant.alpha();
        // u[pos][co * cin + ci]
        let mut u = vec![vec![0.0f32; pairs]; a * a];
        let mut tmp = vec![0.0f64; a * 3];
        for (pair, f) in w.chunks_exact(9).enumerate() {
            // tmp = G f (alpha x 3)
            for i in 0..a {
                for c in 0..3 {
                    tmp[i * 3 + c] = (0..3).map(|r| g[i][r] * f[r * 3 + c] as f64).sum();
                }
            }
            // U = tmp G^T (alpha x alpha)
            for i in 0..a {
                for j in 0..a {
                    let v: f64 = (0..3).map(|c| tmp[i * 3 + c] * g[j][c]).sum();
                    u[i * a + j][pair] = v as f32;
                }
            }
        }
        let lhs = u
            .iter()
            .map(|m| {
                let src = Strided::rows(m, cout, cin).ok_or_else(|| err("weight view"))?;
                Ok(Packed::lhs_with_kernel(&src, kernel))
            })
            .collect::<Result<Vec<_>, WinogradError>>()?;
        Ok(WinogradWeights {
            variant,
            cin,
            cout,
            lhs,
        })
    }

    pub fn variant(&self) -> WinogradVariant {
        self.variant
    }
    pub fn cin(&self) -> usize {
        self.cin
    }
    pub fn cout(&self) -> usize {
        self.cout
    }
    /// The GEMM kernel the matrices were packed for.
    pub fn kernel(&self) -> &'static Kernel {
        self.lhs[0].kernel()
    }
    /// Bytes held (for memory plans).
    pub fn bytes(&self) -> usize {
        self.lhs.iter().map(Packed::bytes).sum()
    }
}

/// Tile grid of an output: `(tiles down, tiles across)`.
fn grid(g: &Geom2d, m: usize) -> (usize, usize) {
    (g.oh.div_ceil(m), g.ow.div_ceil(m))
}

/// Scratch floats [`winograd3x3_with_scratch`] needs for `images` images of geometry `g`
/// and weights `ww` (`None` on overflow).
pub fn scratch_len(g: &Geom2d, ww: &WinogradWeights, images: usize) -> Option<usize> {
    let (ty, tx) = grid(g, ww.variant.m());
    let a = ww.variant.alpha();
    (a * a)
        .checked_mul(ty.checked_mul(tx)?.checked_mul(images)?.checked_add(L)?)?
        .checked_mul(ww.cin.checked_add(ww.cout)?)
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out = act(conv3x3(x) + bias[co] + residual)` by Winograd, for one `cin x h x w` image
/// `x` (NCHW), stride 1, dilation 1, any padding (`g.pt`, `g.pl`; the bottom/right pads
/// follow from `g.oh`, `g.ow`). `residual`, when given, has the shape of `out`
/// (`cout x oh x ow`). Scratch is a buffer kept by the calling thread.
pub fn winograd3x3(
    x: &[f32],
    g: &Geom2d,
    ww: &WinogradWeights,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
) -> Result<(), WinogradError> {
    winograd3x3_batch(x, 1, g, ww, bias, residual, act, out)
}

/// [`winograd3x3`] over `images` images at once (`x` `images x cin x h x w`, `out` and
/// `residual` `images x cout x oh x ow`): the tiles of all the images are the columns of
/// each of the `alpha^2` products, so an image of few tiles (14x14: 16) still gives the
/// GEMM whole panels. Scratch is a buffer kept by the calling thread.
#[allow(clippy::too_many_arguments)]
pub fn winograd3x3_batch(
    x: &[f32],
    images: usize,
    g: &Geom2d,
    ww: &WinogradWeights,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
) -> Result<(), WinogradError> {
    let threads = rayon::current_num_threads();
    if images == 1 && threads > 1 && split_by_bands(g, ww, threads) {
        return by_bands(x, g, ww, bias, residual, act, out, threads);
    }
    let parts = threads.min(ww.cout.div_ceil(ww.kernel().mr));
    if images == 1 && parts > 1 && split_by_channels(ww) {
        return by_channels(x, g, ww, bias, residual, act, out, parts);
    }
    let need = scratch_len(g, ww, images).ok_or_else(|| err("scratch size overflows"))?;
    with_thread_scratch(need, |buf| {
        winograd3x3_with_scratch(x, images, g, ww, bias, residual, act, out, buf)
    })
}

/// `f` on at least `need` floats of the calling thread's [`SCRATCH`], grown if short.
/// The buffer is taken out of the thread-local for the call, so a nested call (another
/// model on this thread) cannot alias it.
fn with_thread_scratch<R>(need: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.with_borrow_mut(std::mem::take);
    if buf.len() < need {
        buf.resize(need, 0.0);
    }
    let r = f(&mut buf[..need]);
    SCRATCH.with_borrow_mut(|s| {
        if s.len() < buf.len() {
            *s = buf;
        }
    });
    r
}

/// One transform position's product on the calling thread: `mp = lhs v`, `v` the
/// transformed input of that position (`ww.cin` rows `ld` apart, `n` tiles), `mp` rows
/// `rs` apart.
fn position_product(
    ww: &WinogradWeights,
    lhs: Lhs<'_>,
    v: &[f32],
    n: usize,
    ld: usize,
    mp: &mut [f32],
    rs: usize,
) -> Result<(), GemmError> {
    gemm_ex_one_thread(
        ww.kernel(),
        lhs,
        Rhs::Direct {
            data: v,
            k: ww.cin,
            n,
            ld,
        },
        Out {
            data: mp,
            rs,
            cs: 1,
        },
        &Epilogue::default(),
    )
}

/// What [`by_channels`] and [`by_bands`] start from: one image's output plane, the
/// instruction set, the tile's output size `m` and position count `a2`, the tile grid.
struct Split {
    plane: usize,
    isa: Isa,
    m: usize,
    a2: usize,
    nty: usize,
    ntx: usize,
}

/// [`Split`] for one image that [`check`] accepts (a part's scratch is then at most the
/// one-image scratch it found not to overflow); `None` for an empty output.
fn split_start(
    x: &[f32],
    g: &Geom2d,
    ww: &WinogradWeights,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    out: &[f32],
) -> Result<Option<Split>, WinogradError> {
    let Sizes { plane, .. } = check(x, 1, g, ww, bias, residual, out)?;
    if plane == 0 {
        return Ok(None);
    }
    let (m, a) = (ww.variant.m(), ww.variant.alpha());
    let (nty, ntx) = grid(g, m);
    Ok(Some(Split {
        plane,
        isa: Isa::of(ww.kernel()),
        m,
        a2: a * a,
        nty,
        ntx,
    }))
}

/// Whether one image runs [`by_channels`] on several threads: where the input transform
/// that each thread repeats is cheap against the products (fewer than 64 input
/// channels). ResNet-50's 64- and 128-channel layers by channels took 1.23-1.58x the
/// time of the phases split across the threads (`scripts/nodes_ab.py`, 2 threads).
fn split_by_channels(ww: &WinogradWeights) -> bool {
    ww.cin < 64
}

/// One image on `parts` threads, each taking a share of the output channels (whole
/// panels of the packed weights) through all three phases on its own: it transforms the
/// whole input (the input transform repeated per thread), runs the products for its
/// channels and their output transform, in a scratch buffer of its own. No phase reads
/// what another thread wrote, where the phases of [`winograd3x3_with_scratch`] each
/// read the other threads' results.
#[allow(clippy::too_many_arguments)]
fn by_channels(
    x: &[f32],
    g: &Geom2d,
    ww: &WinogradWeights,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
    parts: usize,
) -> Result<(), WinogradError> {
    let Some(Split {
        plane,
        isa,
        a2,
        nty,
        ntx,
        ..
    }) = split_start(x, g, ww, bias, residual, out)?
    else {
        return Ok(());
    };
    let (cin, cout) = (ww.cin, ww.cout);
    let tiles = nty * ntx;
    let tp = tiles + L;
    let mr = ww.kernel().mr;
    let panels = cout.div_ceil(mr);
    // Output channels per part: whole panels, the last part's last panel ragged.
    let per = panels.div_ceil(parts) * mr;
    let chan = g.h * g.w;
    let out = &mut out[..cout * plane];
    let need = a2 * tp * (cin + per);
    // Part `t`: its channels through the three phases, in `buf` (`need` values).
    let part = |t: usize, out_t: &mut [f32], buf: &mut [f32]| {
        let c0 = t * per;
        let rows = out_t.len() / plane;
        let c1 = c0 + rows;
        let geo = TileGeo {
            g: *g,
            nty,
            ntx,
            tp,
            mps: rows * tp,
        };
        let mut planes = out_t.chunks_mut(plane);
        part_phases(
            ww,
            &geo,
            |ci| &x[ci * chan..][..chan],
            (c0, c1),
            tiles,
            buf,
            |co, mc| {
                if let Some(oc) = planes.next() {
                    let b = bias.map_or(0.0, |b| b[co]);
                    let res = residual.map(|r| &r[co * plane..(co + 1) * plane]);
                    // SAFETY: `isa` was checked against the CPU when the kernel was chosen.
                    unsafe { output_channel(isa, ww.variant, &geo, mc, b, res, act, oc) }
                }
            },
        )
    };
    run_parts(
        parts,
        need,
        out.par_chunks_mut(per * plane).enumerate(),
        part,
    )
}

/// One part of [`by_channels`] or [`by_bands`] in `buf`: the input transform of every
/// input channel (`xc(ci)`, tiled by `geo`), the products of output channels `c0..c1`
/// (rows of every position's packed weights) over the part's `tiles` tiles, then
/// `out(co, mc)` for each of those channels with its transformed products `mc` (rows
/// `geo.mps` apart, as the output transform takes them).
fn part_phases<'x>(
    ww: &WinogradWeights,
    geo: &TileGeo,
    xc: impl Fn(usize) -> &'x [f32],
    (c0, c1): (usize, usize),
    tiles: usize,
    buf: &mut [f32],
    mut out: impl FnMut(usize, &[f32]),
) -> Result<(), WinogradError> {
    let isa = Isa::of(ww.kernel());
    let a2 = ww.variant.alpha() * ww.variant.alpha();
    let (tp, rows) = (geo.tp, c1 - c0);
    let (v, mm) = buf.split_at_mut(a2 * tp * ww.cin);
    for (ci, vc) in v.chunks_mut(a2 * tp).enumerate() {
        // SAFETY: `isa` was checked against the CPU when the kernel was chosen.
        unsafe { input_channel(isa, ww.variant, geo, xc(ci), vc) }
    }
    let vv: &[f32] = v;
    // The part's products: the first `a2 * rows * tp` values (the buffer fits the
    // largest part).
    let mm = &mut mm[..a2 * rows * tp];
    mm.chunks_mut(rows * tp)
        .enumerate()
        .try_for_each(|(pos, mp)| {
            let lhs = if rows == ww.cout {
                Lhs::Packed(&ww.lhs[pos])
            } else {
                Lhs::PackedRows(&ww.lhs[pos], c0, c1)
            };
            position_product(ww, lhs, &vv[pos * tp..], tiles, a2 * tp, mp, tp)
        })?;
    for i in 0..rows {
        out(c0 + i, &mm[i * tp..]);
    }
    Ok(())
}

/// Runs `part(t, item, buf)` for every `(t, item)` of `items` (each `t < parts` once),
/// `buf` `need` floats: buffer `t` of a pool shared by every layer, held for the call.
/// With parts going to whichever thread is free, thread-local buffers could grow in a
/// later call (on a thread that meets a larger part, or its first part); the pool's
/// buffers grow only on the first call of the largest layer. Where another call holds
/// the pool (models running at the same time), thread-local buffers.
fn run_parts<T: Send>(
    parts: usize,
    need: usize,
    items: impl ParallelIterator<Item = (usize, T)>,
    part: impl Fn(usize, T, &mut [f32]) -> Result<(), WinogradError> + Sync,
) -> Result<(), WinogradError> {
    match part_bufs(parts, need) {
        Some(mut bufs) => {
            // Used only while the guard is held, each job touching its own buffer.
            let base = crate::SyncPtr(bufs.as_mut_ptr());
            items.try_for_each(|(t, item)| {
                assert!(t < parts, "part {t} of {parts}");
                // SAFETY: `t < parts <= bufs.len()`, each part `t` once: the buffers are
                // disjoint, and the guard keeps them for the call.
                let buf = unsafe { &mut *base.get().add(t) };
                part(t, item, &mut buf[..need])
            })
        }
        None => items.try_for_each(|(t, item)| with_thread_scratch(need, |buf| part(t, item, buf))),
    }
}

/// Whether one image runs [`by_bands`] on `threads` threads: few input channels (the
/// transforms are cheap against the products) and at least 6 tile rows per thread.
fn split_by_bands(g: &Geom2d, ww: &WinogradWeights, threads: usize) -> bool {
    let (nty, _) = grid(g, ww.variant.m());
    ww.cin < 32 && nty >= 6 * threads
}

/// One image on `parts` threads, each taking a band of contiguous tile rows (as even as
/// the rows allow) through all three phases on its own: it transforms the
/// input rows its tiles read (the 2 rows a band shares with the next read by both), runs
/// the products of every output channel over its tiles and their output transform into
/// its rows of each output plane, in a scratch buffer of its own. No phase reads what
/// another thread wrote.
#[allow(clippy::too_many_arguments)]
fn by_bands(
    x: &[f32],
    g: &Geom2d,
    ww: &WinogradWeights,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
    parts: usize,
) -> Result<(), WinogradError> {
    let Some(Split {
        plane,
        isa,
        m,
        a2,
        nty,
        ntx,
    }) = split_start(x, g, ww, bias, residual, out)?
    else {
        return Ok(());
    };
    let (cin, cout) = (ww.cin, ww.cout);
    let parts = parts.min(nty);
    // Tile rows per band, the first `nty % parts` bands one more.
    let (base, extra) = (nty / parts, nty % parts);
    let band = |t: usize| {
        let ty0 = t * base + t.min(extra);
        (ty0, ty0 + base + usize::from(t < extra))
    };
    let most = (base + usize::from(extra > 0)) * ntx + L;
    let need = a2 * most * (cin + cout);
    let chan = g.h * g.w;
    let outp = crate::SyncPtr(out.as_mut_ptr());
    let part = |t: usize, buf: &mut [f32]| -> Result<(), WinogradError> {
        let (ty0, ty1) = band(t);
        // The band's output rows, and the input rows from the first its tiles read (the
        // padding above the image stays in the first band's geometry).
        let y0 = ty0 * m;
        let oh = (ty1 * m).min(g.oh) - y0;
        let (r0, pt) = match y0.checked_sub(g.pt) {
            Some(r) => (r.min(g.h), 0),
            None => (0, g.pt - y0),
        };
        let bg = Geom2d {
            h: g.h - r0,
            pt,
            oh,
            ..*g
        };
        let tiles = (ty1 - ty0) * ntx;
        let tp = tiles + L;
        let geo = TileGeo {
            g: bg,
            nty: ty1 - ty0,
            ntx,
            tp,
            mps: cout * tp,
        };
        let rows = oh * g.ow;
        let xc = |ci: usize| &x[ci * chan + r0 * g.w..(ci + 1) * chan];
        part_phases(ww, &geo, xc, (0, cout), tiles, buf, |co, mc| {
            let at = co * plane + y0 * g.ow;
            let b = bias.map_or(0.0, |b| b[co]);
            let res = residual.map(|r| &r[at..at + rows]);
            // SAFETY: `check` found `out` to hold `cout * plane` values; the bands' rows
            // are disjoint, so this part alone writes rows `y0 .. y0 + oh` of each plane.
            let oc = unsafe { std::slice::from_raw_parts_mut(outp.get().add(at), rows) };
            // SAFETY: `isa` was checked against the CPU when the kernel was chosen.
            unsafe { output_channel(isa, ww.variant, &geo, mc, b, res, act, oc) }
        })
    };
    let items = (0..parts).into_par_iter().map(|t| (t, ()));
    run_parts(parts, need, items, |t, (), buf| part(t, buf))
}

/// Scratch buffers of [`by_channels`]' and [`by_bands`]' parts, shared by every layer and
/// thread.
static PART_BUFS: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());

/// The pool of part buffers, with at least `parts` buffers of at least `need` values
/// (allocating only where it is short: the first call, or a larger layer's), or `None`
/// while another call holds it.
fn part_bufs(parts: usize, need: usize) -> Option<std::sync::MutexGuard<'static, Vec<Vec<f32>>>> {
    use std::sync::TryLockError;
    let mut p = match PART_BUFS.try_lock() {
        Ok(p) => p,
        // A panic elsewhere while holding the lock leaves only buffers behind.
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => return None,
    };
    while p.len() < parts {
        p.push(Vec::new());
    }
    for b in p.iter_mut().take(parts) {
        if b.len() < need {
            b.resize(need, 0.0);
        }
    }
    Some(p)
}

/// Sizes of a call that [`check`] accepted: one image's input and output plane, all the
/// images' input and output, and the scratch ([`scratch_len`]).
struct Sizes {
    img_in: usize,
    plane: usize,
    in_len: usize,
    out_len: usize,
    scratch: usize,
}

/// The geometry against the weights and the buffers against the geometry, for `images`
/// images: an error naming what does not fit, no size overflowing.
#[allow(clippy::too_many_arguments)]
fn check(
    x: &[f32],
    images: usize,
    g: &Geom2d,
    ww: &WinogradWeights,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    out: &[f32],
) -> Result<Sizes, WinogradError> {
    if (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw) != (3, 3, 1, 1, 1, 1) {
        return Err(err(format!(
            "needs a 3x3 kernel, stride 1, dilation 1; got {}x{}, stride {}x{}, dilation {}x{}",
            g.kh, g.kw, g.sh, g.sw, g.dh, g.dw
        )));
    }
    if g.c != ww.cin {
        return Err(err(format!(
            "image has {} channels, weights {}",
            g.c, ww.cin
        )));
    }
    // Per image, then for all of them.
    let img_in =
        g.c.checked_mul(g.h)
            .and_then(|v| v.checked_mul(g.w))
            .ok_or_else(|| err("input size overflows"))?;
    let plane =
        g.oh.checked_mul(g.ow)
            .ok_or_else(|| err("output size overflows"))?;
    let img_out = plane
        .checked_mul(ww.cout)
        .ok_or_else(|| err("output size overflows"))?;
    let in_len = img_in
        .checked_mul(images)
        .ok_or_else(|| err("input size overflows"))?;
    let out_len = img_out
        .checked_mul(images)
        .ok_or_else(|| err("output size overflows"))?;
    if x.len() < in_len {
        return Err(err(format!("input holds {}, needs {in_len}", x.len())));
    }
    if out.len() < out_len {
        return Err(err(format!("output holds {}, needs {out_len}", out.len())));
    }
    if let Some(b) = bias {
        if b.len() < ww.cout {
            return Err(err(format!("bias holds {}, needs {}", b.len(), ww.cout)));
        }
    }
    if let Some(r) = residual {
        if r.len() < out_len {
            return Err(err(format!("residual holds {}, needs {out_len}", r.len())));
        }
    }
    let scratch = scratch_len(g, ww, images).ok_or_else(|| err("scratch size overflows"))?;
    Ok(Sizes {
        img_in,
        plane,
        in_len,
        out_len,
        scratch,
    })
}

/// [`winograd3x3_batch`] (one image: [`winograd3x3`]) with a caller-given scratch of at
/// least [`scratch_len`] floats.
#[allow(clippy::too_many_arguments)]
pub fn winograd3x3_with_scratch(
    x: &[f32],
    images: usize,
    g: &Geom2d,
    ww: &WinogradWeights,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), WinogradError> {
    let Sizes {
        img_in,
        plane,
        in_len,
        out_len,
        scratch: need,
    } = check(x, images, g, ww, bias, residual, out)?;
    if scratch.len() < need {
        return Err(err(format!(
            "scratch holds {}, needs {need}",
            scratch.len()
        )));
    }
    if plane == 0 || images == 0 {
        return Ok(());
    }
    let isa = Isa::of(ww.kernel());
    let (m, a) = (ww.variant.m(), ww.variant.alpha());
    let a2 = a * a;
    let (nty, ntx) = grid(g, m);
    let tiles = nty * ntx;
    // The images' tiles side by side (image `i`'s from column `i * tiles`), each
    // position's run padded by a vector so transforms store and load whole vectors.
    let all = tiles * images;
    let tp = all + L;
    let cin = ww.cin;
    let (v, mm) = scratch[..need].split_at_mut(a2 * tp * cin);
    let geo = TileGeo {
        g: *g,
        nty,
        ntx,
        tp,
        mps: ww.cout * tp,
    };

    // 1. Input transform, per input channel, its images in order: a transform may
    //    write whole vectors past an image's last tile, into the next image's run (written
    //    after it) or the padding.
    let chan = g.h * g.w;
    let small = in_len < 50_000;
    let in_job = |(ci, vc): (usize, &mut [f32])| {
        for img in 0..images {
            let xc = &x[img * img_in + ci * chan..][..chan];
            // SAFETY: `isa` was checked against the CPU when the kernel was chosen.
            unsafe { input_channel(isa, ww.variant, &geo, xc, &mut vc[img * tiles..]) }
        }
    };
    if small {
        v.chunks_mut(a2 * tp).enumerate().for_each(in_job);
    } else {
        v.par_chunks_mut(a2 * tp).enumerate().for_each(in_job);
    }

    // 2. One GEMM per position: M[pos][co][tile] = sum over ci of V[ci][pos][tile] U[pos].
    // Positions run in parallel, one fork for all of them, each product on its thread
    // alone (`gemm_ex_one_thread`: a product that forked inside another on the same
    // thread would take a second buffer of the thread's shared stack, growing it in some
    // run after the first).
    let vv: &[f32] = v;
    let pos_job = |(pos, mp): (usize, &mut [f32])| -> Result<(), WinogradError> {
        let lhs = Lhs::Packed(&ww.lhs[pos]);
        Ok(position_product(
            ww,
            lhs,
            &vv[pos * tp..],
            all,
            a2 * tp,
            mp,
            tp,
        )?)
    };
    let work = (a2 * all) as u64 * cin as u64 * ww.cout as u64;
    if rayon::current_num_threads() == 1 || work < 1 << 20 {
        mm.chunks_mut(ww.cout * tp)
            .enumerate()
            .try_for_each(pos_job)?;
    } else {
        mm.par_chunks_mut(ww.cout * tp)
            .enumerate()
            .try_for_each(pos_job)?;
    }

    // 3. Output transform, per image and output channel, with bias, residual and
    //    activation.
    let mm: &[f32] = mm;
    let cout = ww.cout;
    let out_job = |(q, oc): (usize, &mut [f32])| {
        let (img, co) = (q / cout, q % cout);
        let mc = &mm[co * tp + img * tiles..];
        let b = bias.map_or(0.0, |b| b[co]);
        let r = residual.map(|r| &r[q * plane..(q + 1) * plane]);
        // SAFETY: as above.
        unsafe { output_channel(isa, ww.variant, &geo, mc, b, r, act, oc) }
    };
    let out = &mut out[..out_len];
    if out_len < 50_000 {
        out.chunks_mut(plane).enumerate().for_each(out_job);
    } else {
        out.par_chunks_mut(plane).enumerate().for_each(out_job);
    }
    Ok(())
}

/// Geometry shared by the transforms.
struct TileGeo {
    g: Geom2d,
    nty: usize,
    ntx: usize,
    /// Stride between positions in the transformed buffers (tiles plus padding).
    tp: usize,
    /// Stride between positions in the GEMM output (`cout * tp`).
    mps: usize,
}

/// Instruction set the transforms are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    Generic,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    fn of(k: &Kernel) -> Isa {
        match k.name {
            #[cfg(target_arch = "x86_64")]
            "avx512" => Isa::Avx512,
            #[cfg(target_arch = "x86_64")]
            "avx2" => Isa::Avx2,
            _ => Isa::Generic,
        }
    }
}

const L: usize = 16;

/// 16 lanes; the arithmetic loops vectorize to whatever the enclosing ISA offers.
#[derive(Clone, Copy)]
struct V16([f32; L]);

impl V16 {
    const ZERO: V16 = V16([0.0; L]);
    #[inline(always)]
    fn load(s: &[f32]) -> V16 {
        let mut v = [0.0; L];
        v.copy_from_slice(&s[..L]);
        V16(v)
    }
    /// The first `n` lanes from `s`, zeros after.
    #[inline(always)]
    fn load_part(s: &[f32], n: usize) -> V16 {
        if n == L {
            return V16::load(s);
        }
        let mut v = [0.0; L];
        for (d, &x) in v.iter_mut().zip(&s[..n]) {
            *d = x;
        }
        V16(v)
    }
    /// Stores the first `n` lanes into `d`.
    #[inline(always)]
    fn store_part(self, d: &mut [f32], n: usize) {
        if n == L {
            d[..L].copy_from_slice(&self.0);
        } else {
            for (d, &x) in d[..n].iter_mut().zip(&self.0) {
                *d = x;
            }
        }
    }
}

impl Add for V16 {
    type Output = V16;
    #[inline(always)]
    fn add(mut self, o: V16) -> V16 {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a += b;
        }
        self
    }
}
impl Sub for V16 {
    type Output = V16;
    #[inline(always)]
    fn sub(mut self, o: V16) -> V16 {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a -= b;
        }
        self
    }
}
impl Mul<f32> for V16 {
    type Output = V16;
    #[inline(always)]
    fn mul(mut self, s: f32) -> V16 {
        for a in self.0.iter_mut() {
            *a *= s;
        }
        self
    }
}

/// `B^T d` for F(2x2, 3x3).
#[inline(always)]
fn bt4(d: &[V16]) -> [V16; 4] {
    [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]
}

/// `B^T d` for F(4x4, 3x3).
#[inline(always)]
fn bt6(d: &[V16]) -> [V16; 6] {
    let t0 = d[4] - d[2] * 4.0;
    let t1 = d[3] - d[1] * 4.0;
    let t2 = d[4] - d[2];
    let t3 = (d[3] - d[1]) * 2.0;
    [
        d[0] * 4.0 - d[2] * 5.0 + d[4],
        t0 + t1,
        t0 - t1,
        t2 + t3,
        t2 - t3,
        d[1] * 4.0 - d[3] * 5.0 + d[5],
    ]
}

/// `A^T m` for F(2x2, 3x3).
#[inline(always)]
fn at4(m: &[V16]) -> [V16; 2] {
    [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]
}

/// `A^T m` for F(4x4, 3x3).
#[inline(always)]
fn at6(m: &[V16]) -> [V16; 4] {
    let s1 = m[1] + m[2];
    let d1 = m[1] - m[2];
    let s2 = m[3] + m[4];
    let d2 = m[3] - m[4];
    [
        m[0] + s1 + s2,
        d1 + d2 * 2.0,
        s1 + s2 * 4.0,
        d1 + d2 * 8.0 + m[5],
    ]
}

/// Per-thread transform buffers.
#[derive(Default)]
struct Bufs {
    a: Vec<f32>,
    b: Vec<f32>,
}

thread_local! {
    static BUFS: RefCell<Bufs> = RefCell::new(Bufs::default());
}

/// Transform-buffer values [`reserve_scratch`] sets aside per thread and buffer: a strip of
/// alpha (at most 6) rows of images up to about 1,300 columns wide. Wider images grow the
/// buffers on first use.
pub const BUFS_RESERVE: usize = 8192;

/// Sizes the calling thread's transform buffers to [`BUFS_RESERVE`] values each. Channels
/// go to whichever pool thread is free, so call this on every pool thread when a session
/// starts (through `millrace_kernels::reserve_scratch`) and later runs do not allocate.
pub fn reserve_scratch() {
    BUFS.with_borrow_mut(|b| {
        for v in [&mut b.a, &mut b.b] {
            if v.len() < BUFS_RESERVE {
                v.resize(BUFS_RESERVE, 0.0);
            }
        }
    });
}

/// Dispatches the input transform of one channel to the ISA.
///
/// # Safety
/// The CPU must support `isa`.
unsafe fn input_channel(isa: Isa, var: WinogradVariant, geo: &TileGeo, x: &[f32], v: &mut [f32]) {
    BUFS.with_borrow_mut(|b| input_dispatch(isa, var, geo, x, v, b))
}

/// # Safety
/// The CPU must support `isa`.
unsafe fn input_dispatch(
    isa: Isa,
    var: WinogradVariant,
    geo: &TileGeo,
    x: &[f32],
    v: &mut [f32],
    b: &mut Bufs,
) {
    match (isa, var) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, WinogradVariant::F2x2) => input_avx512::<4, 2>(geo, x, v, b),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, WinogradVariant::F4x4) => {
            let need = avx512::vert_len(geo);
            if b.b.len() < need {
                b.b.resize(need, 0.0);
            }
            avx512::input_f4(geo, x, v, &mut b.b)
        }
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, WinogradVariant::F2x2) => input_avx2::<4, 2>(geo, x, v, b),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, WinogradVariant::F4x4) => input_avx2::<6, 4>(geo, x, v, b),
        (Isa::Generic, WinogradVariant::F2x2) => input_impl::<4, 2>(geo, x, v, b),
        (Isa::Generic, WinogradVariant::F4x4) => input_impl::<6, 4>(geo, x, v, b),
    }
}

/// Dispatches the output transform of one channel to the ISA.
///
/// # Safety
/// The CPU must support `isa`.
#[allow(clippy::too_many_arguments)]
unsafe fn output_channel(
    isa: Isa,
    var: WinogradVariant,
    geo: &TileGeo,
    mc: &[f32],
    bias: f32,
    res: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
) {
    BUFS.with_borrow_mut(|b| output_dispatch(isa, var, geo, mc, bias, res, act, out, &mut b.a))
}

/// # Safety
/// The CPU must support `isa`.
#[allow(clippy::too_many_arguments)]
unsafe fn output_dispatch(
    isa: Isa,
    var: WinogradVariant,
    geo: &TileGeo,
    mc: &[f32],
    bias: f32,
    res: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
    s: &mut Vec<f32>,
) {
    match (isa, var) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, WinogradVariant::F2x2) => {
            output_avx512::<4, 2>(geo, mc, bias, res, act, out, s)
        }
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, WinogradVariant::F4x4) => avx512::output_f4(geo, mc, bias, res, act, out),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, WinogradVariant::F2x2) => output_avx2::<4, 2>(geo, mc, bias, res, act, out, s),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, WinogradVariant::F4x4) => output_avx2::<6, 4>(geo, mc, bias, res, act, out, s),
        (Isa::Generic, WinogradVariant::F2x2) => {
            output_impl::<4, 2>(geo, mc, bias, res, act, out, s)
        }
        (Isa::Generic, WinogradVariant::F4x4) => {
            output_impl::<6, 4>(geo, mc, bias, res, act, out, s)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn input_avx512<const A: usize, const M: usize>(
    geo: &TileGeo,
    x: &[f32],
    v: &mut [f32],
    b: &mut Bufs,
) {
    input_impl::<A, M>(geo, x, v, b)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn input_avx2<const A: usize, const M: usize>(
    geo: &TileGeo,
    x: &[f32],
    v: &mut [f32],
    b: &mut Bufs,
) {
    input_impl::<A, M>(geo, x, v, b)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn output_avx512<const A: usize, const M: usize>(
    geo: &TileGeo,
    mc: &[f32],
    bias: f32,
    res: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
    s: &mut Vec<f32>,
) {
    output_impl::<A, M>(geo, mc, bias, res, act, out, s)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn output_avx2<const A: usize, const M: usize>(
    geo: &TileGeo,
    mc: &[f32],
    bias: f32,
    res: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
    s: &mut Vec<f32>,
) {
    output_impl::<A, M>(geo, mc, bias, res, act, out, s)
}

/// `B^T d` for the variant with input tile `A`.
#[inline(always)]
fn bt<const A: usize>(d: &[V16; A]) -> [V16; A] {
    let mut o = [V16::ZERO; A];
    if A == 4 {
        o.copy_from_slice(&bt4(d));
    } else {
        o.copy_from_slice(&bt6(d));
    }
    o
}

/// `A^T m` for the variant with input tile `A` and output tile `M`.
#[inline(always)]
fn at<const A: usize, const M: usize>(m: &[V16; A]) -> [V16; M] {
    let mut o = [V16::ZERO; M];
    if A == 4 {
        o.copy_from_slice(&at4(m));
    } else {
        o.copy_from_slice(&at6(m));
    }
    o
}

/// Input transform of one channel `x` (`h x w`) into `v` (`[pos][tile]`, `A*A` runs of
/// `tp`).
#[inline(always)]
fn input_impl<const A: usize, const M: usize>(
    geo: &TileGeo,
    x: &[f32],
    v: &mut [f32],
    bufs: &mut Bufs,
) {
    let g = &geo.g;
    let (ntx, tp) = (geo.ntx, geo.tp);
    // Strip width: every column a tile row reads, rounded up to whole vectors.
    let wp = ntx * M + A - M;
    // Buffer width: whole vectors, and whole groups of L tiles for the horizontal pass.
    let wpp = (ntx.div_ceil(L) * L * M + A).div_ceil(L) * L;
    {
        let Bufs { a: strip, b: vert } = bufs;
        if strip.len() < A * wpp {
            strip.resize(A * wpp, 0.0);
        }
        if vert.len() < A * wpp {
            vert.resize(A * wpp, 0.0);
        }
        // Image columns landing in the strip: strip column `pl + ix`.
        let (c0, ncols) = if g.pl < wp {
            (g.pl, g.w.min(wp - g.pl))
        } else {
            (0, 0)
        };
        for ty in 0..geo.nty {
            // Strip rows: image rows ty*M - pt + r, zero outside.
            for r in 0..A {
                let row = &mut strip[r * wpp..(r + 1) * wpp];
                let y = ty * M + r;
                if y < g.pt || y - g.pt >= g.h || ncols == 0 {
                    row.fill(0.0);
                    continue;
                }
                let src = &x[(y - g.pt) * g.w..][..ncols];
                row[..c0].fill(0.0);
                row[c0..c0 + ncols].copy_from_slice(src);
                row[c0 + ncols..].fill(0.0);
            }
            // Vertical pass: vert[i][col] = (B^T strip)[i][col].
            for col in (0..wpp).step_by(L) {
                let mut d = [V16::ZERO; A];
                for (r, dr) in d.iter_mut().enumerate() {
                    *dr = V16::load(&strip[r * wpp + col..]);
                }
                let o = bt::<A>(&d);
                for (i, oi) in o.iter().enumerate() {
                    vert[i * wpp + col..i * wpp + col + L].copy_from_slice(&oi.0);
                }
            }
            // Horizontal pass over groups of tiles: V[i][j] = (vert B)[i][j].
            let t0 = ty * ntx;
            for i in 0..A {
                let vrow = &vert[i * wpp..(i + 1) * wpp];
                for tx0 in (0..ntx).step_by(L) {
                    // Lanes past the last tile read padding columns; their results
                    // are not used.
                    let s = &vrow[tx0 * M..tx0 * M + L * M + A];
                    let mut d = [V16::ZERO; A];
                    for (c, dc) in d.iter_mut().enumerate() {
                        for (l, dl) in dc.0.iter_mut().enumerate() {
                            *dl = s[l * M + c];
                        }
                    }
                    let o = bt::<A>(&d);
                    for (j, oj) in o.iter().enumerate() {
                        // Lanes past `n` (zeros) land on the next tile row, written later, or on the
                        // padding.
                        v[(i * A + j) * tp + t0 + tx0..][..L].copy_from_slice(&oj.0);
                    }
                }
            }
        }
    }
}

/// Output transform of one output channel: `mc` (position `p`, tile `t` at
/// `p * geo.mps + t`) into `out` (`oh x ow`),
/// adding `bias` and `res` (`oh x ow`) and applying `act`.
#[inline(always)]
fn output_impl<const A: usize, const M: usize>(
    geo: &TileGeo,
    mc: &[f32],
    bias: f32,
    res: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
    s: &mut Vec<f32>,
) {
    let g = &geo.g;
    let ntx = geo.ntx;
    let sw = (ntx * M).div_ceil(L) * L;
    {
        if s.len() < A * sw {
            s.resize(A * sw, 0.0);
        }
        for ty in 0..geo.nty {
            let t0 = ty * ntx;
            // Horizontal pass: s[i][tx*M + a] = (M A)[i][a] of tile tx.
            for i in 0..A {
                for tx0 in (0..ntx).step_by(L) {
                    let n = L.min(ntx - tx0);
                    let mut d = [V16::ZERO; A];
                    for (j, dj) in d.iter_mut().enumerate() {
                        *dj = V16::load(&mc[(i * A + j) * geo.mps + t0 + tx0..]);
                    }
                    let o = at::<A, M>(&d);
                    let srow = &mut s[i * sw..(i + 1) * sw];
                    for l in 0..n {
                        for (a, oa) in o.iter().enumerate() {
                            srow[(tx0 + l) * M + a] = oa.0[l];
                        }
                    }
                }
            }
            // Vertical pass, epilogue and store of output rows ty*M .. ty*M + M.
            let rows = M.min(g.oh - ty * M);
            for col in (0..g.ow).step_by(L) {
                let n = L.min(g.ow - col);
                let mut d = [V16::ZERO; A];
                for (i, di) in d.iter_mut().enumerate() {
                    *di = V16::load(&s[i * sw + col..]);
                }
                let o = at::<A, M>(&d);
                for (a, oa) in o.iter().enumerate().take(rows) {
                    let at = (ty * M + a) * g.ow + col;
                    let mut vals = oa.0;
                    for v in vals.iter_mut() {
                        *v += bias;
                    }
                    if let Some(r) = res {
                        let r = V16::load_part(&r[at..], n);
                        for (v, rv) in vals.iter_mut().zip(r.0) {
                            *v += rv;
                        }
                    }
                    match act {
                        Activation::None => {}
                        Activation::Relu => {
                            for v in vals.iter_mut() {
                                *v = v.max(0.0);
                            }
                        }
                        a => a.apply_slice(&mut vals[..n]),
                    }
                    V16(vals).store_part(&mut out[at..], n);
                }
            }
        }
    }
}

/// Whether `F(4x4)` should run a 3x3 stride-1 layer (`cin` inputs, `cout` outputs, an
/// `h x w` image) before the direct kernel: on AVX-512, whose transforms are vectorized
/// ([`avx512`]), from 28x28 up with at least 64 channels on each side, and from 27x27 up
/// with 32 inputs and 128 outputs (SqueezeNet 1.1's fire 4 and 5), which run
/// [`by_channels`] on several threads. Those two layers in the model, Zen 5,
/// `scripts/nodes_ab.py` (6 rounds, builds alternating): 2 threads 0.80-0.85x the direct
/// kernel's time while the two vCPUs share a cache (round trip about 45 ns); with the
/// phases split across the threads instead they took 0.87x then and 1.5x while the vCPUs
/// do not share one (350 ns). From 48x48 up with 16 inputs and 64 outputs (SqueezeNet
/// 1.1's fire 2 and 3, 16 -> 64 on 55x55), which run [`by_bands`] on several threads:
/// 0.77x the direct kernel's time in the model at 2 threads (0.123 -> 0.097 ms,
/// `nodes_ab.py 6 2`), 0.68x at 1 (by channels they took 1.09-1.12x, with the phases
/// split 1.7x). Measured and not taken: 14x14 layers (ResNet-50's `layer3`, 1.10x the
/// direct kernel's time in the model); SqueezeNet's 13x13 layers (1.4-1.7x in
/// `direct_bench`).
pub fn preferred_over_direct(
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
) -> Option<WinogradVariant> {
    if Kernel::detect().name != "avx512" {
        return None;
    }
    let side = h.min(w);
    let wins = (side >= 28 && cin >= 64 && cout >= 64)
        || (side >= 27 && cin >= 32 && cout >= 128)
        || (side >= 48 && cin >= 16 && cout >= 64);
    wins.then_some(WinogradVariant::F4x4)
}

/// For a batch of `images`, whether `F(4x4)` should run a 3x3 stride-1 layer that
/// [`preferred_over_direct`] leaves to the direct kernel, with the images' tiles side by
/// side in each product ([`winograd3x3_batch`]), and how many images per call. One image
/// of a small plane has too few tiles for the GEMM's panels (14x14: 16 columns, half a
/// panel); a batch fills them. On AVX-512, from 2 images of planes from 14x14 up with at
/// least 128 channels on each side; images per call so the products have about 128
/// columns. On Zen 5 at 2 threads, ResNet-50 at batch 8 (its `layer3` 3x3 layers 2.5-2.7
/// against 3.55 ms, 8 images per call) took 0.954x the time of the build before
/// (`scripts/bench_builds.py`, 6 x 5). Measured and not taken: 64 columns per call
/// (1.016x the time of 128); 7x7 planes (`layer4`'s 3x3 layers 0.68x, but the model
/// 0.992x with a rounds' median of 1.003, and 37.7 MB of transformed weights per layer);
/// 28x28 planes, which [`preferred_over_direct`] runs an image at a time, batched (2.0-2.3
/// against 1.76-2.04 ms per layer).
pub fn preferred_for_batch(
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    images: usize,
) -> Option<(WinogradVariant, usize)> {
    if Kernel::detect().name != "avx512" || images < 2 {
        return None;
    }
    let side = h.min(w);
    if side < 14 || cin < 128 || cout < 128 {
        return None;
    }
    let tiles = h.div_ceil(4) * w.div_ceil(4);
    let per_call = 128usize.div_ceil(tiles).clamp(1, images);
    Some((WinogradVariant::F4x4, per_call))
}

/// Whether Winograd beats the direct (implicit im2col + packed GEMM) convolution for a
/// 3x3, stride-1 layer with `cin` inputs and `cout` outputs producing an `h x w` output,
/// and which variant.
///
/// From measurements on AVX-512 (`examples/winograd_bench.rs` at 2 threads, and on-CPU
/// time at 1 thread, which a shared machine disturbs less), batch 1:
/// * `F(4x4)` wins from 28x28 up (2.1-3.5x the direct speed at 1 thread: ResNet-50's
///   64@56 2.6x, 128@28 2.3x; VGG 256@56 3.5x);
/// * at 14x14 and 7x7 its 4x4 tiles fill the GEMM's 14-row panels poorly and `F(2x2)`
///   wins (ResNet-50 256@14 1.9x, 512@7 1.3-1.4x; GoogLeNet 96>208@14 1.6x);
/// * below 4x4 outputs, or with fewer than 16 channels on either side (VGG's first layer,
///   3 inputs, runs at half speed), the transforms cost more than they save;
/// * below 10x10 the transforms and the 16/9 larger weight stream do not pay: measured
///   on 2 idle threads, 512x512@7 takes 1.78 ms direct and 2.04 ms with F(2x2), and
///   160x320@7 0.39 ms and 0.54 ms, so small images stay direct;
/// * with fewer than 128 input channels the direct path (1x1-style packing is cheap at
///   small depth) is as fast or faster inside whole models: on 2 idle threads SqueezeNet
///   1.1 (16-64 input channels at 55x55 and 27x27) went from 8.9 to 6.4 ms when its 3x3
///   layers left Winograd, ResNet-50 (64@56) stayed at 52 ms and GoogLeNet at 22 ms.
pub fn prefer_winograd(cin: usize, cout: usize, h: usize, w: usize) -> Option<WinogradVariant> {
    let side = h.min(w);
    if cin < 128 || cout < 16 || side < 4 {
        None
    } else if side >= 20 {
        Some(WinogradVariant::F4x4)
    } else if side < 10 {
        None
    } else {
        Some(WinogradVariant::F2x2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::gemm;

    use crate::testutil::rnd;

    fn geom(c: usize, h: usize, w: usize, pt: usize, pl: usize, pb: usize, pr: usize) -> Geom2d {
        Geom2d {
            c,
            h,
            w,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            dh: 1,
            dw: 1,
            pt,
            pl,
            oh: h + pt + pb - 2,
            ow: w + pl + pr - 2,
        }
    }

    /// f64 direct convolution, before bias, residual and activation.
    fn reference(x: &[f32], g: &Geom2d, w: &[f32], cout: usize) -> Vec<f64> {
        let mut y = vec![0.0f64; cout * g.oh * g.ow];
        for co in 0..cout {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut s = 0.0f64;
                    for ci in 0..g.c {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let iy = (oy + ky) as isize - g.pt as isize;
                                let ix = (ox + kx) as isize - g.pl as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xv = x[(ci * g.h + iy as usize) * g.w + ix as usize];
                                s += xv as f64 * w[((co * g.c + ci) * 3 + ky) * 3 + kx] as f64;
                            }
                        }
                    }
                    y[(co * g.oh + oy) * g.ow + ox] = s;
                }
            }
        }
        y
    }

    /// (relative L2, max abs) of `got` against `want`.
    fn errors(got: &[f32], want: &[f64]) -> (f64, f64) {
        let (mut num, mut den, mut mx) = (0.0f64, 0.0f64, 0.0f64);
        for (&g, &w) in got.iter().zip(want) {
            let d = g as f64 - w;
            num += d * d;
            den += w * w;
            mx = mx.max(d.abs());
        }
        ((num / den.max(1e-300)).sqrt(), mx)
    }

    #[test]
    fn matches_direct_convolution_all_kernels_and_shapes() {
        let shapes = [
            // c, h, w, pt, pl, pb, pr, cout
            (3, 7, 7, 1, 1, 1, 1, 5),
            (17, 9, 11, 1, 1, 1, 1, 19),
            (5, 1, 1, 1, 1, 1, 1, 3),
            (4, 2, 3, 1, 1, 1, 1, 7),
            (6, 3, 2, 0, 0, 0, 0, 4),
            (8, 13, 6, 0, 0, 0, 0, 33),
            (9, 10, 10, 2, 2, 2, 2, 17),
            (7, 12, 5, 2, 0, 1, 2, 9),
            (20, 15, 35, 1, 1, 1, 1, 16),
            (33, 6, 40, 0, 1, 2, 0, 40),
            (1, 4, 4, 1, 1, 1, 1, 1),
            // Large enough for the parallel transforms and position GEMMs.
            (40, 37, 41, 1, 1, 1, 1, 48),
            // More than 16 tiles across (the AVX-512 transforms' groups of 16 tiles).
            (3, 9, 70, 1, 1, 1, 1, 5),
            (2, 5, 130, 1, 2, 0, 1, 3),
            // Few input channels and several panels of output channels: on more than one
            // thread each thread takes whole panels through all three phases
            // (`by_channels`), the last panel ragged; and the same with 64 inputs, which
            // splits the phases across the threads.
            (32, 20, 20, 1, 1, 1, 1, 72),
            (64, 9, 10, 1, 1, 1, 1, 40),
            // Fewer than 32 inputs and tile rows for 6 or more per thread: each thread
            // takes a band of tile rows through all three phases (`by_bands`). Bands
            // below top padding of 2 and of none, a ragged last tile row, bands of
            // unequal height (19 tile rows on 3 threads), F(2x2)'s twice as many rows.
            (16, 50, 20, 1, 1, 1, 1, 40),
            (5, 74, 9, 2, 0, 1, 2, 19),
            (8, 49, 17, 0, 1, 0, 1, 12),
        ];
        // One thread runs the phases one after another; two and three split them.
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                for kernel in Kernel::available() {
                    for var in [WinogradVariant::F2x2, WinogradVariant::F4x4] {
                        for (si, &(c, h, w, pt, pl, pb, pr, cout)) in shapes.iter().enumerate() {
                            let g = geom(c, h, w, pt, pl, pb, pr);
                            let x = rnd(c * h * w, 1 + si as u64);
                            let wt = rnd(cout * c * 9, 100 + si as u64);
                            let ww =
                                WinogradWeights::with_kernel(&wt, cout, c, var, kernel).unwrap();
                            let want = reference(&x, &g, &wt, cout);
                            let plane = g.oh * g.ow;
                            let bias = rnd(cout, 7);
                            let res = rnd(cout * plane, 8);
                            for (bi, ri, act) in [
                                (false, false, Activation::None),
                                (true, false, Activation::Relu),
                                (true, true, Activation::None),
                                (false, true, Activation::Relu),
                                (true, true, Activation::Clip { lo: -0.5, hi: 0.5 }),
                                (true, false, Activation::Sigmoid),
                            ] {
                                let mut out = vec![f32::NAN; cout * plane];
                                winograd3x3(
                                    &x,
                                    &g,
                                    &ww,
                                    bi.then_some(&bias[..]),
                                    ri.then_some(&res[..]),
                                    act,
                                    &mut out,
                                )
                                .unwrap();
                                let want: Vec<f64> = want
                                    .iter()
                                    .enumerate()
                                    .map(|(i, &v)| {
                                        let mut v = v;
                                        if bi {
                                            v += bias[i / plane] as f64;
                                        }
                                        if ri {
                                            v += res[i] as f64;
                                        }
                                        act.apply(v as f32) as f64
                                    })
                                    .collect();
                                for (i, (&o, &wv)) in out.iter().zip(&want).enumerate() {
                                    let tol = 2e-5 * (c as f64 * 9.0).sqrt() * (1.0 + wv.abs());
                                    assert!(
                                        (o as f64 - wv).abs() <= tol,
                                        "{} {var:?} {threads} threads shape {si} \
                                 ({c},{h},{w},{pt},{pl},{pb},{pr},{cout}) \
                                 bias {bi} res {ri} {act:?}: element {i} got {o} want {wv}",
                                        kernel.name
                                    );
                                }
                            }
                        }
                    }
                }
            });
        }
    }

    /// `by_channels` and `by_bands` with their shared part buffers held by another call
    /// (models running at the same time) fall back to thread-local buffers, with the
    /// same result.
    #[test]
    fn split_runs_while_the_part_buffers_are_held() {
        // by_channels, then by_bands.
        for (c, h, w, cout) in [(32, 20, 20, 72), (16, 55, 30, 24)] {
            held_buffers_case(c, h, w, cout);
        }
    }

    fn held_buffers_case(c: usize, h: usize, w: usize, cout: usize) {
        let g = geom(c, h, w, 1, 1, 1, 1);
        let x = rnd(c * h * w, 3);
        let wt = rnd(cout * c * 9, 4);
        let bias = rnd(cout, 5);
        let ww =
            WinogradWeights::with_kernel(&wt, cout, c, WinogradVariant::F4x4, Kernel::detect())
                .unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let run = |out: &mut [f32]| {
            pool.install(|| winograd3x3(&x, &g, &ww, Some(&bias), None, Activation::Relu, out))
                .unwrap()
        };
        let n = cout * g.oh * g.ow;
        let (mut free, mut held) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        run(&mut free);
        {
            let _guard = PART_BUFS.lock().unwrap_or_else(|e| e.into_inner());
            run(&mut held);
        }
        assert_eq!(free, held);
        let want = reference(&x, &g, &wt, cout);
        for (i, (&o, &wv)) in free.iter().zip(&want).enumerate() {
            let wv = (wv + bias[i / (g.oh * g.ow)] as f64).max(0.0);
            assert!((o as f64 - wv).abs() <= 2e-5 * (c as f64 * 9.0).sqrt() * (1.0 + wv.abs()));
        }
    }

    /// A batch of images side by side in the products gives each image what it gets
    /// alone: against the reference per image, with bias, residual and activation, on
    /// shapes whose tiles do and do not fill whole vectors, and one image-sized scratch
    /// check.
    #[test]
    fn batch_matches_reference_per_image() {
        let shapes = [
            // c, h, w, pt, pl, pb, pr, cout, images
            (16, 14, 14, 1, 1, 1, 1, 24, 8),
            (5, 9, 11, 1, 1, 1, 1, 7, 3),
            (3, 7, 7, 1, 1, 1, 1, 33, 5),
            (40, 37, 41, 1, 1, 1, 1, 48, 2),
            (2, 5, 70, 1, 2, 0, 1, 3, 4),
        ];
        for kernel in Kernel::available() {
            for var in [WinogradVariant::F2x2, WinogradVariant::F4x4] {
                for (si, &(c, h, w, pt, pl, pb, pr, cout, n)) in shapes.iter().enumerate() {
                    let g = geom(c, h, w, pt, pl, pb, pr);
                    let plane = g.oh * g.ow;
                    let x = rnd(n * c * h * w, 11 + si as u64);
                    let wt = rnd(cout * c * 9, 200 + si as u64);
                    let ww = WinogradWeights::with_kernel(&wt, cout, c, var, kernel).unwrap();
                    let bias = rnd(cout, 17);
                    let res = rnd(n * cout * plane, 18);
                    let mut out = vec![f32::NAN; n * cout * plane];
                    winograd3x3_batch(
                        &x,
                        n,
                        &g,
                        &ww,
                        Some(&bias),
                        Some(&res),
                        Activation::Relu,
                        &mut out,
                    )
                    .unwrap();
                    for img in 0..n {
                        let want = reference(&x[img * c * h * w..][..c * h * w], &g, &wt, cout);
                        let base = img * cout * plane;
                        for (i, &wv) in want.iter().enumerate() {
                            let wv = (wv + bias[i / plane] as f64 + res[base + i] as f64).max(0.0);
                            let o = out[base + i] as f64;
                            let tol = 2e-5 * (c as f64 * 9.0).sqrt() * (1.0 + wv.abs());
                            assert!(
                                (o - wv).abs() <= tol,
                                "{} {var:?} shape {si} image {img} of {n}: element {i} got {o} want {wv}",
                                kernel.name
                            );
                        }
                    }
                    // The scratch a batch needs, checked.
                    let need = scratch_len(&g, &ww, n).unwrap();
                    let mut small = vec![0.0; need - 1];
                    let e = winograd3x3_with_scratch(
                        &x,
                        n,
                        &g,
                        &ww,
                        None,
                        None,
                        Activation::None,
                        &mut out,
                        &mut small,
                    );
                    assert!(e.is_err(), "scratch one short accepted");
                }
            }
        }
    }

    #[test]
    fn resnet50_layers_error_is_small() {
        // (channels, size): the four ResNet-50 3x3 stride-1 layers, reduced in size for
        // the f64 reference where it does not change the per-output depth.
        for &(c, hw) in &[(64, 56), (128, 28), (256, 14), (512, 7)] {
            let g = geom(c, hw, hw, 1, 1, 1, 1);
            let he = (2.0 / (9.0 * c as f64)).sqrt() as f32 * 3f32.sqrt();
            let wt: Vec<f32> = rnd(c * c * 9, 3).iter().map(|v| v * he).collect();
            // ~N(0, 1)-scaled input (uniform with unit variance).
            let x: Vec<f32> = rnd(c * hw * hw, 4)
                .iter()
                .map(|v| v * 3f32.sqrt())
                .collect();
            let want = reference(&x, &g, &wt, c);
            // The direct GEMM's own rounding error, for scale.
            let mut direct = vec![0.0; c * hw * hw];
            let pb = crate::gemm::PackedB::new(&Strided::rows(&wt, c, c * 9).unwrap());
            gemm(
                &crate::gemm::Im2col::new(&x, g).unwrap(),
                Rhs::Packed(&pb),
                Out {
                    data: &mut direct,
                    rs: 1,
                    cs: hw * hw,
                },
                &Epilogue::default(),
            )
            .unwrap();
            let (rel, mx) = errors(&direct, &want);
            println!("{c}x{hw}x{hw} direct: rel L2 {rel:.2e}, max abs {mx:.2e}");
            for var in [WinogradVariant::F2x2, WinogradVariant::F4x4] {
                let ww = WinogradWeights::new(&wt, c, c, var).unwrap();
                let mut out = vec![0.0; c * hw * hw];
                winograd3x3(&x, &g, &ww, None, None, Activation::None, &mut out).unwrap();
                let (rel, mx) = errors(&out, &want);
                println!("{c}x{hw}x{hw} {var:?}: rel L2 {rel:.2e}, max abs {mx:.2e}");
                assert!(rel < 1e-5, "{var:?} {c}x{hw}: rel L2 {rel}");
            }
        }
    }

    #[test]
    fn caller_scratch_and_reuse_across_shapes() {
        // One thread-local scratch serves shapes of different sizes in turn; a caller
        // scratch gives the same result. On one thread, where both run the phases one
        // after another (on more, a split by bands cuts the products' columns
        // differently, which may round differently).
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        for &(c, h, w, cout, var) in &[
            (24, 30, 30, 20, WinogradVariant::F4x4),
            (8, 5, 9, 12, WinogradVariant::F2x2),
            (24, 30, 30, 20, WinogradVariant::F2x2),
            (16, 3, 3, 16, WinogradVariant::F4x4),
        ] {
            let g = geom(c, h, w, 1, 1, 1, 1);
            let x = rnd(c * h * w, 5);
            let wt = rnd(cout * c * 9, 6);
            let ww = WinogradWeights::new(&wt, cout, c, var).unwrap();
            let want = reference(&x, &g, &wt, cout);
            let mut a = vec![0.0; cout * h * w];
            one.install(|| winograd3x3(&x, &g, &ww, None, None, Activation::None, &mut a))
                .unwrap();
            let mut scratch = vec![f32::NAN; scratch_len(&g, &ww, 1).unwrap()];
            let mut b = vec![0.0; cout * h * w];
            winograd3x3_with_scratch(
                &x,
                1,
                &g,
                &ww,
                None,
                None,
                Activation::None,
                &mut b,
                &mut scratch,
            )
            .unwrap();
            assert_eq!(a, b);
            let (rel, _) = errors(&a, &want);
            assert!(rel < 1e-5, "{var:?} {c}x{h}x{w}: {rel}");
        }
    }

    #[test]
    fn preference_rule() {
        use WinogradVariant::*;
        assert_eq!(prefer_winograd(64, 64, 56, 56), None);
        assert_eq!(prefer_winograd(128, 64, 56, 56), Some(F4x4));
        assert_eq!(prefer_winograd(128, 128, 28, 28), Some(F4x4));
        assert_eq!(prefer_winograd(256, 256, 14, 14), Some(F2x2));
        assert_eq!(prefer_winograd(512, 512, 7, 7), None);
        assert_eq!(prefer_winograd(1024, 1024, 7, 7), None);
        assert_eq!(prefer_winograd(3, 64, 224, 224), None);
        assert_eq!(prefer_winograd(256, 256, 3, 3), None);
        let avx512 = Kernel::detect().name == "avx512";
        let on = |v| if avx512 { Some(v) } else { None };
        assert_eq!(preferred_over_direct(64, 64, 56, 56), on(F4x4));
        assert_eq!(preferred_over_direct(128, 192, 28, 28), on(F4x4));
        assert_eq!(preferred_over_direct(512, 512, 28, 28), on(F4x4));
        assert_eq!(preferred_over_direct(32, 128, 27, 27), on(F4x4));
        assert_eq!(preferred_over_direct(16, 64, 55, 55), on(F4x4));
        assert_eq!(preferred_over_direct(8, 64, 55, 55), None);
        assert_eq!(preferred_over_direct(16, 64, 47, 47), None);
        assert_eq!(preferred_over_direct(48, 192, 13, 13), None);
        assert_eq!(preferred_over_direct(256, 256, 14, 14), None);
        assert_eq!(preferred_over_direct(64, 32, 56, 56), None);
    }

    #[test]
    fn rejects_bad_shapes() {
        let wt = rnd(4 * 3 * 9, 1);
        assert!(WinogradWeights::new(&wt, 4, 4, WinogradVariant::F2x2).is_err());
        assert!(WinogradWeights::new(&wt, 0, 3, WinogradVariant::F2x2).is_err());
        let g = geom(3, 5, 5, 1, 1, 1, 1);
        let x = rnd(3 * 25, 2);
        // 4 output channels on one thread (the phases in turn); 40 on two, where a few
        // input channels and several panels of outputs take `by_channels`.
        for (cout, threads) in [(4, 1), (40, 2)] {
            let wt = rnd(cout * 3 * 9, 1);
            let ww = WinogradWeights::new(&wt, cout, 3, WinogradVariant::F4x4).unwrap();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut out = vec![0.0; cout * 25];
                let ok = winograd3x3(&x, &g, &ww, None, None, Activation::None, &mut out);
                assert!(ok.is_ok());
                let mut short = vec![0.0; cout * 25 - 1];
                let run = |x: &[f32], g: &Geom2d, bias, res, out: &mut [f32]| {
                    winograd3x3(x, g, &ww, bias, res, Activation::None, out)
                };
                assert!(run(&x, &g, None, None, &mut short).is_err());
                assert!(run(&x[1..], &g, None, None, &mut out).is_err());
                assert!(run(&x, &g, Some(&[0.0; 3]), None, &mut out).is_err());
                assert!(run(&x, &g, None, Some(&x), &mut out).is_err());
                assert!(run(&x, &Geom2d { sh: 2, ..g }, None, None, &mut out).is_err());
                assert!(run(&x, &Geom2d { c: 4, ..g }, None, None, &mut out).is_err());
                let huge = Geom2d {
                    h: usize::MAX / 2,
                    oh: usize::MAX / 2,
                    ..g
                };
                assert!(run(&x, &huge, None, None, &mut out).is_err());
            });
        }
        let ww = WinogradWeights::new(&wt, 4, 3, WinogradVariant::F4x4).unwrap();
        let mut out = vec![0.0; 4 * 25];
        let mut sc = vec![0.0; 3];
        assert!(winograd3x3_with_scratch(
            &x,
            1,
            &g,
            &ww,
            None,
            None,
            Activation::None,
            &mut out,
            &mut sc
        )
        .is_err());
    }
}
