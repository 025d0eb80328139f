//! GFLOP/s of 1x1 convolutions as ResNet-50 runs them: packed weights (M x K) times the
//! image (K x N) read in place (`Rhs::Direct`), under several cache blockings, the variants
//! interleaved run by run so that a busy machine slows them alike. Each timed batch of
//! products runs inside one `pool.install`, as a model's run does: entering the pool once
//! per product added about 60 us on the 2-vCPU guest (72x128x128: 97 against 35 us).
//! `cargo run --release -p millrace-kernels --example pw_bench [THREADS] [SHAPE] [NAME[:KC:MC[:RK]]][+res][+pack] ...] [--cold]`
//! (`RK`: row panels outermost for `K` up to this, 0 never; `+res`: with a residual Add and Relu in the epilogue, as ResNet-50's last 1x1 of a block;
//! `+pack`: B packed into panels instead of read in place; SHAPE: an index or `MxKxN`;
//! `--cold`: each product reads and writes one of several copies spanning more than the
//! last-level cache, as a layer of a model finds its input; `--cold-weights`: the same for
//! the packed weights, which a model larger than the cache streams from memory).
use millrace_kernels::activation::Activation;
use millrace_kernels::gemm::{gemm_ex, Epilogue, Kernel, Lhs, Out, Packed, Rhs, Strided, View};
use std::time::Instant;

mod common;
use common::Aligned;

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    // `--cold`: each product reads its image from and writes to one of several copies
    // spanning more than the last-level cache, as a model's layer finds its input.
    let cold = args.iter().any(|a| a == "--cold");
    // `--cold-weights`: each product reads one of several copies of the packed weights
    // spanning more than the last-level cache, as a model's layer finds its weights.
    let cold_w = args.iter().any(|a| a == "--cold-weights");
    args.retain(|a| a != "--cold" && a != "--cold-weights");
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    // SHAPE: an index into the list below, or `MxKxN`.
    let only: Option<usize> = args.get(2).and_then(|s| s.parse().ok());
    let custom: Option<(usize, usize, usize)> = args.get(2).and_then(|s| {
        let d: Vec<usize> = s.split('x').filter_map(|d| d.parse().ok()).collect();
        (d.len() == 3).then(|| (d[0], d[1], d[2]))
    });
    let pool = common::pool(threads);
    let base = Kernel::detect();
    let mut kernels = vec![base];
    let mut with_res = vec![false];
    let mut packed_b = vec![false];
    for v in args.iter().skip(3) {
        let (v, pack) = match v.strip_suffix("+pack") {
            Some(v) => (v, true),
            None => (v.as_str(), false),
        };
        let (v, res) = match v.strip_suffix("+res") {
            Some(v) => (v, true),
            None => (v, false),
        };
        with_res.push(res);
        packed_b.push(pack);
        let f: Vec<&str> = v.split(':').collect();
        let kr = Kernel::named(f[0]).expect("kernel name");
        let kr = match f.get(1..3) {
            Some([kc, mc]) => kr.with_blocks(kc.parse().expect("KC"), mc.parse().expect("MC")),
            _ => kr,
        };
        kernels.push(match f.get(3) {
            Some(rk) => kr.with_rows_outer_k(rk.parse().expect("ROWS_OUTER_K")),
            None => kr,
        });
    }
    let shapes = [
        (64, 64, 3136),
        (256, 64, 3136),
        (64, 256, 3136),
        (128, 256, 3136),
        (512, 128, 784),
        (128, 512, 784),
        (256, 512, 784),
        (1024, 256, 196),
        (256, 1024, 196),
        (512, 1024, 196),
        (2048, 512, 49),
        (512, 2048, 49),
        // bert_small's feed-forward products (128 tokens).
        (128, 256, 1024),
        (128, 1024, 256),
    ];
    let shapes: Vec<(usize, usize, usize)> = match custom {
        Some(s) => vec![s],
        None => shapes.to_vec(),
    };
    let mut total = vec![0.0f64; kernels.len()];
    for (si, &(m, k, n)) in shapes.iter().enumerate() {
        if custom.is_none() && only.is_some_and(|o| o != si) {
            continue;
        }
        // Cache-line aligned, as the arena places activations (see `Aligned`).
        let mut xb = Aligned::new(k * n);
        xb.iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = (i % 17) as f32 * 0.01);
        let copies = if cold {
            common::cold_copies(k * n + m * n)
        } else {
            1
        };
        let xcopies: Vec<Aligned> = (0..copies).map(|_| Aligned::from_slice(&xb)).collect();
        // The packing source of each copy (for `+pack`), made once, outside the timing.
        let sources: Vec<_> = xcopies.iter().map(|x| Strided::cols(x, n, k)).collect();
        let mut ccopies: Vec<Aligned> = (0..copies).map(|_| Aligned::new(m * n)).collect();
        let w: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.01).collect();
        let wcopies = if cold_w {
            common::cold_copies(m * k)
        } else {
            1
        };
        let packs: Vec<Vec<Packed>> = kernels
            .iter()
            .map(|&kr| {
                (0..wcopies)
                    .map(|_| Packed::lhs_with_kernel(&Strided::rows(&w, m, k).unwrap(), kr))
                    .collect()
            })
            .collect();
        let mut rb = Aligned::new(m * n);
        rb.iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = (i % 7) as f32 * 0.01);
        let res = &rb[..];
        let iters = (2e8 / (2.0 * (m * n * k) as f64)).clamp(2.0, 200.0) as usize;
        let mut times = vec![Vec::new(); kernels.len()];
        for _ in 0..15 {
            for (vi, (&kr, pa)) in kernels.iter().zip(&packs).enumerate() {
                let t = Instant::now();
                pool.install(|| {
                    for it in 0..iters {
                        let x = &xcopies[it % copies][..];
                        let c = &mut ccopies[it % copies][..];
                        gemm_ex(
                            kr,
                            Lhs::Packed(&pa[it % wcopies]),
                            match &sources[it % copies] {
                                Some(src) if packed_b[vi] => Rhs::Source(src),
                                _ => Rhs::Direct {
                                    data: x,
                                    k,
                                    n,
                                    ld: n,
                                },
                            },
                            Out {
                                data: c,
                                rs: n,
                                cs: 1,
                            },
                            &if with_res[vi] {
                                Epilogue {
                                    residual: Some(View {
                                        data: res,
                                        rs: n,
                                        cs: 1,
                                    }),
                                    act: Activation::Relu,
                                    ..Epilogue::default()
                                }
                            } else {
                                Epilogue::default()
                            },
                        )
                        .unwrap();
                    }
                });
                times[vi].push(t.elapsed().as_secs_f64() / iters as f64);
            }
        }
        let mut line = format!("{m:5}x{k:5}x{n:5}");
        for (vi, t) in times.iter_mut().enumerate() {
            t.sort_by(f64::total_cmp);
            let med = t[t.len() / 2];
            total[vi] += med;
            line += &format!(
                "  {}:{}:{}:{}{}{}: {:7.1} us {:6.1} GF/s",
                kernels[vi].name,
                kernels[vi].kc,
                kernels[vi].mc,
                kernels[vi].rows_outer_k,
                if with_res[vi] { "+res" } else { "" },
                if packed_b[vi] { "+pack" } else { "" },
                med * 1e6,
                2.0 * (m * n * k) as f64 / med / 1e9
            );
        }
        println!("{line}");
    }
    let t: Vec<String> = total.iter().map(|t| format!("{:.1}", t * 1e6)).collect();
    println!("total us: {}", t.join("  "));
}
