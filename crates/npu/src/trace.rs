//! Chrome trace (`chrome://tracing`, Perfetto) of a simulation: one track per unit (DMA in,
//! matrix units, vector, DMA out, host link, host CPU), one slice per command, so units
//! working at the same time can be seen overlapping.
use crate::lower::Unit;
use crate::sim::SimReport;
use serde_json::{json, Value};

/// The track id of unit `u` (tracks sort by it).
pub(crate) fn tid(u: Unit) -> u64 {
    match u {
        Unit::HostLink => 1,
        Unit::DmaIn => 2,
        Unit::Matrix(k) => 10 + k as u64,
        Unit::Vector => 100,
        Unit::DmaOut => 101,
        Unit::Host => 102,
    }
}

/// The trace as a JSON value (`{"traceEvents": [...], "displayTimeUnit": "ns"}`);
/// timestamps in microseconds of simulated time.
pub fn chrome_trace(r: &SimReport) -> Value {
    let us = |c: u64| r.seconds(c) * 1e6;
    let mut events = Vec::with_capacity(r.program.commands.len() + 16);
    events.push(json!({"ph": "M", "pid": 1, "name": "process_name",
        "args": {"name": format!("simulated {}", r.config.name)}}));
    let mut units: Vec<Unit> = r.units.iter().map(|u| u.unit).collect();
    if r.program.commands.iter().any(|c| c.unit == Unit::Host) && !units.contains(&Unit::Host) {
        units.push(Unit::Host);
    }
    for u in units {
        events.push(
            json!({"ph": "M", "pid": 1, "tid": tid(u), "name": "thread_name",
            "args": {"name": u.name()}}),
        );
        events.push(
            json!({"ph": "M", "pid": 1, "tid": tid(u), "name": "thread_sort_index",
            "args": {"sort_index": tid(u)}}),
        );
    }
    for (i, c) in r.program.commands.iter().enumerate() {
        let (s, e) = (r.timeline.start[i], r.timeline.end[i]);
        let mut args = json!({"cycles": c.cycles, "inference": c.inference});
        if c.bytes > 0 {
            args["bytes"] = json!(c.bytes);
        }
        if let Some(n) = c.node {
            args["op"] = json!(r.program.works.get(n).map(|w| w.op).unwrap_or(""));
        }
        events.push(json!({
            "ph": "X", "pid": 1, "tid": tid(c.unit), "name": c.label,
            "ts": us(s), "dur": us(e - s), "args": args,
        }));
    }
    json!({"traceEvents": events, "displayTimeUnit": "ns"})
}
