//! Depthwise 3x3 convolutions as MobileNetV2 runs them (all 17 layers, bias and Relu6),
//! microseconds per layer and GFLOP/s, the median of interleaved rounds.
//! `cargo run --release -p millrace-kernels --example dw_bench [THREADS] [ROUNDS] [--cold]`
//! [--only HxCsS] [--touch MODE] (`--cold`: each call reads and writes one of several
//! copies spanning more than the last-level cache, as a model's layer finds its input;
//! `--only 112x96s2`: one layer, `h x h` with `c` channels at stride `s`, MobileNetV2's or
//! not, for `perf`; `--touch`: before each call, untimed, pool threads rewrite the input
//! and output as a layer before would leave them in the cores' caches: `own`, pool thread
//! `t` the `t`-th of equal parts of each, `swap` the next thread's part, `one` all of them
//! by thread 1 (both threads' channels then sit in one core's cache), `onein` / `oneout`
//! only the input / the output so).
use millrace_kernels::activation::Activation;
use millrace_kernels::conv::Geom2d;
use millrace_kernels::depthwise::depthwise2d_with;
use std::time::Instant;

mod common;
use common::{rnd, Aligned};

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let cold = args.iter().any(|a| a == "--cold");
    args.retain(|a| a != "--cold");
    let touch = args.iter().position(|a| a == "--touch").map(|i| {
        args.remove(i);
        let mode = if i < args.len() {
            args.remove(i)
        } else {
            String::new()
        };
        assert!(
            ["own", "swap", "one", "onein", "oneout"].contains(&mode.as_str()),
            "--touch takes own, swap, one, onein or oneout, not {mode:?}"
        );
        mode
    });
    let only = args.iter().position(|a| a == "--only").map(|i| {
        args.remove(i);
        if i < args.len() {
            args.remove(i)
        } else {
            String::new()
        }
    });
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(15);
    let pool = common::pool(threads);
    pool.broadcast(|_| millrace_kernels::reserve_scratch());
    // (h, c, stride): 3x3, pad 1, in network order.
    let mobilenet_v2 = [
        (112, 32, 1),
        (112, 96, 2),
        (56, 144, 1),
        (56, 144, 2),
        (28, 192, 1),
        (28, 192, 1),
        (28, 192, 2),
        (14, 384, 1),
        (14, 384, 1),
        (14, 384, 1),
        (14, 384, 1),
        (14, 576, 1),
        (14, 576, 1),
        (14, 576, 2),
        (7, 960, 1),
        (7, 960, 1),
        (7, 960, 1),
    ];
    let act = Activation::Clip { lo: 0.0, hi: 6.0 };
    let isas = common::vector_isas();
    let mut total = vec![0.0; isas.len()];
    // `--only HxCsS`: that layer alone, MobileNetV2's or not.
    let layers = match &only {
        None => mobilenet_v2.to_vec(),
        Some(o) => {
            let n: Vec<usize> = o.split(['x', 's']).filter_map(|v| v.parse().ok()).collect();
            let [h, c, s] = n[..] else {
                panic!("--only takes HxCsS (112x96s2), not {o:?}")
            };
            vec![(h, c, s)]
        }
    };
    for (h, c, s) in layers {
        let g = Geom2d::square(c, h, h, 3, s, 1, 1);
        let (n_in, n_out) = (c * h * h, c * g.oh * g.ow);
        let copies = if cold {
            common::cold_copies(n_in + n_out)
        } else {
            1
        };
        let x0 = rnd(n_in, 1);
        let mut xs: Vec<Aligned> = (0..copies).map(|_| Aligned::from_slice(&x0)).collect();
        let mut outs: Vec<Aligned> = (0..copies).map(|_| Aligned::new(n_out)).collect();
        let w = rnd(c * 9, 2);
        let b = rnd(c, 3);
        let iters = (4e7 / (18.0 * n_out as f64)).clamp(2.0, 100.0) as usize;
        // Every instruction set this CPU runs (an AVX-512 CPU also runs the AVX2 kernels),
        // alternating round by round so that a busy machine slows them alike.
        let mut times = vec![Vec::new(); isas.len()];
        for _ in 0..rounds {
            for (ii, &isa) in isas.iter().enumerate() {
                let call = |x: &[f32], o: &mut [f32]| {
                    depthwise2d_with(isa, x, &w, Some(&b), &g, act, o).expect("depthwise")
                };
                let mut spent = 0.0;
                let t = Instant::now();
                pool.install(|| {
                    for i in 0..iters {
                        let (x, o) = (&mut xs[i % copies], &mut outs[i % copies]);
                        if let Some(mode) = &touch {
                            // Pointers from the mutable borrows: `rewrite` writes through them.
                            rewrite(
                                mode,
                                &[
                                    (x.as_mut_ptr() as usize, n_in),
                                    (o.as_mut_ptr() as usize, n_out),
                                ],
                            );
                            let t = Instant::now();
                            call(x, o);
                            spent += t.elapsed().as_secs_f64();
                        } else {
                            call(x, o);
                        }
                    }
                });
                if touch.is_none() {
                    spent = t.elapsed().as_secs_f64();
                }
                times[ii].push(spent / iters as f64);
            }
        }
        let mut line = format!("{h:4}x{h:<4} c {c:4} s{s}:");
        let mut meds = Vec::new();
        for (ii, t) in times.iter_mut().enumerate() {
            t.sort_by(f64::total_cmp);
            let med = t[t.len() / 2];
            total[ii] += med;
            meds.push(med);
            line += &format!(
                "  {:?} {:8.1} us {:6.1} GF/s",
                isas[ii],
                med * 1e6,
                18.0 * n_out as f64 / med / 1e9,
            );
        }
        if meds.len() > 1 {
            line += &format!("  ratio {:.3}", meds[0] / meds[1]);
        }
        println!("{line}");
    }
    let t: Vec<String> = isas
        .iter()
        .zip(&total)
        .map(|(i, t)| format!("{i:?} {:.1} us", t * 1e6))
        .collect();
    println!("total: {}", t.join(", "));
}

/// Pool threads rewrite parts of the `(address, floats)` buffers in place, as `--touch
/// MODE` says (see the file's doc), leaving those lines modified in their cores' caches.
fn rewrite(mode: &str, bufs: &[(usize, usize)]) {
    let touch = |p: usize, from: usize, to: usize| {
        for j in from..to {
            // SAFETY: `p` comes from a mutable borrow of at least `to` floats that the
            // caller holds across this call; nothing else touches the buffer meanwhile,
            // and the threads' ranges do not overlap (in the `one` modes they take turns).
            unsafe {
                let q = (p as *mut f32).add(j);
                q.write_volatile(q.read_volatile());
            }
        }
    };
    let sel: Vec<(usize, usize)> = match mode {
        "onein" => bufs[..1].to_vec(),
        "oneout" => bufs[1..].to_vec(),
        _ => bufs.to_vec(),
    };
    if mode.starts_with("one") {
        // Thread 0 first, then thread 1: the lines end up modified in thread 1's core.
        for who in 0..2 {
            rayon::broadcast(|ctx| {
                if ctx.index() == who {
                    sel.iter().for_each(|&(p, n)| touch(p, 0, n));
                }
            });
        }
        return;
    }
    rayon::broadcast(|ctx| {
        let n = ctx.num_threads();
        let t = if mode == "swap" {
            (ctx.index() + 1) % n
        } else {
            ctx.index()
        };
        for &(p, len) in &sel {
            touch(p, len * t / n, len * (t + 1) / n);
        }
    });
}
