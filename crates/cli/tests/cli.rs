//! The `millrace` binary, driven as a user would.
mod common;

use common::{millrace, models, text, tmp};

#[test]
fn run_writes_outputs_that_match_the_reference() {
    let m = models();
    let out = tmp("sq.npz");
    let o = millrace(&[
        "run",
        m.join("squeezenet1_1.onnx").to_str().unwrap(),
        "--inputs",
        m.join("squeezenet1_1.inputs.npz").to_str().unwrap(),
        "--outputs",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let got = millrace::read_npz(&out).unwrap();
    let want = millrace::read_npz(&m.join("squeezenet1_1.outputs.npz")).unwrap();
    assert_eq!(got[0].0, "output");
    let (g, w) = (
        got[0].1.to_f64_vec().unwrap(),
        want[0].1.to_f64_vec().unwrap(),
    );
    let num: f64 = g.iter().zip(&w).map(|(a, b)| (a - b).powi(2)).sum();
    let den: f64 = w.iter().map(|b| b * b).sum();
    assert!((num / den).sqrt() < 1e-4);
}

#[test]
fn run_accepts_a_single_npy_and_random_inputs() {
    let m = models();
    let arrays = millrace::read_npz(&m.join("squeezenet1_1.inputs.npz")).unwrap();
    let npy = tmp("in.npy");
    std::fs::write(
        &npy,
        millrace::npz::write_npy("input", &arrays[0].1).unwrap(),
    )
    .unwrap();
    let o = millrace(&[
        "run",
        m.join("squeezenet1_1.onnx").to_str().unwrap(),
        "--inputs",
        npy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = millrace(&[
        "run",
        m.join("squeezenet1_1.onnx").to_str().unwrap(),
        "--seed",
        "3",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("output: f32 [1, 1000]"), "{}", text(&o));
}

#[test]
fn bench_json_has_the_documented_keys() {
    let m = models();
    let o = millrace(&[
        "bench",
        m.join("squeezenet1_1.onnx").to_str().unwrap(),
        "--iters",
        "3",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--batch",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for k in ["min", "mean", "p50", "p90", "p99"] {
        assert!(v["latency_ms"][k].as_f64().unwrap() > 0.0, "latency_ms.{k}");
    }
    assert!(v["throughput_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v["batch"], 2);
    assert_eq!(v["threads"], 1);
}

#[test]
fn info_reports_structure_and_macs() {
    let o = millrace(&["info", models().join("resnet50.onnx").to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    for needle in [
        "input: f32[batch,3,224,224]",
        "output: f32[batch,1000]",
        "Conv",
        "parameters:",
        "weight bytes:",
        "MACs:         40",
    ] {
        assert!(t.contains(needle), "missing `{needle}` in:\n{t}");
    }
}

#[test]
fn zoo_writes_a_model_that_loads() {
    let o = millrace(&["zoo"]);
    assert!(
        o.status.success() && text(&o).contains("resnet50"),
        "{}",
        text(&o)
    );
    let f = tmp("mnv2.onnx");
    let o = millrace(&["zoo", "mobilenet_v2", "-o", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = millrace(&["info", f.to_str().unwrap()]);
    assert!(
        o.status.success() && text(&o).contains("Conv"),
        "{}",
        text(&o)
    );
}

#[test]
fn bad_arguments_fail_with_a_message_not_a_panic() {
    let m = models();
    let sq = m.join("squeezenet1_1.onnx");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "no-such-model"],
            "neither a file nor a built-in",
        ),
        (
            vec!["run", sq.to_str().unwrap(), "--inputs", "/nonexistent.npz"],
            "nonexistent",
        ),
        (
            vec!["run", sq.to_str().unwrap(), "--shape", "input=1x3x9"],
            "input",
        ),
        (
            vec!["run", sq.to_str().unwrap(), "--shape", "bogus=1"],
            "unknown input `bogus`",
        ),
        (
            vec!["bench", sq.to_str().unwrap(), "--threads", "0"],
            "--threads",
        ),
        (vec!["info", "/etc/hostname"], "not a valid ONNX model"),
        (vec!["zoo", "alexnet", "-o", "/tmp/x.onnx"], "unknown"),
    ];
    for (args, needle) in cases {
        let o = millrace(&args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {t}");
        assert!(t.contains(needle), "{args:?}: expected `{needle}` in {t}");
        assert!(!t.contains("panicked"), "{args:?}: {t}");
    }
}

#[test]
fn wrong_input_names_in_npz_are_reported() {
    let npz = tmp("wrong.npz");
    let t = millrace::Tensor::from_vec(vec![1, 3, 224, 224], vec![0.0f32; 3 * 224 * 224]).unwrap();
    millrace::write_npz(&npz, &[("image".into(), t)]).unwrap();
    let o = millrace(&[
        "run",
        models().join("squeezenet1_1.onnx").to_str().unwrap(),
        "--inputs",
        npz.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("unknown input `image`"), "{}", text(&o));
}

#[test]
fn peak_json_has_the_documented_keys() {
    let o = millrace(&[
        "peak",
        "--json",
        "--threads",
        "2",
        "--seconds",
        "0.01",
        "--reps",
        "1",
        "--array-mib",
        "2",
        "--all-variants",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        assert!(v["core_round_trip_ns"].is_null(), "{v}");
    } else {
        assert!(v["core_round_trip_ns"].as_f64().unwrap() > 0.0, "{v}");
    }
    for k in ["gflops_1t", "gflops", "triad_gbs"] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}: {v}");
    }
    assert_eq!(v["threads"], 2);
    assert!(v["variant"].is_string());
    assert!(v["variants_1t"]["portable"].as_f64().unwrap() > 0.0, "{v}");
    let o = millrace(&["peak", "--threads", "0"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn peak_round_trip_only_prints_just_the_round_trip() {
    let o = millrace(&["peak", "--round-trip-only", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        v["core_round_trip_ns"].as_f64().is_some_and(|ns| ns > 0.0) || cpus < 2,
        "{v}"
    );
    assert_eq!(v.as_object().map(|m| m.len()), Some(1), "{v}");
    let o = millrace(&["peak", "--round-trip-only"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("core-to-core round trip:"),
        "{}",
        text(&o)
    );
}

#[test]
fn bench_by_op_json_has_the_profile_and_samples() {
    let m = models();
    let o = millrace(&[
        "bench",
        m.join("squeezenet1_1.onnx").to_str().unwrap(),
        "--iters",
        "2",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--by-op",
        "--profile-iters",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The keys of plain bench are all still there.
    for k in ["min", "mean", "p50", "p90", "p99"] {
        assert!(v["latency_ms"][k].as_f64().unwrap() > 0.0, "latency_ms.{k}");
    }
    assert_eq!(v["samples_ms"].as_array().unwrap().len(), 2);
    assert!(v["load_ms"].as_f64().unwrap() > 0.0);
    assert!(v["compile_ms"].as_f64().unwrap() >= 0.0);
    // SqueezeNet 1.1 is about 0.35 GMAC at 224x224.
    let gflop = v["gflop"].as_f64().unwrap();
    assert!((0.6..0.8).contains(&gflop), "gflop {gflop}");
    assert!(v["gflop_per_s"].as_f64().unwrap() > 0.0);
    if cfg!(target_os = "linux") {
        assert!(v["peak_rss_mb"].as_f64().unwrap() > 1.0, "{v}");
    }
    let rows = v["by_op"].as_array().unwrap();
    let conv = rows
        .iter()
        .find(|r| r["op"] == "FusedConv")
        .expect("a FusedConv row");
    assert_eq!(conv["count"], 26);
    assert!(conv["gflop"].as_f64().unwrap() > 0.6);
    assert!(conv["gflop_per_s"].as_f64().unwrap() > 0.0);
    let share: f64 = rows.iter().map(|r| r["share"].as_f64().unwrap()).sum();
    assert!((share - 1.0).abs() < 1e-6, "shares sum to {share}");
    assert_eq!(v["profile_runs"], 1);
}

/// `plan` shows the DAG and schedule decision and the activation arena; `bench` reports the
/// arena and what a steady-state run allocates: far less than the activations (SqueezeNet's
/// are ~17 MB) — only the outputs and bookkeeping.
#[test]
fn plan_and_bench_show_the_schedule_and_the_arena() {
    let m = models().join("squeezenet1_1.onnx");
    let m = m.to_str().unwrap();
    let o = millrace(&["plan", m, "--schedule", "parallel", "--threads", "2"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("schedule:") && t.contains("--schedule parallel: runs branch-parallel"),
        "{t}"
    );
    assert!(t.contains("critical path:"), "{t}");
    assert!(t.contains("activation memory (parallel plan):"), "{t}");
    let o = millrace(&[
        "bench",
        m,
        "--json",
        "--iters",
        "3",
        "--warmup",
        "1",
        "--schedule",
        "sequential",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schedule"], "sequential");
    assert_eq!(v["parallel"], false);
    let arena = v["arena_bytes"].as_u64().unwrap();
    assert!(arena > 1 << 20, "{v}");
    let bytes = v["allocations_per_run"]["bytes"].as_u64().unwrap();
    assert!(
        bytes < 1 << 20,
        "a steady-state run allocated {bytes} bytes"
    );
    assert!(bytes >= v["allocations_per_run"]["output_bytes"].as_u64().unwrap());
}
