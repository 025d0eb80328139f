//! Experiment: a 3x3 convolution (padding 1, stride 1 or 2) on channel-blocked (NCHW8c)
//! activations against `conv_direct` on NCHW ones, on ResNet-50's 3x3 layers, with a
//! fused bias and Relu. Both use a 6-pixel x 16-channel register tile with the whole `K`
//! in registers, and both copy the input into a padded buffer first; what differs is the
//! layout: a blocked tile reads 6 pixels x 8 channels as one run per tap and channel block
//! and writes 6 x 8 outputs as one run per block of 8 output channels. AVX2 + FMA only.
//!
//! `cargo run --release -p millrace-kernels --example nchwc3_bench [THREADS]`
// The kernels are x86-64 only; elsewhere `main` just says so.
#![cfg_attr(not(target_arch = "x86_64"), allow(unused_imports, dead_code))]
use millrace_kernels::activation::Activation;
use millrace_kernels::conv::Geom2d;
use millrace_kernels::direct::{conv_direct, DirectWeights};
use std::time::Instant;

mod common;
use common::{max_rel_diff, rnd, to_blocked, Aligned};

#[cfg(target_arch = "x86_64")]
mod blocked {
    use rayon::prelude::*;
    use std::arch::x86_64::*;

    pub const PX: usize = 6;
    pub static PAIRS_OUTER: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(true);

    /// `w` (`[m][cin][3][3]`) as `[m / 16][cin / 8][9][8][16]`.
    pub fn pack_w(w: &[f32], m: usize, cin: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * cin * 9];
        for o in 0..m {
            for c in 0..cin {
                for t in 0..9 {
                    let d = (o / 16) * cin * 9 * 16 + (c / 8) * 9 * 128 + t * 128 + (c % 8) * 16;
                    out[d + o % 16] = w[(o * cin + c) * 9 + t];
                }
            }
        }
        out
    }

    /// `x` (`[c/8][h][w][8]`) into `xp` (`[c/8][h+2][w+2][8]`), a zero border of 1.
    pub fn pad(x: &[f32], c8: usize, h: usize, w: usize, xp: &mut [f32]) {
        let (hp, wp) = (h + 2, w + 2);
        xp.par_chunks_mut(hp * wp * 8)
            .zip(x.par_chunks(h * w * 8))
            .take(c8)
            .for_each(|(d, s)| {
                d[..wp * 8].fill(0.0);
                d[(hp - 1) * wp * 8..].fill(0.0);
                for y in 0..h {
                    let row = &mut d[(y + 1) * wp * 8..][..wp * 8];
                    row[..8].fill(0.0);
                    row[8..8 + w * 8].copy_from_slice(&s[y * w * 8..][..w * 8]);
                    row[(w + 1) * 8..].fill(0.0);
                }
            });
    }

    pub struct Args {
        pub xp: *const f32,
        pub w: *const f32,
        pub bias: *const f32,
        pub y: *mut f32,
        pub cin: usize,
        pub m: usize,
        /// Padded input size.
        pub hp: usize,
        pub wp: usize,
        pub oh: usize,
        pub ow: usize,
        pub s: usize,
    }
    unsafe impl Sync for Args {}

    /// `NP` pixels of one output row x 16 output channels; `x` at the first pixel's window
    /// corner in channel block 0, pixels `s * 8` floats apart.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const NP: usize, const S: usize>(
        cin8: usize,
        x: *const f32,
        xs: usize,
        offs: &[usize; 9],
        w: *const f32,
        y: *mut f32,
        ys: usize,
        bias: *const f32,
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; NP];
        let mut wq = w;
        for cb in 0..cin8 {
            let xb = x.add(cb * xs);
            for &o in offs {
                {
                    let xt = xb.add(o);
                    for c in 0..8 {
                        let b0 = _mm256_loadu_ps(wq.add(c * 16));
                        let b1 = _mm256_loadu_ps(wq.add(c * 16 + 8));
                        for (p, a) in acc.iter_mut().enumerate() {
                            let v = _mm256_broadcast_ss(&*xt.add(p * S * 8 + c));
                            a[0] = _mm256_fmadd_ps(v, b0, a[0]);
                            a[1] = _mm256_fmadd_ps(v, b1, a[1]);
                        }
                    }
                    wq = wq.add(128);
                }
            }
        }
        for (p, a) in acc.iter().enumerate() {
            for (h, &v) in a.iter().enumerate() {
                let dst = y.add(h * ys + p * 8);
                let v = _mm256_add_ps(v, _mm256_loadu_ps(bias.add(h * 8)));
                _mm256_storeu_ps(dst, _mm256_max_ps(v, _mm256_setzero_ps()));
            }
        }
    }

    /// `y = relu(conv3x3(x) + bias)`, `y` NCHW8c; jobs of `rb` output rows x `mb` channels.
    pub fn conv(a: &Args, threads: usize) {
        let (cin8, pairs) = (a.cin / 8, a.m / 16);
        let xs = a.hp * a.wp * 8;
        let mut offs = [0usize; 9];
        for (t, o) in offs.iter_mut().enumerate() {
            *o = ((t / 3) * a.wp + t % 3) * 8;
        }
        let offs = std::hint::black_box(offs);
        let ys = a.oh * a.ow * 8;
        let mut rb = a.oh;
        let mut pb = pairs;
        while a.oh.div_ceil(rb) * pairs.div_ceil(pb) < 4 * threads {
            if pb > 2 {
                pb = pb.div_ceil(2);
            } else if rb > 1 {
                rb = rb.div_ceil(2);
            } else {
                break;
            }
        }
        let nrb = a.oh.div_ceil(rb);
        let njobs = nrb * pairs.div_ceil(pb);
        let job = |j: usize| unsafe {
            let (ri, qi) = (j % nrb, j / nrb);
            let (r0, r1) = (ri * rb, ((ri + 1) * rb).min(a.oh));
            let (q0, q1) = (qi * pb, ((qi + 1) * pb).min(pairs));
            let one = |q: usize, oy: usize, ox: usize, np: usize| {
                let w = a.w.add(q * cin8 * 9 * 128);
                let bias = a.bias.add(q * 16);
                let x = a.xp.add((oy * a.s * a.wp + ox * a.s) * 8);
                let y = a.y.add(q * 2 * ys + (oy * a.ow + ox) * 8);
                macro_rules! pick {
                    ($s:literal) => {
                        match np {
                            6 => tile::<6, $s>,
                            5 => tile::<5, $s>,
                            4 => tile::<4, $s>,
                            3 => tile::<3, $s>,
                            2 => tile::<2, $s>,
                            _ => tile::<1, $s>,
                        }
                    };
                }
                let f = if a.s == 1 { pick!(1) } else { pick!(2) };
                f(cin8, x, xs, &offs, w, y, ys, bias);
            };
            if PAIRS_OUTER.load(std::sync::atomic::Ordering::Relaxed) {
                for q in q0..q1 {
                    for oy in r0..r1 {
                        let mut ox = 0;
                        while ox < a.ow {
                            let np = PX.min(a.ow - ox);
                            one(q, oy, ox, np);
                            ox += np;
                        }
                    }
                }
            } else {
                for oy in r0..r1 {
                    let mut ox = 0;
                    while ox < a.ow {
                        let np = PX.min(a.ow - ox);
                        for q in q0..q1 {
                            one(q, oy, ox, np);
                        }
                        ox += np;
                    }
                }
            }
        };
        (0..njobs).into_par_iter().for_each(job);
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
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let pool = common::pool(threads);
    // (channels in = out, input size, stride): ResNet-50's 3x3 layers.
    let layers = [
        (64, 56, 1),
        (128, 56, 2),
        (128, 28, 1),
        (256, 28, 2),
        (256, 14, 1),
        (512, 14, 2),
        (512, 7, 1),
    ];
    println!("{threads} thread(s); us per call (median of 15); blocked includes its padded copy");
    for &(c, hw, s) in &layers {
        let g = Geom2d::square(c, hw, hw, 3, s, 1, 1);
        let (oh, ow) = (g.oh, g.ow);
        let x = rnd(c * hw * hw, 1);
        let w = rnd(c * c * 9, 2);
        let bias = rnd(c, 3);
        let dw = DirectWeights::new(&w, c, c, 3, 3, ow).unwrap();
        let wb = blocked::pack_w(&w, c, c);
        let xa = Aligned::from_slice(&x);
        let xb = Aligned::from_slice(&to_blocked(&x, c, hw * hw));
        let mut xp = Aligned::new(c * (hw + 2) * (hw + 2));
        let mut y = Aligned::new(c * oh * ow);
        let mut yb = Aligned::new(c * oh * ow);
        let run_direct = |y: &mut [f32]| {
            conv_direct(&xa, &g, &dw, Some(&bias), None, Activation::Relu, y).unwrap()
        };
        let mut run_blocked = |yb: &mut [f32]| {
            blocked::pad(&xb, c / 8, hw, hw, &mut xp);
            blocked::conv(
                &blocked::Args {
                    xp: xp.as_ptr(),
                    w: wb.as_ptr(),
                    bias: bias.as_ptr(),
                    y: yb.as_mut_ptr(),
                    cin: c,
                    m: c,
                    hp: hw + 2,
                    wp: hw + 2,
                    oh,
                    ow,
                    s,
                },
                threads,
            )
        };
        pool.install(|| {
            run_direct(&mut y);
            run_blocked(&mut yb);
        });
        let want = to_blocked(&y, c, oh * ow);
        let err = max_rel_diff(&want, &yb);
        assert!(err < 1e-4, "{c}@{hw}/{s}: blocked differs by {err}");
        let flops = 2.0 * (c * c * 9 * oh * ow) as f64;
        let iters = (2e8 / flops).clamp(2.0, 200.0) as usize;
        let (mut td, mut tb, mut tc) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..15 {
            let t = Instant::now();
            pool.install(|| (0..iters).for_each(|_| run_direct(&mut y)));
            td.push(t.elapsed().as_secs_f64() / iters as f64);
            let t = Instant::now();
            pool.install(|| (0..iters).for_each(|_| run_blocked(&mut yb)));
            tb.push(t.elapsed().as_secs_f64() / iters as f64);
            blocked::PAIRS_OUTER.store(false, std::sync::atomic::Ordering::Relaxed);
            let t = Instant::now();
            pool.install(|| (0..iters).for_each(|_| run_blocked(&mut yb)));
            tc.push(t.elapsed().as_secs_f64() / iters as f64);
            blocked::PAIRS_OUTER.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        tc.sort_by(f64::total_cmp);
        td.sort_by(f64::total_cmp);
        tb.sort_by(f64::total_cmp);
        let (d, b) = (td[7], tb[7]);
        println!(
            "{c:4} ch @ {hw:2}x{hw:<2} s{s}  direct {:7.1} us {:5.1} GF/s   blocked {:7.1} us {:5.1} GF/s   {:.3}   pixels outer {:.3}",
            d * 1e6,
            flops / d / 1e9,
            b * 1e6,
            flops / b / 1e9,
            b / d,
            tc[7] / d
        );
    }
}
