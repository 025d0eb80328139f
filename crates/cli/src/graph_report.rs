//! The schedule and memory sections of `millrace plan`: the dependency DAG (width,
//! critical path), the cost model's sequential-vs-parallel estimate and the choice made,
//! and the activation arena against one allocation per value.
use crate::model_arg::Loaded;
use anyhow::{bail, Context, Result};
use millrace::schedule::{Dag, Machine};
use millrace::CompiledModel;
use std::fmt::Write;

/// The script that measures ONNX Runtime's memory (kept in `scripts/`, embedded here).
const ORT_MEMORY: &str = include_str!("../../../scripts/ort_memory.py");

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

/// The text of both sections; `critical` is how many critical-path nodes to list.
pub fn schedule_and_memory(c: &CompiledModel, critical: usize) -> String {
    let g = c.graph();
    let dag = Dag::build(g);
    let machine = Machine::default();
    let times: Vec<f64> = g
        .nodes
        .iter()
        .map(|n| {
            let cost = g.node_cost(n);
            machine.time(cost.flops as f64, cost.bytes() as f64, c.threads() as f64)
        })
        .collect();
    let edges: usize = (0..dag.len()).map(|i| dag.preds(i).len()).sum();
    let (_, path) = dag.critical_path(&times);
    let p = c.prediction();
    let mut s = String::new();
    let _ = writeln!(s, "schedule:");
    let _ = writeln!(
        s,
        "  DAG: {} nodes, {edges} edges, up to {} ready at once",
        dag.len(),
        p.max_width
    );
    let _ = writeln!(
        s,
        "  cost model ({} threads): sequential {:.3} ms, branch-parallel {:.3} ms, critical path {:.3} ms",
        c.threads(),
        p.sequential_s * 1e3,
        p.parallel_s * 1e3,
        p.critical_path_s * 1e3
    );
    let _ = writeln!(
        s,
        "  --schedule {}: runs {}",
        c.schedule(),
        if c.is_parallel() {
            "branch-parallel"
        } else {
            "sequential"
        }
    );
    if critical > 0 && !path.is_empty() {
        let _ = writeln!(
            s,
            "  critical path: {} of {} nodes (first {}):",
            path.len(),
            dag.len(),
            critical.min(path.len())
        );
        for &i in path.iter().take(critical) {
            if let Some(n) = g.nodes.get(i) {
                let _ = writeln!(
                    s,
                    "    {:>4} {:<14} {:>8.3} ms  {}",
                    i,
                    n.op.name(),
                    times[i] * 1e3,
                    n.name
                );
            }
        }
    }
    let m = c.memory_report();
    let _ = writeln!(
        s,
        "activation memory ({} plan):",
        if m.parallel { "parallel" } else { "sequential" }
    );
    let _ = writeln!(
        s,
        "  arena: {:.2} MiB for {} values in {} buffers (one allocation each: {:.2} MiB, {:.1}x)",
        mib(m.arena_bytes),
        m.arena_values,
        m.buffers,
        mib(m.naive_bytes),
        if m.arena_bytes > 0 {
            m.naive_bytes as f64 / m.arena_bytes as f64
        } else {
            0.0
        }
    );
    let _ = writeln!(
        s,
        "  in place: {} nodes; aliased (reshape-like): {}; copied out for ops without the planned path: {}",
        m.in_place, m.aliases, m.copies
    );
    let _ = writeln!(
        s,
        "  allocated by ops (no planned path, unknown shape or not f32): {} values, {:.2} MiB",
        m.owned_values,
        mib(m.owned_bytes)
    );
    s
}

/// Runs the model once here and ONNX Runtime in a child Python process, and compares peak
/// resident memory (ORT's over its Python import baseline) next to the arena.
pub fn versus_ort(loaded: &Loaded, c: &CompiledModel) -> Result<String> {
    let inputs = loaded.random(0)?;
    c.run_named(&inputs).context("running the model once")?;
    let ours = crate::bench::peak_rss_mb();
    let path = std::path::Path::new(&loaded.args().model);
    let tmp;
    let model_path = if path.exists() {
        path.to_path_buf()
    } else {
        let bytes = millrace::zoo::build_bytes(&loaded.args().model)?;
        tmp = std::env::temp_dir().join(format!("millrace-plan-{}.onnx", std::process::id()));
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        tmp.clone()
    };
    let mut cmd = std::process::Command::new("python3");
    cmd.arg("-c")
        .arg(ORT_MEMORY)
        .arg(&model_path)
        .arg(c.threads().to_string());
    for (n, t) in &inputs {
        let dims: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
        cmd.arg(format!("{n}={}", dims.join("x")));
    }
    let out = cmd
        .output()
        .context("running python3 (needs numpy and onnxruntime)")?;
    if !path.exists() {
        let _ = std::fs::remove_file(&model_path);
    }
    if !out.status.success() {
        bail!(
            "ONNX Runtime memory measurement failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading the ONNX Runtime measurement")?;
    let f = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
    let m = c.memory_report();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "memory against ONNX Runtime (peak resident, session/compile + one run):"
    );
    let _ = writeln!(
        s,
        "  ONNX Runtime {}: {:.1} MiB over its Python baseline of {:.1} MiB ({:.1} MiB after session creation)",
        v.get("onnxruntime").and_then(|x| x.as_str()).unwrap_or("?"),
        f("peak_mib"),
        f("baseline_mib"),
        f("session_mib")
    );
    match ours {
        Some(r) => {
            let _ = writeln!(
                s,
                "  millrace:         {r:.1} MiB for this whole process (load, compile, plan, one run); arena {:.2} MiB",
                mib(m.arena_bytes)
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  millrace: peak resident memory not available on this OS"
            );
        }
    }
    Ok(s)
}
