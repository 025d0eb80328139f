//! Every shared model through the simulated NPU: the outputs, computed node by node in the
//! order the simulated device finishes them, match ONNX Runtime's reference outputs
//! (relative L2 <= 1e-4), and the timing report is self-consistent.
use millrace::{read_npz, CompileOptions, Model};
use millrace_npu::{functional::rel_l2, NpuConfig, SimOptions, Unit};
use std::path::PathBuf;

const EXAMPLE: &str = include_str!("../../../examples/npu.toml");

fn models_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models");
    dir.is_dir().then_some(dir)
}

fn check_model(name: &str) {
    let Some(dir) = models_dir() else {
        eprintln!("skipping {name}: ../shared/models is absent");
        return;
    };
    let onnx = dir.join(format!("{name}.onnx"));
    if !onnx.exists() {
        eprintln!("skipping {name}: {} is absent", onnx.display());
        return;
    }
    let inputs = read_npz(&dir.join(format!("{name}.inputs.npz"))).unwrap();
    let refs = read_npz(&dir.join(format!("{name}.outputs.npz"))).unwrap();
    let model = Model::load(&onnx).unwrap();
    let mut opts = CompileOptions::default();
    for (n, t) in &inputs {
        opts.input_shapes.insert(n.clone(), t.shape().to_vec());
    }
    opts.threads = Some(1);
    let compiled = model.compile(&opts).unwrap();
    let g = compiled.graph();
    let cfg = NpuConfig::from_toml(EXAMPLE).unwrap();
    let r = millrace_npu::simulate(g, &cfg, &SimOptions::default()).unwrap();
    // Consistency: busy <= total on every unit, SRAM within capacity, something ran.
    assert!(r.total_cycles > 0, "{name}: zero latency");
    for u in &r.units {
        assert!(
            u.busy_cycles <= r.total_cycles,
            "{name}: {:?} busy > total",
            u.unit
        );
    }
    assert!(
        r.sram_peak <= cfg.sram_bytes,
        "{name}: SRAM peak {} above {}",
        r.sram_peak,
        cfg.sram_bytes
    );
    let matrix = r.units.iter().find(|u| u.unit == Unit::Matrix(0)).unwrap();
    assert!(matrix.busy_cycles > 0, "{name}: matrix unit idle");
    let outs = millrace_npu::outputs(g, &r, &inputs).unwrap();
    assert_eq!(outs.len(), refs.len(), "{name}: output count");
    for (n, t) in &outs {
        let want = &refs.iter().find(|(k, _)| k == n).unwrap().1;
        let e = rel_l2(t, want).unwrap();
        eprintln!(
            "{name}: {n} rel L2 {e:.2e}; latency {:.3} ms (simulated), SRAM peak {} B, \
             fall-backs {}",
            r.seconds(r.total_cycles) * 1e3,
            r.sram_peak,
            millrace_npu::lower::fallbacks(&r.program).len()
        );
        assert!(e <= 1e-4, "{name}: output {n} rel L2 {e}");
    }
    // Two matrix units finish nodes in another order: the outputs must still match.
    let two = NpuConfig::from_toml(&EXAMPLE.replace("units = 1", "units = 2")).unwrap();
    let r2 = millrace_npu::simulate(g, &two, &SimOptions::default()).unwrap();
    let outs2 = millrace_npu::outputs(g, &r2, &inputs).unwrap();
    for ((n, a), (_, b)) in outs.iter().zip(&outs2) {
        assert!(
            rel_l2(b, a).unwrap() <= 1e-6,
            "{name}: {n} differs with 2 matrix units"
        );
    }
}

#[test]
fn resnet50() {
    check_model("resnet50");
}

#[test]
fn mobilenet_v2() {
    check_model("mobilenet_v2");
}

#[test]
fn googlenet() {
    check_model("googlenet");
}

#[test]
fn squeezenet1_1() {
    check_model("squeezenet1_1");
}

#[test]
fn bert_small() {
    check_model("bert_small");
}
