//! One row times prepacked panels: a classifier at batch 1 (`x[1 x K] * W[K x N]`, `W`
//! packed as the GEMM's `B` at compile time).
//!
//! The general driver runs such a product as one-row tiles of the 14 x 32 microkernel: per
//! step of `k` two loads of `W`, one broadcast of `x` and two FMAs, in two dependent
//! chains, a 14-row `A` panel packed for one row, and each panel's `K` cut into the
//! kernel's `kc` blocks with `C` stored and reloaded between them. Every weight is used
//! once, so the product is a stream of `W` (4 to 8 MB for ImageNet classifiers) from the
//! L3 or memory, and what matters is how fast one core pulls it.
//!
//! Here each job takes whole column panels (every `kc` block of one, one after another in
//! memory order), sums two steps of `k` into separate accumulators (four chains), and
//! applies the epilogue (`alpha`, `beta`, bias, residual, activation) once per panel on its
//! 32 sums, through the general driver's `store_tile`.
//!
//! A panel is one sequential stream, which the hardware prefetchers follow; software
//! prefetches of its lines 2 KB ahead of the loads (the first version) slowed it where
//! the weights come from memory. Zen 4, `mm_bench --cold` (each run reads its own copy of
//! the weights, out of 24 then), 1 x 1280 x 1000, three alternating runs: without them 234-238
//! against 310-321 us at 1 thread, 171-181 against 190-255 us at 2; with the weights in
//! the L3, 81-82 against 89-106 us (1 thread). In the models (`scripts/nodes_ab.py`, 8
//! rounds): MobileNetV2's classifier 0.62x the time at 1 thread and 0.73x at 2,
//! ResNet-50's `fc` 0.75x at 2.
//!
//! Before: `gemm_ex(Lhs::Source(x: 1 x K), Rhs::Packed(W), ..)` through `run_block`.
//! After: the same call, through [`run`] where [`applies`] (AVX-512, `m == 1`, `B`
//! prepacked 32 wide).
use super::{grab, store_tile, Epilogue, Kernel, OutPtr, Packed, PanelSource, TileAt};
use rayon::prelude::*;
use std::sync::atomic::AtomicUsize;

/// Whether [`run`] takes a product of `m` rows by `b` (already checked to be packed as a
/// `B` for `kernel`): one row, on the AVX-512 kernel, whose panels are 32 wide.
pub(super) fn applies(kernel: &Kernel, m: usize, b: &Packed) -> bool {
    m == 1 && kernel.name == "avx512" && b.width == 32
}

/// `C[0, j] = act(alpha * sum_k x[k] W[k][j] + beta * C[0, j] + bias + residual)` for
/// `j < n`, `x` the one row of `src`, in at most `threads` jobs on the current rayon pool.
///
/// # Safety
/// `out` must cover a `1 x n` result (checked by the caller, as the residual and bias);
/// [`applies`] must have said yes (so the CPU has AVX-512F).
pub(super) unsafe fn run(
    src: &dyn PanelSource,
    b: &Packed,
    out: OutPtr,
    epi: &Epilogue<'_>,
    xbuf: &mut Vec<f32>,
    threads: usize,
) {
    let (k, n) = (b.k, b.len);
    if xbuf.len() < k {
        xbuf.resize(k, 0.0);
    }
    // The row, contiguous (a one-wide panel of A).
    src.pack(0, 1, 0, k, &mut xbuf[..k]);
    let x: &[f32] = &xbuf[..k];
    let view = b.view();
    let panels = n.div_ceil(32);
    let blocks = k.div_ceil(view.kc);
    // Panel `q`'s 32 sums, then the driver's epilogue on them (`tt`: its stack buffer for
    // a column-major C, one per job).
    let job = |q: usize, tt: &mut [f32; 32 * 32]| {
        let mut acc = [0.0f32; 32];
        for pc in 0..blocks {
            let k0 = pc * view.kc;
            let w = view.panel(pc, q);
            let kcb = w.len() / 32;
            // SAFETY: `w` holds `kcb` rows of 32 and `x[k0..]` at least `kcb` values.
            unsafe { x86::panel_avx512(&x[k0..k0 + kcb], w, &mut acc) };
        }
        let j0 = q * 32;
        let t = TileAt {
            i0: 0,
            j0,
            mv: 1,
            nv: 32.min(n - j0),
            ld: 32,
        };
        // SAFETY: the tile lies inside C (checked by the caller); this job alone writes
        // the columns of panel `q`.
        unsafe { store_tile(&acc, tt, t, out, epi, true, true) };
    };
    let work = k as u64 * n as u64;
    if threads == 1 || work < 1 << 18 {
        let mut tt = [0.0f32; 32 * 32];
        (0..panels).for_each(|q| job(q, &mut tt));
        return;
    }
    // Chunks of panels from a shared counter, as the general driver hands them out.
    let next = AtomicUsize::new(0);
    let worker = |_| {
        let mut tt = [0.0f32; 32 * 32];
        while let Some((q0, q1)) = grab(&next, panels, threads) {
            (q0..q1).for_each(|q| job(q, &mut tt));
        }
    };
    (0..threads.min(panels)).into_par_iter().for_each(worker);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `acc[j] += sum_kk x[kk] * w[kk * 32 + j]`, `w` one panel block (`x.len()` rows of
    /// 32), two steps of `k` at a time in separate accumulators.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `w.len() >= 32 * x.len()`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn panel_avx512(x: &[f32], w: &[f32], acc: &mut [f32; 32]) {
        let kcb = x.len();
        debug_assert!(w.len() >= 32 * kcb);
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        let mut c = [_mm512_setzero_ps(); 4];
        let mut kk = 0;
        while kk + 2 <= kcb {
            let r = wp.add(kk * 32);
            let (x0, x1) = (_mm512_set1_ps(*xp.add(kk)), _mm512_set1_ps(*xp.add(kk + 1)));
            c[0] = _mm512_fmadd_ps(x0, _mm512_loadu_ps(r), c[0]);
            c[1] = _mm512_fmadd_ps(x0, _mm512_loadu_ps(r.add(16)), c[1]);
            c[2] = _mm512_fmadd_ps(x1, _mm512_loadu_ps(r.add(32)), c[2]);
            c[3] = _mm512_fmadd_ps(x1, _mm512_loadu_ps(r.add(48)), c[3]);
            kk += 2;
        }
        if kk < kcb {
            let r = wp.add(kk * 32);
            let x0 = _mm512_set1_ps(*xp.add(kk));
            c[0] = _mm512_fmadd_ps(x0, _mm512_loadu_ps(r), c[0]);
            c[1] = _mm512_fmadd_ps(x0, _mm512_loadu_ps(r.add(16)), c[1]);
        }
        let ap = acc.as_mut_ptr();
        let lo = _mm512_add_ps(_mm512_add_ps(c[0], c[2]), _mm512_loadu_ps(ap));
        let hi = _mm512_add_ps(_mm512_add_ps(c[1], c[3]), _mm512_loadu_ps(ap.add(16)));
        _mm512_storeu_ps(ap, lo);
        _mm512_storeu_ps(ap.add(16), hi);
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    /// [`super::applies`] is false off x86-64 (no kernel there is named `avx512`); the
    /// same sums in scalar code, so this module builds everywhere.
    pub(super) unsafe fn panel_avx512(x: &[f32], w: &[f32], acc: &mut [f32; 32]) {
        for (xv, row) in x.iter().zip(w.chunks_exact(32)) {
            for (a, wv) in acc.iter_mut().zip(row) {
                *a += xv * wv;
            }
        }
    }
}
