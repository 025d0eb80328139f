//! GFLOP/s of activation x weight products as a transformer's dense layers run them:
//! activations (M x K, row-major) packed on the fly, weights (K x N) prepacked.
//! `cargo run --release -p millrace-kernels --example mm_bench [THREADS] [KERNEL ...]`
//! (kernels named after the first compared with the detected one, alternating run by run).
//! The classifiers' weights (4-8 MB) stay in the L3 here; in a model they come from memory:
//! `--cold` gives each classifier run its own copy of the packed weights, out of copies
//! spanning 96 MiB (more than the last-level cache holds), so that they stream from memory
//! as there.
use millrace_kernels::gemm::{gemm_ex, Epilogue, Kernel, Lhs, Out, Packed, Rhs, Strided};
use std::time::Instant;

mod common;

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let cold = args.iter().any(|a| a == "--cold");
    args.retain(|a| a != "--cold");
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let pool = common::pool(threads);
    // The detected kernel, then any named on the command line, alternating run by run.
    let mut kernels = vec![Kernel::detect()];
    for name in args.iter().skip(2) {
        kernels.push(Kernel::named(name).expect("kernel name"));
    }
    // bert_small at 128 tokens: QKV, attention output, feed-forward in and out.
    for &(m, k, n) in &[
        (128, 256, 768),
        (128, 256, 256),
        (128, 256, 1024),
        (128, 1024, 256),
        // Classifiers at batch 1 (matrix-vector products): MobileNetV2, GoogLeNet, ResNet-50.
        (1, 1280, 1000),
        (1, 1024, 1000),
        (1, 2048, 1000),
    ] {
        let x: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
        let w: Vec<f32> = (0..k * n).map(|i| (i % 13) as f32 * 0.01).collect();
        let sx = Strided::rows(&x, m, k).expect("x");
        let copies = if cold && m == 1 {
            common::cold_copies(k * n)
        } else {
            1
        };
        let packs: Vec<Vec<Packed>> = kernels
            .iter()
            .map(|&kr| {
                (0..copies)
                    .map(|_| Packed::with_kernel(&Strided::cols(&w, n, k).expect("w"), kr))
                    .collect()
            })
            .collect();
        let mut c = vec![0.0f32; m * n];
        let mut times = vec![Vec::new(); kernels.len()];
        for run in 0..200 {
            for (vi, (&kernel, pws)) in kernels.iter().zip(&packs).enumerate() {
                let pw = &pws[run % pws.len()];
                let t = Instant::now();
                pool.install(|| {
                    let out = Out {
                        data: &mut c,
                        rs: n,
                        cs: 1,
                    };
                    gemm_ex(
                        kernel,
                        Lhs::Source(&sx),
                        Rhs::Packed(pw),
                        out,
                        &Epilogue::default(),
                    )
                })
                .expect("gemm");
                times[vi].push(t.elapsed().as_secs_f64());
            }
        }
        let mut line = format!("{m:4}x{k:5}x{n:5}:");
        for (t, kernel) in times.iter_mut().zip(&kernels) {
            t.sort_by(f64::total_cmp);
            let med = t[t.len() / 2];
            line += &format!(
                "  {} {:7.1} us {:6.1} GFLOP/s",
                kernel.name,
                med * 1e6,
                2.0 * (m * k * n) as f64 / med / 1e9
            );
        }
        println!("{line}");
    }
}
