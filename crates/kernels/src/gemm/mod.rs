//! Packed single-precision matrix multiply with fused epilogues.
//!
//! `C = act(alpha * A B + beta * C + bias + residual)`, computed in `MR x NR` register
//! tiles (BLIS-style loops: `K` in blocks of `kc`, `A` packed `mc` rows at a time, `B`
//! panels of `NR` columns). The epilogue runs on each tile right after its last `K` block,
//! while the tile is still in cache, so a fused bias, residual Add or activation costs one
//! pass over the tile instead of one over the whole tensor.
//!
//! `B` is usually a weight matrix: [`PackedB`] packs it once (at compile time) and every
//! thread and call shares it. `A` (activations, an implicit im2col of an image, a strided
//! matrix) is packed on the fly into a per-thread buffer. The microkernel is chosen once at
//! run time from the CPU's features ([`Kernel::detect`]): AVX-512, AVX2+FMA, or portable.
//!
//! Work is split over the threads of the current rayon pool. Where it costs no repeated
//! packing, the larger side of C is self-scheduled: workers take chunks of its panels
//! from a shared counter, so a thread that comes free late (it was running another branch
//! of the graph) joins in, and one left alone finishes all. The operand every chunk reads
//! whole (`B` for chunks of rows, `A` for chunks of columns) is packed once, over the pool,
//! when it is not prepacked; a side with few panels hands out parts of panels, each cut
//! across the other side, so that the threads' shares come out even. Otherwise (sides
//! too small, operands too large to pack whole) C is cut statically into one block per
//! thread.
mod gemv;
mod micro;
mod pack;
mod shifted;

pub(crate) use pack::copy_strided;
pub use pack::{Im2col, PanelSource, Strided};
pub use shifted::{applies as shifted_applies, conv_shifted, ShiftedError, ShiftedWeights};

use crate::activation::Activation;
use crate::{prefetch, SyncPtr};
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// A microkernel and the block sizes that suit it.
#[derive(Debug)]
pub struct Kernel {
    /// `avx512`, `avx2`, or `generic`.
    pub name: &'static str,
    pub mr: usize,
    pub nr: usize,
    /// Depth of one `K` block.
    pub kc: usize,
    /// Rows of `A` packed at a time (a multiple of `mr`).
    pub mc: usize,
    /// A [`Rhs::Direct`] at most this many columns wide is packed rather than read in
    /// place (0: never). Its rows, `N` floats apart, straddle cache lines, and a panel's
    /// `kc` rows fill the L1 with parts of lines it does not use. On Zen 3 (AVX2,
    /// `pw_bench`, the old rule behind a switch, alternating in one process) packing
    /// ResNet-50's, GoogLeNet's and MobileNetV2's 49-column products took 0.83-0.97x the
    /// time at 1 thread and 0.86-1.0x at 2 on the large ones (the 2-thread figures of
    /// products under 0.3 ms ranged 0.94-1.07x between runs); N = 196 was mixed
    /// (0.92-1.26x), so it stays in place. Not measured for AVX-512 (0 there).
    pub pack_n_max: usize,
    f: micro::MicroFn,
    /// Kernels for a ragged last row panel (entry `r - 1` computes `r < mr` rows), where
    /// the instruction set has them; otherwise the full kernel computes all `mr`.
    tails: &'static [micro::MicroFn],
    /// Kernels for a last column panel at most `nr / 2` wide (entry `r - 1` computes `r`
    /// rows), where the instruction set has them.
    halves: &'static [micro::MicroFn],
    /// A kernel for the last `1..=cols_max` columns of a tile (`nv` of them), where the
    /// instruction set has one: a tile whose width is at most `cols_max` past a multiple
    /// of `nr / 2` computes those columns with it. On AVX2 it is one column: more single
    /// columns cost more than the wider kernel (Zen 3, `pw_bench`, 2 threads, alternating
    /// builds: the single column instead of an 8-wide pass took 0.63-0.89x the time on
    /// 2048x512x49, 0.77-0.78x on 512x2048x49 and 0.87-0.93x on SqueezeNet's 1000x512x169
    /// classifier). On AVX-512 up to 8 columns past a multiple of 16, or up to 12 in a
    /// tile narrower than 16, load the panel's rows of `A` once per `k`.
    cols: Option<micro::MicroFn>,
    /// The widest edge `cols` computes.
    cols_max: usize,
    /// Products with `K` at most this walk row panels outermost (see `run_block`). On
    /// AVX2 (Zen 3, `pw_bench`, 1 thread, both orders in one process) with `K` <= 32 that
    /// took 0.71-0.81x the time on 96x16x12544, 144x24x3136 and 32x16x12544 with the
    /// operands out of cache (`--cold`) and 0.91-1.07x in cache; the portable kernel
    /// 0.88x cold. With `K` = 64 it took 0.80-0.91x cold with a residual Add but
    /// 1.05x in cache, and whole models did not change; with `K` = 256, 1.06-1.11x
    /// (128x256x3136, 1024x256x196). On AVX-512 with `K` <= 32 (`pw_bench`, the two
    /// orders alternating; MobileNetV2's 16x32x12544, 96x16x12544, 32x16x12544 and
    /// 144x24x3136) it took 0.62-0.87x the time out of cache and 0.93-1.02x in cache at 2
    /// threads on a Zen 4 EPYC, and 0.91-0.99x at 1 and 2 threads on a Sapphire Rapids
    /// Xeon; with `K` = 64 it made no difference there (0.97-1.03x). 0 (never) where not
    /// measured.
    pub rows_outer_k: usize,
}

static GENERIC: Kernel = Kernel {
    name: "generic",
    mr: micro::GENERIC_MR,
    nr: micro::GENERIC_NR,
    kc: 256,
    mc: 64,
    pack_n_max: 0,
    f: micro::generic,
    tails: &[],
    halves: &[],
    cols: None,
    cols_max: 0,
    rows_outer_k: 32,
};

#[cfg(target_arch = "x86_64")]
static AVX2: Kernel = Kernel {
    name: "avx2",
    mr: micro::x86::AVX2_MR,
    nr: micro::x86::AVX2_NR,
    kc: 256,
    mc: 72,
    pack_n_max: 64,
    f: micro::x86::avx2,
    tails: &micro::x86::AVX2_ROWS,
    halves: &micro::x86::AVX2_HALF,
    cols: Some(micro::x86::avx2_col),
    cols_max: 1,
    rows_outer_k: 32,
};

#[cfg(target_arch = "x86_64")]
static AVX512: Kernel = Kernel {
    name: "avx512",
    mr: micro::x86::AVX512_MR,
    nr: micro::x86::AVX512_NR,
    kc: 768,
    mc: 14 * 12,
    pack_n_max: 0,
    f: micro::x86::avx512,
    tails: &micro::x86::AVX512_ROWS,
    halves: &micro::x86::AVX512_HALF,
    cols: Some(micro::x86::avx512_cols),
    cols_max: micro::x86::AVX512_COLS_MAX,
    rows_outer_k: 32,
};

/// aarch64 (NEON). The blocks are the AVX2 kernel's, which has the same tile; not tuned on
/// an aarch64 machine (none was at hand: its tests run under QEMU, see
/// `scripts/test_aarch64.sh`).
#[cfg(target_arch = "aarch64")]
static NEON: Kernel = Kernel {
    name: "neon",
    mr: micro::arm::NEON_MR,
    nr: micro::arm::NEON_NR,
    kc: 256,
    mc: 72,
    pack_n_max: 0,
    f: micro::arm::neon,
    tails: &[],
    halves: &[],
    cols: None,
    cols_max: 0,
    rows_outer_k: 32,
};

impl Kernel {
    /// The fastest kernel this CPU runs (detected once).
    pub fn detect() -> &'static Kernel {
        static BEST: OnceLock<&'static Kernel> = OnceLock::new();
        BEST.get_or_init(|| Kernel::available().into_iter().next().unwrap_or(&GENERIC))
    }

    /// Every kernel this CPU can run, fastest first (the portable one is always last).
    pub fn available() -> Vec<&'static Kernel> {
        #[allow(unused_mut)]
        let mut v: Vec<&'static Kernel> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
            {
                v.push(&AVX512);
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(&AVX2);
            }
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon") {
            v.push(&NEON);
        }
        v.push(&GENERIC);
        v
    }

    /// A kernel by name, if this CPU runs it.
    pub fn named(name: &str) -> Option<&'static Kernel> {
        Kernel::available().into_iter().find(|k| k.name == name)
    }

    /// This kernel with other cache blocks (`kc` deep, `mc` rows of `A`, rounded up to a
    /// multiple of `mr`), for tuning experiments; the kernel is leaked, so make few.
    pub fn with_blocks(&'static self, kc: usize, mc: usize) -> &'static Kernel {
        Box::leak(Box::new(Kernel {
            kc: kc.max(1),
            mc: mc.div_ceil(self.mr).max(1) * self.mr,
            ..*self
        }))
    }

    /// This kernel with row panels outermost for `K` up to `k` (0: never), for tuning
    /// experiments as [`Kernel::with_blocks`]; the kernel is leaked, so make few.
    pub fn with_rows_outer_k(&'static self, k: usize) -> &'static Kernel {
        Box::leak(Box::new(Kernel {
            rows_outer_k: k,
            ..*self
        }))
    }

    /// The microkernel for a tile of `mv` rows and `nv` columns: one that computes only
    /// those rows (and half the width) when the tile is ragged and the instruction set
    /// has one, else the full kernel.
    fn micro(&self, mv: usize, nv: usize) -> micro::MicroFn {
        let i = mv.saturating_sub(1);
        let part = if 2 * nv <= self.nr {
            self.halves.get(i)
        } else if mv < self.mr {
            self.tails.get(i)
        } else {
            None
        };
        part.copied().unwrap_or(self.f)
    }

    /// How many of a tile's `nv` columns, at its right edge, the narrow kernel `cols`
    /// computes (the rest go to [`Kernel::micro`]).
    fn single_cols(&self, nv: usize) -> usize {
        let r = nv % (self.nr / 2).max(1);
        // Past 8 columns, only a tile narrower than half the width: SqueezeNet's 13x13
        // planes (169 = 5 x 32 + 9, the 9 columns in the narrow kernel) took 0.92-0.96x
        // the time (`pw_bench`, 1000 x 512 x 169); where a half-width pass would run
        // besides (153 = 4 x 32 + 16 + 9, 729 = 22 x 32 + 16 + 9) 1.01-1.03x.
        if self.cols.is_some() && r <= self.cols_max && (r <= COLS_ALWAYS || r == nv) {
            r
        } else {
            0
        }
    }

    fn blocks(&self, k: usize) -> usize {
        k.div_ceil(self.kc).max(1)
    }
}

/// Why a GEMM call was refused (operand extents that do not fit their buffers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GemmError {
    #[error("gemm: {0}")]
    Shape(String),
}

fn shape_err(msg: impl Into<String>) -> GemmError {
    GemmError::Shape(msg.into())
}

/// An operand packed once for one kernel: `A` in `MR`-row panels or `B` in `NR`-column
/// panels, in `kc`-deep blocks. Weights are packed like this at model compile time.
#[derive(Clone, Debug)]
pub struct Packed {
    kernel: &'static Kernel,
    /// Panel width: the kernel's `mr` (an `A`) or `nr` (a `B`).
    width: usize,
    k: usize,
    len: usize,
    data: Vec<f32>,
}

/// `A` (`M x K`) packed in `MR`-row panels.
pub type PackedA = Packed;
/// `B` (`K x N`) packed in `NR`-column panels.
pub type PackedB = Packed;

/// Values from which [`Packed`]'s constructors pack on all threads.
const PARALLEL_PACK: usize = 1 << 16;

impl Packed {
    /// Packs `src` (its `len` is N, its `depth` K) as a `B` for the detected kernel.
    pub fn new(src: &dyn PanelSource) -> Packed {
        Packed::with_kernel(src, Kernel::detect())
    }

    /// Packs `src` as a `B` (`NR` panels) for `kernel`.
    pub fn with_kernel(src: &dyn PanelSource, kernel: &'static Kernel) -> Packed {
        Packed::build(src, kernel, kernel.nr)
    }

    /// Packs `src` (its `len` is M, its `depth` K) as an `A` (`MR` panels) for `kernel`.
    pub fn lhs_with_kernel(src: &dyn PanelSource, kernel: &'static Kernel) -> Packed {
        Packed::build(src, kernel, kernel.mr)
    }

    /// Packs `src` as an `A` for the detected kernel.
    pub fn lhs(src: &dyn PanelSource) -> Packed {
        Packed::lhs_with_kernel(src, Kernel::detect())
    }

    fn build(src: &dyn PanelSource, kernel: &'static Kernel, width: usize) -> Packed {
        let (k, len) = (src.depth(), src.len());
        let panels = len.div_ceil(width);
        let mut data = vec![0.0f32; panels * width * k];
        // Zeroed memory comes untouched from the allocator, so the pack takes its page
        // faults: on all of the current pool's threads for large weights, where the faults
        // cost more than the copy (compile time of GoogLeNet, `perf record`).
        let parallel = data.len() >= PARALLEL_PACK;
        pack_panels(kernel, src, width, &mut data, parallel);
        Packed {
            kernel,
            width,
            k,
            len,
            data,
        }
    }

    /// Packs `src` into this operand's memory, as the same kind (`A` or `B`) for the same
    /// kernel: the allocation is reused (grown only when `src` needs more), so an operand
    /// packed anew on every run, as attention's keys, allocates nothing once warm.
    pub fn repack(&mut self, src: &dyn PanelSource) {
        let (k, len) = (src.depth(), src.len());
        // Every panel value is written by the pack (the panel source's contract), so the
        // old contents need no zeroing.
        self.data
            .resize(len.div_ceil(self.width) * self.width * k, 0.0);
        pack_panels(self.kernel, src, self.width, &mut self.data, false);
        self.k = k;
        self.len = len;
    }

    pub fn k(&self) -> usize {
        self.k
    }
    /// Columns (a `B`) or rows (an `A`).
    pub fn n(&self) -> usize {
        self.len
    }
    pub fn kernel(&self) -> &'static Kernel {
        self.kernel
    }
    /// Bytes held (for memory plans).
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }

    fn view(&self) -> Panels<'_> {
        Panels {
            kc: self.kernel.kc,
            width: self.width,
            k: self.k,
            first: 0,
            stride: self.len.div_ceil(self.width),
            data: &self.data,
        }
    }

    /// The rows (an `A`) `rows` as panels, `rows.start` a multiple of the panel width.
    fn view_rows(&self, start: usize, end: usize) -> Panels<'_> {
        debug_assert!(start <= end && end <= self.len);
        Panels {
            first: start / self.width,
            ..self.view()
        }
    }
}

/// Packed panels, borrowed: a [`Packed`]'s, or ones a product packed for its own jobs to
/// share. Block `pc` holds every panel's `K` rows `pc * kc ..` one panel after another.
#[derive(Clone, Copy)]
struct Panels<'a> {
    kc: usize,
    width: usize,
    k: usize,
    /// The view's first panel among those `data` holds ([`Lhs::PackedRows`]).
    first: usize,
    /// Panels per `kc` block in `data`.
    stride: usize,
    data: &'a [f32],
}

impl<'a> Panels<'a> {
    /// Panel `jr` of block `pc` (which starts at depth `pc * kc`).
    fn panel(&self, pc: usize, jr: usize) -> &'a [f32] {
        let (off, len) = self.at(pc, jr);
        &self.data[off..off + len]
    }

    /// Panels `jr..jr + count` of block `pc`, which lie one after another (those inside
    /// the data).
    fn panels(&self, pc: usize, jr: usize, count: usize) -> &'a [f32] {
        let (off, len) = self.at(pc, jr);
        let end = (off + count * len).min(self.data.len());
        self.data.get(off..end).unwrap_or(&[])
    }

    /// Where panel `jr` of block `pc` starts, and its length.
    fn at(&self, pc: usize, jr: usize) -> (usize, usize) {
        let (kc, w) = (self.kc, self.width);
        let k0 = pc * kc;
        let kcb = kc.min(self.k - k0);
        (k0 * self.stride * w + (self.first + jr) * kcb * w, kcb * w)
    }
}

/// `A` as a job reads it.
#[derive(Clone, Copy)]
enum AIn<'a> {
    /// Prepacked, or packed once by the product for all its jobs.
    Panels(Panels<'a>),
    /// Packed by each job for its own rows.
    Source(&'a dyn PanelSource),
}

impl<'a> AIn<'a> {
    fn of(a: Lhs<'a>) -> AIn<'a> {
        match a {
            Lhs::Packed(p) => AIn::Panels(p.view()),
            Lhs::PackedRows(p, start, end) => AIn::Panels(p.view_rows(start, end)),
            Lhs::Source(s) => AIn::Source(s),
        }
    }
}

/// `B` as a job reads it.
#[derive(Clone, Copy)]
enum BIn<'a> {
    /// Prepacked, or packed once by the product for all its jobs.
    Panels(Panels<'a>),
    /// Packed by each job for its own columns.
    Source(&'a dyn PanelSource),
    /// Read in place, all but the ragged last panel, which is either packed already
    /// (`ragged`, one panel) or packed by each job that needs it.
    Direct {
        data: &'a [f32],
        n: usize,
        ld: usize,
        ragged: Option<Panels<'a>>,
    },
}

impl<'a> BIn<'a> {
    fn of(b: Rhs<'a>) -> BIn<'a> {
        match b {
            Rhs::Packed(p) => BIn::Panels(p.view()),
            Rhs::Source(s) => BIn::Source(s),
            Rhs::Direct { data, n, ld, .. } => BIn::Direct {
                data,
                n,
                ld,
                ragged: None,
            },
        }
    }
}

/// The left-hand operand: prepacked, or packed on the fly from a source.
#[derive(Clone, Copy)]
pub enum Lhs<'a> {
    Packed(&'a Packed),
    /// Rows `start..end` (the two numbers) of a prepacked `A`, `start` a multiple of the
    /// kernel's `mr`: a product over some of a layer's output channels, the other rows
    /// not read.
    PackedRows(&'a Packed, usize, usize),
    Source(&'a dyn PanelSource),
}

/// The right-hand operand: prepacked, packed on the fly from a source, or read in place.
#[derive(Clone, Copy)]
pub enum Rhs<'a> {
    Packed(&'a Packed),
    Source(&'a dyn PanelSource),
    /// A row-major `K x N` matrix with rows `ld` apart, read by the microkernel where it
    /// lies (no packing): a 1x1 convolution's input. Only the ragged last panel is packed.
    Direct {
        data: &'a [f32],
        k: usize,
        n: usize,
        ld: usize,
    },
}

impl Lhs<'_> {
    fn dims(&self) -> (usize, usize) {
        match self {
            Lhs::Packed(p) => (p.len, p.k),
            Lhs::PackedRows(p, start, end) => (end.saturating_sub(*start), p.k),
            Lhs::Source(s) => (s.len(), s.depth()),
        }
    }
}

impl Rhs<'_> {
    fn dims(&self) -> (usize, usize) {
        match self {
            Rhs::Packed(p) => (p.k, p.len),
            Rhs::Source(s) => (s.depth(), s.len()),
            Rhs::Direct { k, n, .. } => (*k, *n),
        }
    }
}

/// A read-only 2-D view: element `(i, j)` at `data[i * rs + j * cs]`. Zero strides
/// broadcast.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

/// The output: element `(i, j)` at `data[i * rs + j * cs]`.
pub struct Out<'a> {
    pub data: &'a mut [f32],
    pub rs: usize,
    pub cs: usize,
}

/// What happens to each output tile after the product.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    pub alpha: f32,
    /// Weight of the old contents of `C`; when zero `C` is not read.
    pub beta: f32,
    /// Added per row (`len M`) or per column (`len N`).
    pub bias: Bias<'a>,
    /// Added elementwise (a fused residual Add).
    pub residual: Option<View<'a>>,
    pub act: Activation,
}

impl Default for Epilogue<'_> {
    fn default() -> Self {
        Epilogue {
            alpha: 1.0,
            beta: 0.0,
            bias: Bias::None,
            residual: None,
            act: Activation::None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub enum Bias<'a> {
    #[default]
    None,
    Row(&'a [f32]),
    Col(&'a [f32]),
}

fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1)
        .checked_mul(rs)?
        .checked_add((cols - 1).checked_mul(cs)?)?
        .checked_add(1)
}

/// `C = act(alpha * A B + beta * C + bias + residual)` with `A: M x K` packed on the fly,
/// `B: K x N`. Uses the threads of the current rayon pool.
pub fn gemm(
    a: &dyn PanelSource,
    b: Rhs<'_>,
    c: Out<'_>,
    epi: &Epilogue<'_>,
) -> Result<(), GemmError> {
    let kernel = match b {
        Rhs::Packed(p) => p.kernel,
        _ => Kernel::detect(),
    };
    gemm_ex(kernel, Lhs::Source(a), b, c, epi)
}

/// [`gemm`] with an explicit kernel (tests compare every kernel the CPU has).
pub fn gemm_with(
    kernel: &'static Kernel,
    a: &dyn PanelSource,
    b: Rhs<'_>,
    c: Out<'_>,
    epi: &Epilogue<'_>,
) -> Result<(), GemmError> {
    gemm_ex(kernel, Lhs::Source(a), b, c, epi)
}

/// The general form: either operand prepacked or packed on the fly. A convolution is
/// `Lhs::Packed(weights)` times `Rhs::Source(Im2col)` into a row-major `Cout x pixels` C
/// (NCHW); a layer with constant weights on the right is `Lhs::Source` times
/// `Rhs::Packed`.
pub fn gemm_ex(
    kernel: &'static Kernel,
    a: Lhs<'_>,
    b: Rhs<'_>,
    c: Out<'_>,
    epi: &Epilogue<'_>,
) -> Result<(), GemmError> {
    gemm_on(kernel, a, b, c, epi, rayon::current_num_threads().max(1))
}

/// [`gemm_ex`] on the calling thread alone, for a caller that runs many products side by
/// side over the pool itself (Winograd's 36 per layer): none of them forks, so none of
/// them holds a buffer of the thread's shared stack while another product of the same
/// thread needs one (a nested product would grow that stack in some run after the first).
pub fn gemm_ex_one_thread(
    kernel: &'static Kernel,
    a: Lhs<'_>,
    b: Rhs<'_>,
    c: Out<'_>,
    epi: &Epilogue<'_>,
) -> Result<(), GemmError> {
    gemm_on(kernel, a, b, c, epi, 1)
}

/// [`gemm_ex`] split over at most `threads` jobs of the current pool (1: no fork).
fn gemm_on(
    kernel: &'static Kernel,
    a: Lhs<'_>,
    b: Rhs<'_>,
    c: Out<'_>,
    epi: &Epilogue<'_>,
    threads: usize,
) -> Result<(), GemmError> {
    let (m, k) = a.dims();
    let (kb, n) = b.dims();
    if kb != k {
        return Err(shape_err(format!("A is {m}x{k} but B is {kb}x{n}")));
    }
    if let Lhs::Packed(p) | Lhs::PackedRows(p, ..) = a {
        if !std::ptr::eq(p.kernel, kernel) || p.width != kernel.mr {
            return Err(shape_err("A was packed for another kernel or as a B"));
        }
    }
    if let Lhs::PackedRows(p, start, end) = a {
        if start % p.width != 0 || start > end || end > p.len {
            return Err(shape_err(format!(
                "rows {start}..{end} of a packed A of {} rows in panels of {}",
                p.len, p.width
            )));
        }
    }
    if let Rhs::Packed(p) = b {
        if !std::ptr::eq(p.kernel, kernel) || p.width != kernel.nr {
            return Err(shape_err("B was packed for another kernel or as an A"));
        }
    }
    if let Rhs::Direct { data, k, n, ld } = b {
        if k > 0 && n > 0 && (n > ld || span(k, n, ld, 1).is_none_or(|s| s > data.len())) {
            return Err(shape_err(format!(
                "B holds {} values, a {k}x{n} matrix with rows {ld} apart needs more",
                data.len()
            )));
        }
    }
    let need = span(m, n, c.rs, c.cs).ok_or_else(|| shape_err("C extent overflows"))?;
    if need > c.data.len() {
        return Err(shape_err(format!(
            "C holds {} values, a {m}x{n} result with strides ({}, {}) needs {need}",
            c.data.len(),
            c.rs,
            c.cs
        )));
    }
    if let Some(r) = &epi.residual {
        let need = span(m, n, r.rs, r.cs).ok_or_else(|| shape_err("residual overflows"))?;
        if need > r.data.len() {
            return Err(shape_err(format!(
                "residual holds {} values, needs {need}",
                r.data.len()
            )));
        }
    }
    match epi.bias {
        Bias::Row(v) if v.len() < m => return Err(shape_err("row bias shorter than M")),
        Bias::Col(v) if v.len() < n => return Err(shape_err("column bias shorter than N")),
        _ => {}
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    // A narrow `B` read in place (a 7x7 image's 49 pixels) is packed instead: see
    // `Kernel::pack_n_max`.
    let strided;
    let b = match b {
        Rhs::Direct { data, k, n, ld } if n <= kernel.pack_n_max => {
            match Strided::new(data, n, k, 1, ld) {
                Some(s) => {
                    strided = s;
                    Rhs::Source(&strided)
                }
                None => b,
            }
        }
        _ => b,
    };
    let out = OutPtr {
        ptr: c.data.as_mut_ptr(),
        rs: c.rs,
        cs: c.cs,
    };
    if k == 0 {
        let zero = [0.0f32; 32 * 32];
        for i0 in (0..m).step_by(kernel.mr) {
            for j0 in (0..n).step_by(kernel.nr) {
                let t = TileAt {
                    i0,
                    j0,
                    mv: kernel.mr.min(m - i0),
                    nv: kernel.nr.min(n - j0),
                    ld: kernel.nr,
                };
                // SAFETY: the tile lies inside C (checked above); one thread.
                unsafe { store_tile(&zero, &mut [0.0; 32 * 32], t, out, epi, true, true) };
            }
        }
        return Ok(());
    }
    let give = |stores: [Vec<f32>; 2]| {
        SHARED.with_borrow_mut(|v| v.extend(stores.into_iter().filter(|s| s.capacity() > 0)))
    };
    // One row by prepacked weights (a classifier at batch 1): its own kernel.
    if let (Lhs::Source(src), Rhs::Packed(pb)) = (a, b) {
        if gemv::applies(kernel, m, pb) {
            let mut xbuf = take_shared();
            // SAFETY: C, the bias and the residual were checked against `1 x n` above;
            // `applies` checked the kernel (and so the CPU's AVX-512).
            unsafe { gemv::run(src, pb, out, epi, &mut xbuf, threads) };
            give([xbuf, Vec::new()]);
            return Ok(());
        }
    }
    let (mp, np) = (m.div_ceil(kernel.mr), n.div_ceil(kernel.nr));
    // Small products are not worth a fork.
    let work = m as u64 * n as u64 * k as u64;
    // A job packs an `A` given as a source again for every block of `NC_PANELS` column
    // panels it covers; when a job covers more than one block, or several jobs read the
    // same rows, packing it once for all of them is cheaper (bert_small's products at one
    // thread packed their activations 2 to 8 times each).
    let a_once = |cols_per_job: usize, row_sharers: usize| {
        (cols_per_job > NC_PANELS || row_sharers > 1) && mp * kernel.mr * k <= SHARED_MAX
    };
    if threads == 1 || work < 1 << 18 {
        let mut astore = Vec::new();
        let ain = a_in(kernel, a, a_once(np, 1), &mut astore);
        // SAFETY: the one job covers C, checked above.
        unsafe { run_block(kernel, ain, BIn::of(b), out, epi, (0, mp), (0, np), m, n, k) };
        give([astore, Vec::new()]);
        return Ok(());
    }
    match self_scheduled_side(a, b, (kernel.mr, kernel.nr), (mp, np), k, threads) {
        Some(side) => {
            // The operand every chunk reads whole (B for chunks of rows, A for chunks of
            // columns) is packed once for all of them, unless it is prepacked; so is an A
            // that chunks of rows would each pack more than once.
            let (mut astore, mut bstore) = (Vec::new(), Vec::new());
            let ain = a_in(kernel, a, side == Side::Cols || a_once(np, 1), &mut astore);
            let bin = match b {
                Rhs::Source(src) if side == Side::Rows => {
                    bstore = take_shared();
                    BIn::Panels(pack_shared(kernel, src, kernel.nr, &mut bstore))
                }
                Rhs::Direct { data, k, n, ld } if side == Side::Rows && n % kernel.nr != 0 => {
                    let last = (np - 1) * kernel.nr;
                    bstore = take_shared();
                    let ragged = Strided::new(data, n, k, 1, ld).map(|src| {
                        pack_shared(
                            kernel,
                            &Tail {
                                src: &src,
                                from: last,
                            },
                            kernel.nr,
                            &mut bstore,
                        )
                    });
                    BIn::Direct {
                        data,
                        n,
                        ld,
                        ragged,
                    }
                }
                _ => BIn::of(b),
            };
            // Workers take chunks of one side's panels from a shared counter until none
            // are left, so a thread that joins late (it was busy with another branch of
            // the graph) still takes its share, and one left alone does it all.
            let panels = side.panels(mp, np);
            let cross = match side {
                Side::Rows => np,
                Side::Cols => mp,
            };
            let cuts = cuts(panels, cross, threads);
            let units = panels * cuts;
            let next = AtomicUsize::new(0);
            let worker = |_| {
                while let Some((u0, u1)) = grab(&next, units, threads) {
                    for (s, c) in unit_spans(u0, u1, cuts, cross) {
                        let (rows, cols) = match side {
                            Side::Rows => (s, c),
                            Side::Cols => (c, s),
                        };
                        // SAFETY: the counter hands out each unit once, and the units
                        // cover disjoint panel ranges; all inside C.
                        unsafe { run_block(kernel, ain, bin, out, epi, rows, cols, m, n, k) };
                    }
                }
            };
            (0..threads.min(units)).into_par_iter().for_each(worker);
            give([astore, bstore]);
        }
        None => {
            // Jobs that share a column range each read all of A's rows for it, and jobs
            // that share a row range each pack B's columns: split the larger operand, so
            // the smaller one is what gets read twice.
            let (tm, tn) = split(mp, np, threads, n > m);
            let mut astore = Vec::new();
            let ain = a_in(kernel, a, a_once(np.div_ceil(tn), tn), &mut astore);
            let bin = BIn::of(b);
            let job = |ji: usize| {
                let (bi, bj) = (ji / tn, ji % tn);
                let (p0, p1) = chunk(mp, tm, bi);
                let (q0, q1) = chunk(np, tn, bj);
                // SAFETY: jobs cover disjoint panel ranges of C, all inside C (checked
                // above).
                unsafe { run_block(kernel, ain, bin, out, epi, (p0, p1), (q0, q1), m, n, k) };
            };
            (0..tm * tn).into_par_iter().for_each(job);
            give([astore, Vec::new()]);
        }
    }
    Ok(())
}

/// `A` as the product's jobs read it: with `once`, an `A` given as a source is packed
/// whole into `store` (taken from the thread's [`SHARED`] stack; the caller gives it back)
/// for all of them; otherwise as given.
fn a_in<'s>(kernel: &'static Kernel, a: Lhs<'s>, once: bool, store: &'s mut Vec<f32>) -> AIn<'s> {
    match a {
        Lhs::Source(src) if once => {
            *store = take_shared();
            AIn::Panels(pack_shared(kernel, src, kernel.mr, store))
        }
        _ => AIn::of(a),
    }
}

/// A buffer from the thread's [`SHARED`] stack (or a new one) for an operand packed once
/// per product; the caller gives it back when the product is done.
fn take_shared() -> Vec<f32> {
    SHARED.with_borrow_mut(|v| v.pop()).unwrap_or_default()
}

/// The columns of `src` from `from` on (a Direct B's ragged last panel).
struct Tail<'a> {
    src: &'a dyn PanelSource,
    from: usize,
}

impl PanelSource for Tail<'_> {
    fn len(&self) -> usize {
        self.src.len() - self.from
    }
    fn depth(&self) -> usize {
        self.src.depth()
    }
    fn pack(&self, p0: usize, w: usize, k0: usize, kc: usize, out: &mut [f32]) {
        self.src.pack(self.from + p0, w, k0, kc, out)
    }
}

/// Packs all of `src` in panels `nr` wide (the kernel's `nr` for a `B`, `mr` for an `A`)
/// into `store` (grown as needed, kept for the next product), its panels shared out over
/// the pool's threads.
fn pack_shared<'s>(
    kernel: &'static Kernel,
    src: &dyn PanelSource,
    nr: usize,
    store: &'s mut Vec<f32>,
) -> Panels<'s> {
    let (k, len) = (src.depth(), src.len());
    let total = len.div_ceil(nr) * nr * k;
    if store.len() < total {
        store.resize(total, 0.0);
    }
    let dst = &mut store[..total];
    pack_panels(kernel, src, nr, dst, total >= 1 << 14);
    Panels {
        kc: kernel.kc,
        width: nr,
        k,
        first: 0,
        stride: len.div_ceil(nr),
        data: dst,
    }
}

/// Packs all of `src` in panels `width` wide into `dst` (`panels * width * depth` values)
/// in the layout [`Panels::panel`] reads: `kc`-deep blocks, each holding every panel's
/// rows of that block one panel after another. With `parallel`, the panels are shared out
/// over the current pool.
fn pack_panels(
    kernel: &'static Kernel,
    src: &dyn PanelSource,
    width: usize,
    dst: &mut [f32],
    parallel: bool,
) {
    let (k, len, kc) = (src.depth(), src.len(), kernel.kc);
    let panels = len.div_ceil(width);
    if panels == 0 || k == 0 {
        return;
    }
    assert!(
        dst.len() >= panels * width * k,
        "pack_panels: short destination"
    );
    let base = SyncPtr(dst.as_mut_ptr());
    let base = &base;
    let pack_panel = |q: usize| {
        for pc in 0..kernel.blocks(k) {
            let k0 = pc * kc;
            let kcb = kc.min(k - k0);
            let off = k0 * panels * width + q * kcb * width;
            // SAFETY: panel `q`'s block `pc` is its own `kcb * width` run of `dst` (checked
            // long enough above); each panel is packed by one job.
            let out = unsafe { std::slice::from_raw_parts_mut(base.get().add(off), kcb * width) };
            src.pack(q * width, width, k0, kcb, out);
        }
    };
    if parallel && panels > 1 {
        (0..panels).into_par_iter().for_each(pack_panel);
    } else {
        (0..panels).for_each(pack_panel);
    }
}

/// Which side of C a self-scheduled product hands out in chunks.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    Rows,
    Cols,
}

impl Side {
    fn panels(self, mp: usize, np: usize) -> usize {
        match self {
            Side::Rows => mp,
            Side::Cols => np,
        }
    }
}

/// The side to hand out in chunks, or `None` for the static split. It is the larger side
/// (as in the static split, so the other operand is read fewer times), when it has at
/// least two panels per thread and the operand every chunk reads whole (A for chunks of
/// columns, B for chunks of rows) is prepacked, or small enough to pack once for all
/// chunks ([`pack_shared`]).
fn self_scheduled_side(
    a: Lhs<'_>,
    b: Rhs<'_>,
    (mr, nr): (usize, usize),
    (mp, np): (usize, usize),
    k: usize,
    threads: usize,
) -> Option<Side> {
    let cols_free = match a {
        Lhs::Packed(_) | Lhs::PackedRows(..) => true,
        Lhs::Source(_) => mp * mr * k <= SHARED_MAX,
    };
    let rows_free = match b {
        Rhs::Packed(_) => true,
        Rhs::Direct { .. } | Rhs::Source(_) => np * nr * k <= SHARED_MAX,
    };
    let (side, panels, free) = if np > mp {
        (Side::Cols, np, cols_free)
    } else {
        (Side::Rows, mp, rows_free)
    };
    (free && panels >= 2 * threads).then_some(side)
}

/// The most floats a product packs once for all its jobs (16 MiB).
const SHARED_MAX: usize = 1 << 22;

/// The next chunk of `panels` from the shared counter (guided self-scheduling: a
/// `1/threads` share of what is left, so the first chunks are large and the last ones
/// small enough to balance a late joiner), or `None` when all are out.
fn grab(next: &AtomicUsize, panels: usize, threads: usize) -> Option<(usize, usize)> {
    let mut at = next.load(Ordering::Relaxed);
    loop {
        if at >= panels {
            return None;
        }
        let size = (panels - at).div_ceil(threads);
        match next.compare_exchange_weak(at, at + size, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some((at, at + size)),
            Err(now) => at = now,
        }
    }
}

/// Units each panel of a self-scheduled side is cut into across the other side's
/// `cross` panels: 1 when the side has at least [`UNITS_PER_THREAD`] panels per thread,
/// else as many as bring it there (at most `cross`). Handed out whole, the 7 row panels
/// of MobileNetV2's 576 -> 96 layer on 14x14 went 4 to one thread and 3 to the other.
/// On Zen 4 (`pw_bench`, 2 threads, three alternating runs) cutting them in two took
/// 0.80-0.84x the time on 96x576x196 and 64x384x196; in MobileNetV2 (`nodes_ab.py`, 12
/// rounds) its 384 -> 64 and 576 -> 96 layers took 0.87-0.92x (one of the three
/// 576 -> 96, 1.0x), the layers it does not touch 1.0-1.03x.
fn cuts(panels: usize, cross: usize, threads: usize) -> usize {
    let want = UNITS_PER_THREAD * threads;
    if panels >= want {
        1
    } else {
        want.div_ceil(panels.max(1)).clamp(1, cross.max(1))
    }
}

/// Self-scheduled units wanted per thread (see [`cuts`]).
const UNITS_PER_THREAD: usize = 4;

/// The panel ranges units `u0..u1` cover, each unit `u` being panel `u / cuts` of the
/// scheduled side by part `u % cuts` of the `cross` panels of the other: as
/// `(side range, cross range)` pairs, whole panels merged into one range.
fn unit_spans(
    u0: usize,
    u1: usize,
    cuts: usize,
    cross: usize,
) -> impl Iterator<Item = ((usize, usize), (usize, usize))> {
    let mut u = u0;
    std::iter::from_fn(move || {
        if u >= u1 {
            return None;
        }
        let p = u / cuts;
        let c0 = u % cuts;
        if c0 == 0 && u1 - u >= cuts {
            // Whole panels: as many as the range holds.
            let whole = (u1 - u) / cuts;
            u += whole * cuts;
            return Some(((p, p + whole), (0, cross)));
        }
        let c1 = cuts.min(c0 + (u1 - u));
        u += c1 - c0;
        Some((
            (p, p + 1),
            (chunk(cross, cuts, c0).0, chunk(cross, cuts, c1).0),
        ))
    })
}

/// Leftover columns the narrow kernel takes at the edge of any tile ([`Kernel::single_cols`]).
const COLS_ALWAYS: usize = 8;

/// Splits `mp x np` panels among `threads` jobs, along one side first.
fn split(mp: usize, np: usize, threads: usize, n_first: bool) -> (usize, usize) {
    if n_first {
        let tn = threads.min(np);
        let tm = (threads / tn).clamp(1, mp);
        (tm, tn)
    } else {
        let tm = threads.min(mp);
        let tn = (threads / tm).clamp(1, np);
        (tm, tn)
    }
}

/// Part `i` of `n` items cut into `parts` near-equal ranges.
fn chunk(n: usize, parts: usize, i: usize) -> (usize, usize) {
    (n * i / parts, n * (i + 1) / parts)
}

#[derive(Clone, Copy)]
struct OutPtr {
    ptr: *mut f32,
    rs: usize,
    cs: usize,
}
// SAFETY: jobs write disjoint tiles; the pointer outlives the parallel section.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

#[derive(Clone, Copy)]
struct TileAt {
    i0: usize,
    j0: usize,
    mv: usize,
    nv: usize,
    ld: usize,
}

thread_local! {
    static PACK_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PACK_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Buffers for an operand packed once per product ([`pack_shared`]): a stack, since a
    /// thread waiting for its product's jobs may run another product meanwhile.
    static SHARED: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Column panels of `B` packed at a time (bounds the per-thread `B` buffer near L2 size).
const NC_PANELS: usize = 8;

/// The most floats a thread's packing buffers (`A`, `B`) ever hold for `kernel`: they
/// grow to this at their first use, so a thread's later products never allocate.
fn pack_bounds(kernel: &Kernel) -> (usize, usize) {
    let mcp = (kernel.mc / kernel.mr).max(1);
    // A job walking row panels outermost packs more column panels of a shallower `K`.
    let b_panels =
        (NC_PANELS * kernel.kc).max(ROWS_OUTER_PANELS * kernel.kc.min(kernel.rows_outer_k));
    (mcp * kernel.mr * kernel.kc, b_panels * kernel.nr)
}

/// Grows the calling thread's packing buffers to their bound for the kernel this CPU runs.
///
/// Which pool thread runs which part of a product varies from call to call, so a thread
/// may first need its buffers in any later call: calling this on every thread of a pool
/// (`pool.broadcast(|_| reserve_scratch())`) when a session starts means no product
/// allocates afterwards.
pub fn reserve_scratch() {
    let (a, b) = pack_bounds(Kernel::detect());
    PACK_A.with_borrow_mut(|v| {
        if v.len() < a {
            v.resize(a, 0.0)
        }
    });
    PACK_B.with_borrow_mut(|v| {
        if v.len() < b {
            v.resize(b, 0.0)
        }
    });
}

/// One job: row panels `p0..p1` by column panels `q0..q1`, all of K.
///
/// Within a `K` block, a block of up to [`NC_PANELS`] column panels at a time: usually
/// each column panel in turn against the row panels of one `mc` block of `A` (the `B`
/// panel stays in L1 while the `A` panels stream from L2); when `K` is at most
/// [`Kernel::rows_outer_k`] and `A` is in panels already, each row panel in turn against
/// [`ROWS_OUTER_PANELS`] column panels instead, so that C and a residual are written and
/// read as a few long runs rather than many short ones. Runs of full tiles go to the
/// microkernel back to back with only their pointers moved (see [`Block::run`]).
///
/// # Safety
/// The panels must lie inside C and no other thread may write them meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn run_block(
    kernel: &'static Kernel,
    a: AIn<'_>,
    b: BIn<'_>,
    out: OutPtr,
    epi: &Epilogue<'_>,
    (p0, p1): (usize, usize),
    (q0, q1): (usize, usize),
    m: usize,
    n: usize,
    k: usize,
) {
    let (mr, nr, kc) = (kernel.mr, kernel.nr, kernel.kc);
    let mcp = (kernel.mc / mr).max(1);
    let blocks = kernel.blocks(k);
    // `A`'s panels when this job walks row panels outermost.
    let rows_outer = match a {
        AIn::Panels(pa) if k <= kernel.rows_outer_k => Some(pa),
        _ => None,
    };
    let ncp = if rows_outer.is_some() {
        ROWS_OUTER_PANELS
    } else {
        NC_PANELS
    };
    let (relu, clamp, post_act) = epi.act.in_tile();
    let mut scratch = Scratch {
        tile: [0.0; 32 * 32],
        tt: [0.0; 32 * 32],
    };
    PACK_A.with_borrow_mut(|abuf| {
        PACK_B.with_borrow_mut(|bbuf| {
            for pc in 0..blocks {
                let k0 = pc * kc;
                let kcb = kc.min(k - k0);
                let blk = Block {
                    kernel,
                    out,
                    epi,
                    // The fast path: the kernel writes straight into a row-major C.
                    direct: out.cs == 1 && epi.residual.is_none_or(|r| r.cs == 1),
                    first: pc == 0,
                    last: pc + 1 == blocks,
                    relu,
                    clamp,
                    post_act,
                    kcb,
                    m,
                    n,
                };
                // Runs of full tiles (below): not when an activation the tile cannot
                // apply follows each tile.
                let runs = blk.direct && !(blk.last && post_act);
                let mut jc = q0;
                while jc < q1 {
                    let je = (jc + ncp).min(q1);
                    match b {
                        BIn::Source(src) => {
                            let len = (je - jc) * nr * kcb;
                            if bbuf.len() < len {
                                bbuf.resize(len.max(pack_bounds(kernel).1), 0.0);
                            }
                            for q in jc..je {
                                let o = (q - jc) * nr * kcb;
                                src.pack(q * nr, nr, k0, kcb, &mut bbuf[o..o + nr * kcb]);
                            }
                        }
                        BIn::Direct {
                            data,
                            n,
                            ld,
                            ragged: None,
                        } if je * nr > n => {
                            // The ragged last panel: pack it (reading in place would run
                            // past the row).
                            if bbuf.len() < nr * kcb {
                                bbuf.resize((nr * kcb).max(pack_bounds(kernel).1), 0.0);
                            }
                            if let Some(src) = Strided::new(data, n, k, 1, ld) {
                                src.pack((je - 1) * nr, nr, k0, kcb, &mut bbuf[..nr * kcb]);
                            }
                        }
                        _ => {}
                    }
                    // B panel `q` of this block: its slice, row stride, and the distance
                    // to the next panel (for a run along N).
                    let b_panel = |q: usize| -> (&[f32], usize, usize) {
                        match b {
                            BIn::Panels(pb) => (pb.panel(pc, q), nr, nr * kcb),
                            BIn::Source(_) => {
                                (&bbuf[(q - jc) * nr * kcb..][..nr * kcb], nr, nr * kcb)
                            }
                            BIn::Direct {
                                n, ragged: Some(r), ..
                            } if (q + 1) * nr > n => (r.panel(pc, 0), nr, nr * kcb),
                            BIn::Direct { n, .. } if (q + 1) * nr > n => {
                                (&bbuf[..nr * kcb], nr, nr * kcb)
                            }
                            BIn::Direct { data, ld, .. } => (
                                &data[k0 * ld + q * nr..(k0 + kcb - 1) * ld + q * nr + nr],
                                ld,
                                nr,
                            ),
                        }
                    };
                    // Full column panels of this block: `jc..qf`.
                    let qf = if runs { je.min(n / nr).max(jc) } else { jc };
                    if let Some(pa) = rows_outer {
                        for p in p0..p1 {
                            let ap = pa.panel(pc, p);
                            let mut q = jc;
                            if qf > jc && (p + 1) * mr <= m {
                                let (bp, ldb, step) = b_panel(jc);
                                blk.run(
                                    ap.as_ptr(),
                                    bp.as_ptr(),
                                    ldb,
                                    (p, jc),
                                    qf - jc,
                                    Along::N(step),
                                );
                                q = qf;
                            }
                            for q in q..je {
                                let (bp, ldb, _) = b_panel(q);
                                blk.tile(ap, bp, ldb, p, q, &mut scratch);
                            }
                        }
                        jc = je;
                        continue;
                    }
                    let mut ic = p0;
                    while ic < p1 {
                        let ie = (ic + mcp).min(p1);
                        if let AIn::Source(src) = a {
                            let len = (ie - ic) * mr * kcb;
                            if abuf.len() < len {
                                abuf.resize(len.max(pack_bounds(kernel).0), 0.0);
                            }
                            for p in ic..ie {
                                let o = (p - ic) * mr * kcb;
                                src.pack(p * mr, mr, k0, kcb, &mut abuf[o..o + mr * kcb]);
                            }
                        }
                        let a_panel = |p: usize| -> &[f32] {
                            match a {
                                AIn::Panels(pa) => pa.panel(pc, p),
                                AIn::Source(_) => &abuf[(p - ic) * mr * kcb..][..mr * kcb],
                            }
                        };
                        // Full row panels of this `A` block: `ic..pf`.
                        let pf = if runs { ie.min(m / mr).max(ic) } else { ic };
                        // The next block's prepacked `A` panels (this job's), brought
                        // into L2 a part per column panel while this block runs: weights
                        // too large to stay in cache come from memory once per run, and
                        // a block's first column panel would otherwise wait for them.
                        // `nodes_ab.py`, ResNet-50, 6 rounds, 2 threads, Zen 5: its six
                        // 256 -> 1024 layers on 14x14 0.95-0.96x the time.
                        let next = match a {
                            AIn::Panels(pa) if ie < p1 => {
                                pa.panels(pc, ie, (ie + mcp).min(p1) - ie)
                            }
                            _ => &[],
                        };
                        for q in jc..je {
                            let (bp, ldb, _) = b_panel(q);
                            let far = prefetch::part(next, je - jc, q - jc);
                            let mut p = ic;
                            if pf > ic && q < qf {
                                let ap = a_panel(ic);
                                // The job's first block meets its panels first in its
                                // first column: each tile there fetches the next panel.
                                // `nodes_ab.py`, MobileNetV2, 8 rounds, 2 threads, Zen 5:
                                // its 1x1 layers on 7x7 (one block per job) 0.80-0.86x.
                                let ahead = match a {
                                    AIn::Panels(_) if jc == q0 && ic == p0 && q == jc => {
                                        p1 - ic - 1
                                    }
                                    _ => 0,
                                };
                                blk.run_far(
                                    ap.as_ptr(),
                                    bp.as_ptr(),
                                    ldb,
                                    (ic, q),
                                    pf - ic,
                                    Along::M,
                                    (far, ahead),
                                );
                                p = pf;
                            } else {
                                prefetch::l2(far);
                            }
                            for p in p..ie {
                                blk.tile(a_panel(p), bp, ldb, p, q, &mut scratch);
                            }
                        }
                        ic = ie;
                    }
                    jc = je;
                }
            }
        })
    });
}

/// How many column panels a job takes at a time when it walks row panels outermost.
const ROWS_OUTER_PANELS: usize = 16;

/// The stack buffers of a tile that goes through [`store_tile`].
struct Scratch {
    tile: [f32; 32 * 32],
    tt: [f32; 32 * 32],
}

/// Which way a run of tiles goes: down `M` (the next row panel of `A`, `mr * kcb` floats
/// on) or along `N` (the next panel of `B`, this many floats on).
#[derive(Clone, Copy)]
enum Along {
    M,
    N(usize),
}

/// What every tile of one `K` block of a job shares.
struct Block<'e> {
    kernel: &'static Kernel,
    out: OutPtr,
    epi: &'e Epilogue<'e>,
    direct: bool,
    first: bool,
    last: bool,
    relu: bool,
    clamp: Option<(f32, f32)>,
    post_act: bool,
    kcb: usize,
    m: usize,
    n: usize,
}

impl Block<'_> {
    /// The microkernel's view of the tile at `(i0, j0)`, `mv x nv`, written into C where
    /// it lies.
    ///
    /// # Safety
    /// The tile must lie inside C (and the bias and residual, when present).
    unsafe fn tile_out(&self, i0: usize, j0: usize, mv: usize, nv: usize) -> micro::TileOut {
        let epi = self.epi;
        micro::TileOut {
            c: self.out.ptr.add(i0 * self.out.rs + j0),
            ldc: self.out.rs,
            mv,
            nv,
            alpha: epi.alpha,
            add_old: if self.first { epi.beta } else { 1.0 },
            last: self.last,
            bias_row: match epi.bias {
                Bias::Row(v) => v.as_ptr().add(i0),
                _ => std::ptr::null(),
            },
            bias_col: match epi.bias {
                Bias::Col(v) => v.as_ptr().add(j0),
                _ => std::ptr::null(),
            },
            res: match &epi.residual {
                Some(r) => r.data.as_ptr().add(i0 * r.rs + j0),
                None => std::ptr::null(),
            },
            ldr: epi.residual.map_or(0, |r| r.rs),
            relu: self.relu,
            clamp: self.clamp,
            pf_a: std::ptr::null(),
            pf_b: 0,
        }
    }

    /// `count` full tiles from row panel `p`, column panel `q` on, down `M` or along
    /// `N`, each one microkernel call with the previous call's pointers moved on: the
    /// per-tile work of [`Block::tile`] (finding the panels, building the tile's view,
    /// choosing a kernel) took 22% of a 16x32x12544 product's time, and a tile of
    /// `K` = 32 is only some 200 cycles of FMAs.
    ///
    /// # Safety
    /// The `count` tiles must be full (`mr x nr`) and inside C, `self.direct` and no
    /// activation after the tile on the last block; `a` and `b` point at the first tile's
    /// panels, and the later panels lie `mr * kcb` (down `M`) or `step` (along `N`)
    /// floats on.
    unsafe fn run(
        &self,
        a: *const f32,
        b: *const f32,
        ldb: usize,
        pq: (usize, usize),
        count: usize,
        along: Along,
    ) {
        self.run_far(a, b, ldb, pq, count, along, (&[], 0));
    }

    /// [`Block::run`], bringing `far` into L2 meanwhile, an equal part before each tile
    /// (a few dozen lines: not enough to stall the tile behind them); and down `M`, for
    /// the first `ahead` tiles, the next row panel of `A` during each (the microkernel's
    /// `pf_a`), for `A` panels that come from memory at their first tile.
    ///
    /// # Safety
    /// As [`Block::run`]; the `ahead` panels after the first lie one after another.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_far(
        &self,
        a: *const f32,
        b: *const f32,
        ldb: usize,
        (p, q): (usize, usize),
        count: usize,
        along: Along,
        (far, ahead): (&[f32], usize),
    ) {
        let (mr, nr, kcb) = (self.kernel.mr, self.kernel.nr, self.kcb);
        let f = self.kernel.f;
        let mut o = self.tile_out(p * mr, q * nr, mr, nr);
        // Along `N` over an image read in place (rows a plane apart), each step of `k`
        // prefetches its row of the next tile's columns, a whole tile ahead, rather than
        // the row `B_AHEAD` down in this tile: the next tile's first rows would otherwise
        // miss, and with `K` <= 32 (the only runs along `N`) they are a quarter of it.
        // `pw_bench` (Zen 4, builds alternating, 3 runs each): 16x32x12544 0.98x the time
        // in cache and 0.65-0.77x with the image out of cache (`--cold`, 1 and 2 threads),
        // 96x16x12544 0.94-0.96x cold, 144x24x3136 and 192x32x784 alike. In MobileNetV2
        // (`nodes_ab.py`) its 32 -> 16 layer on 112x112 took 0.95x at 2 threads (8 rounds)
        // and 0.81x at 1 (6 rounds), the other layers with `K` <= 32 1.0x.
        if let Along::N(step) = along {
            if ldb != nr {
                o.pf_b = step;
            }
        }
        let (mut a, mut b) = (a, b);
        for i in 0..count {
            prefetch::l2(prefetch::part(far, count, i));
            if i > 0 {
                match along {
                    Along::M => {
                        a = a.add(mr * kcb);
                        o.c = o.c.add(mr * o.ldc);
                        o.res = shift(o.res, mr * o.ldr);
                        o.bias_row = shift(o.bias_row, mr);
                    }
                    Along::N(step) => {
                        b = b.add(step);
                        o.c = o.c.add(nr);
                        o.res = shift(o.res, nr);
                        o.bias_col = shift(o.bias_col, nr);
                    }
                }
            }
            o.pf_a = if i < ahead {
                a.wrapping_add(mr * kcb)
            } else {
                std::ptr::null()
            };
            f(kcb, a, b, ldb, &o);
        }
    }

    /// The tile of row panel `p` and column panel `q` (full or ragged), from its panels
    /// `ap` and `bp` (rows `ldb` apart).
    ///
    /// # Safety
    /// The tile must lie inside C; no other thread may touch it meanwhile.
    unsafe fn tile(&self, ap: &[f32], bp: &[f32], ldb: usize, p: usize, q: usize, s: &mut Scratch) {
        let (kernel, kcb) = (self.kernel, self.kcb);
        let (mr, nr) = (kernel.mr, kernel.nr);
        let t = TileAt {
            i0: p * mr,
            j0: q * nr,
            mv: mr.min(self.m - p * mr),
            nv: nr.min(self.n - q * nr),
            ld: nr,
        };
        if self.direct {
            let o = self.tile_out(t.i0, t.j0, t.mv, t.nv);
            let nvec = t.nv - kernel.single_cols(t.nv);
            if nvec > 0 {
                let ov = micro::TileOut { nv: nvec, ..o };
                (kernel.micro(t.mv, nvec))(kcb, ap.as_ptr(), bp.as_ptr(), ldb, &ov);
            }
            if let (Some(cols), true) = (kernel.cols, nvec < t.nv) {
                let j = nvec;
                let oj = micro::TileOut {
                    c: o.c.add(j),
                    nv: t.nv - j,
                    bias_col: shift(o.bias_col, j),
                    res: shift(o.res, j),
                    ..o
                };
                cols(kcb, ap.as_ptr(), bp[j..].as_ptr(), ldb, &oj);
            }
            if self.last && self.post_act {
                for i in 0..t.mv {
                    let row = std::slice::from_raw_parts_mut(o.c.add(i * o.ldc), t.nv);
                    self.epi.act.apply_slice(row);
                }
            }
        } else {
            let o = micro::TileOut::plain(s.tile.as_mut_ptr(), nr, mr, nr, false);
            (kernel.micro(t.mv, t.nv))(kcb, ap.as_ptr(), bp.as_ptr(), ldb, &o);
            store_tile(
                &s.tile, &mut s.tt, t, self.out, self.epi, self.first, self.last,
            );
        }
    }
}

/// `p + j`, keeping a null pointer (an absent operand) null.
fn shift(p: *const f32, j: usize) -> *const f32 {
    if p.is_null() {
        p
    } else {
        p.wrapping_add(j)
    }
}

/// Writes one accumulator tile into C: the first `K` block also adds `beta * C`; later
/// blocks add to C; the last applies bias, residual and activation.
///
/// The tile is walked along C's contiguous direction: rows when C is row-major, columns
/// (after a transpose in a stack buffer) when C is column-major, as a convolution's NCHW
/// output is (pixels are GEMM rows, channels columns).
///
/// # Safety
/// The tile must lie inside C and no other thread may touch it meanwhile.
#[inline]
unsafe fn store_tile(
    tile: &[f32],
    tt: &mut [f32; 32 * 32],
    t: TileAt,
    out: OutPtr,
    epi: &Epilogue<'_>,
    first: bool,
    last: bool,
) {
    let mode = Mode {
        alpha: epi.alpha,
        add_old: if first { epi.beta } else { 1.0 },
        last,
        act: epi.act,
    };
    if out.rs == 1 && out.cs != 1 {
        for i in 0..t.mv {
            let src = &tile[i * t.ld..i * t.ld + t.nv];
            for (j, &v) in src.iter().enumerate() {
                tt[j * 32 + i] = v;
            }
        }
        for j in 0..t.nv {
            let (gi, gj) = (t.i0, t.j0 + j);
            let dst = std::slice::from_raw_parts_mut(out.ptr.add(gi + gj * out.cs), t.mv);
            let bias = match epi.bias {
                Bias::None => Run::None,
                Bias::Row(b) => Run::Slice(&b[gi..gi + t.mv]),
                Bias::Col(b) => Run::Scalar(b[gj]),
            };
            let res = match &epi.residual {
                None => Run::None,
                Some(r) => Run::strided(r.data, gi * r.rs + gj * r.cs, r.rs, t.mv),
            };
            finish_run(&tt[j * 32..j * 32 + t.mv], dst, &mode, bias, res);
        }
    } else {
        for i in 0..t.mv {
            let (gi, gj) = (t.i0 + i, t.j0);
            let src = &tile[i * t.ld..i * t.ld + t.nv];
            let bias = match epi.bias {
                Bias::None => Run::None,
                Bias::Row(b) => Run::Scalar(b[gi]),
                Bias::Col(b) => Run::Slice(&b[gj..gj + t.nv]),
            };
            let res = match &epi.residual {
                None => Run::None,
                Some(r) => Run::strided(r.data, gi * r.rs + gj * r.cs, r.cs, t.nv),
            };
            let base = out.ptr.add(gi * out.rs + gj * out.cs);
            if out.cs == 1 {
                let dst = std::slice::from_raw_parts_mut(base, t.nv);
                finish_run(src, dst, &mode, bias, res);
            } else {
                let mut tmp = [0.0f32; 32];
                for (x, v) in tmp[..t.nv].iter_mut().enumerate() {
                    *v = *base.add(x * out.cs);
                }
                finish_run(src, &mut tmp[..t.nv], &mode, bias, res);
                for (x, v) in tmp[..t.nv].iter().enumerate() {
                    *base.add(x * out.cs) = *v;
                }
            }
        }
    }
}

struct Mode {
    alpha: f32,
    /// Weight of the values already in C (0: overwrite).
    add_old: f32,
    last: bool,
    act: Activation,
}

/// A run of per-element addends: nothing, one value, a contiguous slice, or a stride.
enum Run<'a> {
    None,
    Scalar(f32),
    Slice(&'a [f32]),
    Strided(&'a [f32], usize),
}

impl<'a> Run<'a> {
    fn strided(data: &'a [f32], off: usize, stride: usize, n: usize) -> Run<'a> {
        match stride {
            0 => Run::Scalar(data[off]),
            1 => Run::Slice(&data[off..off + n]),
            s => Run::Strided(&data[off..], s),
        }
    }

    #[inline(always)]
    fn add_to(&self, v: &mut [f32]) {
        match *self {
            Run::None => {}
            Run::Scalar(b) => v.iter_mut().for_each(|x| *x += b),
            Run::Slice(s) => v.iter_mut().zip(s).for_each(|(x, b)| *x += b),
            Run::Strided(s, st) => v.iter_mut().enumerate().for_each(|(i, x)| *x += s[i * st]),
        }
    }
}

/// `dst = act(alpha * src + add_old * dst + bias + residual)` (bias, residual and act only
/// on the last `K` block). Each step is one vectorizable pass over the run.
#[inline(always)]
fn finish_run(src: &[f32], dst: &mut [f32], m: &Mode, bias: Run<'_>, res: Run<'_>) {
    let dst = &mut dst[..src.len()];
    match (m.alpha == 1.0, m.add_old) {
        (true, 0.0) => dst.copy_from_slice(src),
        (true, 1.0) => dst.iter_mut().zip(src).for_each(|(d, s)| *d += s),
        (_, 0.0) => dst.iter_mut().zip(src).for_each(|(d, s)| *d = m.alpha * s),
        (_, b) => dst
            .iter_mut()
            .zip(src)
            .for_each(|(d, s)| *d = m.alpha * s + b * *d),
    }
    if m.last {
        bias.add_to(dst);
        res.add_to(dst);
        m.act.apply_slice(dst);
    }
}

/// `C = alpha * A * B + beta * C` with explicit row and column strides (in elements).
///
/// `A` is `m x k`, `B` is `k x n`, `C` is `m x n`. Panics if an operand's extent does not
/// fit its slice or a stride is negative (callers validate shapes first).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    rsa: isize,
    csa: isize,
    b: &[f32],
    rsb: isize,
    csb: isize,
    beta: f32,
    c: &mut [f32],
    rsc: isize,
    csc: isize,
) {
    let u = |s: isize| usize::try_from(s).expect("sgemm: negative stride");
    let sa = Strided::new(a, m, k, u(rsa), u(csa)).expect("sgemm: A too small");
    let sb = Strided::new(b, n, k, u(csb), u(rsb)).expect("sgemm: B too small");
    let epi = Epilogue {
        alpha,
        beta,
        ..Epilogue::default()
    };
    gemm(
        &sa,
        Rhs::Source(&sb),
        Out {
            data: c,
            rs: u(rsc),
            cs: u(csc),
        },
        &epi,
    )
    .expect("sgemm: C too small");
}

/// Row-major `C[m x n] = A[m x k] * B[k x n]` (overwrites C).
pub fn matmul(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    sgemm(
        m, k, n, 1.0, a, k as isize, 1, b, n as isize, 1, 0.0, c, n as isize, 1,
    );
}

#[cfg(test)]
mod tests;
