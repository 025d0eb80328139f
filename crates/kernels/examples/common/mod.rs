//! Helpers the kernel benchmarks share (`mod common;` in each; not an example itself).
// Each example compiles this module on its own and uses only part of it.
#![allow(dead_code)]

/// A pool of `threads` workers for the benchmark's timed calls (`pool.install`).
pub fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

/// How many copies of a call's operands (`floats` of them per copy) a `--cold` benchmark
/// cycles through so that together they span 96 MiB, more than the last-level cache
/// holds: each call then finds its operands in memory, as a layer of a model does (at
/// least 2).
pub fn cold_copies(floats: usize) -> usize {
    (96usize << 20).div_ceil(4 * floats.max(1)).max(2)
}

/// Whether the CPU runs the AVX2 + FMA experiment kernels (says so on stderr when not).
#[cfg(target_arch = "x86_64")]
pub fn avx2_fma() -> bool {
    let ok = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    if !ok {
        eprintln!("needs AVX2 + FMA");
    }
    ok
}

/// The window kernels' instruction sets this CPU runs, fastest first, for benchmarks that
/// time each: the portable code is left out where a vector variant exists (it is far
/// slower and not what any x86 CPU runs).
pub fn vector_isas() -> Vec<millrace_kernels::depthwise::Isa> {
    use millrace_kernels::depthwise::Isa;
    let mut isas = Isa::available();
    if isas.len() > 1 {
        isas.retain(|&i| i != Isa::Portable);
    }
    isas
}

// The unit tests' pseudo-random data (`rnd`: xorshift, the same on every run), compiled
// into each example from the crate's source.
#[path = "../../src/testutil.rs"]
mod testutil;
#[allow(unused_imports)] // not every example draws random data
pub(crate) use testutil::rnd;

/// `n` floats starting on a 64-byte boundary, as the run's arena places activations. A
/// large `Vec` starts 16 bytes into its page, so every row of a matrix read from one
/// straddles cache lines, which made 56x56 products measure up to 1.6x slower than they
/// run in a model.
pub struct Aligned {
    v: Vec<f32>,
    off: usize,
    n: usize,
}

impl Aligned {
    /// `n` zeros.
    pub fn new(n: usize) -> Self {
        let v = vec![0.0f32; n + 16];
        let off = v.as_ptr().align_offset(64);
        Aligned { v, off, n }
    }

    /// A copy of `src`.
    pub fn from_slice(src: &[f32]) -> Self {
        let mut a = Aligned::new(src.len());
        a.copy_from_slice(src);
        a
    }
}

impl std::ops::Deref for Aligned {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.v[self.off..self.off + self.n]
    }
}

impl std::ops::DerefMut for Aligned {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.v[self.off..self.off + self.n]
    }
}

/// NCHW (`c x hw`) into channel-blocked NCHW8c (`[c / 8][hw][8]`); `c` a multiple of 8.
pub fn to_blocked(x: &[f32], c: usize, hw: usize) -> Vec<f32> {
    let mut out = vec![0.0; c * hw];
    for ch in 0..c {
        for p in 0..hw {
            out[(ch / 8) * hw * 8 + p * 8 + ch % 8] = x[ch * hw + p];
        }
    }
    out
}

/// The largest `|a - b| / (1 + |a|)` over two equally long slices (`a` the reference).
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs() / (1.0 + a.abs()))
        .fold(0.0, f32::max)
}
