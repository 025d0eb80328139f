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
//! Work is split over the threads of the current rayon pool, in 2-D blocks of the output.
mod micro;
mod pack;

pub use pack::{Im2col, PanelSource, Strided};

use crate::activation::Activation;
use rayon::prelude::*;
use std::cell::RefCell;
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
    f: micro::MicroFn,
}

static GENERIC: Kernel = Kernel {
    name: "generic",
    mr: micro::GENERIC_MR,
    nr: micro::GENERIC_NR,
    kc: 256,
    mc: 64,
    f: micro::generic,
};

#[cfg(target_arch = "x86_64")]
static AVX2: Kernel = Kernel {
    name: "avx2",
    mr: micro::x86::AVX2_MR,
    nr: micro::x86::AVX2_NR,
    kc: 256,
    mc: 72,
    f: micro::x86::avx2,
};

#[cfg(target_arch = "x86_64")]
static AVX512: Kernel = Kernel {
    name: "avx512",
    mr: micro::x86::AVX512_MR,
    nr: micro::x86::AVX512_NR,
    kc: 256,
    mc: 14 * 12,
    f: micro::x86::avx512,
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
        v.push(&GENERIC);
        v
    }

    /// A kernel by name, if this CPU runs it.
    pub fn named(name: &str) -> Option<&'static Kernel> {
        Kernel::available().into_iter().find(|k| k.name == name)
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

/// `B` (`K x N`) packed once for one kernel: `NR`-column panels in `kc`-deep blocks.
#[derive(Clone, Debug)]
pub struct PackedB {
    kernel: &'static Kernel,
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl PackedB {
    /// Packs `src` (its `len` is N, its `depth` K) for the detected kernel.
    pub fn new(src: &dyn PanelSource) -> PackedB {
        PackedB::with_kernel(src, Kernel::detect())
    }

    pub fn with_kernel(src: &dyn PanelSource, kernel: &'static Kernel) -> PackedB {
        let (k, n, nr) = (src.depth(), src.len(), kernel.nr);
        let panels = n.div_ceil(nr);
        let mut data = vec![0.0f32; panels * nr * k];
        if n > 0 && k > 0 {
            let mut off = 0;
            for pc in 0..kernel.blocks(k) {
                let k0 = pc * kernel.kc;
                let kcb = kernel.kc.min(k - k0);
                for jr in 0..panels {
                    src.pack(jr * nr, nr, k0, kcb, &mut data[off..off + kcb * nr]);
                    off += kcb * nr;
                }
            }
        }
        PackedB { kernel, k, n, data }
    }

    pub fn k(&self) -> usize {
        self.k
    }
    pub fn n(&self) -> usize {
        self.n
    }
    pub fn kernel(&self) -> &'static Kernel {
        self.kernel
    }
    /// Bytes held (for memory plans).
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }

    /// Panel `jr` of block `pc` (which starts at depth `pc * kc`).
    fn panel(&self, pc: usize, jr: usize) -> &[f32] {
        let (kc, nr) = (self.kernel.kc, self.kernel.nr);
        let panels = self.n.div_ceil(nr);
        let k0 = pc * kc;
        let kcb = kc.min(self.k - k0);
        let off = k0 * panels * nr + jr * kcb * nr;
        &self.data[off..off + kcb * nr]
    }
}

/// The right-hand operand: prepacked, or packed on the fly from a source.
#[derive(Clone, Copy)]
pub enum Rhs<'a> {
    Packed(&'a PackedB),
    Source(&'a dyn PanelSource),
}

impl Rhs<'_> {
    fn dims(&self) -> (usize, usize) {
        match self {
            Rhs::Packed(p) => (p.k, p.n),
            Rhs::Source(s) => (s.depth(), s.len()),
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
        Rhs::Source(_) => Kernel::detect(),
    };
    gemm_with(kernel, a, b, c, epi)
}

/// [`gemm`] with an explicit kernel (tests compare every kernel the CPU has).
pub fn gemm_with(
    kernel: &'static Kernel,
    a: &dyn PanelSource,
    b: Rhs<'_>,
    c: Out<'_>,
    epi: &Epilogue<'_>,
) -> Result<(), GemmError> {
    let (m, k) = (a.len(), a.depth());
    let (kb, n) = b.dims();
    if kb != k {
        return Err(shape_err(format!("A is {m}x{k} but B is {kb}x{n}")));
    }
    if let Rhs::Packed(p) = b {
        if !std::ptr::eq(p.kernel, kernel) {
            return Err(shape_err("B was packed for another kernel"));
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
    let out = OutPtr {
        ptr: c.data.as_mut_ptr(),
        rs: c.rs,
        cs: c.cs,
    };
    if k == 0 {
        let zero = vec![0.0f32; kernel.mr * kernel.nr];
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
                unsafe { store_tile(&zero, t, out, epi, true, true) };
            }
        }
        return Ok(());
    }
    let (mp, np) = (m.div_ceil(kernel.mr), n.div_ceil(kernel.nr));
    let threads = rayon::current_num_threads().max(1);
    // Small products are not worth a fork.
    let work = m as u64 * n as u64 * k as u64;
    let (tm, tn) = if threads == 1 || work < 1 << 18 {
        (1, 1)
    } else {
        split(mp, np, threads)
    };
    let job = |ji: usize| {
        let (bi, bj) = (ji / tn, ji % tn);
        let (p0, p1) = chunk(mp, tm, bi);
        let (q0, q1) = chunk(np, tn, bj);
        // SAFETY: jobs cover disjoint panel ranges of C, all inside C (checked above).
        unsafe { run_block(kernel, a, b, out, epi, (p0, p1), (q0, q1), m, n, k) };
    };
    if tm * tn == 1 {
        job(0);
    } else {
        (0..tm * tn).into_par_iter().for_each(job);
    }
    Ok(())
}

/// Splits `mp x np` panels among `threads` jobs: rows first (they share packed `B`).
fn split(mp: usize, np: usize, threads: usize) -> (usize, usize) {
    let tm = threads.min(mp);
    let tn = (threads / tm).clamp(1, np);
    (tm, tn)
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
}

/// One job: row panels `p0..p1` by column panels `q0..q1`, all of K.
///
/// # Safety
/// The panels must lie inside C and no other thread may write them meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn run_block(
    kernel: &'static Kernel,
    a: &dyn PanelSource,
    b: Rhs<'_>,
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
    let mut tile = [0.0f32; 32 * 32];
    PACK_A.with_borrow_mut(|abuf| {
        PACK_B.with_borrow_mut(|bbuf| {
            for pc in 0..blocks {
                let k0 = pc * kc;
                let kcb = kc.min(k - k0);
                let (first, last) = (pc == 0, pc + 1 == blocks);
                if let Rhs::Source(src) = b {
                    let len = (q1 - q0) * nr * kcb;
                    if bbuf.len() < len {
                        bbuf.resize(len, 0.0);
                    }
                    for q in q0..q1 {
                        let o = (q - q0) * nr * kcb;
                        src.pack(q * nr, nr, k0, kcb, &mut bbuf[o..o + nr * kcb]);
                    }
                }
                let mut ic = p0;
                while ic < p1 {
                    let ie = (ic + mcp).min(p1);
                    let len = (ie - ic) * mr * kcb;
                    if abuf.len() < len {
                        abuf.resize(len, 0.0);
                    }
                    for p in ic..ie {
                        let o = (p - ic) * mr * kcb;
                        a.pack(p * mr, mr, k0, kcb, &mut abuf[o..o + mr * kcb]);
                    }
                    for q in q0..q1 {
                        let bp: &[f32] = match b {
                            Rhs::Packed(pb) => pb.panel(pc, q),
                            Rhs::Source(_) => {
                                let o = (q - q0) * nr * kcb;
                                &bbuf[o..o + nr * kcb]
                            }
                        };
                        for p in ic..ie {
                            let ap = &abuf[(p - ic) * mr * kcb..][..mr * kcb];
                            (kernel.f)(kcb, ap.as_ptr(), bp.as_ptr(), tile.as_mut_ptr());
                            let t = TileAt {
                                i0: p * mr,
                                j0: q * nr,
                                mv: mr.min(m - p * mr),
                                nv: nr.min(n - q * nr),
                                ld: nr,
                            };
                            store_tile(&tile, t, out, epi, first, last);
                        }
                    }
                    ic = ie;
                }
            }
        })
    });
}

/// Writes one accumulator tile into C: the first `K` block also adds `beta * C`; later
/// blocks add to C; the last applies bias, residual and activation.
///
/// # Safety
/// The tile must lie inside C and no other thread may touch it meanwhile.
#[inline]
unsafe fn store_tile(
    tile: &[f32],
    t: TileAt,
    out: OutPtr,
    epi: &Epilogue<'_>,
    first: bool,
    last: bool,
) {
    let mut row = [0.0f32; 32];
    // Walk the output along its contiguous direction.
    let by_cols = out.rs == 1 && out.cs != 1;
    let (outer, inner) = if by_cols { (t.nv, t.mv) } else { (t.mv, t.nv) };
    for o in 0..outer {
        let v = &mut row[..inner];
        for (x, val) in v.iter_mut().enumerate() {
            let (i, j) = if by_cols { (x, o) } else { (o, x) };
            *val = epi.alpha * tile[i * t.ld + j];
        }
        let idx = |x: usize| {
            let (i, j) = if by_cols { (x, o) } else { (o, x) };
            (t.i0 + i) * out.rs + (t.j0 + j) * out.cs
        };
        if !first {
            for (x, val) in v.iter_mut().enumerate() {
                *val += *out.ptr.add(idx(x));
            }
        } else if epi.beta != 0.0 {
            for (x, val) in v.iter_mut().enumerate() {
                *val += epi.beta * *out.ptr.add(idx(x));
            }
        }
        if last {
            match epi.bias {
                Bias::None => {}
                Bias::Row(bv) => {
                    for (x, val) in v.iter_mut().enumerate() {
                        let i = if by_cols { x } else { o };
                        *val += bv[t.i0 + i];
                    }
                }
                Bias::Col(bv) => {
                    for (x, val) in v.iter_mut().enumerate() {
                        let j = if by_cols { o } else { x };
                        *val += bv[t.j0 + j];
                    }
                }
            }
            if let Some(r) = &epi.residual {
                for (x, val) in v.iter_mut().enumerate() {
                    let (i, j) = if by_cols { (x, o) } else { (o, x) };
                    *val += r.data[(t.i0 + i) * r.rs + (t.j0 + j) * r.cs];
                }
            }
            epi.act.apply_slice(v);
        }
        for (x, val) in v.iter().enumerate() {
            *out.ptr.add(idx(x)) = *val;
        }
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
