//! Max pooling on GoogLeNet's and ResNet-50's pooling layers, batch 1.
//! `cargo run --release -p millrace-kernels --example pool_bench [THREADS] [REPEATS]`
//!
//! Prints, for every instruction set the CPU runs but the portable one, the best time of
//! several runs and the bytes moved per second (input read once, output written once).
use millrace_kernels::conv::Geom2d;
use millrace_kernels::pool::max_pool2d_with;
use std::time::Instant;

mod common;
use common::rnd;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(1);
    let repeats: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(200);
    let pool = common::pool(threads);
    // (name, channels, size, kernel, stride, pad, ceil)
    let layers: [(&str, usize, usize, usize, usize, usize, bool); 11] = [
        ("googlenet maxpool1", 64, 112, 3, 2, 0, true),
        ("googlenet maxpool2", 192, 56, 3, 2, 0, true),
        ("googlenet maxpool3", 480, 28, 3, 2, 0, true),
        ("googlenet maxpool4", 832, 14, 2, 2, 0, true),
        ("googlenet 3a pool branch", 192, 28, 3, 1, 1, true),
        ("googlenet 4a pool branch", 480, 14, 3, 1, 1, true),
        ("googlenet 5a pool branch", 832, 7, 3, 1, 1, true),
        ("resnet50 maxpool", 64, 112, 3, 2, 1, false),
        ("squeezenet features.2", 64, 111, 3, 2, 0, true),
        ("squeezenet features.5", 128, 55, 3, 2, 0, true),
        ("squeezenet features.8", 256, 27, 3, 2, 0, true),
    ];
    let isas = common::vector_isas();
    println!("{threads} thread(s)");
    for (name, c, h, k, s, p, ceil) in layers {
        let span = h + 2 * p - k;
        let mut o = if ceil { span.div_ceil(s) } else { span / s } + 1;
        if ceil && (o - 1) * s >= h + p {
            o -= 1;
        }
        let g = Geom2d {
            oh: o,
            ow: o,
            ..Geom2d::square(c, h, h, k, s, 1, p)
        };
        let x = rnd(c * h * h, 1);
        let mut y = vec![0.0f32; c * o * o];
        // Every instruction set this CPU runs but the portable one (an AVX-512 CPU also
        // runs the AVX2 kernels), alternating call by call.
        let mut best = vec![f64::MAX; isas.len()];
        pool.install(|| {
            for _ in 0..repeats {
                for (b, &isa) in best.iter_mut().zip(&isas) {
                    let t = Instant::now();
                    max_pool2d_with(isa, &x, &g, &mut y).expect("pool");
                    *b = b.min(t.elapsed().as_secs_f64());
                }
            }
        });
        let bytes = 4.0 * (x.len() + y.len()) as f64;
        let mut line = format!("{name:<26} {c:>4}x{h:>3}x{h:<3} k{k} s{s} p{p} -> {o:>3}x{o:<3}");
        for (b, isa) in best.iter().zip(&isas) {
            line += &format!("  {isa:?} {:8.1} us {:6.1} GB/s", b * 1e6, bytes / b / 1e9);
        }
        if best.len() > 1 {
            line += &format!("  ratio {:.3}", best[0] / best[1]);
        }
        println!("{line}");
    }
}
