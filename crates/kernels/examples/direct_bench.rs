//! The direct convolution kernel (`millrace_kernels::direct`) against the implicit-im2col
//! GEMM path on the k x k layers of ResNet-50, GoogLeNet, SqueezeNet and VGG-16, batch 1, with a
//! fused bias and Relu, the two run alternately call by call so that a busy machine slows
//! them alike.
//! `cargo run --release -p millrace-kernels --example direct_bench [THREADS] [ROUNDS] [FILTER] [--cold]`
//!
//! `--cold`: before every timed call each thread of the pool reads and writes its share of a
//! 96 MiB buffer (untimed), so that weights, input and scratch come from DRAM as they do for
//! a layer of a model larger than the last-level cache.
//!
//! Prints each path's median time, its GFLOP/s, the ratio direct / GEMM, and the largest
//! difference between the two outputs. Where the AVX2 kernels run, the direct path also
//! runs with 4-pixel tiles (against the default 6) in the same alternation, and strided
//! 1x1 layers also run as FusedConv runs them (the input gathered at the output pixels,
//! then a pointwise GEMM: `gathered`), and every 3x3 stride-1 layer also runs Winograd
//! (the variant the engine's rules pick, F(4x4) where they take none; the line names it).
//! Layers on few input channels also run the shifted-row GEMM and, on AVX-512, the
//! shallow kernel (`millrace_kernels::shallow`), whose line gives its time against the
//! shifted rows'.
use millrace_kernels::activation::Activation;
use millrace_kernels::conv::Geom2d;
use millrace_kernels::direct::{conv_direct, DirectWeights};
use millrace_kernels::gemm::{
    conv_shifted, gemm_ex, shifted_applies, Bias, Epilogue, Im2col, Lhs, Out, Packed, Rhs,
    ShiftedWeights, Strided,
};
use millrace_kernels::shallow::{self, conv_shallow, ShallowWeights};
use millrace_kernels::subsample;
use millrace_kernels::winograd::{
    prefer_winograd, preferred_over_direct, winograd3x3, WinogradVariant, WinogradWeights,
};
use std::time::Instant;

mod common;
use common::{rnd, Aligned};

/// Seconds of one call of `f` inside `pool`, after `cool` (the `--cold` eviction).
fn timed(pool: &rayon::ThreadPool, cool: &mut impl FnMut(), f: impl FnOnce() + Send) -> f64 {
    cool();
    let t = Instant::now();
    pool.install(f);
    t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The implicit-im2col path's product `y = relu(W x + bias)`, `plane` columns.
fn gemm_relu(pa: &Packed, rhs: Rhs<'_>, bias: &[f32], plane: usize, y: &mut [f32]) {
    gemm_ex(
        pa.kernel(),
        Lhs::Packed(pa),
        rhs,
        Out {
            data: y,
            rs: plane,
            cs: 1,
        },
        &Epilogue {
            bias: Bias::Row(bias),
            act: Activation::Relu,
            ..Epilogue::default()
        },
    )
    .unwrap()
}

/// An image of `k` channels of `plane` pixels read in place as the GEMM's right-hand side.
fn pointwise(data: &[f32], k: usize, plane: usize) -> Rhs<'_> {
    Rhs::Direct {
        data,
        k,
        n: plane,
        ld: plane,
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max)
}

/// One more path's line under a layer's: its median, GFLOP/s, a ratio and the largest
/// difference from the path it is compared with.
fn alt_line(name: &str, secs: f64, flops: f64, ratio_name: &str, ratio: f64, diff: Option<f32>) {
    let diff = diff.map_or(String::new(), |d| format!("  max|diff| {d:.1e}"));
    println!(
        "{:38}{name} {:8.1} us {:6.1} GF/s  {ratio_name} {ratio:.3}{diff}",
        "",
        secs * 1e6,
        flops / secs / 1e9,
    );
}

/// Evicts the caches of every thread of the current pool (see `--cold`).
fn evict(buf: &mut [f32]) {
    use rayon::prelude::*;
    buf.par_chunks_mut(1 << 16).for_each(|c| {
        for v in c.iter_mut() {
            *v += 1.0;
        }
    });
}

fn main() {
    let cold = std::env::args().any(|a| a == "--cold");
    let mut flush = if cold {
        vec![0.0f32; 24 << 20]
    } else {
        Vec::new()
    };
    let mut args = std::env::args().skip(1).filter(|a| a != "--cold");
    let threads: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(30);
    let only = args.next();
    let pool = common::pool(threads);
    println!(
        "{threads} thread(s), median of {rounds} alternating calls{}",
        if cold {
            ", caches evicted before each"
        } else {
            ""
        }
    );
    // (net, cin, cout, h, k, stride, pad)
    let layers = [
        ("resnet50 stem", 3, 64, 224, 7, 2, 3),
        ("resnet50 l1", 64, 64, 56, 3, 1, 1),
        ("resnet50 l2.0", 128, 128, 56, 3, 2, 1),
        ("resnet50 l2", 128, 128, 28, 3, 1, 1),
        ("resnet50 l3.0", 256, 256, 28, 3, 2, 1),
        ("resnet50 l3", 256, 256, 14, 3, 1, 1),
        ("resnet50 l4.0", 512, 512, 14, 3, 2, 1),
        ("resnet50 l4", 512, 512, 7, 3, 1, 1),
        ("vgg16 c2", 128, 128, 112, 3, 1, 1),
        ("vgg16 c3", 256, 256, 56, 3, 1, 1),
        ("vgg16 c4", 512, 512, 28, 3, 1, 1),
        ("googlenet conv3", 64, 192, 56, 3, 1, 1),
        ("googlenet 3b", 128, 192, 28, 3, 1, 1),
        ("googlenet 4a", 96, 208, 14, 3, 1, 1),
        ("googlenet 5a", 160, 320, 7, 3, 1, 1),
        ("squeezenet conv0", 3, 64, 224, 3, 2, 0),
        ("squeezenet f2", 16, 64, 55, 3, 1, 1),
        ("squeezenet f4", 32, 128, 27, 3, 1, 1),
        ("squeezenet f8", 64, 256, 13, 3, 1, 1),
        ("mobilenet stem", 3, 32, 224, 3, 2, 1),
        ("squeezenet f6", 48, 192, 13, 3, 1, 1),
        ("resnet50 1x1 a", 256, 64, 56, 1, 1, 0),
        ("resnet50 1x1 b", 64, 256, 56, 1, 1, 0),
        ("resnet50 1x1 c", 512, 128, 28, 1, 1, 0),
        ("resnet50 1x1 d", 128, 512, 28, 1, 1, 0),
        ("resnet50 1x1 e", 1024, 256, 14, 1, 1, 0),
        ("resnet50 1x1 f", 256, 1024, 14, 1, 1, 0),
        ("resnet50 1x1 g", 2048, 512, 7, 1, 1, 0),
        ("resnet50 1x1 h", 512, 2048, 7, 1, 1, 0),
        ("mobilenet 1x1 7a", 160, 960, 7, 1, 1, 0),
        ("mobilenet 1x1 7b", 960, 160, 7, 1, 1, 0),
        ("mobilenet 1x1 7c", 960, 320, 7, 1, 1, 0),
        ("mobilenet 1x1 7d", 320, 1280, 7, 1, 1, 0),
        ("mobilenet 1x1 14a", 96, 576, 14, 1, 1, 0),
        ("mobilenet 1x1 14b", 576, 96, 14, 1, 1, 0),
        ("mobilenet 1x1 14c", 64, 384, 14, 1, 1, 0),
        ("mobilenet 1x1 14d", 384, 64, 14, 1, 1, 0),
        ("mobilenet 1x1 28a", 32, 192, 28, 1, 1, 0),
        ("mobilenet 1x1 28b", 192, 32, 28, 1, 1, 0),
        ("mobilenet 1x1 112a", 32, 16, 112, 1, 1, 0),
        ("mobilenet 1x1 56a", 96, 24, 56, 1, 1, 0),
        ("mobilenet 1x1 56b", 144, 24, 56, 1, 1, 0),
        ("googlenet 1x1 4b", 512, 296, 14, 1, 1, 0),
        ("googlenet 1x1 4e", 528, 448, 14, 1, 1, 0),
        ("googlenet 1x1 5a", 832, 448, 7, 1, 1, 0),
        ("googlenet 1x1 5b", 832, 624, 7, 1, 1, 0),
        ("squeezenet 1x1 cls", 512, 1000, 13, 1, 1, 0),
        ("resnet50 1x1 s2", 256, 512, 56, 1, 2, 0),
        ("resnet50 1x1 s2 l3", 512, 1024, 28, 1, 2, 0),
        ("resnet50 1x1 s2 l4", 1024, 2048, 14, 1, 2, 0),
    ];
    let (mut sum_g, mut sum_d, mut sum_4) = (0.0, 0.0, 0.0);
    for &(net, cin, cout, h, k, s, p) in &layers {
        if let Some(o) = &only {
            if !net.contains(o.as_str()) {
                continue;
            }
        }
        let g = Geom2d::square(cin, h, h, k, s, 1, p);
        let o = g.oh;
        let kk = cin * k * k;
        let w = rnd(cout * kk, 1);
        let x = Aligned::from_slice(&rnd(cin * h * h, 2));
        let bias = rnd(cout, 3);
        let plane = o * o;
        let flops = 2.0 * (plane * cout * kk) as f64;
        let pa = Packed::lhs(&Strided::rows(&w, cout, kk).unwrap());
        let dw = DirectWeights::new(&w, cout, cin, k, k, o).unwrap();
        // The other AVX2 tile width (4 pixels), where this CPU runs the AVX2 kernels.
        let dw4 = (dw.tile_pixels() == 6)
            .then(|| dw.clone().with_tile_pixels(4).ok())
            .flatten();
        let (mut y4, mut t4) = (Aligned::new(cout * plane), Vec::new());
        let (mut ys, mut ts) = (Aligned::new(cout * plane), Vec::new());
        let src = Im2col::new(&x, g).unwrap();
        let (mut yg, mut yd) = (Aligned::new(cout * plane), Aligned::new(cout * plane));
        let (mut tg, mut td, mut tw) = (Vec::new(), Vec::new(), Vec::new());
        // Winograd on every 3x3 stride-1 layer: the variant the engine would pick (before
        // the direct kernel on AVX-512, or where the direct kernel does not run), F(4x4)
        // where neither rule takes the layer.
        let wino = (k == 3 && s == 1).then(|| {
            let v = preferred_over_direct(cin, cout, o, o)
                .or(prefer_winograd(cin, cout, o, o))
                .unwrap_or(WinogradVariant::F4x4);
            WinogradWeights::new(&w, cout, cin, v).unwrap()
        });
        let mut yw = Aligned::new(cout * plane);
        // The shifted-row GEMM where the engine would take it (first layers on RGB).
        let shifted = shifted_applies(cout, cin, k, k, s, s, 1)
            .then(|| ShiftedWeights::new(&w, cout, cin, k, k).unwrap());
        let (mut yq, mut tq) = (Aligned::new(cout * plane), Vec::new());
        // The pixel-vectorized kernel where it applies (first layers on RGB, AVX-512).
        let shallow = shallow::applies(cin, k, k, s, s, 1, 1)
            .then(|| ShallowWeights::new(&w, cout, cin, k, k).unwrap());
        let (mut yv, mut tv) = (Aligned::new(cout * plane), Vec::new());
        let mut cool = || {
            if cold {
                pool.install(|| evict(&mut flush));
            }
        };
        for r in 0..rounds + 2 {
            cool();
            let t = Instant::now();
            pool.install(|| {
                let rhs = if k == 1 && s == 1 {
                    // As FusedConv runs a pointwise layer: the image read in place.
                    pointwise(&x, cin, plane)
                } else {
                    Rhs::Source(&src)
                };
                gemm_relu(&pa, rhs, &bias, plane, &mut yg)
            });
            let a = t.elapsed().as_secs_f64();
            // A strided 1x1 layer as FusedConv runs it: the input gathered at the output
            // pixels, then read in place.
            cool();
            let t = Instant::now();
            let gathered = pool.install(|| {
                subsample::with_subsampled(&x, &g, |xs| {
                    gemm_relu(&pa, pointwise(xs, cin, plane), &bias, plane, &mut ys)
                })
            });
            if gathered.is_some() && r >= 2 {
                ts.push(t.elapsed().as_secs_f64());
            }
            cool();
            let t = Instant::now();
            pool.install(|| {
                conv_direct(&x, &g, &dw, Some(&bias), None, Activation::Relu, &mut yd).unwrap()
            });
            let b = t.elapsed().as_secs_f64();
            if let Some(d4) = &dw4 {
                let s = timed(&pool, &mut cool, || {
                    conv_direct(&x, &g, d4, Some(&bias), None, Activation::Relu, &mut y4).unwrap()
                });
                if r >= 2 {
                    t4.push(s);
                }
            }
            if let Some(ww) = &wino {
                let s = timed(&pool, &mut cool, || {
                    winograd3x3(&x, &g, ww, Some(&bias), None, Activation::Relu, &mut yw).unwrap()
                });
                if r >= 2 {
                    tw.push(s);
                }
            }
            if let Some(sw) = &shifted {
                let s = timed(&pool, &mut cool, || {
                    conv_shifted(&x, &g, sw, Some(&bias), None, Activation::Relu, &mut yq).unwrap()
                });
                if r >= 2 {
                    tq.push(s);
                }
            }
            if let Some(sv) = &shallow {
                let s = timed(&pool, &mut cool, || {
                    conv_shallow(&x, &g, sv, Some(&bias), None, Activation::Relu, &mut yv).unwrap()
                });
                if r >= 2 {
                    tv.push(s);
                }
            }
            if r >= 2 {
                tg.push(a);
                td.push(b);
            }
        }
        let (mg, md) = (median(tg), median(td));
        sum_g += mg;
        sum_d += md;
        let dmax = max_diff(&yg, &yd);
        println!(
            "{net:16} {cin:4}>{cout:4} {h:3}x{h:<3} k{k} s{s}  gemm {:8.1} us {:6.1} GF/s  direct {:8.1} us {:6.1} GF/s  ratio {:.3}  max|diff| {dmax:.1e}",
            mg * 1e6,
            flops / mg / 1e9,
            md * 1e6,
            flops / md / 1e9,
            md / mg
        );
        if !t4.is_empty() {
            let m4 = median(t4);
            sum_4 += m4;
            let d4 = max_diff(&yd, &y4);
            alt_line("direct 4px", m4, flops, "4px/6px", m4 / md, Some(d4));
        }
        if !ts.is_empty() {
            let ms = median(ts);
            let d = max_diff(&yg, &ys);
            alt_line("gathered", ms, flops, "gathered/gemm", ms / mg, Some(d));
        }
        if !tq.is_empty() {
            let mq = median(tq);
            let d = max_diff(&yg, &yq);
            alt_line("shifted", mq, flops, "shifted/gemm", mq / mg, Some(d));
            alt_line("shifted", mq, flops, "shifted/direct", mq / md, None);
            if !tv.is_empty() {
                let mv = median(tv.clone());
                let d = max_diff(&yg, &yv);
                alt_line("shallow", mv, flops, "shallow/shifted", mv / mq, Some(d));
            }
        }
        if !tw.is_empty() {
            let mw = median(tw);
            let name = wino
                .as_ref()
                .map_or(String::new(), |ww| format!("winograd {:?}", ww.variant()));
            alt_line(&name, mw, flops, "direct/winograd", md / mw, None);
        }
    }
    println!(
        "sum of medians: gemm {:.1} us, direct {:.1} us, ratio {:.3}",
        sum_g * 1e6,
        sum_d * 1e6,
        sum_d / sum_g
    );
    if sum_4 > 0.0 {
        println!(
            "direct 4px {:.1} us against 6px {:.1} us on the same layers: ratio {:.3}",
            sum_4 * 1e6,
            sum_d * 1e6,
            sum_4 / sum_d
        );
    }
}
