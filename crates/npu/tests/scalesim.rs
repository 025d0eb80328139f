//! Checks the matrix unit's cycle model (`millrace_npu::systolic`) against SCALE-Sim on
//! ResNet-50's convolution layers: every layer's cycle count must agree within 15%.
//!
//! The layers come from the built-in ResNet-50 (`millrace_zoo`, the torchvision graph), read
//! from the imported graph at test time: output size from shape inference, window and channels
//! from the weight, stride from the Conv node. They are written as a SCALE-Sim topology CSV
//! (input extent `(out - 1)·stride + kernel`, see `ConvShape::scalesim_ifmap_extent`) and run by
//! `scripts/scalesim_compare.py` with the NPU's array (32x32, as `examples/npu.toml`) and SRAM
//! (8 MB split 4/2/2 MB for ifmap/filter/ofmap), in SCALE-Sim's CALC bandwidth mode, so the
//! compared number is pure compute cycles (the test asserts SCALE-Sim reports 0 stall cycles).
//!
//! By default each distinct layer shape is simulated once (23 of ResNet-50's 53 convolutions
//! are distinct) and counted with its multiplicity, because SCALE-Sim steps through every cycle
//! in Python; `MILLRACE_SCALESIM_ALL=1` runs all 53. `MILLRACE_SCALESIM_DATAFLOWS=os,ws,is`
//! picks the dataflows (default `os,ws`). The comparison table is printed and written to
//! `target/tmp/scalesim-<dataflow>.md` (docs/scalesim.md copies it).
//!
//! Needs `python3` with the `venv` module and PyPI access on first run (SCALE-Sim 3.0.0 and
//! NumPy 1.26.4 are installed into `target/tmp/scalesim-venv`); without them the test prints
//! why and passes without comparing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use millrace_core::Dim;
use millrace_npu::systolic::{conv_cycles, Array, ConvShape, Dataflow};
use millrace_ops::nn::conv::Conv;

/// Largest accepted relative difference, per layer.
const TOLERANCE: f64 = 0.15;
const ROWS: u64 = 32;
const COLS: u64 = 32;
/// The NPU's 8 MB SRAM, split as SCALE-Sim wants it (KiB).
const SRAM_KB: (u64, u64, u64) = (4096, 2048, 2048);

/// One convolution of the model: its ONNX node name and shape.
struct Layer {
    name: String,
    shape: ConvShape,
}

fn resnet50_convs() -> Vec<Layer> {
    let bytes = millrace_zoo::build_bytes("resnet50").expect("build the built-in resnet50");
    let model = millrace_onnx::import_model(&bytes, None).expect("import resnet50");
    let g = &model.graph;
    let mut out = Vec::new();
    for node in &g.nodes {
        if node.op.name() != "Conv" {
            continue;
        }
        let conv = node
            .op
            .as_any()
            .downcast_ref::<Conv>()
            .expect("a Conv node holds a Conv op");
        let w_id = node.inputs[1].expect("Conv has a weight");
        let w = g.constants.get(&w_id).expect("Conv weight is a constant");
        let ws = w.shape();
        assert_eq!(ws.len(), 4, "{}: 2-D convolution", node.name);
        let y = g.value(node.outputs[0]);
        let dims = y.ty.shape.as_ref().expect("inferred output shape");
        let known = |d: &Dim| match d {
            Dim::Known(v) => *v as u64,
            Dim::Sym(s) => panic!("{}: symbolic spatial dim {s}", node.name),
        };
        let strides = conv.window.strides.clone().unwrap_or_else(|| vec![1, 1]);
        let groups = conv.group as u64;
        out.push(Layer {
            name: node.name.clone(),
            shape: ConvShape {
                out_h: known(&dims[2]),
                out_w: known(&dims[3]),
                kernel_h: ws[2] as u64,
                kernel_w: ws[3] as u64,
                channels: ws[1] as u64,
                filters: ws[0] as u64 / groups,
                stride_h: strides[0] as u64,
                stride_w: strides[1] as u64,
                groups,
            },
        });
    }
    out
}

/// SCALE-Sim's numbers for one layer.
struct SimRow {
    total_cycles: u64,
    stall_cycles: u64,
}

enum Outcome {
    Ran(Vec<SimRow>),
    Unavailable(String),
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run_scalesim(shapes: &[ConvShape], df: Dataflow) -> Outcome {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&tmp).expect("create target tmp dir");
    let topo = tmp.join(format!("scalesim-resnet50-{}.csv", df.short_name()));
    let report = tmp.join(format!("scalesim-resnet50-{}.out.csv", df.short_name()));
    let mut csv = String::from(
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, \
         Num Filter, Strides,\n",
    );
    for (i, s) in shapes.iter().enumerate() {
        assert_eq!(
            s.groups, 1,
            "grouped convolutions are not sent to SCALE-Sim here"
        );
        assert_eq!(
            s.stride_h, s.stride_w,
            "SCALE-Sim's topology has one stride"
        );
        let (h, w) = s.scalesim_ifmap_extent();
        writeln!(
            csv,
            "layer{i},{h},{w},{},{},{},{},{},",
            s.kernel_h, s.kernel_w, s.channels, s.filters, s.stride_h
        )
        .unwrap();
    }
    std::fs::write(&topo, csv).expect("write topology");

    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if Command::new(&python).arg("--version").output().is_err() {
        return Outcome::Unavailable(format!("no Python interpreter ({python})"));
    }
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = std::time::Instant::now();
    let out = Command::new(&python)
        .arg(repo_root().join("scripts/scalesim_compare.py"))
        .arg("--topology")
        .arg(&topo)
        .arg("--out")
        .arg(&report)
        .args(["--rows", &ROWS.to_string(), "--cols", &COLS.to_string()])
        .args(["--dataflow", df.short_name()])
        .args(["--ifmap-kb", &SRAM_KB.0.to_string()])
        .args(["--filter-kb", &SRAM_KB.1.to_string()])
        .args(["--ofmap-kb", &SRAM_KB.2.to_string()])
        .args(["--bandwidth", "CALC", "--jobs", &jobs.to_string()])
        .arg("--venv")
        .arg(tmp.join("scalesim-venv"))
        .output()
        .expect("run scripts/scalesim_compare.py");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    match out.status.code() {
        Some(0) => {}
        Some(3) => {
            return Outcome::Unavailable(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
        _ => panic!("scalesim_compare.py failed: {}", out.status),
    }
    eprintln!(
        "SCALE-Sim ({}) on {} layers: {:.1} s wall",
        df.short_name(),
        shapes.len(),
        started.elapsed().as_secs_f64()
    );
    let text = std::fs::read_to_string(&report).expect("read SCALE-Sim results");
    let rows: Vec<SimRow> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            SimRow {
                total_cycles: f[1].parse().expect("total cycles"),
                stall_cycles: f[2].parse().expect("stall cycles"),
            }
        })
        .collect();
    assert_eq!(rows.len(), shapes.len(), "one SCALE-Sim row per layer");
    Outcome::Ran(rows)
}

fn compare(df: Dataflow) {
    let array = Array {
        rows: ROWS,
        cols: COLS,
        dataflow: df,
    };
    let layers = resnet50_convs();
    assert_eq!(layers.len(), 53, "ResNet-50 has 53 convolutions");
    let all = std::env::var("MILLRACE_SCALESIM_ALL").is_ok_and(|v| v == "1");

    // Distinct shapes in first-seen order, each with the layers that have it.
    let mut order: Vec<ConvShape> = Vec::new();
    let mut users: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, l) in layers.iter().enumerate() {
        let at = if all {
            None
        } else {
            order.iter().position(|s| *s == l.shape)
        };
        let at = at.unwrap_or_else(|| {
            order.push(l.shape);
            order.len() - 1
        });
        users.entry(at).or_default().push(i);
    }

    let sim = match run_scalesim(&order, df) {
        Outcome::Ran(rows) => rows,
        Outcome::Unavailable(why) => {
            println!("SKIPPED scalesim comparison ({}): {why}", df.short_name());
            return;
        }
    };

    let mut table = String::from(
        "| layer | x | M | K | N | SCALE-Sim cycles | millrace cycles | diff % |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let (mut max_diff, mut sum_diff, mut n_layers, mut exact) = (0.0f64, 0.0f64, 0usize, 0usize);
    let (mut total_sim, mut total_ours) = (0u64, 0u64);
    let mut failures = Vec::new();
    for (si, shape) in order.iter().enumerate() {
        let s = &sim[si];
        assert_eq!(
            s.stall_cycles, 0,
            "CALC mode: SCALE-Sim should report no stalls"
        );
        let ours = conv_cycles(&array, shape);
        let diff = (ours as f64 - s.total_cycles as f64) / s.total_cycles as f64;
        let idx = &users[&si];
        let mult = idx.len();
        let (m, k, n) = shape.gemm_dims();
        let name = &layers[idx[0]].name;
        writeln!(
            table,
            "| {name} | {mult} | {m} | {k} | {n} | {} | {ours} | {:+.3} |",
            s.total_cycles,
            diff * 100.0
        )
        .unwrap();
        max_diff = max_diff.max(diff.abs());
        sum_diff += diff.abs() * mult as f64;
        n_layers += mult;
        total_sim += s.total_cycles * mult as u64;
        total_ours += ours * mult as u64;
        if ours == s.total_cycles + 1 {
            exact += 1;
        }
        if diff.abs() > TOLERANCE {
            failures.push(format!(
                "{name} (M={m} K={k} N={n}): SCALE-Sim {}, millrace {ours}, {:+.1}%",
                s.total_cycles,
                diff * 100.0
            ));
        }
    }
    let summary = format!(
        "{}: {} layers ({} simulated), {}x{}; max |diff| {:.4}%, mean |diff| {:.4}%; \
         {exact}/{} simulated shapes equal to SCALE-Sim's count + 1 (its 0-based last cycle); \
         whole network: SCALE-Sim {total_sim}, millrace {total_ours} cycles",
        df.short_name(),
        n_layers,
        order.len(),
        ROWS,
        COLS,
        max_diff * 100.0,
        sum_diff / n_layers as f64 * 100.0,
        order.len()
    );
    println!("{table}\n{summary}");
    let md =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("scalesim-{}.md", df.short_name()));
    std::fs::write(&md, format!("{table}\n{summary}\n")).expect("write table");
    assert!(
        failures.is_empty(),
        "layers beyond {}%:\n{}",
        TOLERANCE * 100.0,
        failures.join("\n")
    );
}

#[test]
fn resnet50_convolutions_match_scalesim() {
    let which = std::env::var("MILLRACE_SCALESIM_DATAFLOWS").unwrap_or_else(|_| "os,ws".into());
    for name in which.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let df = match name {
            "os" => Dataflow::OutputStationary,
            "ws" => Dataflow::WeightStationary,
            "is" => Dataflow::InputStationary,
            other => panic!("MILLRACE_SCALESIM_DATAFLOWS: unknown dataflow {other:?}"),
        };
        compare(df);
    }
}
