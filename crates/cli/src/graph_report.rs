//! The schedule and memory sections of `millrace plan`: the dependency DAG (width,
//! critical path), the cost model's sequential-vs-parallel estimate and the choice made,
//! and the activation arena against one allocation per value.
use millrace::schedule::{Dag, Machine};
use millrace::CompiledModel;
use std::fmt::Write;

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
            let ins: Vec<_> = n
                .inputs
                .iter()
                .map(|v| v.map(|v| g.value(v).ty.clone()).unwrap_or_default())
                .collect();
            let outs: Vec<_> = n.outputs.iter().map(|v| g.value(*v).ty.clone()).collect();
            let cost = n.op.cost(&ins, &outs);
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
