//! Measured machine peaks: the fp32 FMA rate and a STREAM-like triad bandwidth.
//!
//! These are the ceilings that benchmark numbers are compared against ("the convolutions
//! ran at 70 % of the measured FMA peak").
//!
//! **FMA peak.** Each thread runs [`CHAINS`] independent chains `acc = acc * a + b` on full
//! vector registers. A fused multiply-add has a latency of about 4 cycles and modern cores
//! issue two per cycle, so at least 8 chains are needed to keep both FMA ports busy; 12
//! cover it with margin and still fit the 16 AVX2 registers next to `a` and `b`. On aarch64
//! each chain is two NEON registers (24 `fmla` in flight, for cores with four FMA pipes).
//! The variant (AVX-512, AVX2+FMA, NEON, portable) is chosen at run time from the CPU's
//! features; every variant is callable on its own for tests. The chains start from
//! distinct values so the compiler cannot merge them, and `a`, `b` pass through
//! [`std::hint::black_box`]. With `a < 1` the chains converge to `b / (1 - a)`, so values
//! stay finite for any run length.
//! Each of `threads` OS threads runs for about `seconds`; the rate is the total FLOPs over
//! the slowest thread's time, best of `reps` tries (other processes only ever slow it).
//!
//! **Triad bandwidth.** `a[i] = b[i] + s * c[i]` over three arrays much larger than the
//! last-level cache, split over `threads` threads (each thread first-touches its own part),
//! counting 3 x 4 bytes per element as STREAM does (write-allocate traffic not counted).
//!
//! **Core-to-core round trip.** Two threads pass a counter back and forth through one
//! shared cache line, each spinning until the other's write arrives; the median over
//! batches of the time per round trip. It says how far apart two cores are right now: on
//! the 2-vCPU development guest it read from 41 to 766 ns over one session, changing from
//! one minute to the next (see BENCHMARKS.md, thirtieth session). A snapshot: it does not
//! say what the state is a second later.
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::Instant;

/// Independent FMA chains per thread.
pub const CHAINS: usize = 12;

/// One way to run the FMA chains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FmaVariant {
    /// 512-bit `vfmadd` (16 lanes).
    Avx512,
    /// 256-bit `vfmadd` (8 lanes).
    Avx2Fma,
    /// 128-bit `fmla` on aarch64, two registers per chain (8 lanes).
    Neon,
    /// Plain Rust multiply and add on 8-wide arrays (whatever the compiler makes of it).
    Portable,
}

impl FmaVariant {
    /// Every variant this CPU can run, fastest first (the portable one is always last).
    pub fn available() -> Vec<FmaVariant> {
        #[allow(unused_mut)]
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                v.push(FmaVariant::Avx512);
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(FmaVariant::Avx2Fma);
            }
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon") {
            v.push(FmaVariant::Neon);
        }
        v.push(FmaVariant::Portable);
        v
    }

    /// The fastest variant this CPU runs.
    pub fn detect() -> FmaVariant {
        FmaVariant::available()[0]
    }

    pub fn name(self) -> &'static str {
        match self {
            FmaVariant::Avx512 => "avx512",
            FmaVariant::Avx2Fma => "avx2+fma",
            FmaVariant::Neon => "neon",
            FmaVariant::Portable => "portable",
        }
    }

    /// f32 lanes per chain.
    pub fn lanes(self) -> usize {
        match self {
            FmaVariant::Avx512 => 16,
            FmaVariant::Avx2Fma | FmaVariant::Neon | FmaVariant::Portable => 8,
        }
    }

    /// FLOPs of one iteration over all chains (a multiply-add counts as 2).
    pub fn flops_per_iter(self) -> u64 {
        (CHAINS * self.lanes() * 2) as u64
    }

    /// Runs `iters` steps of every chain (`acc = acc * a + b`, chain `k` lane `l` starting
    /// at `start(k, l)`) and returns the sum of all final values.
    ///
    /// Falls back to the portable code if the CPU lacks the variant's features.
    pub fn run(self, iters: u64, a: f32, b: f32) -> f32 {
        match self {
            #[cfg(target_arch = "x86_64")]
            FmaVariant::Avx512 if is_x86_feature_detected!("avx512f") => {
                // SAFETY: the CPU supports AVX-512F (checked just above).
                unsafe { x86::chains_avx512(iters, a, b) }
            }
            #[cfg(target_arch = "x86_64")]
            FmaVariant::Avx2Fma
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") =>
            {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                unsafe { x86::chains_avx2(iters, a, b) }
            }
            #[cfg(target_arch = "aarch64")]
            FmaVariant::Neon if std::arch::is_aarch64_feature_detected!("neon") => {
                // SAFETY: the CPU supports NEON (checked just above).
                unsafe { arm::chains_neon(iters, a, b) }
            }
            _ => chains_portable(iters, a, b),
        }
    }
}

/// The starting value of lane `l` of chain `k`: distinct for every lane and chain.
pub fn start(k: usize, l: usize) -> f32 {
    1.0 + 0.01 * k as f32 + 0.0001 * l as f32
}

/// The starting values of all chains, `L` lanes each ([`start`]).
fn starts<const L: usize>() -> [[f32; L]; CHAINS] {
    std::array::from_fn(|k| std::array::from_fn(|l| start(k, l)))
}

#[inline(never)]
fn chains_portable(iters: u64, a: f32, b: f32) -> f32 {
    let (a, b) = (black_box(a), black_box(b));
    let mut acc = starts::<8>();
    for _ in 0..iters {
        for c in acc.iter_mut() {
            for x in c.iter_mut() {
                *x = *x * a + b;
            }
        }
    }
    acc.iter().flatten().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{starts, CHAINS};
    use std::arch::x86_64::*;
    use std::hint::black_box;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn chains_avx512(iters: u64, a: f32, b: f32) -> f32 {
        let va = _mm512_set1_ps(black_box(a));
        let vb = _mm512_set1_ps(black_box(b));
        let init = starts::<16>();
        // SAFETY: each `init[k]` holds 16 f32s; loadu has no alignment requirement.
        let mut acc: [__m512; CHAINS] =
            std::array::from_fn(|k| unsafe { _mm512_loadu_ps(init[k].as_ptr()) });
        for _ in 0..iters {
            for c in acc.iter_mut() {
                *c = _mm512_fmadd_ps(*c, va, vb);
            }
        }
        let mut sum = _mm512_setzero_ps();
        for c in acc {
            sum = _mm512_add_ps(sum, c);
        }
        _mm512_reduce_add_ps(sum)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn chains_avx2(iters: u64, a: f32, b: f32) -> f32 {
        let va = _mm256_set1_ps(black_box(a));
        let vb = _mm256_set1_ps(black_box(b));
        let init = starts::<8>();
        // SAFETY: each `init[k]` holds 8 f32s; loadu has no alignment requirement.
        let mut acc: [__m256; CHAINS] =
            std::array::from_fn(|k| unsafe { _mm256_loadu_ps(init[k].as_ptr()) });
        for _ in 0..iters {
            for c in acc.iter_mut() {
                *c = _mm256_fmadd_ps(*c, va, vb);
            }
        }
        let mut sum = _mm256_setzero_ps();
        for c in acc {
            sum = _mm256_add_ps(sum, c);
        }
        let mut out = [0f32; 8];
        // SAFETY: `out` holds 8 f32s.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
        out.iter().sum()
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::{starts, CHAINS};
    use std::arch::aarch64::*;
    use std::hint::black_box;

    #[target_feature(enable = "neon")]
    pub unsafe fn chains_neon(iters: u64, a: f32, b: f32) -> f32 {
        let va = vdupq_n_f32(black_box(a));
        let vb = vdupq_n_f32(black_box(b));
        let init = starts::<8>();
        // SAFETY: each `init[k]` holds 8 f32s, two vectors of 4.
        let mut acc: [[float32x4_t; 2]; CHAINS] = std::array::from_fn(|k| unsafe {
            [
                vld1q_f32(init[k].as_ptr()),
                vld1q_f32(init[k].as_ptr().add(4)),
            ]
        });
        for _ in 0..iters {
            for c in acc.iter_mut() {
                // `vfmaq_f32(x, y, z)` is `x + y * z`: the chain's `acc * a + b`.
                c[0] = vfmaq_f32(vb, c[0], va);
                c[1] = vfmaq_f32(vb, c[1], va);
            }
        }
        let mut sum = vdupq_n_f32(0.0);
        for c in acc {
            sum = vaddq_f32(sum, vaddq_f32(c[0], c[1]));
        }
        vaddvq_f32(sum)
    }
}

/// A measured FMA rate.
#[derive(Clone, Copy, Debug)]
pub struct FmaPeak {
    pub variant: FmaVariant,
    pub threads: usize,
    /// Billions of floating-point operations per second, all threads together.
    pub gflops: f64,
}

/// The chain constants: `a < 1` keeps the values bounded.
const A: f32 = 0.999_9;
const B: f32 = 0.000_1;

/// Measures the fp32 FMA rate of `variant` on `threads` threads, each busy for about
/// `seconds`; best of `reps` tries.
pub fn fma_peak(variant: FmaVariant, threads: usize, seconds: f64, reps: usize) -> FmaPeak {
    let threads = threads.max(1);
    // Calibrate: how many iterations take `seconds` on one thread.
    let mut iters = 1u64 << 16;
    loop {
        let t = Instant::now();
        black_box(variant.run(iters, A, B));
        let dt = t.elapsed().as_secs_f64();
        if dt > 0.02 || iters >= 1 << 40 {
            iters = ((iters as f64) * seconds.max(1e-3) / dt.max(1e-9)).max(1.0) as u64;
            break;
        }
        iters *= 4;
    }
    let flops = iters as f64 * variant.flops_per_iter() as f64 * threads as f64;
    let mut best = 0f64;
    for _ in 0..reps.max(1) {
        let barrier = Barrier::new(threads);
        let slowest = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        let t = Instant::now();
                        black_box(variant.run(iters, A, B));
                        t.elapsed().as_secs_f64()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(f64::INFINITY))
                .fold(0f64, f64::max)
        });
        best = best.max(flops / slowest / 1e9);
    }
    FmaPeak {
        variant,
        threads,
        gflops: best,
    }
}

/// Median time in nanoseconds of one round trip of a cache line between two threads
/// (one spawned, one the caller's), over `batches` batches of `trips` round trips each;
/// `None` when `trips` or `batches` is 0 or the process may run on one CPU only. Both
/// threads spin (yielding now and then, so that a busy machine still finishes), so with
/// fewer than two free CPUs the figure measures the scheduler, not the caches.
pub fn core_round_trip_ns(trips: u64, batches: usize) -> Option<f64> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if trips == 0 || batches == 0 || cpus < 2 {
        return None;
    }
    fn wait_for(line: &AtomicU64, value: u64) {
        let mut spins = 0u32;
        while line.load(Ordering::Acquire) != value {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1 << 14) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
    // Odd values are the caller's pings, even ones the other thread's answers.
    #[repr(align(128))]
    struct Line(AtomicU64);
    let line = Line(AtomicU64::new(0));
    let total = trips * batches as u64;
    let mut times = Vec::with_capacity(batches);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..total {
                wait_for(&line.0, 2 * i + 1);
                line.0.store(2 * i + 2, Ordering::Release);
            }
        });
        for b in 0..batches as u64 {
            let t = Instant::now();
            for i in b * trips..(b + 1) * trips {
                line.0.store(2 * i + 1, Ordering::Release);
                wait_for(&line.0, 2 * i + 2);
            }
            times.push(t.elapsed().as_secs_f64() * 1e9 / trips as f64);
        }
    });
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied()
}

/// Measures triad bandwidth (`a = b + s * c`) in GB/s (1e9 bytes) on `threads` threads over
/// three arrays of `bytes_per_array` bytes each; best of `reps` passes after one warm-up.
pub fn triad_bandwidth(threads: usize, bytes_per_array: usize, reps: usize) -> f64 {
    let threads = threads.max(1);
    let n = (bytes_per_array / 4).max(threads * 16);
    let chunk = n.div_ceil(threads);
    let (mut a, mut b, mut c) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    // First touch by the thread that will use each part.
    std::thread::scope(|s| {
        for ((a, b), c) in a
            .chunks_mut(chunk)
            .zip(b.chunks_mut(chunk))
            .zip(c.chunks_mut(chunk))
        {
            s.spawn(move || {
                a.fill(0.0);
                b.fill(1.0);
                c.fill(2.0);
            });
        }
    });
    let scalar = black_box(3.0f32);
    let mut best = 0f64;
    for rep in 0..=reps.max(1) {
        let t = Instant::now();
        std::thread::scope(|s| {
            for ((a, b), c) in a
                .chunks_mut(chunk)
                .zip(b.chunks(chunk))
                .zip(c.chunks(chunk))
            {
                s.spawn(move || {
                    for ((x, y), z) in a.iter_mut().zip(b).zip(c) {
                        *x = y + scalar * z;
                    }
                });
            }
        });
        let dt = t.elapsed().as_secs_f64();
        black_box(&a);
        if rep > 0 {
            best = best.max((3 * n * 4) as f64 / dt / 1e9);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_positive_and_rejects_empty_runs() {
        if let Some(ns) = core_round_trip_ns(2000, 3) {
            assert!(ns.is_finite() && ns > 0.0, "{ns}");
        } else {
            assert!(std::thread::available_parallelism().map_or(1, |n| n.get()) < 2);
        }
        assert_eq!(core_round_trip_ns(0, 3), None);
        assert_eq!(core_round_trip_ns(10, 0), None);
    }

    /// The chains in f64, lane by lane.
    fn reference(iters: u64, lanes: usize, a: f32, b: f32) -> f64 {
        let mut sum = 0f64;
        for k in 0..CHAINS {
            for l in 0..lanes {
                let mut x = start(k, l) as f64;
                for _ in 0..iters {
                    x = x * a as f64 + b as f64;
                }
                sum += x;
            }
        }
        sum
    }

    #[test]
    fn every_variant_computes_the_chains() {
        for v in FmaVariant::available() {
            for iters in [0u64, 1, 7, 1000] {
                let got = v.run(iters, 0.9, 0.05) as f64;
                let want = reference(iters, v.lanes(), 0.9, 0.05);
                assert!(
                    ((got - want) / want).abs() < 1e-4,
                    "{}: {iters} iters: {got} vs {want}",
                    v.name()
                );
            }
        }
    }

    #[test]
    fn every_variant_reports_a_positive_rate() {
        for v in FmaVariant::available() {
            let p = fma_peak(v, 1, 0.005, 1);
            assert!(p.gflops > 0.0 && p.gflops.is_finite(), "{v:?}: {p:?}");
        }
        let p = fma_peak(FmaVariant::detect(), 2, 0.005, 1);
        assert_eq!(p.threads, 2);
        assert!(p.gflops > 0.0);
    }

    #[test]
    fn triad_reports_a_positive_bandwidth() {
        let bw = triad_bandwidth(2, 1 << 20, 2);
        assert!(bw > 0.0 && bw.is_finite(), "{bw}");
    }
}
