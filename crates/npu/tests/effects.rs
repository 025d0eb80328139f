//! Effects the simulator must show, on built-in models (no files needed):
//! (a) ping-pong tiling: a fused Conv+Add's time follows `A + B/N + C*N` over the tile count
//!     `N`, and the compiler's choice is the fastest candidate;
//! (b) weight residency: with weights resident in a 40 MB SRAM, ResNet-50 (int8) keeps every
//!     conv weight on chip and the second of two back-to-back inferences skips their loads;
//!     VGG-16 cannot keep FC1;
//! (c) two matrix units run GoogLeNet's independent inception branches at once: faster than one.
use millrace::{builtin, CompileOptions, CompiledModel};
use millrace_npu::lower::{self, Axis, Tiling, Work};
use millrace_npu::{NpuConfig, SimOptions};

const EXAMPLE: &str = include_str!("../../../examples/npu.toml");

fn compile(name: &str) -> CompiledModel {
    let model = builtin(name).unwrap();
    let mut opts = CompileOptions::default();
    for (n, s) in millrace::zoo::default_input_shapes(name).unwrap() {
        opts.input_shapes.insert(n.to_string(), s);
    }
    opts.threads = Some(1);
    model.compile(&opts).unwrap()
}

fn config(edit: &[(&str, &str)]) -> NpuConfig {
    let mut t = EXAMPLE.to_string();
    for (from, to) in edit {
        assert!(t.contains(from), "example lacks `{from}`");
        t = t.replace(from, to);
    }
    NpuConfig::from_toml(&t).unwrap()
}

/// Least squares fit of `y = a + b/x + c*x`; returns (a, b, c).
fn fit(xs: &[f64], ys: &[f64]) -> (f64, f64, f64) {
    // Normal equations for basis [1, 1/x, x].
    let mut m = [[0.0f64; 4]; 3];
    for (&x, &y) in xs.iter().zip(ys) {
        let f = [1.0, 1.0 / x, x];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += f[i] * f[j];
            }
            m[i][3] += f[i] * y;
        }
    }
    for col in 0..3 {
        let piv = (col..3)
            .max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))
            .unwrap();
        m.swap(col, piv);
        for r in 0..3 {
            if r != col {
                let k = m[r][col] / m[col][col];
                let pivot = m[col];
                for (x, p) in m[r].iter_mut().zip(pivot).skip(col) {
                    *x -= k * p;
                }
            }
        }
    }
    (m[0][3] / m[0][0], m[1][3] / m[1][1], m[2][3] / m[2][2])
}

#[test]
fn a_ping_pong_tiles_follow_a_plus_b_over_n() {
    let c = compile("resnet50");
    let g = c.graph();
    let cfg = config(&[]);
    // The fused Conv+BN+Add+Relu with the most output pixels: layer1's last 1x1 conv.
    let (idx, w) = g
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op.name() == "FusedConv" && n.op.describe().contains("+residual"))
        .map(|(i, n)| (i, lower::node_work(g, n, &cfg)))
        .max_by_key(|(_, w)| match w.work {
            Work::Matrix { m, .. } => m,
            _ => 0,
        })
        .unwrap();
    assert!(w.residual_bytes > 0, "{}: no residual", w.name);
    let ns: Vec<u64> = (0..8).map(|p| 1u64 << p).collect(); // 1..128
    let ts: Vec<f64> = ns
        .iter()
        .map(|&n| {
            let t = Tiling {
                tiles: n,
                axis: Axis::M,
            };
            lower::node_alone_cycles(&w, t, &cfg, true) as f64
        })
        .collect();
    let xs: Vec<f64> = ns.iter().map(|&n| n as f64).collect();
    let (a, b, cc) = fit(&xs, &ts);
    eprintln!(
        "node {idx} `{}`: T(N) = {a:.0} + {b:.0}/N + {cc:.1}*N cycles",
        w.name
    );
    for (x, t) in xs.iter().zip(&ts) {
        let f = a + b / x + cc * x;
        eprintln!(
            "  N={x:>4}: simulated {t:>9.0}, fit {f:>9.0} ({:+.2}%)",
            100.0 * (f - t) / t
        );
        assert!((f - t).abs() / t < 0.03, "N={x}: fit {f} vs simulated {t}");
    }
    assert!(a > 0.0 && b > 0.0, "pipelining must pay: a={a} b={b}");
    assert!(cc >= 0.0, "per-tile overhead must not be negative: {cc}");
    // The compiler's choice is the best candidate that fits (checked over every candidate).
    let budget = lower::tile_budget(&cfg, 0);
    let (chosen, cycles) = lower::choose_tiling(&w, &cfg, budget, true).unwrap();
    for t in lower::candidates(&w, &cfg) {
        if lower::tile_shape(&w, t, &cfg, true).sram_need <= budget {
            let c = lower::node_alone_cycles(&w, t, &cfg, true);
            assert!(
                cycles <= c,
                "chosen {chosen:?} ({cycles}) slower than {t:?} ({c})"
            );
        }
    }
    let best_m = ts.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(cycles as f64 <= best_m);
    eprintln!("compiler chose {chosen:?}: {cycles} cycles");
}

#[test]
fn b_resident_weights_skip_their_loads() {
    let cfg = config(&[("size = \"8MB\"", "size = \"40MB\"")]);
    assert_eq!(cfg.weight_dtype, millrace_memory_dtype());
    let c = compile("resnet50");
    let g = c.graph();
    let resident = lower::choose_resident(g, &cfg);
    for (i, n) in g.nodes.iter().enumerate() {
        if n.op.name() == "FusedConv" {
            assert!(resident[i], "ResNet-50 conv `{}` is not resident", n.name);
        }
    }
    let r = millrace_npu::simulate(
        g,
        &cfg,
        &SimOptions {
            inferences: 2,
            resident_weights: true,
        },
    )
    .unwrap();
    let resident_bytes = r.program.resident_bytes;
    assert!(resident_bytes > 20_000_000, "resident {resident_bytes}");
    assert_eq!(
        r.dram_read[0] - r.dram_read[1],
        resident_bytes,
        "the second inference must skip exactly the resident weights"
    );
    let (l0, l1) = (r.latency_cycles(0), r.latency_cycles(1));
    eprintln!(
        "ResNet-50 int8, 40 MB SRAM: resident {resident_bytes} B; inference 1 {:.3} ms, \
         inference 2 {:.3} ms; DRAM read {} -> {} B; SRAM peak {} B",
        r.seconds(l0) * 1e3,
        r.seconds(l1) * 1e3,
        r.dram_read[0],
        r.dram_read[1],
        r.sram_peak
    );
    assert!(l1 < l0, "the warm inference must be faster: {l1} vs {l0}");
    assert!(r.sram_peak <= cfg.sram_bytes);
    assert!(
        r.sram_peak >= resident_bytes,
        "resident weights stay in SRAM"
    );

    let c = compile("vgg16");
    let g = c.graph();
    let resident = lower::choose_resident(g, &cfg);
    let fc1 = g
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op.name() == "FusedMatMul" || n.op.name() == "Gemm")
        .map(|(i, n)| (i, lower::node_work(g, n, &cfg)))
        .max_by_key(|(_, w)| w.weight_bytes)
        .unwrap();
    assert!(
        fc1.1.weight_bytes > cfg.sram_bytes,
        "FC1 {}",
        fc1.1.weight_bytes
    );
    assert!(!resident[fc1.0], "VGG-16 FC1 cannot be resident");
    let r = millrace_npu::simulate(
        g,
        &cfg,
        &SimOptions {
            inferences: 2,
            resident_weights: true,
        },
    )
    .unwrap();
    assert!(
        r.dram_read[1] > fc1.1.weight_bytes,
        "FC1 is streamed every inference"
    );
    eprintln!(
        "VGG-16 int8: FC1 {} B streamed; resident {} B; inference 2 {:.3} ms",
        fc1.1.weight_bytes,
        r.program.resident_bytes,
        r.seconds(r.latency_cycles(1)) * 1e3
    );
}

fn millrace_memory_dtype() -> millrace_npu_dtype::WeightDtype {
    millrace_npu_dtype::WeightDtype::Int8
}

mod millrace_npu_dtype {
    pub use millrace_npu::config::WeightDtype;
}

#[test]
fn c_two_matrix_units_run_branches_at_once() {
    let c = compile("googlenet");
    let g = c.graph();
    let one = config(&[]);
    let two = config(&[("units = 1", "units = 2")]);
    let r1 = millrace_npu::simulate(g, &one, &SimOptions::default()).unwrap();
    let r2 = millrace_npu::simulate(g, &two, &SimOptions::default()).unwrap();
    let used: std::collections::HashSet<usize> =
        r2.program.matrix_unit.iter().flatten().copied().collect();
    assert_eq!(used.len(), 2, "both matrix units used");
    eprintln!(
        "GoogLeNet: 1 matrix unit {:.3} ms, 2 matrix units {:.3} ms ({:.2}x)",
        r1.seconds(r1.total_cycles) * 1e3,
        r2.seconds(r2.total_cycles) * 1e3,
        r1.total_cycles as f64 / r2.total_cycles as f64
    );
    assert!(
        (r2.total_cycles as f64) < 0.95 * r1.total_cycles as f64,
        "2 units {} vs 1 unit {}",
        r2.total_cycles,
        r1.total_cycles
    );
}

#[test]
fn npu_device_for_the_partitioner() {
    use millrace_devices::Device;
    let c = compile("resnet50");
    let g = c.graph();
    let d = millrace_npu::NpuDevice::new("npu0", config(&[]));
    let conv = g
        .nodes
        .iter()
        .position(|n| n.op.name() == "FusedConv")
        .unwrap();
    let id = millrace::ir::NodeId(conv as u32);
    assert!(d.supports(g, id).is_ok());
    let t = d.node_time(g, id);
    assert!(t.is_finite() && t > 0.0, "{t}");
    assert_eq!(d.memory_bytes(), Some(4_000_000_000));
    assert!(d.link().is_some());
}
