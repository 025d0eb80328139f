//! GFLOP/s of activation x weight products as a transformer's dense layers run them:
//! activations (M x K, row-major) packed on the fly, weights (K x N) prepacked.
//! `cargo run --release -p millrace-kernels --example mm_bench [THREADS]`
use millrace_kernels::gemm::{gemm_ex, Epilogue, Kernel, Lhs, Out, Packed, Rhs, Strided};
use std::time::Instant;

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let kernel = Kernel::detect();
    // bert_small at 128 tokens: QKV, attention output, feed-forward in and out.
    for &(m, k, n) in &[
        (128, 256, 768),
        (128, 256, 256),
        (128, 256, 1024),
        (128, 1024, 256),
    ] {
        let x: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
        let w: Vec<f32> = (0..k * n).map(|i| (i % 13) as f32 * 0.01).collect();
        let sx = Strided::rows(&x, m, k).expect("x");
        let pw = Packed::with_kernel(&Strided::cols(&w, n, k).expect("w"), kernel);
        let mut c = vec![0.0f32; m * n];
        let mut times = Vec::new();
        for _ in 0..200 {
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
                    Rhs::Packed(&pw),
                    out,
                    &Epilogue::default(),
                )
            })
            .expect("gemm");
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        println!(
            "{m:4}x{k:5}x{n:5}: {:7.1} us {:6.1} GFLOP/s",
            med * 1e6,
            2.0 * (m * k * n) as f64 / med / 1e9
        );
    }
}
