//! Experiment: is a 1x1 convolution faster on channel-blocked (NCHW8c) activations than
//! the pointwise GEMM on NCHW ones? Both compute the same product with the same register
//! tile (6 x 16, 12 accumulators, 8 loads per 12 FMAs); what differs is how memory is
//! walked. The NCHW GEMM reads a tile's 16 pixels from `K` rows an image plane apart and
//! writes 6 output rows a plane apart; the NCHW8c kernel reads 6 pixels x 8 channels as
//! one 192-byte run per channel block and writes 6 x 8 outputs as one run per block of 8
//! output channels. Weights are prepacked for both. AVX2 + FMA only.
//!
//! `cargo run --release -p millrace-kernels --example nchwc_bench [THREADS] [MxKxN ...] [--cold] [--res]`
// The kernels are x86-64 only; elsewhere `main` just says so.
#![cfg_attr(not(target_arch = "x86_64"), allow(unused_imports, dead_code))]
use millrace_kernels::activation::Activation;
use millrace_kernels::gemm::{
    gemm_ex, Bias, Epilogue, Kernel, Lhs, Out, Packed, Rhs, Strided, View,
};
use std::time::Instant;

mod common;
use common::{max_rel_diff, rnd, to_blocked, Aligned};

#[cfg(target_arch = "x86_64")]
mod blocked {
    use rayon::prelude::*;
    use std::arch::x86_64::*;

    /// Pixels per tile.
    pub const PX: usize = 6;
    /// Channel blocks (of 8) per `K` block.
    pub const KC8: usize = 32;

    /// `w` (`m x k`, row-major) as `[m / 16][k][16]`; `m` a multiple of 16.
    pub fn pack_w(w: &[f32], m: usize, k: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * k];
        for o in 0..m {
            for c in 0..k {
                out[(o / 16) * k * 16 + c * 16 + o % 16] = w[o * k + c];
            }
        }
        out
    }

    pub struct Args {
        pub x: *const f32,
        pub w: *const f32,
        pub bias: *const f32,
        pub res: *const f32,
        pub y: *mut f32,
        pub hw: usize,
        pub k: usize,
        pub m: usize,
        pub relu: bool,
    }
    unsafe impl Sync for Args {}

    /// One tile: `NP` pixels x 16 output channels over `kc8` channel blocks.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const NP: usize, const FIRST: bool, const LAST: bool>(
        kc8: usize,
        x: *const f32,
        xs: usize,
        w: *const f32,
        y: *mut f32,
        res: *const f32,
        bias: *const f32,
        relu: bool,
    ) {
        let (first, last) = (FIRST, LAST);
        let mut acc = [[_mm256_setzero_ps(); 2]; NP];
        let (mut xp, mut wp) = (x, w);
        for _ in 0..kc8 {
            for c in 0..8 {
                let b0 = _mm256_loadu_ps(wp.add(c * 16));
                let b1 = _mm256_loadu_ps(wp.add(c * 16 + 8));
                for (p, a) in acc.iter_mut().enumerate() {
                    let v = _mm256_broadcast_ss(&*xp.add(p * 8 + c));
                    a[0] = _mm256_fmadd_ps(v, b0, a[0]);
                    a[1] = _mm256_fmadd_ps(v, b1, a[1]);
                }
            }
            xp = xp.add(xs);
            wp = wp.add(128);
        }
        for (p, a) in acc.iter().enumerate() {
            for (h, &v) in a.iter().enumerate() {
                let o = h * xs + p * 8;
                let dst = y.add(o);
                let mut v = v;
                if !first {
                    v = _mm256_add_ps(v, _mm256_loadu_ps(dst));
                } else if !bias.is_null() {
                    v = _mm256_add_ps(v, _mm256_loadu_ps(bias.add(h * 8)));
                }
                if last {
                    if !res.is_null() {
                        v = _mm256_add_ps(v, _mm256_loadu_ps(res.add(o)));
                    }
                    if relu {
                        v = _mm256_max_ps(v, _mm256_setzero_ps());
                    }
                }
                _mm256_storeu_ps(dst, v);
            }
        }
    }

    /// `y = relu?(w x + bias + res)`, all NCHW8c; jobs of `pb` pixels x `mb` channels.
    pub fn conv(a: &Args, pb: usize, mb: usize, pairs_outer: bool) {
        let (hw, k, m) = (a.hw, a.k, a.m);
        let (npb, nmb) = (hw.div_ceil(pb), m.div_ceil(mb));
        let xs = hw * 8;
        let job = |j: usize| unsafe {
            let (pi, mi) = (j / nmb, j % nmb);
            let (p0, p1) = (pi * pb, ((pi + 1) * pb).min(hw));
            let (q0, q1) = (mi * mb / 16, ((mi + 1) * mb).min(m) / 16);
            let kb8 = k / 8;
            let mut kb = 0;
            while kb < kb8 {
                let n = KC8.min(kb8 - kb);
                let (first, last) = (kb == 0, kb + n == kb8);
                let one = |p: usize, np: usize, q: usize| {
                    let x = a.x.add(kb * xs + p * 8);
                    let w = a.w.add(q * k * 16 + kb * 128);
                    let off = q * 2 * xs + p * 8;
                    let y = a.y.add(off);
                    let res = if a.res.is_null() {
                        a.res
                    } else {
                        a.res.add(off)
                    };
                    let bias = if a.bias.is_null() {
                        a.bias
                    } else {
                        a.bias.add(q * 16)
                    };
                    macro_rules! pick {
                        ($f:literal, $l:literal) => {
                            match np {
                                6 => tile::<6, $f, $l>,
                                5 => tile::<5, $f, $l>,
                                4 => tile::<4, $f, $l>,
                                3 => tile::<3, $f, $l>,
                                2 => tile::<2, $f, $l>,
                                _ => tile::<1, $f, $l>,
                            }
                        };
                    }
                    let f = match (first, last) {
                        (true, true) => pick!(true, true),
                        (true, false) => pick!(true, false),
                        (false, true) => pick!(false, true),
                        (false, false) => pick!(false, false),
                    };
                    f(n, x, xs, w, y, res, bias, a.relu);
                };
                if pairs_outer {
                    for q in q0..q1 {
                        let mut p = p0;
                        while p < p1 {
                            let np = PX.min(p1 - p);
                            one(p, np, q);
                            p += np;
                        }
                    }
                } else {
                    let mut p = p0;
                    while p < p1 {
                        let np = PX.min(p1 - p);
                        for q in q0..q1 {
                            one(p, np, q);
                        }
                        p += np;
                    }
                }
                kb += n;
            }
        };
        (0..npb * nmb).into_par_iter().for_each(job);
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("an x86-64 (AVX2 + FMA) experiment");
}

#[cfg(target_arch = "x86_64")]
fn main() {
    if !common::avx2_fma() {
        return;
    }
    let mut args: Vec<String> = std::env::args().collect();
    let cold = args.iter().any(|a| a == "--cold");
    let with_res = args.iter().any(|a| a == "--res");
    args.retain(|a| a != "--cold" && a != "--res");
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let mut shapes: Vec<(usize, usize, usize)> = args
        .iter()
        .skip(2)
        .filter_map(|s| {
            let d: Vec<usize> = s.split('x').filter_map(|d| d.parse().ok()).collect();
            (d.len() == 3).then(|| (d[0], d[1], d[2]))
        })
        .collect();
    if shapes.is_empty() {
        shapes = vec![
            (256, 64, 3136),
            (64, 256, 3136),
            (128, 512, 784),
            (512, 128, 784),
            (256, 1024, 196),
            (1024, 256, 196),
            (512, 2048, 49),
            (2048, 512, 49),
        ];
    }
    let pool = common::pool(threads);
    let kernel = Kernel::detect();
    println!("{threads} thread(s), cold {cold}, residual {with_res}; us per product (median of 15), ratio blocked/gemm");
    for &(m, k, n) in &shapes {
        // The prototype's blocks: 16 output and 8 input channels.
        if m == 0 || k == 0 || n == 0 || m % 16 != 0 || k % 8 != 0 {
            eprintln!("{m}x{k}x{n}: needs M a multiple of 16, K of 8, all nonzero; skipped");
            continue;
        }
        let x = rnd(k * n, 1);
        let w = rnd(m * k, 2);
        let bias = rnd(m, 3);
        let r = rnd(m * n, 4);
        let pa = Packed::lhs_with_kernel(&Strided::rows(&w, m, k).unwrap(), kernel);
        let wb = blocked::pack_w(&w, m, k);
        let copies = if cold {
            common::cold_copies(2 * k * n + 2 * m * n)
        } else {
            1
        };
        let xs: Vec<Aligned> = (0..copies).map(|_| Aligned::from_slice(&x)).collect();
        let xbs: Vec<Aligned> = (0..copies)
            .map(|_| Aligned::from_slice(&to_blocked(&x, k, n)))
            .collect();
        let rs = Aligned::from_slice(&r);
        let rbs = Aligned::from_slice(&to_blocked(&r, m, n));
        let mut ys: Vec<Aligned> = (0..copies).map(|_| Aligned::new(m * n)).collect();
        let mut ybs: Vec<Aligned> = (0..copies).map(|_| Aligned::new(m * n)).collect();
        let run_gemm = |x: &[f32], y: &mut [f32]| {
            gemm_ex(
                kernel,
                Lhs::Packed(&pa),
                Rhs::Direct {
                    data: x,
                    k,
                    n,
                    ld: n,
                },
                Out {
                    data: y,
                    rs: n,
                    cs: 1,
                },
                &Epilogue {
                    bias: Bias::Row(&bias),
                    residual: with_res.then_some(View {
                        data: &rs,
                        rs: n,
                        cs: 1,
                    }),
                    act: if with_res {
                        Activation::Relu
                    } else {
                        Activation::None
                    },
                    ..Epilogue::default()
                },
            )
            .unwrap();
        };
        // Jobs: `pb` pixels x `mb` channels, the channels' weights for one `K` block
        // within 128 KiB (L2), at least 4 jobs per thread.
        let kc = k.min(blocked::KC8 * 8);
        let mut mb = ((128 << 10) / (4 * kc) / 16 * 16).clamp(16, m);
        let mut pb = 96;
        while n.div_ceil(pb) * m.div_ceil(mb) < 4 * threads {
            if pb > 24 {
                pb = (pb / 2).div_ceil(6) * 6;
            } else if mb > 16 {
                mb = (mb / 2).div_ceil(16) * 16;
            } else {
                break;
            }
        }
        let run_blocked = |x: &[f32], y: &mut [f32], order: bool| {
            blocked::conv(
                &blocked::Args {
                    x: x.as_ptr(),
                    w: wb.as_ptr(),
                    bias: bias.as_ptr(),
                    res: if with_res {
                        rbs.as_ptr()
                    } else {
                        std::ptr::null()
                    },
                    y: y.as_mut_ptr(),
                    hw: n,
                    k,
                    m,
                    relu: with_res,
                },
                pb,
                mb,
                order,
            )
        };
        // Check: the blocked result, unblocked, against the GEMM's.
        pool.install(|| {
            run_gemm(&xs[0], &mut ys[0]);
            run_blocked(&xbs[0], &mut ybs[0], true);
            let mut y2 = vec![0.0; m * n];
            run_blocked(&xbs[0], &mut y2, false);
            assert_eq!(&y2[..], &ybs[0][..]);
        });
        let want = to_blocked(&ys[0], m, n);
        let err = max_rel_diff(&want, &ybs[0]);
        assert!(
            err < 1e-4,
            "{m}x{k}x{n}: blocked differs from the GEMM by {err}"
        );
        let iters = (2e8 / (2.0 * (m * n * k) as f64)).clamp(2.0, 200.0) as usize;
        let (mut tg, mut tb, mut tc) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..15 {
            let t = Instant::now();
            pool.install(|| {
                for it in 0..iters {
                    run_gemm(&xs[it % copies], &mut ys[it % copies]);
                }
            });
            tg.push(t.elapsed().as_secs_f64() / iters as f64);
            let t = Instant::now();
            pool.install(|| {
                for it in 0..iters {
                    run_blocked(&xbs[it % copies], &mut ybs[it % copies], true);
                }
            });
            tb.push(t.elapsed().as_secs_f64() / iters as f64);
            let t = Instant::now();
            pool.install(|| {
                for it in 0..iters {
                    run_blocked(&xbs[it % copies], &mut ybs[it % copies], false);
                }
            });
            tc.push(t.elapsed().as_secs_f64() / iters as f64);
        }
        tg.sort_by(f64::total_cmp);
        tb.sort_by(f64::total_cmp);
        tc.sort_by(f64::total_cmp);
        let (g, b, c) = (tg[7], tb[7], tc[7]);
        let gf = |t: f64| 2.0 * (m * n * k) as f64 / t / 1e9;
        println!(
            "{m:5}x{k:5}x{n:5}  gemm {:8.1} us {:5.1} GF/s   pairs outer {:8.1} us {:5.1} GF/s {:.3}   pixels outer {:8.1} us {:.3}",
            g * 1e6,
            gf(g),
            b * 1e6,
            gf(b),
            b / g,
            c * 1e6,
            c / g
        );
    }
}
