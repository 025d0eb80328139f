//! `millrace profile`, driven as a user would: the table, the Chrome trace and the SVG.
mod common;

use common::{millrace, models, text, tmp};

#[test]
fn profile_prints_the_table_and_writes_a_trace_and_an_svg() {
    let m = models();
    let (trace, svg) = (tmp("t.json"), tmp("t.svg"));
    let o = millrace(&[
        "profile",
        m.join("squeezenet1_1.onnx").to_str().unwrap(),
        "--iters",
        "2",
        "--warmup",
        "1",
        "--trace",
        trace.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
        "--peak-gflops",
        "100",
        "--bandwidth-gbs",
        "20",
        "--top",
        "0",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("peak 100.0 GFLOP/s, bandwidth 20.0 GB/s"),
        "{out}"
    );
    assert!(out.contains("Conv"), "{out}");
    assert!(out.contains("compute") || out.contains("memory"), "{out}");
    assert!(out.contains("per op type"), "{out}");

    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let events = t["traceEvents"].as_array().unwrap();
    let x: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert!(!x.is_empty());
    for e in &x {
        assert!(e["ts"].as_f64().unwrap() >= 0.0);
        assert!(e["dur"].as_f64().unwrap() >= 0.0);
    }
    // Every step of one run shows up once, and the table lists the same nodes.
    let mut steps: Vec<u64> = x
        .iter()
        .map(|e| e["args"]["step"].as_u64().unwrap())
        .collect();
    steps.sort_unstable();
    steps.dedup();
    assert_eq!(steps.len(), x.len());
    for e in &x {
        let name = e["name"].as_str().unwrap();
        assert!(out.contains(name), "table lacks {name}");
    }
    assert!(events.iter().any(|e| e["name"] == "thread_name"));

    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.starts_with("<svg"));
    assert!(s.trim_end().ends_with("</svg>"));
    assert_eq!(s.matches(r#"<rect class="step""#).count(), x.len());
}

#[test]
fn profile_json_has_nodes_and_ops_and_honours_load_args() {
    let m = models();
    let o = millrace(&[
        "profile",
        m.join("squeezenet1_1.onnx").to_str().unwrap(),
        "--iters",
        "1",
        "--warmup",
        "0",
        "--json",
        "--peak-gflops",
        "50",
        "--bandwidth-gbs",
        "10",
        "--schedule",
        "sequential",
        "--no-pass",
        "fuse-conv",
        "--threads",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["threads"], 1);
    assert_eq!(v["schedule"], "sequential");
    assert_eq!(v["machine"]["source"], "given");
    assert_eq!(v["machine"]["balance_flop_per_byte"], 5.0);
    let nodes = v["nodes"].as_array().unwrap();
    // With fuse-conv off, plain Conv nodes remain.
    assert!(nodes.iter().any(|n| n["op"] == "Conv"), "{v}");
    assert!(nodes.iter().all(|n| n["op"] != "FusedConv"), "{v}");
    for n in nodes {
        let b = &n["bound"];
        assert!(b == "compute" || b == "memory" || b.is_null(), "{n}");
    }
    assert!(!v["by_op"].as_array().unwrap().is_empty());
}

#[test]
fn profile_rejects_bad_numbers() {
    for args in [
        &["profile", "resnet50", "--iters", "0"][..],
        &["profile", "resnet50", "--peak-gflops", "-1"][..],
        &["profile", "resnet50", "--bandwidth-gbs", "nan"][..],
    ] {
        let o = millrace(args);
        assert!(!o.status.success());
        assert!(text(&o).contains("error"), "{}", text(&o));
    }
}
