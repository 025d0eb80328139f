use super::*;

use crate::testutil::rnd;

/// f64 reference of `act(alpha A B + beta C + bias + residual)`, A row-major m x k,
/// B row-major k x n, everything else row-major m x n.
#[allow(clippy::too_many_arguments)]
fn reference(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &[f32],
    alpha: f32,
    beta: f32,
    col_bias: Option<&[f32]>,
    res: Option<&[f32]>,
    act: Activation,
) -> Vec<f32> {
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += a[i * k + p] as f64 * b[p * n + j] as f64;
            }
            let mut v = alpha as f64 * s;
            if beta != 0.0 {
                v += beta as f64 * c[i * n + j] as f64;
            }
            if let Some(bv) = col_bias {
                v += bv[j] as f64;
            }
            if let Some(r) = res {
                v += r[i * n + j] as f64;
            }
            y[i * n + j] = act.apply(v as f32);
        }
    }
    y
}

fn close(got: &[f32], want: &[f32], k: usize, what: &str) {
    let tol = 1e-5 * (k as f32).sqrt().max(1.0) * 4.0;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

#[test]
fn every_kernel_matches_reference_over_awkward_shapes() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    for kernel in Kernel::available() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 5, 7),
            (14, 32, 256),
            (15, 33, 257),
            (49, 64, 300),
            (100, 17, 600),
            (7, 130, 513),
            (230, 70, 40),
            // Self-scheduled: columns handed out in chunks (A prepacked), and rows with
            // B packed once for all chunks over several K blocks.
            (20, 400, 300),
            (300, 50, 600),
            // Self-scheduled with few panels on the larger side (AVX-512's 14-row and
            // 32-column panels): each cut across the other side (`cuts`).
            (96, 60, 50),
            (30, 300, 50),
            // One row by prepacked panels (`gemv.rs` on AVX-512): a classifier at batch 1,
            // `K` over two `kc` blocks, odd `K`, `N` not a multiple of 32.
            (1, 1000, 1280),
            (1, 700, 2049),
            (1, 33, 5),
        ] {
            let a = rnd(m * k, 1);
            let b = rnd(k * n, 2);
            let c0 = rnd(m * n, 3);
            let bias = rnd(n, 4);
            let res = rnd(m * n, 5);
            let sa = Strided::rows(&a, m, k).unwrap();
            let sb = Strided::cols(&b, n, k).unwrap();
            let packed = PackedB::with_kernel(&sb, kernel);
            for (alpha, beta, act, with_bias, with_res) in [
                (1.0, 0.0, Activation::None, false, false),
                (0.5, 2.0, Activation::Relu, true, true),
                (1.0, 0.0, Activation::Clip { lo: 0.0, hi: 0.5 }, true, false),
                (1.0, 1.0, Activation::Gelu, false, true),
            ] {
                let want = reference(
                    m,
                    n,
                    k,
                    &a,
                    &b,
                    &c0,
                    alpha,
                    beta,
                    with_bias.then_some(&bias[..]),
                    with_res.then_some(&res[..]),
                    act,
                );
                let epi = Epilogue {
                    alpha,
                    beta,
                    bias: if with_bias {
                        Bias::Col(&bias)
                    } else {
                        Bias::None
                    },
                    residual: with_res.then_some(View {
                        data: &res,
                        rs: n,
                        cs: 1,
                    }),
                    act,
                };
                let pa = Packed::lhs_with_kernel(&sa, kernel);
                for (lhs, rhs) in [
                    (Lhs::Source(&sa), Rhs::Packed(&packed)),
                    (Lhs::Source(&sa), Rhs::Source(&sb)),
                    (Lhs::Packed(&pa), Rhs::Source(&sb)),
                    (Lhs::Packed(&pa), Rhs::Packed(&packed)),
                    (
                        Lhs::Packed(&pa),
                        Rhs::Direct {
                            data: &b,
                            k,
                            n,
                            ld: n,
                        },
                    ),
                ] {
                    let mut c = c0.clone();
                    pool.install(|| {
                        gemm_ex(
                            kernel,
                            lhs,
                            rhs,
                            Out {
                                data: &mut c,
                                rs: n,
                                cs: 1,
                            },
                            &epi,
                        )
                    })
                    .unwrap();
                    close(&c, &want, k, &format!("{} {m}x{n}x{k}", kernel.name));
                }
                // Column-major output (the convolution layout: C^T in NCHW).
                let mut ct: Vec<f32> = (0..m * n).map(|x| c0[(x % m) * n + x / m]).collect();
                let rest: Vec<f32> = (0..m * n).map(|x| res[(x % m) * n + x / m]).collect();
                let epi_t = Epilogue {
                    residual: with_res.then_some(View {
                        data: &rest,
                        rs: 1,
                        cs: m,
                    }),
                    ..epi
                };
                pool.install(|| {
                    gemm_with(
                        kernel,
                        &sa,
                        Rhs::Packed(&packed),
                        Out {
                            data: &mut ct,
                            rs: 1,
                            cs: m,
                        },
                        &epi_t,
                    )
                })
                .unwrap();
                let back: Vec<f32> = (0..m * n).map(|x| ct[(x % n) * m + x / n]).collect();
                close(
                    &back,
                    &want,
                    k,
                    &format!("{} {m}x{n}x{k} col-major", kernel.name),
                );
            }
        }
    }
}

#[test]
fn row_bias_and_zero_depth() {
    let (m, n) = (5, 3);
    let bias = [1.0, 2.0, 3.0, 4.0, 5.0];
    let mut c = vec![7.0; m * n];
    let a: [f32; 0] = [];
    let sa = Strided::rows(&a, m, 0).unwrap();
    let sb = Strided::cols(&a, n, 0).unwrap();
    gemm(
        &sa,
        Rhs::Source(&sb),
        Out {
            data: &mut c,
            rs: n,
            cs: 1,
        },
        &Epilogue {
            bias: Bias::Row(&bias),
            ..Epilogue::default()
        },
    )
    .unwrap();
    for i in 0..m {
        assert_eq!(&c[i * n..(i + 1) * n], &[bias[i]; 3]);
    }
}

#[test]
fn bad_extents_are_errors() {
    let a = rnd(12, 1);
    let sa = Strided::rows(&a, 3, 4).unwrap();
    let sb = Strided::cols(&a, 3, 4).unwrap();
    let mut c = vec![0.0; 8];
    let r = gemm(
        &sa,
        Rhs::Source(&sb),
        Out {
            data: &mut c,
            rs: 3,
            cs: 1,
        },
        &Epilogue::default(),
    );
    assert!(r.is_err());
    let sb2 = Strided::cols(&a, 2, 6).unwrap();
    let mut c = vec![0.0; 9];
    let r = gemm(
        &sa,
        Rhs::Source(&sb2),
        Out {
            data: &mut c,
            rs: 3,
            cs: 1,
        },
        &Epilogue::default(),
    );
    assert!(r.is_err());
}

#[test]
fn convolution_through_implicit_im2col() {
    use crate::conv::{im2col_2d, Geom2d};
    let g = Geom2d {
        c: 8,
        h: 13,
        w: 11,
        kh: 3,
        kw: 3,
        sh: 2,
        sw: 1,
        dh: 1,
        dw: 2,
        pt: 1,
        pl: 2,
        oh: 7,
        ow: 11,
    };
    let cout = 40;
    let x = rnd(g.c * g.h * g.w, 9);
    let w = rnd(cout * g.c * 9, 10);
    let kk = g.c * 9;
    let p = g.oh * g.ow;
    let mut col = vec![0.0; kk * p];
    im2col_2d(&x, &g, 0.0, &mut col);
    // want[co][p] = sum_k w[co][k] col[k][p]
    let mut want = vec![0.0f32; cout * p];
    for co in 0..cout {
        for q in 0..p {
            want[co * p + q] = (0..kk).map(|k| w[co * kk + k] * col[k * p + q]).sum();
        }
    }
    for kernel in Kernel::available() {
        let packed = PackedB::with_kernel(&Strided::rows(&w, cout, kk).unwrap(), kernel);
        let src = Im2col::new(&x, g).unwrap();
        let mut y = vec![f32::NAN; cout * p];
        gemm_with(
            kernel,
            &src,
            Rhs::Packed(&packed),
            Out {
                data: &mut y,
                rs: 1,
                cs: p,
            },
            &Epilogue::default(),
        )
        .unwrap();
        close(&y, &want, kk, kernel.name);
        // The NCHW orientation: packed weights on the left, pixels on the right, with a
        // row bias, a residual and Relu fused.
        let pa = Packed::lhs_with_kernel(&Strided::rows(&w, cout, kk).unwrap(), kernel);
        let bias = rnd(cout, 11);
        let res = rnd(cout * p, 12);
        let mut y = vec![f32::NAN; cout * p];
        gemm_ex(
            kernel,
            Lhs::Packed(&pa),
            Rhs::Source(&src),
            Out {
                data: &mut y,
                rs: p,
                cs: 1,
            },
            &Epilogue {
                bias: Bias::Row(&bias),
                residual: Some(View {
                    data: &res,
                    rs: p,
                    cs: 1,
                }),
                act: Activation::Relu,
                ..Epilogue::default()
            },
        )
        .unwrap();
        let want2: Vec<f32> = (0..cout * p)
            .map(|i| (want[i] + bias[i / p] + res[i]).max(0.0))
            .collect();
        close(&y, &want2, kk, &format!("{} lhs-packed", kernel.name));
    }
}

/// Each ragged-tile kernel gives the full kernel's first `r` rows, bit for bit, with the
/// whole epilogue (old C, row bias, residual, Relu) and a ragged right edge (half-width
/// kernels included), and leaves the rows below `r` and the columns right of the edge
/// untouched.
#[test]
fn tail_kernels_match_the_full_kernel() {
    for kernel in Kernel::available() {
        let (mr, nr) = (kernel.mr, kernel.nr);
        for kc in [1, 3, 17, 64] {
            let a = rnd(kc * mr, 11);
            let b = rnd(kc * nr, 12);
            let bias = rnd(mr, 13);
            let res = rnd(mr * nr, 14);
            let old = rnd(mr * nr, 15);
            for r in 1..=mr {
                for nv in [nr, nr - 3, nr / 2 + 1, nr / 2, nr / 2 - 1, 1] {
                    let run = |f: micro::MicroFn| {
                        let mut c = old.clone();
                        let o = micro::TileOut {
                            c: c.as_mut_ptr(),
                            ldc: nr,
                            mv: r,
                            nv,
                            alpha: 1.0,
                            add_old: 1.0,
                            last: true,
                            bias_row: bias.as_ptr(),
                            bias_col: std::ptr::null(),
                            res: res.as_ptr(),
                            ldr: nr,
                            relu: true,
                            clamp: None,
                            pf_a: std::ptr::null(),
                            pf_b: 0,
                        };
                        // SAFETY: panels and tile sized for the kernel; `r <= mr` rows.
                        unsafe { f(kc, a.as_ptr(), b.as_ptr(), nr, &o) };
                        c
                    };
                    let (full, tail) = (run(kernel.f), run(kernel.micro(r, nv)));
                    assert_eq!(full, tail, "{} kc {kc} r {r} nv {nv}", kernel.name);
                    assert_eq!(&tail[r * nr..], &old[r * nr..], "{} r {r}", kernel.name);
                    for row in 0..r {
                        let (t, o) = (&tail[row * nr..][nv..nr], &old[row * nr..][nv..nr]);
                        assert_eq!(t, o, "{} r {r} nv {nv} row {row}", kernel.name);
                    }
                }
            }
        }
    }
}

/// The narrow kernel gives the full kernel's columns `j..j + w` (to rounding: it sums `k`
/// in two or four chains), with the whole epilogue, column bias or none, for every row
/// count and every width it takes, and writes nothing else.
#[test]
fn column_kernel_matches_the_full_kernel() {
    for kernel in Kernel::available() {
        let Some(cols) = kernel.cols else { continue };
        let (mr, nr) = (kernel.mr, kernel.nr);
        for (kc, w) in [1, 2, 3, 4, 5, 17, 64]
            .into_iter()
            .flat_map(|kc| (1..=kernel.cols_max).map(move |w| (kc, w)))
        {
            let a = rnd(kc * mr, 21);
            let b = rnd(kc * nr, 22);
            let (bias, bcol) = (rnd(mr, 23), rnd(nr, 24));
            let (res, old) = (rnd(mr * nr, 25), rnd(mr * nr, 26));
            for r in 1..=mr {
                for j in [0, 1, nr / 2, nr - w] {
                    for with_col_bias in [false, true] {
                        let out = |c: &mut Vec<f32>, nv: usize, j: usize| micro::TileOut {
                            c: c.as_mut_ptr().wrapping_add(j),
                            ldc: nr,
                            mv: r,
                            nv,
                            alpha: 0.5,
                            add_old: 1.0,
                            last: true,
                            bias_row: bias.as_ptr(),
                            bias_col: if with_col_bias {
                                bcol[j..].as_ptr()
                            } else {
                                std::ptr::null()
                            },
                            res: res[j..].as_ptr(),
                            ldr: nr,
                            relu: true,
                            clamp: None,
                            pf_a: std::ptr::null(),
                            pf_b: 0,
                        };
                        let mut full = old.clone();
                        let mut one = old.clone();
                        // SAFETY: panels and tiles sized for the kernel; the narrow kernel
                        // gets a `w`-column tile at column `j <= nr - w` and B from column `j`.
                        unsafe {
                            (kernel.f)(kc, a.as_ptr(), b.as_ptr(), nr, &out(&mut full, nr, 0));
                            cols(kc, a.as_ptr(), b[j..].as_ptr(), nr, &out(&mut one, w, j));
                        }
                        for i in 0..mr {
                            for x in 0..nr {
                                let (got, o) = (one[i * nr + x], old[i * nr + x]);
                                if i < r && (j..j + w).contains(&x) {
                                    let want = full[i * nr + x];
                                    let tol = 1e-5 * (1.0 + want.abs());
                                    assert!(
                                        (got - want).abs() <= tol,
                                        "{} kc {kc} w {w} r {r} j {j} x {x}: {got} vs {want}",
                                        kernel.name
                                    );
                                } else {
                                    assert_eq!(
                                        got, o,
                                        "{} r {r} j {j} wrote ({i}, {x})",
                                        kernel.name
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Each microkernel on operands in L1, for a short (`kc` = 64: small-K products, where the
/// epilogue weighs) and a long K block, against the FMA peak measured on the same thread
/// between tries (`cargo test --release -p millrace-kernels microkernel_throughput --
/// --ignored --nocapture`).
#[test]
#[ignore]
fn microkernel_throughput() {
    let peak_variant = crate::peak::FmaVariant::detect();
    for kernel in Kernel::available() {
        for kc in [64usize, 256] {
            let a = rnd(kc * kernel.mr, 1);
            let b = rnd(kc * kernel.nr, 2);
            let mut c = vec![0.0f32; kernel.mr * kernel.nr];
            let o = micro::TileOut::plain(c.as_mut_ptr(), kernel.nr, kernel.mr, kernel.nr, true);
            let iters = 2_000_000 / kc;
            let flops = 2.0 * (kc * kernel.mr * kernel.nr) as f64 * iters as f64;
            let (mut best, mut peak) = (0f64, 0f64);
            for _ in 0..5 {
                let t = std::time::Instant::now();
                for _ in 0..iters {
                    // SAFETY: panels and tile sized for the kernel.
                    unsafe { (kernel.f)(kc, a.as_ptr(), b.as_ptr(), kernel.nr, &o) };
                    std::hint::black_box(&c);
                }
                best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
                peak = peak.max(crate::peak::fma_peak(peak_variant, 1, 0.05, 1).gflops);
            }
            println!(
                "{} kc {kc}: {best:.1} GFLOP/s, {:.0}% of the {peak:.1} measured beside it",
                kernel.name,
                100.0 * best / peak
            );
        }
    }
}

/// NaN through the fused activations matches `Activation::apply` (and so the unfused Relu
/// and Clip ops: Relu gives 0, Clip keeps NaN), on the in-register path and the
/// strided-output path.
#[test]
fn fused_activations_treat_nan_like_the_ops() {
    let (m, n, k) = (3, 5, 2);
    let mut a = vec![1.0f32; m * k];
    a[0] = f32::NAN;
    a[2] = -1.0;
    a[3] = 1.0; // row 1 sums to exactly 0 when b is 1 (then -0 via alpha = -1 below)
    let b = vec![1.0f32; k * n];
    for kernel in Kernel::available() {
        for act in [Activation::Relu, Activation::Clip { lo: -0.5, hi: 0.5 }] {
            for alpha in [1.0f32, -1.0] {
                let want: Vec<f32> = (0..m * n)
                    .map(|x| {
                        let i = x / n;
                        act.apply(alpha * (a[i * k] + a[i * k + 1]))
                    })
                    .collect();
                let sa = Strided::rows(&a, m, k).unwrap();
                let sb = Strided::cols(&b, n, k).unwrap();
                let epi = Epilogue {
                    alpha,
                    act,
                    ..Epilogue::default()
                };
                let mut c = vec![7.0; m * n];
                gemm_with(
                    kernel,
                    &sa,
                    Rhs::Source(&sb),
                    Out {
                        data: &mut c,
                        rs: n,
                        cs: 1,
                    },
                    &epi,
                )
                .unwrap();
                let mut ct = vec![7.0; m * n];
                gemm_with(
                    kernel,
                    &sa,
                    Rhs::Source(&sb),
                    Out {
                        data: &mut ct,
                        rs: 1,
                        cs: m,
                    },
                    &epi,
                )
                .unwrap();
                for x in 0..m * n {
                    let t = ct[(x % n) * m + x / n];
                    for got in [c[x], t] {
                        assert!(
                            got == want[x] || (got.is_nan() && want[x].is_nan()),
                            "{} {act:?} alpha {alpha}: {got} vs {}",
                            kernel.name,
                            want[x]
                        );
                    }
                }
            }
        }
    }
}

/// A self-scheduled product with the operand every chunk reads packed once for all of
/// them, checked against the reference: with more rows than columns, rows are handed out
/// and B (from a source) is packed once; with more columns, columns are and A is.
fn shared_operand_product(m: usize, n: usize, k: usize, seed: u64) {
    let kernel = Kernel::detect();
    let a = rnd(m * k, seed);
    let b = rnd(k * n, seed + 1);
    let sa = Strided::rows(&a, m, k).unwrap();
    let pa = Packed::lhs_with_kernel(&sa, kernel);
    let sb = Strided::cols(&b, n, k).unwrap();
    let pb = PackedB::with_kernel(&sb, kernel);
    let (lhs, rhs) = if m >= n {
        (Lhs::Packed(&pa), Rhs::Source(&sb))
    } else {
        (Lhs::Source(&sa), Rhs::Packed(&pb))
    };
    let mut c = vec![0.0; m * n];
    let epi = Epilogue {
        alpha: 1.0,
        beta: 0.0,
        bias: Bias::None,
        residual: None,
        act: Activation::None,
    };
    let out = Out {
        data: &mut c,
        rs: n,
        cs: 1,
    };
    gemm_ex(kernel, lhs, rhs, out, &epi).unwrap();
    let want = reference(m, n, k, &a, &b, &[], 1.0, 0.0, None, None, Activation::None);
    close(&c, &want, k, &format!("{m}x{n}x{k} seed {seed}"));
}

/// An `A` given as a source (a transformer's activations) is packed once for the whole
/// product when jobs would pack it more than once: one job covering several blocks of
/// columns (one thread, or a small product), chunks of rows each covering all columns,
/// and the static split's jobs sharing rows. Each case against the reference, with
/// ragged edges and several `K` blocks.
#[test]
fn an_a_source_packed_once_matches_reference() {
    let kernel = Kernel::detect();
    // (threads, m, n, k): one thread; a product too small to fork; rows handed out;
    // the static split.
    for (threads, m, n, k) in [
        (1, 37, 300, 300),
        (2, 5, 200, 40),
        (2, 301, 150, 290),
        (2, 13, 40, 600),
    ] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let a = rnd(m * k, 11);
        let b = rnd(k * n, 12);
        let sa = Strided::rows(&a, m, k).unwrap();
        let pb = PackedB::with_kernel(&Strided::cols(&b, n, k).unwrap(), kernel);
        let mut c = vec![0.0; m * n];
        let bias = rnd(n, 13);
        let epi = Epilogue {
            bias: Bias::Col(&bias),
            act: Activation::Relu,
            ..Epilogue::default()
        };
        pool.install(|| {
            let out = Out {
                data: &mut c,
                rs: n,
                cs: 1,
            };
            gemm_ex(kernel, Lhs::Source(&sa), Rhs::Packed(&pb), out, &epi).unwrap()
        });
        let want = reference(
            m,
            n,
            k,
            &a,
            &b,
            &[],
            1.0,
            0.0,
            Some(&bias),
            None,
            Activation::Relu,
        );
        close(&c, &want, k, &format!("{threads} thread(s), {m}x{n}x{k}"));
    }
}

#[test]
fn a_product_finishes_when_the_other_threads_are_busy() {
    // The pool's other thread spins until the product is done: the product's chunks must
    // all be taken by the thread that called it.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    pool.install(|| {
        rayon::join(
            || {
                while !done.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
            },
            || {
                shared_operand_product(300, 60, 500, 7);
                shared_operand_product(40, 600, 500, 8);
                done.store(true, Ordering::Release);
            },
        )
    });
}

#[test]
fn products_nested_by_work_stealing_keep_their_own_packed_operands() {
    // A thread waiting for its product's chunks steals another product and packs that
    // one's B too: each must keep its own buffer.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        (0..24u64).into_par_iter().for_each(|i| {
            let (big, small) = (150 + 7 * i as usize, 40 + i as usize);
            if i % 2 == 0 {
                shared_operand_product(big, small, 300, i)
            } else {
                shared_operand_product(small, big * 2, 300, i)
            }
        })
    });
}

/// Kernels re-blocked with `with_blocks` (several `K` blocks, several `A` blocks) still
/// match the reference, with `B` read in place (the prefetching path of a 1x1
/// convolution) and packed.
#[test]
fn reblocked_kernels_match_reference() {
    for base in Kernel::available() {
        for (kc, mc) in [(7, 1), (32, 3 * base.mr), (100, 1000)] {
            let kernel = base.with_blocks(kc, mc);
            assert_eq!(kernel.mc % kernel.mr, 0);
            let (m, n, k) = (3 * kernel.mr + 5, 2 * kernel.nr + 3, 75);
            let a = rnd(m * k, kc as u64);
            let b = rnd(k * n, mc as u64);
            let pa = Packed::lhs_with_kernel(&Strided::rows(&a, m, k).unwrap(), kernel);
            let want = reference(m, n, k, &a, &b, &[], 1.0, 0.0, None, None, Activation::None);
            let sb = Strided::cols(&b, n, k).unwrap();
            for rhs in [
                Rhs::Direct {
                    data: &b,
                    k,
                    n,
                    ld: n,
                },
                Rhs::Source(&sb),
            ] {
                let mut c = vec![f32::NAN; m * n];
                let out = Out {
                    data: &mut c,
                    rs: n,
                    cs: 1,
                };
                gemm_ex(kernel, Lhs::Packed(&pa), rhs, out, &Epilogue::default()).unwrap();
                close(&c, &want, k, &format!("{} kc {kc} mc {mc}", kernel.name));
            }
        }
    }
}

/// Rows of a prepacked `A` (`Lhs::PackedRows`, from a panel boundary) give those rows of
/// the whole product, with several `K` blocks and a ragged last panel, on one thread and
/// several; a start inside a panel or an end past the rows is refused.
#[test]
fn packed_rows_match_the_whole_product() {
    for base in Kernel::available() {
        let kernel = base.with_blocks(32, 2 * base.mr);
        let (m, n, k) = (4 * kernel.mr + 5, kernel.nr + 7, 75);
        let a = rnd(m * k, 31);
        let b = rnd(k * n, 32);
        let bias = rnd(m, 33);
        let pa = Packed::lhs_with_kernel(&Strided::rows(&a, m, k).unwrap(), kernel);
        let want = reference(m, n, k, &a, &b, &[], 1.0, 0.0, None, None, Activation::None);
        let mr = kernel.mr;
        for (start, end) in [
            (0, m),
            (0, mr),
            (mr, 3 * mr),
            (2 * mr, m),
            (4 * mr, m),
            (mr, mr),
        ] {
            for threads in [1, 2] {
                let rows = end - start;
                let mut c = vec![f32::NAN; rows * n];
                let out = Out {
                    data: &mut c,
                    rs: n,
                    cs: 1,
                };
                let epi = Epilogue {
                    bias: Bias::Row(&bias[start..end]),
                    act: Activation::Relu,
                    ..Epilogue::default()
                };
                let rhs = Rhs::Direct {
                    data: &b,
                    k,
                    n,
                    ld: n,
                };
                let lhs = Lhs::PackedRows(&pa, start, end);
                if threads == 1 {
                    gemm_ex_one_thread(kernel, lhs, rhs, out, &epi).unwrap();
                } else {
                    gemm_ex(kernel, lhs, rhs, out, &epi).unwrap();
                }
                let want: Vec<f32> = want[start * n..end * n]
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| (v + bias[start + i / n]).max(0.0))
                    .collect();
                close(
                    &c,
                    &want,
                    k,
                    &format!("{} rows {start}..{end}", kernel.name),
                );
            }
        }
        for (start, end) in [(1, m), (mr + 1, 2 * mr), (0, m + 1), (2 * mr, mr)] {
            let mut c = vec![0.0; m * n];
            let out = Out {
                data: &mut c,
                rs: n,
                cs: 1,
            };
            let rhs = Rhs::Direct {
                data: &b,
                k,
                n,
                ld: n,
            };
            let r = gemm_ex(
                kernel,
                Lhs::PackedRows(&pa, start, end),
                rhs,
                out,
                &Epilogue::default(),
            );
            assert!(r.is_err(), "{} rows {start}..{end} accepted", kernel.name);
        }
    }
}

/// Packing again into a used operand, smaller then larger, gives what a fresh pack gives
/// (for `A` and `B`, every kernel), old values included nowhere.
#[test]
fn repack_matches_a_fresh_pack() {
    let (big, small) = (rnd(40 * 300, 1), rnd(7 * 20, 2));
    let sb = Strided::rows(&big, 40, 300).unwrap();
    let ss = Strided::rows(&small, 7, 20).unwrap();
    for kernel in Kernel::available() {
        for lhs in [false, true] {
            let pack = |s: &Strided| {
                if lhs {
                    Packed::lhs_with_kernel(s, kernel)
                } else {
                    Packed::with_kernel(s, kernel)
                }
            };
            let mut p = pack(&sb);
            for src in [&ss, &sb, &ss] {
                p.repack(src);
                let f = pack(src);
                assert_eq!((p.k, p.len, p.width), (f.k, f.len, f.width));
                assert_eq!(p.data, f.data, "{} lhs {lhs}", kernel.name);
            }
        }
    }
}

/// Runs of full tiles (down `M`, and along `N` where a small `K` walks row panels
/// outermost) move C, the residual and both biases on with each tile: every kernel, `K`
/// under and over `rows_outer_k`, in one and several `K` blocks, against the reference.
#[test]
fn full_tile_runs_match_reference() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for base in Kernel::available() {
        for (kc, k) in [(base.kc, 16), (base.kc, 32), (base.kc, 70), (20, 24)] {
            let kernel = base.with_blocks(kc, base.mc);
            let (mr, nr) = (kernel.mr, kernel.nr);
            for (m, n) in [(3 * mr + 2, 20 * nr + 5), (2 * mr, 17 * nr), (mr + 1, nr)] {
                let a = rnd(m * k, 11);
                let b = rnd(k * n, 12);
                let c0 = rnd(m * n, 13);
                let res = rnd(m * n, 14);
                let row_bias = rnd(m, 15);
                let col_bias = rnd(n, 16);
                let sa = Strided::rows(&a, m, k).unwrap();
                let sb = Strided::cols(&b, n, k).unwrap();
                let pa = Packed::lhs_with_kernel(&sa, kernel);
                let pb = Packed::with_kernel(&sb, kernel);
                let plain = reference(m, n, k, &a, &b, &c0, 1.0, 0.0, None, None, Activation::None);
                for case in 0..3 {
                    let (bias, residual, act) = match case {
                        0 => (Bias::Row(&row_bias), true, Activation::Relu),
                        1 => (
                            Bias::Col(&col_bias),
                            false,
                            Activation::Clip { lo: -0.5, hi: 0.5 },
                        ),
                        _ => (Bias::None, true, Activation::Sigmoid),
                    };
                    let want: Vec<f32> = (0..m * n)
                        .map(|x| {
                            let (i, j) = (x / n, x % n);
                            let mut v = plain[x];
                            v += match bias {
                                Bias::Row(r) => r[i],
                                Bias::Col(c) => c[j],
                                Bias::None => 0.0,
                            };
                            if residual {
                                v += res[x];
                            }
                            act.apply(v)
                        })
                        .collect();
                    let epi = Epilogue {
                        bias,
                        residual: residual.then_some(View {
                            data: &res,
                            rs: n,
                            cs: 1,
                        }),
                        act,
                        ..Epilogue::default()
                    };
                    let direct = Rhs::Direct {
                        data: &b,
                        k,
                        n,
                        ld: n,
                    };
                    for (lhs, rhs) in [
                        (Lhs::Packed(&pa), direct),
                        (Lhs::Packed(&pa), Rhs::Packed(&pb)),
                        (Lhs::Packed(&pa), Rhs::Source(&sb)),
                        (Lhs::Source(&sa), direct),
                    ] {
                        for threads in [1, 2] {
                            let mut c = vec![f32::NAN; m * n];
                            let mut run = || {
                                gemm_ex(
                                    kernel,
                                    lhs,
                                    rhs,
                                    Out {
                                        data: &mut c,
                                        rs: n,
                                        cs: 1,
                                    },
                                    &epi,
                                )
                            };
                            if threads == 1 {
                                run().unwrap();
                            } else {
                                pool.install(run).unwrap();
                            }
                            let what = format!("{} kc {kc} {m}x{n}x{k} case {case}", kernel.name);
                            close(&c, &want, k, &what);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn units_cover_every_tile_once() {
    for threads in 1..4 {
        for panels in 1..10 {
            for cross in 1..7 {
                let cuts = cuts(panels, cross, threads);
                assert!(cuts >= 1 && cuts <= cross.max(1));
                if panels >= UNITS_PER_THREAD * threads {
                    assert_eq!(cuts, 1);
                }
                let units = panels * cuts;
                // Every way the counter could hand out the units, as ranges of 1..=3.
                for step in 1..4 {
                    let mut seen = vec![0u32; panels * cross];
                    let mut u0 = 0;
                    while u0 < units {
                        let u1 = (u0 + step + u0 % 2).min(units);
                        for ((p0, p1), (q0, q1)) in unit_spans(u0, u1, cuts, cross) {
                            assert!(p0 < p1 && p1 <= panels && q0 < q1 && q1 <= cross);
                            for p in p0..p1 {
                                for q in q0..q1 {
                                    seen[p * cross + q] += 1;
                                }
                            }
                        }
                        u0 = u1;
                    }
                    assert!(
                        seen.iter().all(|&x| x == 1),
                        "threads {threads} panels {panels} cross {cross} step {step}: {seen:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn one_row_products_take_a_row_bias() {
    // `gemv.rs`'s epilogue (AVX-512) and the general driver's (elsewhere): a bias per row
    // of a one-row product is one value for all of it.
    let (n, k) = (40, 10);
    let a = rnd(k, 11);
    let b = rnd(k * n, 12);
    let sa = Strided::rows(&a, 1, k).unwrap();
    let packed = PackedB::new(&Strided::cols(&b, n, k).unwrap());
    let mut c = vec![0.0; n];
    gemm_ex(
        packed.kernel(),
        Lhs::Source(&sa),
        Rhs::Packed(&packed),
        Out {
            data: &mut c,
            rs: n,
            cs: 1,
        },
        &Epilogue {
            bias: Bias::Row(&[2.0]),
            act: Activation::Relu,
            ..Epilogue::default()
        },
    )
    .unwrap();
    let mut want = reference(1, n, k, &a, &b, &c, 1.0, 0.0, None, None, Activation::None);
    for w in &mut want {
        *w = (*w + 2.0).max(0.0);
    }
    close(&c, &want, k, "one row, row bias");
}
