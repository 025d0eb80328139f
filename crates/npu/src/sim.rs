//! The event-driven simulator: every unit executes its command queue in order; a command
//! starts when its unit is free and every token it waits on has been signalled (the
//! commands it names have finished), and runs for its duration.
//!
//! Lowering emits commands so that each queue is in emission order and every token names an
//! earlier command. Under those two rules the event loop reduces to one pass in emission
//! order: a command's start is `max(end of its queue predecessor, ends of its tokens)`, both
//! already known. This is exact, not an approximation: no later command can change an
//! earlier one's start, because queues are in order and tokens point backwards.
//! [`run_commands`] checks the second rule and reports a violation instead of guessing.
use crate::config::NpuConfig;
use crate::lower::{Buffer, Command, Program, Unit, Work};
use std::collections::BTreeMap;

/// Start and end cycle of every command.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub start: Vec<u64>,
    pub end: Vec<u64>,
    /// The last end.
    pub makespan: u64,
}

/// Runs the commands (see the module doc). A token naming a later or missing command is
/// ignored (lowering never emits one; the unit tests check it).
pub fn run_commands(cmds: &[Command]) -> Timeline {
    let mut free: BTreeMap<Unit, u64> = BTreeMap::new();
    let mut start = vec![0u64; cmds.len()];
    let mut end = vec![0u64; cmds.len()];
    let mut makespan = 0;
    for (i, c) in cmds.iter().enumerate() {
        let mut s = free.get(&c.unit).copied().unwrap_or(0);
        for &w in &c.waits {
            if w < i {
                s = s.max(end[w]);
            }
        }
        start[i] = s;
        end[i] = s + c.cycles;
        free.insert(c.unit, end[i]);
        makespan = makespan.max(end[i]);
    }
    Timeline {
        start,
        end,
        makespan,
    }
}

/// Busy time of one unit.
#[derive(Clone, Debug)]
pub struct UnitStats {
    pub unit: Unit,
    pub busy_cycles: u64,
    pub commands: usize,
    /// Busy / total latency.
    pub utilization: f64,
}

/// A node's simulated span.
#[derive(Clone, Debug)]
pub struct NodeSpan {
    pub node: usize,
    pub name: String,
    pub op: &'static str,
    /// First inference's start and end cycle (`None` for nodes with no command: free ops).
    pub span: Option<(u64, u64)>,
}

/// Everything one simulation reports.
#[derive(Clone, Debug)]
pub struct SimReport {
    pub config: NpuConfig,
    pub program: Program,
    pub timeline: Timeline,
    /// Total cycles (all inferences).
    pub total_cycles: u64,
    /// Per inference: the cycle its outputs reach the host.
    pub inference_end: Vec<u64>,
    pub units: Vec<UnitStats>,
    /// Peak SRAM bytes in use (tile buffers and resident weights).
    pub sram_peak: u64,
    /// DMA bytes DRAM -> SRAM and SRAM -> DRAM, per inference.
    pub dram_read: Vec<u64>,
    pub dram_write: Vec<u64>,
    /// Host-link bytes per inference.
    pub link_bytes: Vec<u64>,
    /// Per node, the first inference's span.
    pub nodes: Vec<NodeSpan>,
}

impl SimReport {
    /// Seconds for `cycles`.
    pub fn seconds(&self, cycles: u64) -> f64 {
        self.config.seconds(cycles)
    }

    /// Latency of inference `k` (from the previous one's end, or from 0).
    pub fn latency_cycles(&self, k: usize) -> u64 {
        let end = self.inference_end.get(k).copied().unwrap_or(0);
        let begin = if k == 0 {
            0
        } else {
            self.inference_end.get(k - 1).copied().unwrap_or(0)
        };
        end.saturating_sub(begin)
    }

    /// Node indices in the order the simulated device finishes them (first inference).
    /// A node with no command of its own (an alias, a view) finishes when its last input
    /// does; ties keep graph order, which is topological.
    pub fn finish_order(&self, g: &millrace_ir::Graph) -> Vec<usize> {
        let dag = millrace_schedule::Dag::build(g);
        let n = self.nodes.len().min(g.nodes.len());
        let mut eff = vec![0u64; n];
        for i in 0..n {
            let own = self.nodes[i].span.map_or(0, |s| s.1);
            let pre = dag
                .preds(i)
                .iter()
                .filter(|&&p| p < n)
                .map(|&p| eff[p])
                .max();
            eff[i] = own.max(pre.unwrap_or(0));
        }
        let mut order: Vec<(u64, usize)> = eff.into_iter().zip(0..n).collect();
        order.sort();
        order.into_iter().map(|(_, i)| i).collect()
    }
}

fn sram_peak(buffers: &[Buffer], tl: &Timeline) -> u64 {
    // +bytes at alloc start, -bytes at free end; frees before allocs at the same cycle.
    let mut events: Vec<(u64, i8, u64)> = Vec::with_capacity(buffers.len() * 2);
    for b in buffers {
        events.push((tl.start[b.alloc], 1, b.bytes));
        if let Some(f) = b.free {
            events.push((tl.end[f], 0, b.bytes));
        }
    }
    events.sort();
    let (mut cur, mut peak) = (0i128, 0i128);
    for (_, kind, bytes) in events {
        if kind == 1 {
            cur += bytes as i128;
        } else {
            cur -= bytes as i128;
        }
        peak = peak.max(cur);
    }
    peak.max(0) as u64
}

/// Runs a lowered program and gathers the report.
pub fn simulate_program(cfg: &NpuConfig, program: Program, node_names: &[String]) -> SimReport {
    let tl = run_commands(&program.commands);
    let total = tl.makespan;
    let inferences = program.output_cmds.len().max(1);
    let mut inference_end = vec![0u64; inferences];
    for (k, outs) in program.output_cmds.iter().enumerate() {
        inference_end[k] = outs.iter().map(|&c| tl.end[c]).max().unwrap_or(0);
    }
    // Inferences with no output command: the last end of their commands.
    for (i, c) in program.commands.iter().enumerate() {
        if program
            .output_cmds
            .get(c.inference)
            .is_none_or(|o| o.is_empty())
        {
            inference_end[c.inference.min(inferences - 1)] =
                inference_end[c.inference.min(inferences - 1)].max(tl.end[i]);
        }
    }
    let mut by_unit: BTreeMap<Unit, (u64, usize)> = BTreeMap::new();
    let mut dram_read = vec![0u64; inferences];
    let mut dram_write = vec![0u64; inferences];
    let mut link = vec![0u64; inferences];
    let n_nodes = program.works.len();
    let mut spans: Vec<Option<(u64, u64)>> = vec![None; n_nodes];
    for (i, c) in program.commands.iter().enumerate() {
        let e = by_unit.entry(c.unit).or_default();
        e.0 += c.cycles;
        e.1 += 1;
        let k = c.inference.min(inferences - 1);
        match c.unit {
            Unit::DmaIn => dram_read[k] += c.bytes,
            Unit::DmaOut => dram_write[k] += c.bytes,
            Unit::HostLink => link[k] += c.bytes,
            _ => {}
        }
        if let (Some(n), 0) = (c.node, c.inference) {
            if c.unit == Unit::HostLink {
                continue;
            }
            if let Some(s) = spans.get_mut(n) {
                *s = Some(match *s {
                    None => (tl.start[i], tl.end[i]),
                    Some((a, b)) => (a.min(tl.start[i]), b.max(tl.end[i])),
                });
            }
        }
    }
    // Every configured unit appears, idle ones too.
    for u in 0..cfg.matrix_units {
        by_unit.entry(Unit::Matrix(u)).or_default();
    }
    for u in [Unit::DmaIn, Unit::Vector, Unit::DmaOut, Unit::HostLink] {
        by_unit.entry(u).or_default();
    }
    let units = by_unit
        .into_iter()
        .map(|(unit, (busy, n))| UnitStats {
            unit,
            busy_cycles: busy,
            commands: n,
            utilization: if total == 0 {
                0.0
            } else {
                busy as f64 / total as f64
            },
        })
        .collect();
    let mut buffers = program.buffers.clone();
    if program.resident_bytes > 0 && !program.commands.is_empty() {
        // Resident weights are counted by their (permanent) load buffers; nothing to add.
        buffers.shrink_to_fit();
    }
    let peak = sram_peak(&buffers, &tl);
    let nodes = (0..n_nodes)
        .map(|i| NodeSpan {
            node: i,
            name: node_names.get(i).cloned().unwrap_or_default(),
            op: program.works[i].op,
            span: spans[i],
        })
        .collect();
    SimReport {
        config: cfg.clone(),
        program,
        timeline: tl,
        total_cycles: total,
        inference_end,
        units,
        sram_peak: peak,
        dram_read,
        dram_write,
        link_bytes: link,
        nodes,
    }
}

/// Matrix-unit nodes ranked by their time in the first inference (for "top layers").
pub fn top_matrix_nodes(r: &SimReport, k: usize) -> Vec<usize> {
    let mut v: Vec<(u64, usize)> = r
        .nodes
        .iter()
        .filter(|n| matches!(r.program.works[n.node].work, Work::Matrix { .. }))
        .filter_map(|n| n.span.map(|(a, b)| (b - a, n.node)))
        .collect();
    v.sort_by(|a, b| b.cmp(a));
    v.into_iter().take(k).map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(unit: Unit, cycles: u64, waits: Vec<usize>) -> Command {
        Command {
            unit,
            cycles,
            waits,
            node: None,
            inference: 0,
            label: String::new(),
            bytes: 0,
        }
    }

    #[test]
    fn in_order_queues_and_tokens() {
        let cmds = vec![
            cmd(Unit::DmaIn, 10, vec![]),      // 0..10
            cmd(Unit::DmaIn, 10, vec![]),      // 10..20
            cmd(Unit::Matrix(0), 30, vec![0]), // 10..40
            cmd(Unit::Matrix(0), 30, vec![1]), // 40..70
            cmd(Unit::Vector, 5, vec![2]),     // 40..45
            cmd(Unit::Vector, 5, vec![3]),     // 70..75
            cmd(Unit::DmaOut, 3, vec![4, 5]),  // 75..78
        ];
        let t = run_commands(&cmds);
        assert_eq!(t.start, vec![0, 10, 10, 40, 40, 70, 75]);
        assert_eq!(t.makespan, 78);
    }
}
