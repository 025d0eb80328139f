//! What a model's run pays the thread pool, apart from its kernels: a fork-join of two
//! halves inside the pool (each parallel kernel is one), with and without a short serial
//! gap between them (the runtime's bookkeeping between steps), and the hand-off of a run
//! from a thread outside the pool (`install`: the caller wakes a worker and sleeps until
//! the run ends). Busy-waits stand in for the work, so only the pool's costs differ.
//! `cargo run --release -p millrace-kernels --example fork_bench [THREADS] [ROUNDS]`
use std::time::Instant;

fn busy(us: f64) {
    let t = Instant::now();
    while t.elapsed().as_secs_f64() * 1e6 < us {
        std::hint::spin_loop();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let rounds: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(15)
        .max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    const SECTIONS: usize = 100;
    for half in [2.0, 10.0, 50.0] {
        let (mut joined, mut gapped) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            pool.install(|| {
                for _ in 0..SECTIONS {
                    rayon::join(|| busy(half), || busy(half));
                }
            });
            joined.push(t.elapsed().as_secs_f64() * 1e6 / SECTIONS as f64 - half);
            let t = Instant::now();
            pool.install(|| {
                for _ in 0..SECTIONS {
                    rayon::join(|| busy(half), || busy(half));
                    busy(5.0);
                }
            });
            gapped.push(t.elapsed().as_secs_f64() * 1e6 / SECTIONS as f64 - half - 5.0);
        }
        println!(
            "join of two {half:4.0} us halves: {:.2} us over the half; with a 5 us serial gap between joins: {:.2} us",
            median(joined),
            median(gapped)
        );
    }
    for work in [0.0, 200.0, 3800.0] {
        let n = rounds * 20;
        let (mut inline, mut handed) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let t = Instant::now();
            busy(work);
            inline.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            pool.install(|| busy(work));
            handed.push(t.elapsed().as_secs_f64() * 1e6);
        }
        println!(
            "{work:6.0} us of work: {:.1} us on the calling thread, {:.1} us handed to the pool (install)",
            median(inline),
            median(handed)
        );
    }
}
