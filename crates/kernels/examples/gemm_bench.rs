//! GFLOP/s of the packed GEMM on convolution-shaped products (pixels x couts x depth), for
//! every kernel this CPU runs. `cargo run --release -p millrace-kernels --example gemm_bench [THREADS]`
use millrace_kernels::gemm::{gemm_ex, Epilogue, Kernel, Lhs, Out, Packed, Rhs, Strided};
use std::time::Instant;

mod common;

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let pool = common::pool(threads);
    let only = std::env::args().nth(2);
    for kernel in Kernel::available() {
        if only.as_deref().is_some_and(|o| o != kernel.name) {
            continue;
        }
        for &(m, n, k) in &[
            (3136, 64, 64),
            (3136, 64, 576),
            (784, 128, 1152),
            (196, 256, 2304),
            (49, 512, 4608),
            (49, 2048, 512),
            (784, 512, 128),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
            let w: Vec<f32> = (0..n * k).map(|i| (i % 13) as f32 * 0.01).collect();
            // Convolution orientation: weights (n x k) packed on the left, pixels on the right.
            let sb = Strided::cols(&a, m, k).unwrap();
            let pa = Packed::lhs_with_kernel(&Strided::rows(&w, n, k).unwrap(), kernel);
            let mut c = vec![0.0f32; m * n];
            let mut run = || {
                pool.install(|| {
                    gemm_ex(
                        kernel,
                        Lhs::Packed(&pa),
                        Rhs::Source(&sb),
                        Out {
                            data: &mut c,
                            rs: m,
                            cs: 1,
                        },
                        &Epilogue::default(),
                    )
                })
                .unwrap()
            };
            run();
            let iters = (2e9 / (2.0 * (m * n * k) as f64)).clamp(3.0, 200.0) as usize;
            let mut best = f64::MAX;
            for _ in 0..3 {
                let t = Instant::now();
                for _ in 0..iters {
                    run();
                }
                best = best.min(t.elapsed().as_secs_f64() / iters as f64);
            }
            println!(
                "{:8} {m:5}x{n:5}x{k:5}  {:8.1} us  {:6.1} GFLOP/s",
                kernel.name,
                best * 1e6,
                2.0 * (m * n * k) as f64 / best / 1e9
            );
        }
    }
}
