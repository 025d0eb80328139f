//! Allocation proof for the planned-buffer path: with a counting global allocator,
//! `eval_into` of FusedConv (every kernel path), FusedMatMul and LayerNormalization allocates nothing on its
//! second call with the same shapes, inside a 2-thread rayon pool. The first call may grow
//! the per-thread scratch (GEMM packing, Winograd transforms, depthwise padding); after
//! that the scratch is reused.
//!
//! Counting is process-wide (every thread, the pool's workers included), so this file holds
//! a single test: nothing else runs while it counts.
use millrace_core::Tensor;
use millrace_ir::{Attr, Attributes, F32View, Op};
use millrace_kernels::activation::Activation;
use millrace_ops::nn::conv::Conv;
use millrace_ops::nn::fused_conv::FusedConv;
use millrace_ops::nn::fused_matmul::FusedMatMul;
use millrace_ops::nn::layer_norm::LayerNormalization;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(l.size(), Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(l.size(), Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(new, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (count, bytes) made while `f` runs.
fn counted(f: impl FnOnce()) -> (usize, usize) {
    COUNT.store(0, Ordering::SeqCst);
    BYTES.store(0, Ordering::SeqCst);
    ON.store(true, Ordering::SeqCst);
    f();
    ON.store(false, Ordering::SeqCst);
    (COUNT.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst))
}

fn rnd(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

struct Case {
    name: &'static str,
    op: Box<dyn Op>,
    inputs: Vec<Tensor>,
    out_shape: Vec<usize>,
}

#[allow(clippy::too_many_arguments)]
fn conv_case(
    name: &'static str,
    want: &str,
    chm: (usize, usize, usize),
    window: (usize, usize, usize, usize),
    act: Activation,
    residual: bool,
) -> Case {
    conv_case_batch(name, want, 1, chm, window, act, residual)
}

/// [`conv_case`] over a batch of `n` images.
#[allow(clippy::too_many_arguments)]
fn conv_case_batch(
    name: &'static str,
    want: &str,
    n: usize,
    (c, m, h): (usize, usize, usize),
    (k, s, p, group): (usize, usize, usize, usize),
    act: Activation,
    residual: bool,
) -> Case {
    let attrs = Attributes::new(
        "Conv",
        vec![
            ("kernel_shape".into(), Attr::Ints(vec![k as i64; 2])),
            ("strides".into(), Attr::Ints(vec![s as i64; 2])),
            ("pads".into(), Attr::Ints(vec![p as i64; 4])),
            ("group".into(), Attr::Int(group as i64)),
        ],
    );
    let conv = Conv::parse(&attrs).unwrap();
    let xs = [n, c, h, h];
    let ws = [m, c / group, k, k];
    let f = FusedConv::new(
        &conv,
        Some(&xs),
        &ws,
        &rnd(ws.iter().product(), 2),
        Some(rnd(m, 3)),
        act,
        residual,
        vec![],
    )
    .unwrap();
    assert!(f.describe().contains(want), "{name}: {}", f.describe());
    let oh = (h + 2 * p - k) / s + 1;
    let out_shape = vec![n, m, oh, oh];
    let mut inputs = vec![Tensor::from_vec(xs.to_vec(), rnd(xs.iter().product(), 1)).unwrap()];
    if residual {
        let n = out_shape.iter().product();
        inputs.push(Tensor::from_vec(out_shape.clone(), rnd(n, 4)).unwrap());
    }
    Case {
        name,
        op: Box::new(f),
        inputs,
        out_shape,
    }
}

#[test]
fn second_eval_into_allocates_nothing() {
    let relu = Activation::Relu;
    let direct = if millrace_kernels::direct::available() {
        "impl=direct"
    } else {
        "impl=gemm"
    };
    let mut cases = vec![
        // ResNet-50-like layers, big enough that the GEMMs split over both threads.
        conv_case(
            "gemm 1x1 direct",
            "impl=gemm",
            (256, 64, 56),
            (1, 1, 0, 1),
            relu,
            true,
        ),
        conv_case(
            "3x3 (direct on AVX-512 and AVX2)",
            direct,
            (64, 64, 14),
            (3, 1, 1, 1),
            relu,
            true,
        ),
        conv_case(
            "7x7 stride 2 on 3 channels (shallow on AVX-512, else shifted rows)",
            if millrace_kernels::shallow::available() {
                "impl=shallow"
            } else {
                "impl=shifted-rows"
            },
            (3, 64, 112),
            (7, 2, 3, 1),
            relu,
            false,
        ),
        conv_case(
            "3x3 stride 3 on 3 channels (shifted rows)",
            "impl=shifted-rows",
            (3, 64, 112),
            (3, 3, 1, 1),
            relu,
            false,
        ),
        conv_case(
            "3x3 on 7x7 (direct on AVX-512 and AVX2)",
            direct,
            (512, 512, 7),
            (3, 1, 1, 1),
            Activation::Silu,
            true,
        ),
        conv_case(
            "gemm 3x3 stride 3 im2col",
            "impl=gemm",
            (64, 64, 28),
            (3, 3, 1, 1),
            relu,
            false,
        ),
        conv_case(
            "gemm 1x1 stride 2",
            "impl=gemm",
            (128, 256, 28),
            (1, 2, 0, 1),
            Activation::None,
            false,
        ),
        conv_case(
            "1x1 stride 2 on 512 channels (direct on AVX-512)",
            if millrace_kernels::direct::preferred_strided_pointwise(512) {
                "impl=direct"
            } else {
                "impl=gemm"
            },
            (512, 256, 14),
            (1, 2, 0, 1),
            relu,
            true,
        ),
        // Winograd F(4x4) on AVX-512; the direct kernel on AVX2 (measured faster there);
        // Winograd by the portable rule where the CPU has no direct kernel.
        conv_case(
            "winograd",
            if millrace_kernels::winograd::preferred_over_direct(128, 128, 28, 28).is_some() {
                "impl=winograd-F4x4"
            } else if direct == "impl=direct" {
                direct
            } else {
                "impl=winograd"
            },
            (128, 128, 28),
            (3, 1, 1, 1),
            relu,
            true,
        ),
        // Few input channels: on AVX-512, F(4x4) with each thread taking whole panels
        // of output channels through the three phases (its own scratch).
        conv_case(
            "winograd by channels",
            if millrace_kernels::winograd::preferred_over_direct(32, 128, 27, 27).is_some() {
                "impl=winograd-F4x4"
            } else {
                "impl="
            },
            (32, 128, 27),
            (3, 1, 1, 1),
            relu,
            false,
        ),
        // Fewer than 32 input channels on a large plane: on AVX-512, F(4x4) with each
        // thread taking a band of tile rows through the three phases (its own scratch).
        conv_case(
            "winograd by bands",
            if millrace_kernels::winograd::preferred_over_direct(16, 64, 55, 55).is_some() {
                "impl=winograd-F4x4"
            } else {
                "impl="
            },
            (16, 64, 55),
            (3, 1, 1, 1),
            relu,
            true,
        ),
        // A batch of 14x14 planes: F(4x4) over the images at once on AVX-512.
        conv_case_batch(
            "winograd over a batch",
            if millrace_kernels::winograd::preferred_for_batch(128, 128, 14, 14, 4).is_some() {
                "impl=winograd-F4x4"
            } else if direct == "impl=direct" {
                direct
            } else {
                "impl=winograd"
            },
            4,
            (128, 128, 14),
            (3, 1, 1, 1),
            relu,
            true,
        ),
        conv_case(
            "depthwise",
            "impl=depthwise",
            (144, 144, 56),
            (3, 1, 1, 144),
            Activation::Clip { lo: 0.0, hi: 6.0 },
            false,
        ),
        conv_case(
            "depthwise stride 2",
            "impl=depthwise",
            (96, 96, 112),
            (3, 2, 1, 96),
            relu,
            true,
        ),
        conv_case(
            "grouped",
            "impl=gemm",
            (64, 64, 28),
            (3, 1, 1, 4),
            relu,
            false,
        ),
    ];
    let (k, n, rows) = (256, 1024, 128);
    let mm = FusedMatMul::new(
        k,
        n,
        &rnd(k * n, 5),
        false,
        1.0,
        Some(rnd(n, 6)),
        Activation::Gelu,
        true,
        vec![],
    )
    .unwrap();
    cases.push(Case {
        name: "matmul bias+residual+gelu",
        op: Box::new(mm),
        inputs: vec![
            Tensor::from_vec(vec![1, rows, k], rnd(rows * k, 7)).unwrap(),
            Tensor::from_vec(vec![1, rows, n], rnd(rows * n, 8)).unwrap(),
        ],
        out_shape: vec![1, rows, n],
    });
    // Layer normalization's row statistics run through `vmath` (which once built its list
    // of instruction sets on every call).
    let ln_attrs = Attributes::new("LayerNormalization", vec![("axis".into(), Attr::Int(-1))]);
    cases.push(Case {
        name: "layer norm",
        op: Box::new(LayerNormalization::parse(&ln_attrs).unwrap()),
        inputs: vec![
            Tensor::from_vec(vec![1, rows, k], rnd(rows * k, 9)).unwrap(),
            Tensor::from_vec(vec![k], rnd(k, 10)).unwrap(),
            Tensor::from_vec(vec![k], rnd(k, 11)).unwrap(),
        ],
        out_shape: vec![1, rows, k],
    });

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    // Every pool thread's kernel scratch (GEMM packing, depthwise padding) up front:
    // otherwise a thread that ran no part of an op in the first call may grow its buffers
    // in the second.
    pool.broadcast(|_| millrace_kernels::reserve_scratch());
    let mut report = Vec::new();
    pool.install(|| {
        for case in &cases {
            let views: Vec<Option<F32View<'_>>> = case.inputs.iter().map(F32View::of).collect();
            let mut out = vec![f32::NAN; case.out_shape.iter().product()];
            let first = counted(|| {
                case.op
                    .eval_into(&views, &mut out, &case.out_shape)
                    .unwrap()
            });
            let second = counted(|| {
                case.op
                    .eval_into(&views, &mut out, &case.out_shape)
                    .unwrap()
            });
            report.push((case.name, first, second));
        }
    });
    for (name, first, second) in &report {
        eprintln!(
            "{name}: first call {} allocations ({} bytes), second {} ({} bytes)",
            first.0, first.1, second.0, second.1
        );
    }
    for (name, _, second) in &report {
        assert_eq!(second.1, 0, "{name}: the second call allocated {second:?}");
    }
}
