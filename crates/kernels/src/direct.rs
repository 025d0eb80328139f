//! Direct convolution for AVX-512 and AVX2: output tiles of pixels along one output row
//! times a block of output channels, with no im2col packing.
//!
//! The GEMM path ([`crate::gemm`]) computes a `k x k` convolution as weights times an
//! implicit im2col, and packs a panel of that im2col for every block of the product. Here
//! the roles are turned around: the microkernel broadcasts input values (the `R` pixels of
//! a tile are `R` consecutive values of one input row, `S` apart for stride `S`, so they
//! are read in place) and loads vectors of weights prepacked once as `[Cin][tap][16 V]`
//! for each block of `16 V` output channels. The input is first copied once into a
//! zero-padded image, its rows interleaved by channel (`[row][channel][column]`, so the
//! input of one output row is one contiguous block), and every tap of every tile reads
//! inside it: no tile needs a border case. An output row's tiles are `R` pixels wide (on
//! AVX-512, 8 to 14 picked per layer to cover a row with the fewest pixels: 14 for the
//! 56, 28 and 14 wide images of the common CNNs, 13 for 13 wide ones; 7 for the 7 wide
//! ones); a ragged last tile computes `R` pixels and stores those that exist.
//!
//! The accumulators hold `R` pixels by `16 V` channels; the epilogue transposes them in
//! registers (16 x 16 blocks) to rows of pixels per channel, adds the bias and the
//! residual, applies Relu or Clip, and stores each channel's `R` pixels into the NCHW
//! output with one masked store. Other activations are applied to the finished rows.
//!
//! The AVX2 kernels (`x86::tile_avx2`) have 16 registers: a tile is 6 pixels by 16
//! channels (twelve accumulators, two weight vectors and the broadcast), a last block of 8
//! channels where the layer's channels end there; their epilogue turns 4 (then 2) pixels
//! by 8 channels into a 4-pixel (2-pixel) store per channel with two 4 x 4 transposes.
//! Measured on Zen 3 with `examples/direct_bench.rs` (2 threads): against the
//! implicit-im2col GEMM in the same runs, 4 x 16 took 0.64-0.96x its time on the bench's
//! k x k layers, 4 x 24 (twelve accumulators, which spilled to the stack) 0.74-1.05x, and
//! 4 x 24 with the weights as FMA memory operands (16 loads per 12 FMAs) 1.0-1.6x. In one
//! process against 4 x 16: 6 x 16 along output rows took 0.92-0.94x on two of ResNet-50's
//! 56 wide layers but 1.02-1.5x on most others (more of a 6-pixel tile falls past the
//! row's end on narrower images); input channels in chunks that fit the L1 with their
//! weights, 1.01-1.07x (1 thread); 4 x 24 with its step in inline assembly (twelve
//! accumulators, no spills), 0.94x on ResNet-50's 7x7 stem but 0.97-1.31x on the 3x3
//! layers (two runs of 10 and 20 calls). 6 x 16 tiled in raster order (below), against
//! 4 x 16 in the same process (`direct_bench` prints both): 0.84-0.98x on ResNet-50's stem,
//! 0.94-0.97x on GoogLeNet's 56-wide layer, 0.88-1.18x (most 0.95-1.0x) on the other
//! 3x3 layers; whole models, the two alternating run by run in one process (1 and 2
//! threads, two processes each), p50 0.96-1.01x on ResNet-50, 0.96-0.97x on GoogLeNet,
//! 0.91-0.98x on SqueezeNet 1.1. [`DirectWeights::with_tile_pixels`] picks 4 x 16.
//!
//! On AVX2, where a row's tiles would end in a part-empty tile, the plane is tiled in
//! raster order instead: a tile that runs past a row's end into the next
//! (`x86::tile_avx2_at`) reads each pixel's window at its own offset, and its output
//! pixels are still consecutive in the plane.
//!
//! Work is split over the pool's threads by (channel block, output row), channel blocks
//! outermost, so each thread keeps few weight panels in its L2; a plane tiled in raster
//! order is split into runs of as many tiles as a row has. (Output rows outermost
//! was 0.67-0.82x the time on ResNet-50's stride-2 layers while the padded copy was
//! planar, and 0.9-1.1x, no gain, once its rows were interleaved, in `direct_bench`,
//! whose input is warm in both cores' caches.) In a model, where each core holds the
//! rows of the image it wrote, output rows go outermost on layers whose weights are
//! smaller than their input (see [`conv_direct`]).
//!
//! A layer that reads no padding (1x1 layers; k x k ones without padding whose tiles
//! stay inside the image) reads its input in place; the others copy it into padded rows
//! first.
use crate::activation::Activation;
use crate::conv::{ConvIo, Geom2d};
use crate::{prefetch, SyncPtr};
use rayon::prelude::*;
use std::cell::RefCell;

#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error("direct conv: {0}")]
    Shape(String),
}

fn err(msg: impl Into<String>) -> DirectError {
    DirectError::Shape(msg.into())
}

/// Weights prepacked for [`conv_direct`]: one panel per block of `16 * v` output channels,
/// each `[Cin][kh * kw][16 * v]`, the channels past `m` zero.
#[derive(Debug, Clone)]
pub struct DirectWeights {
    m: usize,
    cin: usize,
    kh: usize,
    kw: usize,
    /// Output channels per block (the last block may be narrower, see [`Self::width`]).
    bw: usize,
    /// Pixels per tile.
    r: usize,
    /// Which kernels: the AVX-512 ones, else the AVX2 ones.
    avx512: bool,
    panels: Vec<f32>,
}

/// Pixels per tile of the AVX2 kernels (twelve accumulators for 16 channels), also the
/// most an AVX2 tile has.
const AVX2_PIXELS: usize = 6;

/// The other AVX2 tile ([`DirectWeights::with_tile_pixels`]): 4 pixels, eight
/// accumulators.
const AVX2_NARROW_PIXELS: usize = 4;

/// The most window taps (`kh * kw`) [`conv_direct`] takes: their offsets live on the stack.
pub const MAX_TAPS: usize = 121;

/// Whether [`conv_direct`] can run on this CPU and geometry: AVX-512 or AVX2 with FMA,
/// stride 1 or 2 (the same in both directions), at most [`MAX_TAPS`] taps; any dilation
/// and padding.
pub fn supported(sh: usize, sw: usize, kh: usize, kw: usize) -> bool {
    available() && sh == sw && (sh == 1 || sh == 2) && kh.saturating_mul(kw) <= MAX_TAPS
}

/// Whether the direct kernel is expected to beat the implicit-im2col GEMM on a layer of
/// `m` output channels whose weights have `k = Cin/group * kh * kw` values per channel.
/// On AVX-512 a tile's fixed cost (its epilogue: 16 x 16 transposes, then a store per
/// channel) is spread over only `k` steps: with `k` under [`AVX512_MIN_K`] and more
/// channels than one 32-wide block, the GEMM wins. `examples/direct_bench.rs` on
/// Zen 4, `k` = 27 (3x3 on RGB, stride 2, 224 x 224), direct / GEMM time: 64 channels
/// (SqueezeNet 1.1's first layer) 1.44-1.84x on 1 and 2 threads, 96 channels 1.57x, 128
/// channels 1.8-1.97x; 32 channels (MobileNetV2's) 0.85-1.06x on 2 threads, so a single
/// block keeps the direct kernel. With `k` = 147 (ResNet-50's 7x7 stem) direct took
/// 0.89-0.93x. On AVX2 the direct kernel took 0.62-0.94x the GEMM's time on every k x k
/// layer of `direct_bench` on Zen 3, first layers included: no limit there.
pub fn preferred(m: usize, k: usize) -> bool {
    !(avx512() && k < AVX512_MIN_K && m > AVX512_BLOCK)
}

/// Whether the direct kernel is expected to beat the GEMM (weights times the image read in
/// place) on a 1x1, stride-1 convolution of `m` output channels over `k` input channels
/// and `plane` pixels: on AVX-512, 7x7 planes with at least 512 input and 256 output
/// channels, and 14x14 ones with at least 1024 input channels. There the GEMM's 32-column
/// panels cover a 7x7 plane's 49 pixels in 32 + 16 + 1 and a 14x14 plane's 196 in six and
/// a half, over rows a plane apart (`4 * plane` bytes, a multiple of 64 for neither),
/// while the direct kernel broadcasts pixels and loads weight vectors prepacked on 64-byte
/// boundaries. `examples/direct_bench.rs` on Zen 4, direct / GEMM time, 2 threads (1
/// thread), two or three runs: 2048 -> 512 on 7x7 0.86-1.01x (0.91-0.92x), 512 -> 2048 on
/// 7x7 0.96-0.98x (0.93x), 960 -> 320 on 7x7 0.91-1.01x (0.93x), GoogLeNet's merged
/// 832 -> 448 and 832 -> 624 on 7x7 0.91x and 0.95x (0.95-0.98x), 1024 -> 256 on 14x14
/// 0.93-0.98x (0.98-1.02x); but 960 -> 160 on 7x7 1.03x, 512 -> 296 on 14x14 1.07-1.11x,
/// 528 -> 448 on 14x14 1.0x (1.02x), 512 -> 1000 on 13x13 1.09-1.1x, 320 -> 1280 on 7x7
/// 1.87x, and 1.1-1.6x on every 1x1 layer over 28x28 and more. In ResNet-50 (`millrace
/// profile`, the builds alternating, 6 rounds at 2 threads) its 1024 -> 256 layers on
/// 14x14 took 0.94-0.97x the time, 2048 -> 512 on 7x7 0.86-0.88x, 512 -> 2048 on 7x7
/// 0.97-1.0x.
///
/// Those figures for layers whose one channel block had fewer than 2^20 multiply-adds
/// (`k * plane * 64` on 7x7, `* 32` else: 320 -> 1280 on 7x7, the 14x14 layers with `k`
/// below 168, the 28x28 ones below 42) came from a serial run: the kernel forked only
/// when one channel block's work reached 2^20, not the whole layer's. Run over the pool
/// (`direct_bench`, Zen 5, 2 threads, three runs; 1 thread within 0.04 of these but
/// 960 -> 160 at 1.05x), direct / GEMM:
/// 320 -> 1280 on 7x7 0.88x (in MobileNetV2, `nodes_ab.py`, 6 rounds: 0.90x);
/// 14x14 reductions 576 -> 96 0.93x and 384 -> 64 0.97-0.98x (in MobileNetV2 576 -> 96
/// 0.89x, 384 -> 96 0.89x, 384 -> 64 0.91-0.96x, 192 -> 64 1.0x); but 160 -> 960 and
/// 960 -> 160 on 7x7 0.97-0.99x (1.0-1.01x in the model), and the 14x14 expansions
/// 96 -> 576 and 64 -> 384 1.0-1.03x (1.03-1.06x in the model), where a tile's epilogue
/// (four 16 x 16 transposes on 7x7) weighs against a short `K`.
///
/// So, besides the rule above: on planes up to 7x7, layers whose output channels fill
/// whole blocks of the tile [`DirectWeights::new`] plans for `w` ([`avx512_tile`]: 64
/// channels on rows of 7) with at least [`SMALL_PLANE_MIN_K`] input channels; on planes
/// up to 14x14, reductions to whole blocks from at least [`REDUCTION_MIN_K`] channels,
/// twice as many as they write. The layer's output is `h x w`, as its input.
pub fn preferred_pointwise(m: usize, k: usize, h: usize, w: usize) -> bool {
    if !avx512() || m == 0 {
        return false;
    }
    let plane = h.saturating_mul(w);
    let wide = m >= POINTWISE_MIN_M
        && k >= POINTWISE_MIN_K
        && (plane <= 7 * 7 || (plane <= 14 * 14 && k >= 2 * POINTWISE_MIN_K));
    let whole_blocks = m.is_multiple_of(avx512_tile(w).0);
    let small_plane =
        plane <= 7 * 7 && m >= POINTWISE_MIN_M && whole_blocks && k >= SMALL_PLANE_MIN_K;
    let reduction = plane <= 14 * 14 && whole_blocks && k >= REDUCTION_MIN_K && k >= 2 * m;
    wide || small_plane || reduction
}

/// The fewest input channels of a 7x7 layer [`preferred_pointwise`] takes by whole
/// channel blocks.
const SMALL_PLANE_MIN_K: usize = 256;
/// The fewest input channels of a reduction [`preferred_pointwise`] takes on planes up
/// to 14x14.
const REDUCTION_MIN_K: usize = 384;

/// Whether the direct kernel is expected to beat the GEMM on a 1x1, stride-2 convolution
/// over `k` input channels, whose input the GEMM path first gathers at the output pixels:
/// on AVX-512, with at least [`STRIDED_POINTWISE_MIN_K`]. There the direct kernel reads
/// the input in place and streams weights prepacked on 64-byte boundaries, which the
/// layer, run once per image with its weights out of cache, reads first. In ResNet-50
/// (`millrace profile`, Zen 5, 2 threads, 8 rounds alternating) its 1024 -> 2048 layer at
/// 14x14 -> 7x7 took 0.75x the time, 512 -> 1024 at 28x28 -> 14x14 0.89x, but 256 -> 512
/// at 56x56 -> 28x28 1.13x. Warm, in `examples/direct_bench.rs`, the three were
/// 0.97x, 1.0x and 1.1x the GEMM's time. Since the 1x1 tiles prefetch the next tile's
/// input (`sums_near`), the 256 -> 512 layer too: `scripts/nodes_ab.py` on ResNet-50
/// (Zen 5, the builds alternating) 0.908x and 0.933x the time at 2 threads (8 and 6
/// rounds, every round 0.88-0.95), 0.977x at 1; `direct_bench` 0.84x the gathered GEMM.
pub fn preferred_strided_pointwise(k: usize) -> bool {
    avx512() && k >= STRIDED_POINTWISE_MIN_K
}

/// The fewest input channels of a 1x1 stride-2 layer [`preferred_strided_pointwise`]
/// takes.
pub const STRIDED_POINTWISE_MIN_K: usize = 256;

/// The fewest input channels of a 1x1 layer [`preferred_pointwise`] takes (twice as many
/// on planes larger than 7x7).
const POINTWISE_MIN_K: usize = 512;
/// The fewest output channels of a 1x1 layer [`preferred_pointwise`] takes.
const POINTWISE_MIN_M: usize = 256;

/// The smallest `k` (weights per output channel) for which the AVX-512 direct kernel runs
/// layers wider than one block ([`preferred`]).
pub const AVX512_MIN_K: usize = 64;

/// Output channels per block of the AVX-512 kernels' wide tile.
const AVX512_BLOCK: usize = 32;

/// Output channels per block of the AVX-512 tile on rows of at most 7 (7 pixels).
const AVX512_NARROW_BLOCK: usize = 64;

/// Packed weight values from which [`DirectWeights::new`] packs on all threads.
const PARALLEL_PACK: usize = 1 << 16;

/// Whether the CPU has the instructions of one of the kernels: those of the AVX-512 GEMM
/// kernel (AVX-512F, AVX2 and FMA) or of the AVX2 one (AVX2 and FMA); detected once.
pub fn available() -> bool {
    avx512() || matches!(crate::gemm::Kernel::detect().name, "avx2")
}

/// Whether the AVX-512 kernels run (else the AVX2 ones).
fn avx512() -> bool {
    crate::gemm::Kernel::detect().name == "avx512"
}

impl DirectWeights {
    /// Packs `weights` (`[m][cin][kh][kw]`, row-major) for output images `ow` wide (the
    /// planned width picks the tile: 7 pixels by 64 channels when `ow <= 7`, else 8 to 14
    /// by 32 ([`avx512_pixels`]); any width runs with any).
    pub fn new(
        weights: &[f32],
        m: usize,
        cin: usize,
        kh: usize,
        kw: usize,
        ow: usize,
    ) -> Result<DirectWeights, DirectError> {
        let taps = kh.saturating_mul(kw);
        let k = cin
            .checked_mul(taps)
            .ok_or_else(|| err("weight size overflows"))?;
        if taps > MAX_TAPS {
            return Err(err(format!(
                "a {kh}x{kw} window has more than {MAX_TAPS} taps"
            )));
        }
        if m == 0 || k == 0 || m.checked_mul(k) != Some(weights.len()) {
            return Err(err(format!(
                "{} weights for {m} x {cin} x {kh} x {kw}",
                weights.len()
            )));
        }
        let avx512 = avx512();
        // AVX-512: 8 to 14 pixels by 32 channels ([`avx512_pixels`]), or 7 by 64 on images
        // 7 wide. AVX2: 6 pixels by 16 channels, the last block 8 wide where the channels
        // end there.
        let (bw, r) = if avx512 {
            avx512_tile(ow)
        } else {
            (16, AVX2_PIXELS)
        };
        let nb = m.div_ceil(bw);
        let mut panels = vec![0.0f32; ((nb - 1) * bw + block_width(avx512, m, bw, nb - 1)) * k];
        let pack = |ob: usize, panel: &mut [f32]| {
            let valid = bw.min(m - ob * bw);
            let pw = block_width(avx512, m, bw, ob);
            let src = &weights[ob * bw * k..][..valid * k];
            // Source index `ic * taps + t` is also the packed row: K runs channel-major.
            // Written in order, read from `valid` rows at once (each stays in cache for the
            // 16 steps of its cache line): a column at a time wrote one line per value.
            for (kk, row) in panel[..k * pw].chunks_exact_mut(pw).enumerate() {
                for (o, d) in row[..valid].iter_mut().enumerate() {
                    *d = src[o * k + kk];
                }
            }
        };
        // Block `ob` owns `k * bw` values (the last one `k * pw`, what is left). The
        // zeroed memory is untouched until written, so large weights are packed on all
        // of the current pool's threads: their page faults cost more than the copy.
        if panels.len() >= PARALLEL_PACK {
            panels
                .par_chunks_mut(k * bw)
                .enumerate()
                .for_each(|(ob, panel)| pack(ob, panel));
        } else {
            for (ob, panel) in panels.chunks_mut(k * bw).enumerate() {
                pack(ob, panel);
            }
        }
        Ok(DirectWeights {
            m,
            cin,
            kh,
            kw,
            bw,
            r,
            avx512,
            panels,
        })
    }

    /// Bytes of packed weights.
    pub fn bytes(&self) -> usize {
        self.panels.len() * 4
    }

    /// Pixels per tile (AVX-512: 14 or 7; AVX2: 4 or 6).
    pub fn tile_pixels(&self) -> usize {
        self.r
    }

    /// These weights run with tiles of `r` pixels, for tuning experiments: on AVX2, 4 or
    /// 6 (the packing is the same for both); on AVX-512 only the planned width. Other
    /// values are an error.
    pub fn with_tile_pixels(mut self, r: usize) -> Result<DirectWeights, DirectError> {
        let ok = if self.avx512 {
            r == self.r
        } else {
            r == AVX2_PIXELS || r == AVX2_NARROW_PIXELS
        };
        if !ok {
            return Err(err(format!("no tile of {r} pixels for these weights")));
        }
        self.r = r;
        Ok(self)
    }

    /// Channels of block `ob` in the packed panels ([`block_width`]).
    fn width(&self, ob: usize) -> usize {
        block_width(self.avx512, self.m, self.bw, ob)
    }
}

/// Output channels and pixels of the AVX-512 tile on output rows `ow` wide: 7 pixels by
/// [`AVX512_NARROW_BLOCK`] on rows of at most 7, else [`avx512_pixels`] by
/// [`AVX512_BLOCK`].
fn avx512_tile(ow: usize) -> (usize, usize) {
    if ow <= 7 {
        (AVX512_NARROW_BLOCK, 7)
    } else {
        (AVX512_BLOCK, avx512_pixels(ow))
    }
}

/// Pixels per AVX-512 tile of 32 channels on output rows `ow` wide (more than 7): the
/// width from 8 to 14 that covers a row in the fewest tiles and, among those, wastes the
/// fewest pixels (the widest where two waste the same). A row of 13 takes one 13-pixel
/// tile (a 14-pixel one computed a pixel past the row's end: SqueezeNet's 13x13 layers),
/// 15 or 16 two of 8 (two of 14 computed 28 pixels), 17 two of 9, 55 and 56 four of 14.
/// `examples/direct_bench.rs` (1 thread, 64 -> 256 channels, 3x3), 14-pixel tiles on
/// every width: one row of 13 took the time of one of 14 (1.75 against 1.74 us per
/// tile), and 15 or 16 wide planes took 2.1x the time of 14 wide ones.
/// An unknown width (`usize::MAX`: FusedConv without a planned shape) takes 14.
fn avx512_pixels(ow: usize) -> usize {
    (8..=14)
        .rev()
        .min_by_key(|&r| (ow.div_ceil(r), ow.div_ceil(r).saturating_mul(r)))
        .unwrap_or(14)
}

/// Channels of block `ob` when `m` output channels are packed in blocks of `bw`: `bw`, but
/// the last block of the AVX2 layout keeps only the 8-channel vectors it needs.
fn block_width(avx512: bool, m: usize, bw: usize, ob: usize) -> usize {
    if avx512 {
        bw
    } else {
        bw.min(m - ob * bw).div_ceil(8) * 8
    }
}

thread_local! {
    /// Padded input images, a stack: a thread waiting for its convolution's jobs may run
    /// another convolution meanwhile (a branch of the graph).
    static PADDED: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// `y = act(conv(x, w) + bias + residual)` for one image: `x` is `c x h x w` (`g`), `y`
/// and `residual` are `m x oh x ow`.
pub fn conv_direct(
    x: &[f32],
    g: &Geom2d,
    w: &DirectWeights,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Activation,
    y: &mut [f32],
) -> Result<(), DirectError> {
    if !supported(g.sh, g.sw, g.kh, g.kw) {
        return Err(err(format!(
            "needs AVX-512 or AVX2, stride 1 or 2 and at most {MAX_TAPS} taps (strides {}x{}, window {}x{})",
            g.sh, g.sw, g.kh, g.kw
        )));
    }
    let (oh, ow) = (g.oh, g.ow);
    let opl = ConvIo {
        w: [w.m, w.cin, w.kh, w.kw],
        x,
        y,
        residual,
        bias,
    }
    .check(g)
    .map_err(err)?;
    let overflow = || err("geometry overflows");
    if opl == 0 {
        return Ok(());
    }
    if g.dh == 0 || g.dw == 0 {
        return Err(err("dilation 0"));
    }
    let r = w.tile_pixels();
    let tiles = ow.div_ceil(r);
    // The padded image: row `oy * sh + ky * dh` and column `ox * sw + kx * dw` are tap
    // (ky, kx) of output (oy, ox); whole tiles read up to column `(tiles * r - 1) * sw + ..`.
    // Checked: the padding and dilation come from the model file.
    let span = |n: usize, s: usize, k: usize, d: usize| {
        (n - 1)
            .checked_mul(s)?
            .checked_add((k - 1).checked_mul(d)?)?
            .checked_add(1)
    };
    let hp = span(oh, g.sh, g.kh, g.dh).ok_or_else(overflow)?;
    let wspan = span(tiles * r, g.sw, g.kw, g.dw).ok_or_else(overflow)?;
    // A layer that reads no padding (no top or left pad, every tap of every tile inside
    // the image: 1x1 layers, and k x k ones without padding whose rows the tiles fit)
    // reads `x` in place, its planes per channel; the others read a padded copy.
    let in_place = g.pt == 0 && g.pl == 0 && hp <= g.h && wspan <= g.w;
    let wp = wspan.max(g.pl.checked_add(g.w).ok_or_else(overflow)?);
    let plane = hp.checked_mul(wp).ok_or_else(overflow)?;
    let size = g.c.checked_mul(plane).ok_or_else(overflow)?;
    // The padded rows are interleaved by channel (`[row][channel][column]`): one output
    // row's input rows are one contiguous block. Measured against planes per channel
    // (`[channel][row][column]`) with `examples/direct_bench.rs` on 2 threads: 0.91-0.99x
    // the time on most k x k layers of ResNet-50, GoogLeNet and SqueezeNet, 0.81x on
    // SqueezeNet's first layer.
    let (cstep, rstep) = if in_place {
        (g.h * g.w, g.w)
    } else {
        (wp, g.c * wp)
    };
    let mut offs = [0isize; MAX_TAPS];
    for (t, o) in offs.iter_mut().take(g.kh * g.kw).enumerate() {
        *o = ((t / g.kw) * g.dh * rstep + (t % g.kw) * g.dw) as isize;
    }
    let taps = &offs[..g.kh * g.kw];
    // The padded copy, where the layer needs one.
    let xp = (!in_place).then(|| {
        let mut xp = PADDED.with_borrow_mut(|s| s.pop()).unwrap_or_default();
        if xp.len() < size {
            xp.resize(size, 0.0);
        }
        pad_rows(x, g, wp, &mut xp[..size], w.avx512);
        xp
    });
    let bw = w.bw;
    let nb = w.m.div_ceil(bw);
    let k = w.cin * taps.len();
    let yp = SyncPtr(y.as_mut_ptr());
    let (relu, clamp, post) = act.in_tile();
    let xpr = xp.as_deref().unwrap_or(x);
    // The tile kernel for a block `pw` channels wide: every block's but the last's, and
    // the last's (narrower on AVX2).
    let pick = |pw: usize| {
        if w.avx512 {
            x86::pick(pw / 16, g.sw, taps.len(), r)
        } else {
            x86::pick_avx2(pw / 8, g.sw, taps.len(), r)
        }
    };
    let (tile_full, tile_last) = (pick(bw), pick(w.width(nb - 1)));
    // On AVX2, an output row whose width is not a multiple of the tile's pixels ends in a
    // part-empty tile (56 = 9 x 6 + 2: a fifteenth of the work wasted). The plane's pixels
    // are then tiled in raster order instead, a tile that runs into the next row reading
    // each pixel's window at its own offset, and only the plane's last tile can be short:
    // with 6-pixel tiles wherever that makes fewer tiles, with 4-pixel tiles where the
    // rows would waste a tenth or more. `direct_bench`, 4-pixel tiles, the two alternating
    // call by call (1 / 2 threads): the 14-wide layers of ResNet-50 and GoogLeNet
    // 0.86-0.93x the time, SqueezeNet's 13-wide 0.85-1.04x; on 7-wide ones (13 tiles
    // instead of 14) 0.93-1.04x, no gain, so 4-pixel tiles keep their rows there. With
    // 6-pixel tiles, rows on 28 and 56 wide planes (tiles a fifteenth empty) took
    // 1.02-1.05x the time of the 4-pixel tiles, raster order 0.88-1.0x.
    let ntiles = opl.div_ceil(r);
    let flat = !w.avx512
        && if r == AVX2_PIXELS {
            ntiles < oh * tiles
        } else {
            10 * ntiles <= 9 * oh * tiles
        };
    let chunks = ntiles.div_ceil(tiles);
    // The row-crossing kernels, likewise for every block's but the last's and the last's.
    let pick_at = |pw: usize| x86::pick_avx2_at(pw / 8, taps.len(), r);
    let (at_full, at_last) = (pick_at(bw), pick_at(w.width(nb - 1)));
    let origin = |p: usize| (p / ow) * g.sh * rstep + (p % ow) * g.sw;
    // A job: channel block `ob` over the output pixels `a..b` of its `run`-th run (an
    // output row, or as many tiles as a row has when the plane is tiled in raster order).
    let runs = if flat { chunks } else { oh };
    // Jobs in order of (channel block, run), or of (run, channel block) where the
    // weights are smaller than the (padded) image: then each thread reads its band of
    // rows and all the weights rather than all of the image and its blocks' weights, and
    // the rows it reads are mostly the ones it wrote as the previous layer's output.
    // `nodes_ab.py` (ResNet-50, 2 threads, 6 rounds): layer1's 3x3 layers (64 channels,
    // 56x56) took 0.85-0.95x the time, layer2.0's stride-2 one 0.81x; with the weights
    // up to three times the image instead, layer3.0's stride-2 3x3 and 1x1 layers took
    // 1.10-1.13x.
    let rows_outer = w.panels.len() < size;
    let item = |i: usize| {
        let (ob, run) = if rows_outer {
            (i % nb, i / nb)
        } else {
            (i / runs, i % runs)
        };
        let (a, b) = if flat {
            (run * tiles * r, ((run + 1) * tiles * r).min(opl))
        } else {
            (run * ow, (run + 1) * ow)
        };
        let pw = w.width(ob);
        let panel = &w.panels[ob * k * bw..][..k * pw];
        let (tile, tile_at) = if ob + 1 == nb {
            (tile_last, at_last)
        } else {
            (tile_full, at_full)
        };
        let oc0 = ob * bw;
        let valid_oc = bw.min(w.m - oc0);
        // The next block's panel, in as many parts as this block has tiles: each tile
        // prefetches its part into L2, so that the block after this one finds its
        // weights there rather than in memory (most of a large model's weights are read
        // once per run, from memory). A thread walks consecutive jobs (rayon splits
        // the range), so the next block is mostly its own next.
        let next = match w.panels.get((ob + 1) * k * bw..) {
            Some(p) if ob + 1 < nb && !rows_outer => &p[..p.len().min(k * w.width(ob + 1))],
            _ => &[],
        };
        let run_tiles = (b - a).div_ceil(r);
        for p0 in (a..b).step_by(r) {
            let px = r.min(b - p0);
            let xo = origin(p0);
            let far = prefetch::part(next, runs * run_tiles, run * run_tiles + (p0 - a) / r);
            let dst = Dst {
                // SAFETY (of the offsets): channel `oc0 + o < m`, pixel `p0 + j < b <= opl`
                // for `j < px`; each (block, run) is written by one job.
                y: unsafe { yp.get().add(oc0 * opl + p0) },
                res: residual.map_or(std::ptr::null(), |rv| rv[oc0 * opl + p0..].as_ptr()),
                bias: bias.map_or(std::ptr::null(), |b| b[oc0..].as_ptr()),
                ld: opl,
                px,
                oc: valid_oc,
                relu,
                clamp,
                far: far.as_ptr(),
                far_end: far.as_ptr_range().end,
                // The next tile's input on a 1x1 layer: the tile after this one in the
                // run, else the next run's first (the plane's last tile: the plane's
                // first). Only prefetched, never read.
                near: if w.avx512 && taps.len() == 1 {
                    let np = if p0 + r < b {
                        p0 + r
                    } else if b < opl {
                        b
                    } else {
                        0
                    };
                    xpr.as_ptr().wrapping_add(origin(np))
                } else {
                    std::ptr::null()
                },
            };
            // SAFETY: the instruction set checked by `supported`; the padded image (or,
            // read in place, `x`, checked to hold `c * h * w` values, with `hp <= h` and
            // `wspan <= w`) holds every tap of `r` pixels from any tile's first pixel
            // along its row (`hp` and `wp` above), and a tile that crosses rows reads
            // each pixel's own window (a missing pixel past the plane's end reads pixel
            // `p0`'s); the panel holds `k * pw` values; `dst` is inside `y` (and
            // `residual`).
            unsafe {
                let (xs, ws) = (xpr.as_ptr().add(xo), panel.as_ptr());
                if !flat || p0 % ow + r <= ow {
                    tile(w.cin, taps, cstep, xs, ws, &dst);
                } else {
                    let mut off = [0isize; AVX2_PIXELS];
                    for (j, o) in off.iter_mut().enumerate().take(px) {
                        *o = origin(p0 + j) as isize - xo as isize;
                    }
                    tile_at(w.cin, taps, cstep, xs, ws, &dst, &off);
                }
            }
        }
        if post {
            for o in 0..valid_oc {
                // SAFETY: this job's pixels of channel `oc0 + o`, written above.
                let px = unsafe {
                    std::slice::from_raw_parts_mut(yp.get().add((oc0 + o) * opl + a), b - a)
                };
                act.apply_slice(px);
            }
        }
    };
    let items = nb * runs;
    // Forked from 2^20 multiply-adds in the whole layer (it counted one channel block's,
    // which kept small layers on one thread: see `preferred_pointwise`).
    let work = (k as u64)
        .saturating_mul(opl as u64)
        .saturating_mul(w.m as u64);
    if rayon::current_num_threads() > 1 && work >= 1 << 20 {
        (0..items).into_par_iter().for_each(item);
    } else {
        (0..items).for_each(item);
    }
    if let Some(xp) = xp {
        PADDED.with_borrow_mut(|s| s.push(xp));
    }
    Ok(())
}

/// The smallest padded image (values) that [`pad_rows`] splits over the pool's threads.
const PAD_PARALLEL: usize = 1 << 13;

/// Copies `x` into `xp` as padded rows of `wp` interleaved by channel (`[row][c][wp]`),
/// the image at row `pt`, column `pl`, zeros around. A padded row of all channels is one
/// call of a vector kernel ([`pad_band`]): per channel a masked load and a store per
/// vector, with the masks made once per row, instead of a copy and two fills per channel
/// (three library calls on a few dozen values). Timed inside ResNet-50 on one thread, the
/// 7x7 layers' copy (512 channels, rows of 9) took 5 us against 19.5, the 14x14 ones' 5
/// against 17, the 56x56 ones' 19 against 24; `nodes_ab.py` (1 thread, 4 rounds) put
/// the 3x3 layers at 0.978x the time, and `bench_builds.py` (3 x 10) ResNet-50 and
/// SqueezeNet 1.1 at 0.978x, GoogLeNet 1.017x (per node 0.95-1.0x on its 3x3 layers). At
/// 2 threads only `layer4`'s 3x3 layers gained (0.95-0.98x); the models 0.99-1.02x.
fn pad_rows(x: &[f32], g: &Geom2d, wp: usize, xp: &mut [f32], avx512: bool) {
    let band = g.c * wp;
    let cols = g.w.min(wp.saturating_sub(g.pl));
    let vectors = pad_vectors(x.len(), g, cols, wp, avx512);
    let one = |(py, b): (usize, &mut [f32])| {
        let iy = py as isize - g.pt as isize;
        if iy < 0 || iy >= g.h as isize || cols == 0 {
            b.fill(0.0);
            return;
        }
        pad_band(x, g, iy as usize, cols, wp, b, vectors);
    };
    // Shared out from 8K values (32 KiB) up: against 64K before, `direct_bench` (2 threads,
    // Zen 4, the two builds alternating five times) took 0.90x the time on GoogLeNet's 4a
    // and 5a layers and 0.92-0.98x on SqueezeNet's 16-, 32- and 48-channel ones (its 64-
    // channel one 1.0x), whose padded images are 21-55K values.
    if xp.len() >= PAD_PARALLEL && rayon::current_num_threads() > 1 {
        xp.par_chunks_mut(band).enumerate().for_each(one);
    } else {
        xp.chunks_mut(band).enumerate().for_each(one);
    }
}

/// The vector kernel that writes [`pad_rows`]' rows (`Some(true)`: AVX-512, `Some(false)`:
/// AVX2), or `None` for copies and fills: the kernels run where the direct kernels do
/// (always, as [`conv_direct`] checks [`supported`]) on rows of up to
/// [`x86::PAD_VECTORS`] vectors, with the image's rows (`cols <= w` of each, `pl + cols
/// <= wp`) inside `x`'s `x_len` values. Decided once per copy; [`pad_band`] checks only
/// what changes per row.
fn pad_vectors(x_len: usize, g: &Geom2d, cols: usize, wp: usize, avx512: bool) -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = avx512 && self::avx512();
        let lanes = if avx512 { 16 } else { 8 };
        let fits = g.c >= 1
            && cols <= g.w
            && g.pl + cols <= wp
            && g.h
                .checked_mul(g.w)
                .and_then(|p| p.checked_mul(g.c))
                .is_some_and(|n| x_len >= n)
            && wp.div_ceil(lanes) <= x86::PAD_VECTORS;
        (fits && available()).then_some(avx512)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x_len, g, cols, wp, avx512);
        None
    }
}

/// Padded row `iy + pt` of every channel into `band` (`c` rows of `wp`): `pl` zeros,
/// the image's row `iy` (its first `cols` values), zeros to `wp`; with the kernel
/// [`pad_vectors`] chose, else by copies and fills.
fn pad_band(
    x: &[f32],
    g: &Geom2d,
    iy: usize,
    cols: usize,
    wp: usize,
    band: &mut [f32],
    vectors: Option<bool>,
) {
    let plane = g.h * g.w;
    #[cfg(target_arch = "x86_64")]
    if let Some(avx512) = vectors.filter(|_| iy < g.h && band.len() == g.c * wp) {
        // Channel `ci`'s row is `x[ci * plane + iy * w ..][..cols]`: the last one ends at
        // `(c - 1) * plane + iy * w + cols <= c * h * w <= x.len()` (`iy < h`, `cols <=
        // w`, checked by `pad_vectors`).
        let src = x[iy * g.w..].as_ptr();
        // SAFETY: the instruction sets are present and the rows fit (`pad_vectors`); the
        // reads are inside `x` and the writes inside `band` (`c * wp` values).
        unsafe {
            if avx512 {
                x86::pad_band_avx512(src, plane, g.c, cols, g.pl, band.as_mut_ptr(), wp);
            } else {
                x86::pad_band_avx2(src, plane, g.c, cols, g.pl, band.as_mut_ptr(), wp);
            }
        }
        return;
    }
    let _ = vectors;
    for (ci, row) in band.chunks_exact_mut(wp).enumerate() {
        let s = &x[ci * plane + iy * g.w..][..cols];
        row[..g.pl].fill(0.0);
        row[g.pl..g.pl + cols].copy_from_slice(s);
        row[g.pl + cols..].fill(0.0);
    }
}

/// Where a tile's results go: channel `o < oc`, pixel `j < px` at `y + o * ld + j`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Dst {
    y: *mut f32,
    res: *const f32,
    bias: *const f32,
    ld: usize,
    px: usize,
    oc: usize,
    relu: bool,
    clamp: Option<(f32, f32)>,
    /// Weights to bring into L2 while the tile computes, one cache line per step of `K`
    /// from `far` up to `far_end` (empty: none): a part of the next channel block's panel
    /// (AVX-512 kernels only; see [`conv_direct`]). Only prefetched, never read.
    far: *const f32,
    far_end: *const f32,
    /// The first input value of the next tile of a 1x1 layer (null: none): while this
    /// tile computes, each step brings that tile's lines of one input channel into L2
    /// (AVX-512 kernels only: `x86::sums_near`). Only prefetched, never read.
    near: *const f32,
}

/// A tile kernel: `(cin, taps, plane, x, w, dst)` as [`x86::tile`].
type TileFn = unsafe fn(usize, &[isize], usize, *const f32, *const f32, &Dst);

/// A tile kernel whose pixels read their windows at given offsets from `x`
/// (`x86::tile_avx2_at`).
type TileAtFn =
    unsafe fn(usize, &[isize], usize, *const f32, *const f32, &Dst, &[isize; AVX2_PIXELS]);

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    /// No kernel off x86 ([`super::supported`] is false there, so none is called).
    pub(super) fn pick(_v: usize, _s: usize, _t: usize, _r: usize) -> super::TileFn {
        unreachable_tile
    }

    /// As [`pick`].
    pub(super) fn pick_avx2(_v: usize, _s: usize, _t: usize, _r: usize) -> super::TileFn {
        unreachable_tile
    }

    /// As [`pick`].
    pub(super) fn pick_avx2_at(_v: usize, _t: usize, _r: usize) -> super::TileAtFn {
        unreachable_tile_at
    }

    unsafe fn unreachable_tile_at(
        _: usize,
        _: &[isize],
        _: usize,
        _: *const f32,
        _: *const f32,
        _: &super::Dst,
        _: &[isize; super::AVX2_PIXELS],
    ) {
    }

    unsafe fn unreachable_tile(
        _: usize,
        _: &[isize],
        _: usize,
        _: *const f32,
        _: *const f32,
        _: &super::Dst,
    ) {
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Dst, TileAtFn, TileFn};
    use crate::transpose::x86::{lanes, mask8, row_mask16, transpose16};
    use std::arch::x86_64::*;

    /// How many `K` steps ahead the weights are prefetched.
    const W_AHEAD: usize = 8;

    /// Most vectors a padded row of [`pad_band_avx512`] or [`pad_band_avx2`] spans (their
    /// masks live on the stack): rows up to 256 values.
    pub(super) const PAD_VECTORS: usize = 32;

    /// One padded row of every channel: `dst + ci * wp` gets `pl` zeros, the `cols`
    /// values at `src + ci * cstep`, then zeros up to `wp`, for `ci < c`. Each vector's
    /// lanes that fall in the image are a masked load (the other lanes zero and not read,
    /// so a vector may start before the row), the masks the same for every channel. The
    /// rows are consecutive, so every channel's row but the last ends in a whole store
    /// that runs into the next row (rewritten right after); the last one's is masked.
    ///
    /// # Safety
    /// AVX-512F present; `pl + cols <= wp`, `wp.div_ceil(16) <= PAD_VECTORS`, `c >= 1`;
    /// `src + ci * cstep .. + cols` readable and `dst .. + c * wp` writable.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pad_band_avx512(
        src: *const f32,
        cstep: usize,
        c: usize,
        cols: usize,
        pl: usize,
        dst: *mut f32,
        wp: usize,
    ) {
        let nv = wp.div_ceil(16);
        let mut lm = [0 as __mmask16; PAD_VECTORS];
        for (v, m) in lm.iter_mut().enumerate().take(nv) {
            *m = row_mask16((v * 16) as isize - pl as isize, cols as isize);
        }
        let tail = row_mask16(((nv - 1) * 16) as isize, wp as isize);
        let mut s = src.wrapping_sub(pl);
        for ci in 0..c {
            let d = dst.add(ci * wp);
            for (v, &m) in lm.iter().enumerate().take(nv - 1) {
                _mm512_storeu_ps(
                    d.add(v * 16),
                    _mm512_maskz_loadu_ps(m, s.wrapping_add(v * 16)),
                );
            }
            let v = nv - 1;
            let x = _mm512_maskz_loadu_ps(lm[v], s.wrapping_add(v * 16));
            if ci + 1 < c {
                _mm512_storeu_ps(d.add(v * 16), x);
            } else {
                _mm512_mask_storeu_ps(d.add(v * 16), tail, x);
            }
            s = s.wrapping_add(cstep);
        }
    }

    /// [`pad_band_avx512`] in 8-value vectors (`vmaskmovps` loads; the last channel's
    /// last vector a masked store).
    ///
    /// # Safety
    /// AVX2 present; `pl + cols <= wp`, `wp.div_ceil(8) <= PAD_VECTORS`, `c >= 1`;
    /// `src + ci * cstep .. + cols` readable and `dst .. + c * wp` writable.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pad_band_avx2(
        src: *const f32,
        cstep: usize,
        c: usize,
        cols: usize,
        pl: usize,
        dst: *mut f32,
        wp: usize,
    ) {
        let nv = wp.div_ceil(8);
        let mut lm = [_mm256_setzero_si256(); PAD_VECTORS];
        for (v, m) in lm.iter_mut().enumerate().take(nv) {
            // Lane `j` lies in the image where `lo <= j < hi`.
            let (lo, hi) = (pl.saturating_sub(v * 8), (pl + cols).saturating_sub(v * 8));
            *m = _mm256_andnot_si256(mask8(lo), mask8(hi));
        }
        let tail = mask8(wp - (nv - 1) * 8);
        let mut s = src.wrapping_sub(pl);
        for ci in 0..c {
            let d = dst.add(ci * wp);
            for (v, &m) in lm.iter().enumerate().take(nv - 1) {
                _mm256_storeu_ps(d.add(v * 8), _mm256_maskload_ps(s.wrapping_add(v * 8), m));
            }
            let v = nv - 1;
            let x = _mm256_maskload_ps(s.wrapping_add(v * 8), lm[v]);
            if ci + 1 < c {
                _mm256_storeu_ps(d.add(v * 8), x);
            } else {
                _mm256_maskstore_ps(d.add(v * 8), tail, x);
            }
            s = s.wrapping_add(cstep);
        }
    }

    /// The sum over K = (input channel, tap) into `$acc`: `$step!` (the instruction set's
    /// step macro) for each, the weights `$wstep` floats on per step. With `$nine` (a window
    /// of exactly 9 taps: 3x3) the taps run in a loop of their own inside the loop over the
    /// channels, so a step has no wrap-around bookkeeping (the single loop over K counts
    /// taps and moves to the next channel with two conditional moves per step).
    /// `examples/direct_bench.rs`, the two alternating in one process, 2 threads, AVX-512:
    /// 0.94-0.96x the time on ResNet-50's 3x3 layers on 56 to 14 wide images, 0.92-0.94x on
    /// SqueezeNet's, 0.94-0.99x on GoogLeNet's; on the 7-pixel tiles (7 wide images) it
    /// measured 1.01-1.03x, so those keep the single loop. A macro, as the steps: the
    /// accumulators stay in the caller's registers. With `$far, $far_end` (the AVX-512
    /// tiles: [`super::Dst::far`]) each step also asks for one line of the next channel
    /// block's weights in L2; `scripts/nodes_ab.py` on ResNet-50 (6 rounds, 2 threads, Zen
    /// 5): layer4's layers 0.87-0.92x the time, layer3's direct ones 0.97-0.98x.
    macro_rules! sum_k {
        ($step:ident, $acc:ident, $nine:expr, $cin:expr, $taps:expr, $plane:expr,
         $x:expr, $w:expr, $wstep:expr) => {
            sum_k!(
                $step,
                $acc,
                $nine,
                $cin,
                $taps,
                $plane,
                $x,
                $w,
                $wstep,
                std::ptr::null::<f32>(),
                std::ptr::null::<f32>()
            )
        };
        ($step:ident, $acc:ident, $nine:expr, $cin:expr, $taps:expr, $plane:expr,
         $x:expr, $w:expr, $wstep:expr, $far:expr, $far_end:expr) => {{
            let (taps, plane): (&[isize], usize) = ($taps, $plane);
            let (mut x, mut w): (*const f32, *const f32) = ($x, $w);
            // One line of `far..far_end` into L2 per step (see `Dst::far`).
            let (mut far, far_end): (*const f32, *const f32) = ($far, $far_end);
            if $nine {
                let t: [isize; 9] = [
                    taps[0], taps[1], taps[2], taps[3], taps[4], taps[5], taps[6], taps[7], taps[8],
                ];
                for _ in 0..$cin {
                    for &tt in &t {
                        if far < far_end {
                            _mm_prefetch::<_MM_HINT_T1>(far as *const i8);
                            far = far.wrapping_add(16);
                        }
                        $step!($acc, x.offset(tt), w);
                        w = w.add($wstep);
                    }
                    x = x.add(plane);
                }
            } else {
                let (nt, mut t) = (taps.len(), 0);
                for _ in 0..$cin * nt {
                    if far < far_end {
                        _mm_prefetch::<_MM_HINT_T1>(far as *const i8);
                        far = far.wrapping_add(16);
                    }
                    $step!($acc, x.offset(*taps.get_unchecked(t)), w);
                    w = w.add($wstep);
                    t += 1;
                    if t == nt {
                        t = 0;
                        x = x.add(plane);
                    }
                }
            }
        }};
    }

    /// One step of K: the `16 V` weights at `$w` (prefetched [`W_AHEAD`] steps ahead) times
    /// each of the `R` pixels' input at `$p` (`S` apart), into `$acc`. A macro, not a
    /// function: the accumulators must not be passed by reference (the compiler then keeps
    /// them in memory). Uses the caller's `R`, `V` and `S`.
    macro_rules! step {
        ($acc:ident, $p:expr, $w:expr) => {{
            let (p, w): (*const f32, *const f32) = ($p, $w);
            let mut wv = [_mm512_setzero_ps(); V];
            for (v, wr) in wv.iter_mut().enumerate() {
                _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(W_AHEAD * 16 * V + 16 * v) as *const i8);
                *wr = _mm512_loadu_ps(w.add(16 * v));
            }
            for (j, aj) in $acc.iter_mut().enumerate() {
                let b = _mm512_set1_ps(*p.add(j * S));
                for (c, wr) in aj.iter_mut().zip(wv) {
                    *c = _mm512_fmadd_ps(b, wr, *c);
                }
            }
        }};
    }

    /// The tile kernel for `v` vectors of channels (2: `r` pixels, 8 to 14; 4: 7), stride
    /// `s` and a window of `taps` taps: 3x3 windows on the 2-vector tiles take the 9-tap
    /// loop of [`sum_k`].
    pub(super) fn pick(v: usize, s: usize, taps: usize, r: usize) -> TileFn {
        macro_rules! two {
            ($($r:literal)*) => {
                match (r, s, taps) {
                    $(
                        ($r, 1, 9) => tile::<$r, 2, 1, true>,
                        ($r, _, 9) => tile::<$r, 2, 2, true>,
                        ($r, 1, _) => tile::<$r, 2, 1, false>,
                        ($r, _, _) => tile::<$r, 2, 2, false>,
                    )*
                    (_, 1, 9) => tile::<14, 2, 1, true>,
                    (_, _, 9) => tile::<14, 2, 2, true>,
                    (_, 1, _) => tile::<14, 2, 1, false>,
                    _ => tile::<14, 2, 2, false>,
                }
            };
        }
        match (v, s) {
            (2, _) => two!(8 9 10 11 12 13),
            (_, 1) => tile::<7, 4, 1, false>,
            _ => tile::<7, 4, 2, false>,
        }
    }

    /// One tile: `R` pixels (`S` apart in the padded row at `x`) by `16 V` channels, summed
    /// over `cin` channels (`plane` apart: one padded row) and the taps (offsets from a pixel's
    /// first tap; exactly 9 with `NINE`, see [`sum_k`]), then stored per `d`.
    ///
    /// # Safety
    /// AVX-512F; every `x + ic * plane + tap + j * S` (`j < R`) is readable; `w` holds
    /// `cin * taps.len() * 16 V` values; `d` as described on [`Dst`].
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn tile<const R: usize, const V: usize, const S: usize, const NINE: bool>(
        cin: usize,
        taps: &[isize],
        plane: usize,
        x: *const f32,
        w: *const f32,
        d: &Dst,
    ) {
        store(
            if !NINE && taps.len() == 1 && !d.near.is_null() {
                sums_near::<R, V, S>(cin, taps[0], plane, x, w, d)
            } else {
                sums::<R, V, S, NINE>(cin, taps, plane, x, w, d.far, d.far_end)
            },
            d,
        );
    }

    /// The accumulators of [`tile`] ([`sum_k`]), returned by value so that they stay in
    /// registers (a reference to them taken in the same function makes the compiler keep
    /// them in memory).
    #[inline(always)]
    unsafe fn sums<const R: usize, const V: usize, const S: usize, const NINE: bool>(
        cin: usize,
        taps: &[isize],
        plane: usize,
        x: *const f32,
        w: *const f32,
        far: *const f32,
        far_end: *const f32,
    ) -> [[__m512; V]; R] {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        sum_k!(
            step,
            acc,
            NINE,
            cin,
            taps,
            plane,
            x,
            w,
            16 * V,
            far,
            far_end
        );
        acc
    }

    /// [`sums`] for a 1x1 window that also brings the next tile's input into L2: per
    /// step (an input channel) the two or three lines that tile reads of that channel,
    /// from [`super::Dst::near`]. A 1x1 layer's tile reads one line or two of every input
    /// channel, rows a plane apart, a pattern no hardware prefetcher follows; at two
    /// threads half of the input was written by the other core (and the whole of it is
    /// read once per channel block, more than the L2 keeps beside the weights), so
    /// every step waited for a line from the other core's cache or from L3. Fetched a
    /// tile ahead, a whole tile's time hides that. `scripts/nodes_ab.py` on ResNet-50
    /// (Zen 5, 2 threads, 8 rounds, the builds alternating): `layer3`'s 1024 -> 256
    /// layers on 14x14 0.88-0.92x the time, `layer4.0.conv1` 0.92x, `layer3`'s
    /// 512 -> 1024 stride-2 shortcut 0.93x (the same layers 0.89-0.96x in a second,
    /// 6-round run); at 1 thread, where the input is in the core's own cache, their sum
    /// 0.99x (single layers 0.97-1.05x, inside the noise).
    #[inline(always)]
    unsafe fn sums_near<const R: usize, const V: usize, const S: usize>(
        cin: usize,
        tap: isize,
        plane: usize,
        x: *const f32,
        w: *const f32,
        d: &Dst,
    ) -> [[__m512; V]; R] {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let (mut x, mut w, mut near, mut far) = (x.offset(tap), w, d.near, d.far);
        for _ in 0..cin {
            if far < d.far_end {
                _mm_prefetch::<_MM_HINT_T1>(far as *const i8);
                far = far.wrapping_add(16);
            }
            _mm_prefetch::<_MM_HINT_T1>(near as *const i8);
            if S * (R - 1) >= 16 {
                _mm_prefetch::<_MM_HINT_T1>(near.wrapping_add(16) as *const i8);
            }
            _mm_prefetch::<_MM_HINT_T1>(near.wrapping_add(S * (R - 1)) as *const i8);
            step!(acc, x, w);
            w = w.add(16 * V);
            x = x.add(plane);
            near = near.wrapping_add(plane);
        }
        acc
    }

    /// The epilogue: per 16 channels, a 16 x 16 transpose to rows of pixels, then bias,
    /// residual, Relu or Clip, and a masked store of `d.px` pixels per channel.
    #[inline(always)]
    unsafe fn store<const R: usize, const V: usize>(acc: [[__m512; V]; R], d: &Dst) {
        let m = lanes(d.px);
        let zero = _mm512_setzero_ps();
        let (lo, hi) = d.clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
        for v in 0..V {
            if 16 * v >= d.oc {
                break;
            }
            let mut r = [zero; 16];
            for (j, a) in acc.iter().enumerate() {
                r[j] = a[v];
            }
            transpose16(&mut r);
            for (i, &val) in r.iter().enumerate().take(d.oc - 16 * v) {
                let o = 16 * v + i;
                let mut val = val;
                if !d.bias.is_null() {
                    val = _mm512_add_ps(val, _mm512_set1_ps(*d.bias.add(o)));
                }
                if !d.res.is_null() {
                    val = _mm512_add_ps(val, _mm512_maskz_loadu_ps(m, d.res.add(o * d.ld)));
                }
                if d.relu {
                    // NaN and -0 become +0 (`max` returns its second operand for those).
                    val = _mm512_max_ps(val, zero);
                }
                if d.clamp.is_some() {
                    // NaN is kept (`max` and `min` return their second operand for it).
                    val = _mm512_min_ps(hi, _mm512_max_ps(lo, val));
                }
                _mm512_mask_storeu_ps(d.y.add(o * d.ld), m, val);
            }
        }
    }

    /// One step of K for the AVX2 kernels: as [`step`] with 8-lane vectors and no weight
    /// prefetch (the weights are read in order, which the hardware prefetcher follows).
    macro_rules! step_avx2 {
        ($acc:ident, $p:expr, $w:expr) => {
            step_avx2_px!($acc, $p, $w, j => (j * S) as isize)
        };
    }

    /// [`step_avx2`] with pixel `j`'s input at `$p` plus `$off` (an expression of `$j`):
    /// `j * S` for the pixels of one row, per-pixel offsets for a tile that crosses rows.
    macro_rules! step_avx2_px {
        ($acc:ident, $p:expr, $w:expr, $j:ident => $off:expr) => {{
            let (p, w): (*const f32, *const f32) = ($p, $w);
            let mut wv = [_mm256_setzero_ps(); V];
            for (v, wr) in wv.iter_mut().enumerate() {
                *wr = _mm256_loadu_ps(w.add(8 * v));
            }
            for ($j, aj) in $acc.iter_mut().enumerate() {
                let b = _mm256_broadcast_ss(&*p.offset($off));
                for (c, wr) in aj.iter_mut().zip(wv) {
                    *c = _mm256_fmadd_ps(b, wr, *c);
                }
            }
        }};
    }

    /// The AVX2 tile kernel for a block of `v` vectors of 8 channels (2, or 1 for a last
    /// block of 8), stride `s`, a window of `taps` taps and tiles of `r` pixels (4 or 6).
    pub(super) fn pick_avx2(v: usize, s: usize, taps: usize, r: usize) -> TileFn {
        macro_rules! by_r {
            ($r:literal) => {
                match (v, s == 1, taps == 9) {
                    (1, true, true) => tile_avx2::<$r, 1, 1, true>,
                    (1, true, false) => tile_avx2::<$r, 1, 1, false>,
                    (1, false, true) => tile_avx2::<$r, 1, 2, true>,
                    (1, false, false) => tile_avx2::<$r, 1, 2, false>,
                    (_, true, true) => tile_avx2::<$r, 2, 1, true>,
                    (_, true, false) => tile_avx2::<$r, 2, 1, false>,
                    (_, false, true) => tile_avx2::<$r, 2, 2, true>,
                    (_, false, false) => tile_avx2::<$r, 2, 2, false>,
                }
            };
        }
        if r == super::AVX2_PIXELS {
            by_r!(6)
        } else {
            by_r!(4)
        }
    }

    /// [`tile`] for AVX2 and FMA: `R` pixels by `8 V` channels.
    ///
    /// # Safety
    /// AVX2 and FMA; otherwise as [`tile`] with `8 V` for `16 V`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_avx2<
        const R: usize,
        const V: usize,
        const S: usize,
        const NINE: bool,
    >(
        cin: usize,
        taps: &[isize],
        plane: usize,
        x: *const f32,
        w: *const f32,
        d: &Dst,
    ) {
        let mut acc = [[_mm256_setzero_ps(); V]; R];
        sum_k!(step_avx2, acc, NINE, cin, taps, plane, x, w, 8 * V);
        store_avx2(acc, d);
    }

    /// [`tile_avx2`] for a tile whose pixels need not lie on one input row: pixel `j`
    /// reads its window at `x + off[j]` (a tile that runs past the end of an output row
    /// into the next one; the output's pixels are consecutive in the plane either way).
    ///
    /// # Safety
    /// As [`tile_avx2`], with every `x + off[j]` a valid window origin.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_avx2_at<const R: usize, const V: usize, const NINE: bool>(
        cin: usize,
        taps: &[isize],
        plane: usize,
        x: *const f32,
        w: *const f32,
        d: &Dst,
        off: &[isize; super::AVX2_PIXELS],
    ) {
        const { assert!(R <= super::AVX2_PIXELS) };
        let o = *off;
        let mut acc = [[_mm256_setzero_ps(); V]; R];
        macro_rules! step_at {
            ($acc:ident, $p:expr, $w:expr) => {
                step_avx2_px!($acc, $p, $w, j => o[j])
            };
        }
        sum_k!(step_at, acc, NINE, cin, taps, plane, x, w, 8 * V);
        store_avx2(acc, d);
    }

    /// The AVX2 row-crossing tile kernel for a block of `v` vectors of 8 channels, a
    /// window of `taps` taps and tiles of `r` pixels (any stride: it is in the offsets).
    pub(super) fn pick_avx2_at(v: usize, taps: usize, r: usize) -> TileAtFn {
        macro_rules! by_r {
            ($r:literal) => {
                match (v, taps == 9) {
                    (1, true) => tile_avx2_at::<$r, 1, true>,
                    (1, false) => tile_avx2_at::<$r, 1, false>,
                    (_, true) => tile_avx2_at::<$r, 2, true>,
                    (_, false) => tile_avx2_at::<$r, 2, false>,
                }
            };
        }
        if r == super::AVX2_PIXELS {
            by_r!(6)
        } else {
            by_r!(4)
        }
    }

    /// The AVX2 epilogue: per 8 channels, 4 x 4 transposes (one per 128-bit half) turn
    /// each group of 4 pixels (and a last group of 2) by 8 channels into the group's
    /// pixels for each channel, then bias, residual, Relu or Clip and one 4-wide (2-wide)
    /// store per channel and group; a tile with fewer than `R` pixels or channels stores
    /// through a small buffer.
    #[inline(always)]
    unsafe fn store_avx2<const R: usize, const V: usize>(acc: [[__m256; V]; R], d: &Dst) {
        const { assert!(R == 4 || R == 6) };
        if d.px >= R && d.oc >= 8 * V {
            return match (d.res.is_null(), d.relu, d.clamp.is_some()) {
                (true, false, false) => store_avx2_full::<R, V, false, 0>(acc, d),
                (true, true, _) => store_avx2_full::<R, V, false, 1>(acc, d),
                (true, false, true) => store_avx2_full::<R, V, false, 2>(acc, d),
                (false, false, false) => store_avx2_full::<R, V, true, 0>(acc, d),
                (false, true, _) => store_avx2_full::<R, V, true, 1>(acc, d),
                (false, false, true) => store_avx2_full::<R, V, true, 2>(acc, d),
            };
        }
        // A ragged tile (the plane's last, or a layer whose channels are not a multiple
        // of 8): one value at a time.
        let mut buf = [[0.0f32; 8]; R];
        for v in 0..V {
            for (b, a) in buf.iter_mut().zip(&acc) {
                _mm256_storeu_ps(b.as_mut_ptr(), a[v]);
            }
            for i in 0..8 {
                let o = 8 * v + i;
                if o >= d.oc {
                    break;
                }
                let bias = if d.bias.is_null() {
                    0.0
                } else {
                    *d.bias.add(o)
                };
                for (j, b) in buf.iter().enumerate().take(d.px) {
                    let mut y = b[i] + bias;
                    if !d.res.is_null() {
                        y += *d.res.add(o * d.ld + j);
                    }
                    if d.relu {
                        y = if y > 0.0 { y } else { 0.0 };
                    }
                    if let Some((l, h)) = d.clamp {
                        y = if y < l {
                            l
                        } else if y > h {
                            h
                        } else {
                            y
                        };
                    }
                    *d.y.add(o * d.ld + j) = y;
                }
            }
        }
    }

    /// 4 pixels' vectors of 8 channels to 4 vectors of channels' pixels: vector `i` holds
    /// the 4 pixels of channel `i` (low half) and of channel `i + 4` (high half); two 4 x 4
    /// transposes, one per 128-bit half.
    #[inline(always)]
    unsafe fn channels4(p: [__m256; 4]) -> [__m256; 4] {
        let t0 = _mm256_castps_pd(_mm256_unpacklo_ps(p[0], p[1]));
        let t1 = _mm256_castps_pd(_mm256_unpackhi_ps(p[0], p[1]));
        let t2 = _mm256_castps_pd(_mm256_unpacklo_ps(p[2], p[3]));
        let t3 = _mm256_castps_pd(_mm256_unpackhi_ps(p[2], p[3]));
        [
            _mm256_castpd_ps(_mm256_unpacklo_pd(t0, t2)),
            _mm256_castpd_ps(_mm256_unpackhi_pd(t0, t2)),
            _mm256_castpd_ps(_mm256_unpacklo_pd(t1, t3)),
            _mm256_castpd_ps(_mm256_unpackhi_pd(t1, t3)),
        ]
    }

    /// [`store_avx2`] for a tile of `R` pixels whose `8 V` channels all exist, with the
    /// residual (`RES`) and the activation (`ACT`: 0 none, 1 Relu, 2 Clip) compile-time
    /// choices. The bias is one vector add per accumulator before the transposes (a
    /// vector holds one pixel's 8 channels), and each channel's row is its residual add,
    /// its activation and a store per group of pixels (4, and 2 for pixels 4 and 5 of a
    /// 6-pixel tile), with no per-channel tests.
    ///
    /// # Safety
    /// As [`store_avx2`], with `d.px >= R` and `d.oc >= 8 V`.
    #[inline(always)]
    unsafe fn store_avx2_full<const R: usize, const V: usize, const RES: bool, const ACT: u8>(
        mut acc: [[__m256; V]; R],
        d: &Dst,
    ) {
        const { assert!(R == 4 || R == 6) };
        let zero = _mm256_setzero_ps();
        let (lo, hi) = d.clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        let (lo, hi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
        if !d.bias.is_null() {
            for v in 0..V {
                let b = _mm256_loadu_ps(d.bias.add(8 * v));
                for a in acc.iter_mut() {
                    a[v] = _mm256_add_ps(a[v], b);
                }
            }
        }
        // A macro, not a closure: a closure would not inherit the caller's AVX2.
        macro_rules! finish {
            ($val:expr, $ra:expr, $rb:expr, $two:expr) => {{
                let (mut val, ra, rb, two): (__m256, *const f32, *const f32, bool) =
                    ($val, $ra, $rb, $two);
                if RES {
                    let (a, b) = if two {
                        (load2(ra), load2(rb))
                    } else {
                        (_mm_loadu_ps(ra), _mm_loadu_ps(rb))
                    };
                    val = _mm256_add_ps(val, _mm256_setr_m128(a, b));
                }
                if ACT == 1 {
                    val = _mm256_max_ps(val, zero);
                } else if ACT == 2 {
                    val = _mm256_min_ps(hi, _mm256_max_ps(lo, val));
                }
                val
            }};
        }
        // `v` picks a vector in each pixel's row of accumulators at once.
        #[allow(clippy::needless_range_loop)]
        for v in 0..V {
            for q in (0..R).step_by(4) {
                // Vector `i`: the group's pixels of channel `i` (low half) and of `i + 4`
                // (high); a group of 2 repeats its two pixels in lanes 2 and 3.
                let two = R - q < 4;
                let group = if two {
                    [acc[q][v], acc[q + 1][v], acc[q][v], acc[q + 1][v]]
                } else {
                    [acc[q][v], acc[q + 1][v], acc[q + 2][v], acc[q + 3][v]]
                };
                let rows = channels4(group);
                for (i, &val) in rows.iter().enumerate() {
                    let (ca, cb) = ((8 * v + i) * d.ld + q, (8 * v + 4 + i) * d.ld + q);
                    let val = finish!(val, d.res.wrapping_add(ca), d.res.wrapping_add(cb), two);
                    let (a, b) = (_mm256_castps256_ps128(val), _mm256_extractf128_ps::<1>(val));
                    if two {
                        store2(d.y.add(ca), a);
                        store2(d.y.add(cb), b);
                    } else {
                        _mm_storeu_ps(d.y.add(ca), a);
                        _mm_storeu_ps(d.y.add(cb), b);
                    }
                }
            }
        }
    }

    /// Two floats at `p` (any alignment) in lanes 0 and 1, zeros above.
    #[inline(always)]
    unsafe fn load2(p: *const f32) -> __m128 {
        _mm_castsi128_ps(_mm_loadl_epi64(p as *const __m128i))
    }

    /// Lanes 0 and 1 of `v` to `p` (any alignment).
    #[inline(always)]
    unsafe fn store2(p: *mut f32, v: __m128) {
        _mm_storel_epi64(p as *mut __m128i, _mm_castps_si128(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::conv_naive;

    fn rnd(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    /// The padded rows hold the image at (`pt`, `pl`) in each channel's row of `wp`, zeros
    /// elsewhere, for both vector widths (rows of one vector, several, a ragged last one,
    /// rows wider than the vector kernels take) and the copies' fallback: each value
    /// checked against its definition.
    #[test]
    fn padded_rows_hold_the_image_and_zeros() {
        let isas: Vec<bool> = if !available() {
            vec![false]
        } else if avx512() {
            vec![true, false]
        } else {
            vec![false]
        };
        let cases = [
            (1, 1, 1, 0, 0, 1),
            (3, 5, 7, 1, 1, 9),
            (2, 4, 14, 1, 1, 16),
            (5, 3, 13, 2, 3, 17),
            (4, 6, 30, 1, 1, 33),
            (3, 2, 33, 0, 2, 40),
            (2, 3, 56, 1, 1, 58),
            (2, 2, 600, 3, 1, 610),
        ];
        for (c, h, w, pt, pl, wp) in cases {
            let g = Geom2d {
                pt,
                pl,
                ..Geom2d::square(c, h, w, 3, 1, 1, 0)
            };
            let hp = h + 2 * pt;
            let x = rnd(c * h * w, (c * h * w) as u64);
            for &isa in &isas {
                let mut xp = vec![f32::NAN; hp * c * wp];
                pad_rows(&x, &g, wp, &mut xp, isa);
                for py in 0..hp {
                    for ci in 0..c {
                        for px in 0..wp {
                            let got = xp[(py * c + ci) * wp + px];
                            let (iy, ix) = (py as isize - pt as isize, px as isize - pl as isize);
                            let want =
                                if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                    x[(ci * h + iy as usize) * w + ix as usize]
                                } else {
                                    0.0
                                };
                            assert_eq!(got.to_bits(), want.to_bits(), "{c}x{h}x{w} pad {pt},{pl} wp {wp} avx512 {isa}: ({py}, {ci}, {px})");
                        }
                    }
                }
            }
        }
    }

    /// Weights past `PARALLEL_PACK` are packed block by block on several threads: each
    /// value sits at its block's row for its input tap, in its output channel's lane,
    /// and the lanes past the last channel stay zero.
    #[test]
    fn large_weights_pack_on_threads_like_the_layout() {
        let (m, cin, kh, kw) = (100, 80, 3, 3);
        let k = cin * kh * kw;
        assert!(m * k >= PARALLEL_PACK);
        let w = rnd(m * k, 11);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for ow in [7, 28] {
            let d = pool
                .install(|| DirectWeights::new(&w, m, cin, kh, kw, ow))
                .unwrap();
            let bw = d.bw;
            for ob in 0..m.div_ceil(bw) {
                let pw = block_width(d.avx512, m, bw, ob);
                for kk in 0..k {
                    for lane in 0..pw {
                        let o = ob * bw + lane;
                        let want = if o < m { w[o * k + kk] } else { 0.0 };
                        assert_eq!(d.panels[ob * k * bw + kk * pw + lane], want);
                    }
                }
            }
        }
    }

    /// The convolution by [`conv_naive`] (summed in f64), plus the residual.
    fn naive(
        x: &[f32],
        g: &Geom2d,
        wt: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        res: Option<&[f32]>,
    ) -> Vec<f64> {
        let zeros = vec![0.0; m];
        let conv = conv_naive(x, wt, bias.unwrap_or(&zeros), g, m);
        conv.iter()
            .enumerate()
            .map(|(i, &v)| v as f64 + res.map_or(0.0, |r| r[i] as f64))
            .collect()
    }

    /// `w` with each tile width the instruction set has (AVX2: 6 and 4 pixels).
    fn tilings(w: DirectWeights) -> Vec<DirectWeights> {
        let mut v = vec![w.clone()];
        if let Ok(four) = w.with_tile_pixels(AVX2_NARROW_PIXELS) {
            v.push(four);
        }
        v
    }

    #[test]
    fn tile_widths() {
        if !available() {
            return;
        }
        let w = DirectWeights::new(&[0.5; 16 * 2 * 9], 16, 2, 3, 3, 8).unwrap();
        assert!(w.clone().with_tile_pixels(5).is_err());
        if !avx512() {
            assert_eq!(w.tile_pixels(), 6);
            assert_eq!(w.with_tile_pixels(4).unwrap().tile_pixels(), 4);
        }
    }

    #[test]
    fn avx512_tiles_cover_rows_in_the_fewest_pixels() {
        for (ow, r) in [
            (8, 8),
            (13, 13),
            (14, 14),
            (15, 8),
            (16, 8),
            (17, 9),
            (27, 14),
        ] {
            assert_eq!(avx512_pixels(ow), r, "{ow} wide");
        }
        assert_eq!(avx512_pixels(55), 14);
        assert_eq!(avx512_pixels(56), 14);
        assert_eq!(avx512_pixels(35), 12);
        assert_eq!(avx512_pixels(usize::MAX), 14);
    }

    #[test]
    fn preferred_leaves_thin_wide_first_layers_to_the_gemm_on_avx512() {
        // SqueezeNet 1.1's first layer (64 channels, 3 x 3 x 3 weights each), MobileNetV2's
        // (32 channels), ResNet-50's (64 channels, 3 x 7 x 7).
        assert_eq!(preferred(64, 27), !avx512());
        assert_eq!(preferred(128, AVX512_MIN_K - 1), !avx512());
        assert!(preferred(32, 27));
        assert!(preferred(64, 147));
        assert!(preferred(64, AVX512_MIN_K));
    }

    #[test]
    fn pointwise_rule_takes_small_planes_by_whole_blocks_and_reductions() {
        // Square planes `side` wide.
        let direct = |m, k, side| preferred_pointwise(m, k, side, side);
        if !avx512() {
            assert!(!direct(512, 2048, 7));
            return;
        }
        // ResNet-50's and GoogLeNet's wide layers (the first rule).
        assert!(direct(512, 2048, 7) && direct(2048, 512, 7) && direct(256, 1024, 14));
        assert!(direct(624, 832, 7));
        // MobileNetV2: 320 -> 1280 and 960 -> 320 on 7x7, the 14x14 reductions.
        assert!(direct(1280, 320, 7) && direct(320, 960, 7));
        assert!(direct(96, 576, 14) && direct(96, 384, 14) && direct(64, 384, 14));
        // Left to the GEMM: part-filled 64-channel blocks, short K, 14x14 expansions,
        // shallow reductions, large planes.
        assert!(!direct(160, 960, 7) && !direct(960, 160, 7) && !direct(1280, 255, 7));
        assert!(!direct(576, 96, 14) && !direct(384, 64, 14) && !direct(64, 192, 14));
        assert!(!direct(296, 512, 14) && !direct(80, 384, 14));
        assert!(!direct(64, 512, 28) && !direct(0, 512, 7));
        // The block is the planned tile's: rows of 7 take 64 channels whatever the height.
        assert!(!preferred_pointwise(96, 384, 28, 7) && preferred_pointwise(128, 384, 28, 7));
        assert!(!preferred_pointwise(1280, 320, usize::MAX, usize::MAX));
    }

    #[test]
    fn matches_naive() {
        if !available() {
            return;
        }
        // (c, h, w, k, stride, dilation, pad, m): both tile shapes, ragged tiles and
        // channel blocks, strides 1 and 2, dilation, no padding, 1x1 and 7x7 windows; on
        // AVX2 the 14, 13, 9 (stride 2) and 10 (dilated) wide outputs take tiles that
        // cross rows.
        let cases = [
            (3, 16, 16, 3, 1, 1, 1, 5),
            (16, 14, 14, 3, 1, 1, 1, 40),
            (8, 7, 7, 3, 1, 1, 1, 70),
            (5, 13, 13, 3, 1, 1, 1, 33),
            (4, 17, 17, 3, 2, 1, 1, 17),
            (3, 30, 30, 7, 2, 1, 3, 16),
            (6, 12, 12, 3, 1, 2, 2, 9),
            (7, 9, 11, 1, 1, 1, 0, 20),
            (4, 8, 8, 5, 1, 1, 0, 64),
            (2, 15, 15, 3, 2, 1, 0, 3),
            // Rows tiled in raster order on AVX2 (a tile crossing into the next row),
            // with dilation.
            (3, 10, 10, 3, 1, 2, 2, 20),
            // Read in place (no padding, every tile's taps inside the image) with
            // AVX-512's tiles: 1x1 at strides 1 and 2, 3x3 unpadded, and a stride-2 1x1
            // whose last input rows no tap reads.
            (32, 14, 14, 1, 1, 1, 0, 40),
            (16, 28, 28, 1, 2, 1, 0, 33),
            (8, 16, 16, 3, 1, 1, 0, 20),
            (5, 30, 28, 1, 2, 1, 0, 17),
        ];
        for (i, &(c, h, wd, k, s, d, p, m)) in cases.iter().enumerate() {
            let g = Geom2d::square(c, h, wd, k, s, d, p);
            let x = rnd(c * h * wd, i as u64 + 1);
            let wt = rnd(m * c * k * k, i as u64 + 50);
            let b = rnd(m, i as u64 + 90);
            let r = rnd(m * g.oh * g.ow, i as u64 + 130);
            // Each activation with and without a residual: the epilogue of a full tile
            // is compiled for each combination.
            for res in [Some(&r[..]), None] {
                let want = naive(&x, &g, &wt, m, Some(&b), res);
                // Planned widths 8 to 13 take AVX-512's narrower 32-channel tiles
                // (`avx512_pixels`), 7 the 64-channel one.
                for planned in [g.ow, 7, 8, 9, 10, 11, 12, 13] {
                    let pw = DirectWeights::new(&wt, m, c, k, k, planned).unwrap();
                    for pw in tilings(pw) {
                        for act in [
                            Activation::None,
                            Activation::Relu,
                            Activation::Clip { lo: -0.1, hi: 0.2 },
                            Activation::Silu,
                        ] {
                            let mut y = vec![f32::NAN; m * g.oh * g.ow];
                            conv_direct(&x, &g, &pw, Some(&b), res, act, &mut y).unwrap();
                            let mut wa: Vec<f32> = want.iter().map(|&v| v as f32).collect();
                            act.apply_slice(&mut wa);
                            for (j, (a, e)) in y.iter().zip(&wa).enumerate() {
                                assert!(
                                (a - e).abs() <= 1e-4 * (1.0 + e.abs()),
                                "case {i} planned {planned} {}px {act:?} residual {} at {j}: {a} vs {e}",
                                pw.tile_pixels(),
                                res.is_some()
                            );
                            }
                        }
                    }
                }
            }
            // Without bias and residual.
            let want = naive(&x, &g, &wt, m, None, None);
            let pw = DirectWeights::new(&wt, m, c, k, k, g.ow).unwrap();
            for pw in tilings(pw) {
                let mut y = vec![f32::NAN; m * g.oh * g.ow];
                conv_direct(&x, &g, &pw, None, None, Activation::None, &mut y).unwrap();
                for (a, e) in y.iter().zip(&want) {
                    assert!((*a as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()));
                }
            }
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        if !available() {
            return;
        }
        assert!(DirectWeights::new(&[0.0; 10], 2, 1, 3, 3, 8).is_err());
        assert!(DirectWeights::new(&[], 0, 1, 3, 3, 8).is_err());
        assert!(DirectWeights::new(&[], 1, 0, usize::MAX, 3, 8).is_err());
        let g = Geom2d::square(2, 8, 8, 3, 1, 1, 1);
        let pw = DirectWeights::new(&[0.1; 4 * 2 * 9], 4, 2, 3, 3, 8).unwrap();
        let x = vec![0.0; 2 * 64];
        let mut y = vec![0.0; 4 * 64];
        assert!(conv_direct(&x[..10], &g, &pw, None, None, Activation::None, &mut y).is_err());
        assert!(conv_direct(&x, &g, &pw, None, None, Activation::None, &mut y[..5]).is_err());
        assert!(conv_direct(&x, &g, &pw, Some(&[0.0; 3]), None, Activation::None, &mut y).is_err());
        let g3 = Geom2d { c: 3, ..g };
        assert!(conv_direct(&x, &g3, &pw, None, None, Activation::None, &mut y).is_err());
        // Padding whose padded image size overflows: an error, not a wrapped size.
        let huge = Geom2d {
            pl: usize::MAX / 2,
            ..g
        };
        assert!(conv_direct(&x, &huge, &pw, None, None, Activation::None, &mut y).is_err());
        let g3 = Geom2d { sh: 3, sw: 3, ..g };
        assert!(conv_direct(&x, &g3, &pw, None, None, Activation::None, &mut y).is_err());
    }
}
