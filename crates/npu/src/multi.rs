//! Several simulated cards at once (`millrace simulate --cards K --parallel data|pipeline`),
//! each compared with one card doing all the work.
//!
//! # Data parallel ([`data_parallel`])
//!
//! A batch of `N` rows is split along dimension 0 over `K` identical cards and, optionally,
//! the host CPU (a [`CpuDevice`]: the partitioner's roofline, summed over the nodes). Each
//! device's speed per row comes from simulating one row on it (for a card: host-to-card
//! transfer of the inputs, the simulated run, card-to-host transfer of the outputs). Rows
//! are then handed out one at a time to the device that would finish its share soonest
//! (`(rows + 1) x time per row`), every card first getting one: the integer split that
//! minimizes the estimated makespan, with no device idle while it could finish a row before
//! the others. Each device's slice is then simulated for real (its own compiled graph for
//! that many rows), so the reported times are simulated, not the estimate. Times are not
//! linear in rows (a card loads its weights once per slice whatever its rows; every
//! transfer pays the link latency), so rows are then moved off the slowest device, one at
//! a time, while the simulated latency drops.
//!
//! # Pipeline parallel ([`pipeline`])
//!
//! The micro-batch graph (nodes in topological order) is cut into `K` contiguous stages of
//! balanced simulated time. The node times come from the simulator: the whole graph is
//! simulated once and each node is charged the advance of the running finish time it causes
//! (so overlapped work is not counted twice, and the times sum to the makespan); the cut
//! minimizing the largest stage is found by dynamic programming. Each stage is then built as
//! its own sub-graph and simulated on its card. Stage `k` of micro-batch `j` starts when
//! stage `k` of micro-batch `j - 1` and the transfers of its inputs (after stage `k - 1` of
//! micro-batch `j`, or any earlier stage that produced them) are done.
//!
//! # Links
//!
//! Every card has a port to the host with the configured bandwidth and latency in each
//! direction (full duplex): graph inputs go host -> card, graph outputs card -> host, one
//! transfer per tensor (each pays the link latency). With `host_link.shared = true` all
//! host transfers also hold one shared uplink per direction (cards behind one switch: one
//! host transfer at a time each way); with `false` (the default) each card's link is its
//! own. Activations between cards go card -> host -> card (two transfers: up on the sender's
//! link, down on the receiver's), or, with `host_link.peer_to_peer = true`, directly in
//! one transfer holding the sender's out port and the receiver's in port (not the shared
//! uplink). A card receives the graph inputs of micro-batch `j` once it starts micro-batch
//! `j - 1` (one ahead, double-buffered in its DRAM), so inputs do not hog a shared link.
//!
//! # Schedule
//!
//! Compute on a card, its ports and the shared uplinks are resources that do one task at a
//! time. [`schedule`] is an event-driven list scheduler: among the tasks whose dependencies
//! are done, the one that can start earliest starts (ties: creation order, i.e. lower
//! micro-batch, then lower stage). Starts come out in time order, so this is the exact
//! timeline of first-come first-served queues.
//!
//! All times are cycles of the card clock; CPU seconds are converted at that clock.
use crate::config::NpuConfig;
use crate::functional::{self, FunctionalError};
use crate::lower::{self, LowerOptions};
use crate::sim::SimReport;
use crate::NpuError;
use millrace_core::Tensor;
use millrace_devices::{CpuDevice, Device};
use millrace_ir::{Graph, NodeId, ValueId};
use millrace_schedule::{allowed_cuts, balanced_ranges};
use std::collections::{HashMap, HashSet};
use std::ops::Range;

/// Upper bounds on the arguments (the schedule is quadratic in its task count).
pub const MAX_CARDS: usize = 256;
/// The most micro-batches a pipeline simulation takes.
pub const MAX_MICRO_BATCHES: usize = 4096;

/// Why a multi-card simulation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MultiError {
    /// Bad arguments (card count, batch, micro-batches).
    #[error("{0}")]
    Invalid(String),
    /// The graph for a slice of rows could not be built, or does not have them.
    #[error("the graph for {rows} row(s): {msg}")]
    Graph { rows: usize, msg: String },
    /// A simulation failed.
    #[error("{what}: {source}")]
    Npu {
        what: String,
        #[source]
        source: NpuError,
    },
    /// Computing the outputs failed.
    #[error("{what}: {source}")]
    Functional {
        what: String,
        #[source]
        source: FunctionalError,
    },
}

/// How several cards share the work (`--parallel`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parallel {
    /// The batch split by rows ([`data_parallel`]).
    Data,
    /// The model cut into one stage per card ([`pipeline`]).
    Pipeline,
}

impl std::str::FromStr for Parallel {
    type Err = MultiError;

    fn from_str(s: &str) -> Result<Parallel, MultiError> {
        match s {
            "data" => Ok(Parallel::Data),
            "pipeline" => Ok(Parallel::Pipeline),
            _ => Err(invalid(format!(
                "--parallel `{s}`: expected `data` or `pipeline`"
            ))),
        }
    }
}

fn invalid(msg: impl Into<String>) -> MultiError {
    MultiError::Invalid(msg.into())
}

// ---------------------------------------------------------------------------------------
// The schedule.

/// Something that does one task at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// Card `k`'s compute (its whole simulated program).
    Card(usize),
    /// The host CPU (data parallel with the CPU).
    Cpu,
    /// Card `k`'s port, host (or peer) to card.
    PortIn(usize),
    /// Card `k`'s port, card to host (or peer).
    PortOut(usize),
    /// The shared uplink, host to cards (`host_link.shared`).
    HostDown,
    /// The shared uplink, cards to host.
    HostUp,
}

/// Where a task runs, for reports and the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Card(usize),
    Cpu,
}

/// What a task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskKind {
    /// A card's simulated program (or the CPU's share).
    Compute,
    /// Host to card (or peer to card): counted on the receiving card's link.
    TransferIn,
    /// Card to host (or card to peer): counted on the sending card's link.
    TransferOut,
}

/// One task of the multi-card schedule.
#[derive(Clone, Debug)]
pub struct Task {
    pub label: String,
    pub kind: TaskKind,
    pub place: Place,
    /// For a peer-to-peer transfer: the receiving card (the task is on the sender's link).
    pub peer: Option<usize>,
    pub resources: Vec<Resource>,
    pub cycles: u64,
    pub bytes: u64,
    /// Micro-batch (0 for data parallel).
    pub micro: usize,
    /// For compute on a card: which simulation it runs (index into the run's reports).
    pub sim: Option<usize>,
    /// Starts after these tasks end.
    pub after_end: Vec<usize>,
    /// Starts after these tasks start.
    pub after_start: Vec<usize>,
    pub start: u64,
    pub end: u64,
}

impl Task {
    fn new(label: String, kind: TaskKind, place: Place, resources: Vec<Resource>) -> Task {
        Task {
            label,
            kind,
            place,
            peer: None,
            resources,
            cycles: 0,
            bytes: 0,
            micro: 0,
            sim: None,
            after_end: Vec::new(),
            after_start: Vec::new(),
            start: 0,
            end: 0,
        }
    }
}

/// Schedules `tasks` (see the module doc): fills `start` and `end`, returns the makespan.
/// Dependencies must name earlier tasks (later or missing ones are ignored).
///
/// Ready tasks wait in a heap keyed by their earliest start. Keys only grow (resources are
/// only ever taken, dependencies are fixed once scheduled), so a popped task whose key is
/// still its earliest start is the true minimum; a stale one is pushed back with its new
/// key. `O(n log n)` for `n` tasks with a bounded number of resources each.
pub fn schedule(tasks: &mut [Task]) -> u64 {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let n = tasks.len();
    let deps = |t: &Task, i: usize| -> Vec<usize> {
        let mut d: Vec<usize> = t
            .after_end
            .iter()
            .chain(&t.after_start)
            .copied()
            .filter(|&d| d < i)
            .collect();
        d.sort_unstable();
        d.dedup();
        d
    };
    let mut waiting = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, t) in tasks.iter().enumerate() {
        let d = deps(t, i);
        waiting[i] = d.len();
        for p in d {
            dependents[p].push(i);
        }
    }
    let mut free: HashMap<Resource, u64> = HashMap::new();
    let est = |tasks: &[Task], free: &HashMap<Resource, u64>, i: usize| -> u64 {
        let t = &tasks[i];
        let mut e = 0u64;
        for &d in t.after_end.iter().filter(|&&d| d < i) {
            e = e.max(tasks[d].end);
        }
        for &d in t.after_start.iter().filter(|&&d| d < i) {
            e = e.max(tasks[d].start);
        }
        for r in &t.resources {
            e = e.max(free.get(r).copied().unwrap_or(0));
        }
        e
    };
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    for (i, &w) in waiting.iter().enumerate() {
        if w == 0 {
            heap.push(Reverse((est(tasks, &free, i), i)));
        }
    }
    let mut makespan = 0;
    while let Some(Reverse((key, i))) = heap.pop() {
        let e = est(tasks, &free, i);
        if e > key {
            heap.push(Reverse((e, i)));
            continue;
        }
        let t = &mut tasks[i];
        t.start = e;
        t.end = e + t.cycles;
        for r in &t.resources {
            free.insert(*r, t.end);
        }
        makespan = makespan.max(t.end);
        for &c in &dependents[i] {
            waiting[c] -= 1;
            if waiting[c] == 0 {
                heap.push(Reverse((est(tasks, &free, c), c)));
            }
        }
    }
    makespan
}

/// The resources a host transfer to (`down`) or from card `k` holds.
fn host_port(cfg: &NpuConfig, k: usize, down: bool) -> Vec<Resource> {
    match (down, cfg.link_shared) {
        (true, false) => vec![Resource::PortIn(k)],
        (true, true) => vec![Resource::PortIn(k), Resource::HostDown],
        (false, false) => vec![Resource::PortOut(k)],
        (false, true) => vec![Resource::PortOut(k), Resource::HostUp],
    }
}

/// Per-card totals of a scheduled run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CardStats {
    /// Cycles computing.
    pub busy_cycles: u64,
    /// Bytes received (host or peer to card) and sent (card to host or peer).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Cycles its port was busy receiving and sending.
    pub link_in_cycles: u64,
    pub link_out_cycles: u64,
}

fn card_stats(tasks: &[Task], cards: usize) -> Vec<CardStats> {
    let mut s = vec![CardStats::default(); cards];
    for t in tasks {
        let Place::Card(k) = t.place else { continue };
        let Some(c) = s.get_mut(k) else { continue };
        match t.kind {
            TaskKind::Compute => c.busy_cycles += t.cycles,
            TaskKind::TransferIn => {
                c.bytes_in += t.bytes;
                c.link_in_cycles += t.cycles;
            }
            TaskKind::TransferOut => {
                c.bytes_out += t.bytes;
                c.link_out_cycles += t.cycles;
                if let Some(p) = t.peer.and_then(|p| s.get_mut(p)) {
                    p.bytes_in += t.bytes;
                    p.link_in_cycles += t.cycles;
                }
            }
        }
    }
    s
}

/// Simulates `g` on one card with its inputs already in the card's DRAM and its outputs
/// left there (the transfers are the schedule's tasks).
pub fn simulate_on_card(g: &Graph, cfg: &NpuConfig) -> Result<SimReport, NpuError> {
    let mut lo = LowerOptions::new(g.nodes.len());
    lo.inputs_on_device = true;
    lo.outputs_stay = true;
    crate::simulate_with(g, cfg, &lo)
}

/// The CPU's roofline time for the whole graph, seconds (the partitioner's per-node model).
pub fn cpu_seconds(g: &Graph, cpu: &CpuDevice) -> f64 {
    (0..g.nodes.len())
        .map(|i| cpu.node_time(g, NodeId(i as u32)))
        .sum()
}

// ---------------------------------------------------------------------------------------
// Data parallel.

/// Graphs for a number of rows, built on demand (compiled for that batch) and kept.
pub struct GraphCache<'a> {
    make: Box<dyn FnMut(usize) -> Result<Graph, String> + 'a>,
    graphs: HashMap<usize, Graph>,
}

impl<'a> GraphCache<'a> {
    /// `make(rows)` builds the optimized graph with every input's first dimension `rows`.
    pub fn new(make: impl FnMut(usize) -> Result<Graph, String> + 'a) -> GraphCache<'a> {
        GraphCache {
            make: Box::new(make),
            graphs: HashMap::new(),
        }
    }

    /// The graph for `rows` rows; checks that every input's first dimension is `rows`.
    pub fn get(&mut self, rows: usize) -> Result<&Graph, MultiError> {
        if !self.graphs.contains_key(&rows) {
            let g = (self.make)(rows).map_err(|msg| MultiError::Graph { rows, msg })?;
            for v in g.runtime_inputs() {
                let info = g.value(v);
                let first = info.ty.concrete_shape().and_then(|s| s.first().copied());
                if first != Some(rows) {
                    return Err(MultiError::Graph {
                        rows,
                        msg: format!(
                            "input `{}` has shape {:?}: data parallel needs every input's first \
                             dimension to be the batch",
                            info.name,
                            info.ty.concrete_shape()
                        ),
                    });
                }
            }
            self.graphs.insert(rows, g);
        }
        self.graphs.get(&rows).ok_or(MultiError::Graph {
            rows,
            msg: "not built".into(),
        })
    }
}

/// What to run data parallel.
#[derive(Clone, Debug)]
pub struct DataOptions {
    /// Cards (at least 1).
    pub cards: usize,
    /// Rows in the batch (at least `cards`).
    pub batch: usize,
    /// The host CPU takes rows too, at this roofline.
    pub cpu: Option<CpuDevice>,
}

/// One device's share of a data-parallel run.
#[derive(Clone, Debug)]
pub struct DeviceShare {
    /// `npu0`, `npu1`, ... or `cpu`.
    pub name: String,
    pub place: Place,
    /// Its rows of the batch.
    pub rows: Range<usize>,
    /// Estimated cycles per row (one row simulated, transfers included), used to split.
    pub row_cycles: u64,
    /// Simulated cycles of its slice (without transfers).
    pub compute_cycles: u64,
    /// When its outputs are back on the host (its last task's end; 0 with no rows).
    pub done: u64,
    /// Index of its simulation in [`DataRun::reports`] (cards with rows).
    pub sim: Option<usize>,
}

/// A scheduled data-parallel run.
#[derive(Clone, Debug)]
pub struct DataRun {
    pub batch: usize,
    pub cards: usize,
    pub devices: Vec<DeviceShare>,
    pub tasks: Vec<Task>,
    /// The card simulations (one per distinct slice size).
    pub reports: Vec<SimReport>,
    /// Rows of each report's slice.
    pub report_rows: Vec<usize>,
    /// The slowest device's end, transfers included.
    pub latency_cycles: u64,
    pub card_stats: Vec<CardStats>,
    /// Cycles the CPU computed.
    pub cpu_busy_cycles: u64,
    /// Rows per device as the one-row estimates split them, before rows were moved off
    /// the slowest device while the simulated latency dropped.
    pub estimate_rows: Vec<usize>,
}

/// A data-parallel run and one card running the whole batch, both simulated.
#[derive(Clone, Debug)]
pub struct DataReport {
    pub config: NpuConfig,
    pub run: DataRun,
    pub single: DataRun,
}

impl DataRun {
    /// Rows per second.
    pub fn throughput(&self, cfg: &NpuConfig) -> f64 {
        let s = cfg.seconds(self.latency_cycles);
        if s > 0.0 {
            self.batch as f64 / s
        } else {
            0.0
        }
    }
}

impl DataReport {
    /// Throughput of the split run over one card's.
    pub fn speedup(&self) -> f64 {
        if self.run.latency_cycles == 0 {
            return 0.0;
        }
        self.single.latency_cycles as f64 / self.run.latency_cycles as f64
    }
}

/// Splits `batch` rows over devices with the given cycles per row (see the module doc):
/// every device whose index is below `min_one` first gets a row, then each remaining row
/// goes to the device that would finish soonest with it (ties: lower index).
pub fn split_rows(batch: usize, row_cycles: &[u64], min_one: usize) -> Vec<usize> {
    let mut rows = vec![0usize; row_cycles.len()];
    let mut left = batch;
    for r in rows.iter_mut().take(min_one) {
        if left == 0 {
            break;
        }
        *r = 1;
        left -= 1;
    }
    for _ in 0..left {
        let best = (0..rows.len()).min_by_key(|&d| {
            (
                (rows[d] as u128 + 1) * row_cycles[d].max(1) as u128,
                d as u128,
            )
        });
        if let Some(d) = best {
            rows[d] += 1;
        }
    }
    rows
}

/// Tensors by name with their bytes.
type NamedBytes = Vec<(String, u64)>;

/// The graph's runtime inputs and computed outputs with their bytes on the link.
fn io_bytes(g: &Graph, cfg: &NpuConfig) -> (NamedBytes, NamedBytes) {
    let ins = g
        .runtime_inputs()
        .map(|v| (g.value(v).name.clone(), lower::value_bytes(g, v, cfg)))
        .collect();
    let runtime: HashSet<ValueId> = g.runtime_inputs().collect();
    let outs = g
        .outputs
        .iter()
        .filter(|v| g.constant(**v).is_none() && !runtime.contains(v))
        .map(|&v| (g.value(v).name.clone(), lower::value_bytes(g, v, cfg)))
        .collect();
    (ins, outs)
}

/// Runs `batch` rows data parallel on `cards` cards (and the CPU when given).
pub fn data_parallel(
    cfg: &NpuConfig,
    opts: &DataOptions,
    graphs: &mut GraphCache,
) -> Result<DataReport, MultiError> {
    check_cards(opts.cards)?;
    if opts.batch < opts.cards {
        return Err(invalid(format!(
            "data parallel: a batch of {} row(s) cannot feed {} cards (every card needs at \
             least one row; use --batch {} or more)",
            opts.batch, opts.cards, opts.cards
        )));
    }
    let mut sims: HashMap<usize, SimReport> = HashMap::new();
    let run = data_run(
        cfg,
        opts.cards,
        opts.cpu.as_ref(),
        opts.batch,
        graphs,
        &mut sims,
    )?;
    let single = data_run(cfg, 1, None, opts.batch, graphs, &mut sims)?;
    Ok(DataReport {
        config: cfg.clone(),
        run,
        single,
    })
}

fn check_cards(cards: usize) -> Result<(), MultiError> {
    if cards == 0 {
        return Err(invalid("--cards must be at least 1"));
    }
    if cards > MAX_CARDS {
        return Err(invalid(format!(
            "--cards {cards}: at most {MAX_CARDS} cards are simulated"
        )));
    }
    Ok(())
}

fn card_sim<'s>(
    cfg: &NpuConfig,
    rows: usize,
    graphs: &mut GraphCache,
    sims: &'s mut HashMap<usize, SimReport>,
) -> Result<&'s SimReport, MultiError> {
    if let std::collections::hash_map::Entry::Vacant(e) = sims.entry(rows) {
        let g = graphs.get(rows)?;
        let r = simulate_on_card(g, cfg).map_err(|source| MultiError::Npu {
            what: format!("simulating {rows} row(s) on one card"),
            source,
        })?;
        e.insert(r);
    }
    sims.get(&rows).ok_or(MultiError::Graph {
        rows,
        msg: "not simulated".into(),
    })
}

fn data_run(
    cfg: &NpuConfig,
    cards: usize,
    cpu: Option<&CpuDevice>,
    batch: usize,
    graphs: &mut GraphCache,
    sims: &mut HashMap<usize, SimReport>,
) -> Result<DataRun, MultiError> {
    // Cycles per row: one row simulated on each device kind.
    let mut row_cycles = Vec::new();
    let one_card = {
        let compute = card_sim(cfg, 1, graphs, sims)?.total_cycles;
        let (ins, outs) = io_bytes(graphs.get(1)?, cfg);
        let link: u64 = ins
            .iter()
            .chain(&outs)
            .map(|(_, b)| cfg.link_cycles(*b))
            .sum();
        compute + link
    };
    row_cycles.extend(std::iter::repeat_n(one_card, cards));
    if let Some(c) = cpu {
        row_cycles.push(cfg.cycles(cpu_seconds(graphs.get(1)?, c)));
    }
    let estimate = split_rows(batch, &row_cycles, cards);
    let mut best = run_split(cfg, cards, cpu, batch, &estimate, &row_cycles, graphs, sims)?;
    // Times are not linear in rows (weights load once per slice, transfers pay a latency):
    // move a row off the slowest device while the simulated latency drops.
    for _ in 0..batch {
        let Some(slow) = (0..best.devices.len()).max_by_key(|&d| (best.devices[d].done, d)) else {
            break;
        };
        let rows: Vec<usize> = best.devices.iter().map(|d| d.rows.len()).collect();
        if rows[slow] <= usize::from(slow < cards) {
            break;
        }
        let mut improved = None;
        // One target per kind of device and row count: identical cards with as many rows
        // are interchangeable.
        let mut tried: HashSet<(bool, usize)> = HashSet::new();
        for to in 0..rows.len() {
            if to == slow || !tried.insert((to >= cards, rows[to])) {
                continue;
            }
            let mut cand = rows.clone();
            cand[slow] -= 1;
            cand[to] += 1;
            let r = run_split(cfg, cards, cpu, batch, &cand, &row_cycles, graphs, sims)?;
            let cur = improved
                .as_ref()
                .map_or(best.latency_cycles, |x: &DataRun| x.latency_cycles);
            if r.latency_cycles < cur {
                improved = Some(r);
            }
        }
        match improved {
            Some(r) => best = r,
            None => break,
        }
    }
    best.estimate_rows = estimate;
    Ok(best)
}

/// Schedules a given split (`rows` per device: the cards, then the CPU).
#[allow(clippy::too_many_arguments)]
fn run_split(
    cfg: &NpuConfig,
    cards: usize,
    cpu: Option<&CpuDevice>,
    batch: usize,
    rows: &[usize],
    row_cycles: &[u64],
    graphs: &mut GraphCache,
    sims: &mut HashMap<usize, SimReport>,
) -> Result<DataRun, MultiError> {
    let mut devices = Vec::new();
    let mut tasks: Vec<Task> = Vec::new();
    let mut reports = Vec::new();
    let mut report_rows = Vec::new();
    let mut first = 0;
    let mut cpu_busy = 0;
    for (d, &r) in rows.iter().enumerate() {
        let is_cpu = d >= cards;
        let place = if is_cpu { Place::Cpu } else { Place::Card(d) };
        let name = if is_cpu {
            "cpu".to_string()
        } else {
            format!("npu{d}")
        };
        let range = first..first + r;
        first += r;
        let mut share = DeviceShare {
            name: name.clone(),
            place,
            rows: range.clone(),
            row_cycles: row_cycles[d],
            compute_cycles: 0,
            done: 0,
            sim: None,
        };
        if r == 0 {
            devices.push(share);
            continue;
        }
        let rows_label = format!("rows {}..{}", range.start, range.end);
        if is_cpu {
            let c = cpu.ok_or_else(|| invalid("no CPU given"))?;
            let cycles = cfg.cycles(cpu_seconds(graphs.get(r)?, c));
            let mut t = Task::new(
                format!("cpu {rows_label}"),
                TaskKind::Compute,
                place,
                vec![Resource::Cpu],
            );
            t.cycles = cycles;
            share.compute_cycles = cycles;
            cpu_busy += cycles;
            tasks.push(t);
        } else {
            let sim = match report_rows.iter().position(|&x| x == r) {
                Some(i) => i,
                None => {
                    reports.push(card_sim(cfg, r, graphs, sims)?.clone());
                    report_rows.push(r);
                    reports.len() - 1
                }
            };
            let (ins, outs) = io_bytes(graphs.get(r)?, cfg);
            let mut deps = Vec::new();
            for (vname, bytes) in ins {
                let mut t = Task::new(
                    format!("{vname} {rows_label} to {name}"),
                    TaskKind::TransferIn,
                    place,
                    host_port(cfg, d, true),
                );
                t.cycles = cfg.link_cycles(bytes);
                t.bytes = bytes;
                deps.push(tasks.len());
                tasks.push(t);
            }
            let mut t = Task::new(
                format!("{name} {rows_label}"),
                TaskKind::Compute,
                place,
                vec![Resource::Card(d)],
            );
            t.cycles = reports[sim].total_cycles;
            t.sim = Some(sim);
            t.after_end = deps;
            share.compute_cycles = t.cycles;
            share.sim = Some(sim);
            let compute = tasks.len();
            tasks.push(t);
            for (vname, bytes) in outs {
                let mut t = Task::new(
                    format!("{vname} {rows_label} to host"),
                    TaskKind::TransferOut,
                    place,
                    host_port(cfg, d, false),
                );
                t.cycles = cfg.link_cycles(bytes);
                t.bytes = bytes;
                t.after_end = vec![compute];
                tasks.push(t);
            }
        }
        devices.push(share);
    }
    let latency = schedule(&mut tasks);
    for (d, share) in devices.iter_mut().enumerate() {
        let place = if d >= cards {
            Place::Cpu
        } else {
            Place::Card(d)
        };
        share.done = tasks
            .iter()
            .filter(|t| t.place == place)
            .map(|t| t.end)
            .max()
            .unwrap_or(0);
    }
    let card_stats = card_stats(&tasks, cards);
    Ok(DataRun {
        batch,
        cards,
        devices,
        tasks,
        reports,
        report_rows,
        latency_cycles: latency,
        card_stats,
        cpu_busy_cycles: cpu_busy,
        estimate_rows: rows.to_vec(),
    })
}

/// Rows `r` of `t` along dimension 0.
pub fn slice_rows(t: &Tensor, r: &Range<usize>) -> Option<Tensor> {
    millrace_ops::tensor::rows::slice_rows("", t, r).ok()
}

pub use millrace_ops::tensor::rows::concat_rows;

/// The data-parallel outputs: each device's slice of `inputs` evaluated on its graph (a
/// card's in its simulated finish order), joined along dimension 0.
pub fn data_outputs(
    run: &DataRun,
    graphs: &mut GraphCache,
    inputs: &[(String, Tensor)],
) -> Result<Vec<(String, Tensor)>, MultiError> {
    for (n, t) in inputs {
        if t.shape().first() != Some(&run.batch) {
            return Err(invalid(format!(
                "input `{n}` has shape {:?}: its first dimension must be the batch ({})",
                t.shape(),
                run.batch
            )));
        }
    }
    let mut parts = Vec::new();
    for d in &run.devices {
        if d.rows.is_empty() {
            continue;
        }
        let slice: Vec<(String, Tensor)> = inputs
            .iter()
            .map(|(n, t)| {
                slice_rows(t, &d.rows)
                    .map(|s| (n.clone(), s))
                    .ok_or_else(|| invalid(format!("input `{n}`: cannot take rows {:?}", d.rows)))
            })
            .collect::<Result<_, _>>()?;
        let g = graphs.get(d.rows.len())?;
        let order: Vec<usize> = match d.sim.and_then(|s| run.reports.get(s)) {
            Some(r) => r.finish_order(g),
            None => (0..g.nodes.len()).collect(),
        };
        let outs = functional::eval_in_order(g, &slice, &order).map_err(|source| {
            MultiError::Functional {
                what: format!("{} (rows {}..{})", d.name, d.rows.start, d.rows.end),
                source,
            }
        })?;
        parts.push(outs);
    }
    concat_rows(parts).map_err(invalid)
}

// ---------------------------------------------------------------------------------------
// Pipeline parallel.

/// What to run pipeline parallel.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Cards = stages (at least 1).
    pub cards: usize,
    /// Micro-batches flowing through (at least 1).
    pub micro_batches: usize,
}

/// One pipeline stage (on card `index`).
#[derive(Clone, Debug)]
pub struct Stage {
    /// Nodes of the micro-batch graph it runs.
    pub nodes: Range<usize>,
    /// Its sub-graph.
    pub graph: Graph,
    /// Values of the micro-batch graph it reads (its sub-graph's inputs, in order).
    pub inputs: Vec<ValueId>,
    /// Values of the micro-batch graph it produces for later stages or the caller (its
    /// sub-graph's outputs, in order).
    pub outputs: Vec<ValueId>,
    /// Its share of the node times the cut balanced.
    pub estimate_cycles: u64,
    /// Its simulated time.
    pub cycles: u64,
    pub report: SimReport,
}

/// A scheduled pipeline.
#[derive(Clone, Debug)]
pub struct PipeRun {
    pub stages: Vec<Stage>,
    pub tasks: Vec<Task>,
    /// Per micro-batch: its first task's start and its outputs' arrival on the host.
    pub micro: Vec<(u64, u64)>,
    /// All micro-batches done.
    pub total_cycles: u64,
    /// First compute start to last compute end.
    pub window: (u64, u64),
    pub card_stats: Vec<CardStats>,
}

impl PipeRun {
    /// Micro-batches per second.
    pub fn throughput(&self, cfg: &NpuConfig) -> f64 {
        let s = cfg.seconds(self.total_cycles);
        if s > 0.0 {
            self.micro.len() as f64 / s
        } else {
            0.0
        }
    }

    /// Card `k`'s compute over the total time.
    pub fn utilization(&self, k: usize) -> f64 {
        match self.card_stats.get(k) {
            Some(s) if self.total_cycles > 0 => s.busy_cycles as f64 / self.total_cycles as f64,
            _ => 0.0,
        }
    }

    /// Idle card time in the compute window (first compute start to last compute end):
    /// `1 - sum of compute / (cards x window)`. For `K` balanced stages, `M` micro-batches and
    /// free transfers it is `(K - 1) / (M + K - 1)`.
    pub fn bubble_fraction(&self) -> f64 {
        let w = self.window.1.saturating_sub(self.window.0);
        let k = self.stages.len();
        if w == 0 || k == 0 {
            return 0.0;
        }
        let busy: u64 = self.card_stats.iter().map(|s| s.busy_cycles).sum();
        1.0 - busy as f64 / (k as f64 * w as f64)
    }

    /// Mean latency of a micro-batch (first task start to outputs on the host), cycles.
    pub fn mean_latency(&self) -> f64 {
        if self.micro.is_empty() {
            return 0.0;
        }
        self.micro.iter().map(|(s, e)| (e - s) as f64).sum::<f64>() / self.micro.len() as f64
    }
}

/// A pipeline and one card running the micro-batches one after another.
#[derive(Clone, Debug)]
pub struct PipelineReport {
    pub config: NpuConfig,
    pub run: PipeRun,
    pub single: PipeRun,
    /// Per node of the micro-batch graph: the time charged to it for the cut.
    pub node_cycles: Vec<u64>,
}

impl PipelineReport {
    /// Throughput over one card's.
    pub fn speedup(&self) -> f64 {
        if self.run.total_cycles == 0 {
            return 0.0;
        }
        self.single.total_cycles as f64 / self.run.total_cycles as f64
    }
}

/// Per node: the advance of the running finish time it causes in `r` (sums to the last
/// node's effective finish).
pub fn node_cycles(g: &Graph, r: &SimReport) -> Vec<u64> {
    let dag = millrace_schedule::Dag::build(g);
    let n = g.nodes.len().min(r.nodes.len());
    let mut eff = vec![0u64; n];
    let mut out = vec![0u64; g.nodes.len()];
    let mut running = 0u64;
    for i in 0..n {
        let own = r.nodes[i].span.map_or(0, |s| s.1);
        let pre = dag
            .preds(i)
            .iter()
            .filter(|&&p| p < n)
            .map(|&p| eff[p])
            .max()
            .unwrap_or(0);
        eff[i] = own.max(pre);
        out[i] = eff[i].saturating_sub(running);
        running = running.max(eff[i]);
    }
    out
}

/// Runs `opts.micro_batches` micro-batches of `g` (the micro-batch graph) through a
/// pipeline of `opts.cards` cards, and through one card.
pub fn pipeline(
    g: &Graph,
    cfg: &NpuConfig,
    opts: &PipelineOptions,
) -> Result<PipelineReport, MultiError> {
    check_cards(opts.cards)?;
    if opts.micro_batches == 0 {
        return Err(invalid("--micro-batches must be at least 1"));
    }
    if opts.micro_batches > MAX_MICRO_BATCHES {
        return Err(invalid(format!(
            "--micro-batches {}: at most {MAX_MICRO_BATCHES} are simulated",
            opts.micro_batches
        )));
    }
    let whole = simulate_on_card(g, cfg).map_err(|source| MultiError::Npu {
        what: "simulating the micro-batch on one card".into(),
        source,
    })?;
    let costs = node_cycles(g, &whole);
    let fcosts: Vec<f64> = costs.iter().map(|&c| c as f64).collect();
    let bounds = balanced_ranges(&fcosts, &allowed_cuts(g), opts.cards)
        .map_err(|e| invalid(e.to_string()))?;
    let run = pipe_run(g, cfg, &bounds, &costs, opts.micro_batches, None)?;
    let n = g.nodes.len();
    #[allow(clippy::single_range_in_vec_init)]
    let single = pipe_run(g, cfg, &[0..n], &costs, opts.micro_batches, Some(whole))?;
    Ok(PipelineReport {
        config: cfg.clone(),
        run,
        single,
        node_cycles: costs,
    })
}

fn pipe_run(
    g: &Graph,
    cfg: &NpuConfig,
    bounds: &[Range<usize>],
    costs: &[u64],
    m: usize,
    whole: Option<SimReport>,
) -> Result<PipeRun, MultiError> {
    let built = g
        .stage_graphs(bounds)
        .map_err(|e| invalid(e.to_string()))?
        .stages;
    let mut stages = Vec::with_capacity(built.len());
    let mut whole = whole;
    for (s, part) in built.into_iter().enumerate() {
        let (sub, inputs, outputs) = (part.graph, part.inputs, part.outputs);
        let report = match whole.take() {
            Some(r) if bounds.len() == 1 => r,
            _ => simulate_on_card(&sub, cfg).map_err(|source| MultiError::Npu {
                what: format!("simulating stage {s}"),
                source,
            })?,
        };
        stages.push(Stage {
            nodes: bounds[s].clone(),
            estimate_cycles: costs[bounds[s].clone()].iter().sum(),
            cycles: report.total_cycles,
            graph: sub,
            inputs,
            outputs,
            report,
        });
    }
    let k = stages.len();
    let runtime: HashSet<ValueId> = g.runtime_inputs().collect();
    let is_output: HashSet<ValueId> = g.outputs.iter().copied().collect();
    let mut producer: HashMap<ValueId, usize> = HashMap::new();
    for (s, st) in stages.iter().enumerate() {
        for &v in &st.outputs {
            producer.insert(v, s);
        }
    }
    let mut tasks: Vec<Task> = Vec::new();
    let mut compute: Vec<Vec<usize>> = vec![Vec::with_capacity(m); k];
    for j in 0..m {
        let mut on_host: HashMap<ValueId, usize> = HashMap::new();
        for s in 0..k {
            let mut deps = Vec::new();
            for &v in &stages[s].inputs {
                let bytes = lower::value_bytes(g, v, cfg);
                let vname = &g.value(v).name;
                if runtime.contains(&v) {
                    let mut t = Task::new(
                        format!("{vname} #{j} to npu{s}"),
                        TaskKind::TransferIn,
                        Place::Card(s),
                        host_port(cfg, s, true),
                    );
                    t.cycles = cfg.link_cycles(bytes);
                    t.bytes = bytes;
                    t.micro = j;
                    if j > 0 {
                        t.after_start = vec![compute[s][j - 1]];
                    }
                    deps.push(tasks.len());
                    tasks.push(t);
                    continue;
                }
                let Some(&p) = producer.get(&v) else {
                    return Err(invalid(format!(
                        "stage {s} reads `{vname}`, which no stage produces"
                    )));
                };
                if cfg.peer_to_peer {
                    let mut t = Task::new(
                        format!("{vname} #{j} npu{p} to npu{s}"),
                        TaskKind::TransferOut,
                        Place::Card(p),
                        vec![Resource::PortOut(p), Resource::PortIn(s)],
                    );
                    t.peer = Some(s);
                    t.cycles = cfg.link_cycles(bytes);
                    t.bytes = bytes;
                    t.micro = j;
                    t.after_end = vec![compute[p][j]];
                    deps.push(tasks.len());
                    tasks.push(t);
                    continue;
                }
                let up = match on_host.get(&v) {
                    Some(&u) => u,
                    None => {
                        let u = tasks.len();
                        tasks.push(up_task(g, cfg, v, p, j, bytes, compute[p][j]));
                        on_host.insert(v, u);
                        u
                    }
                };
                let mut t = Task::new(
                    format!("{vname} #{j} to npu{s}"),
                    TaskKind::TransferIn,
                    Place::Card(s),
                    host_port(cfg, s, true),
                );
                t.cycles = cfg.link_cycles(bytes);
                t.bytes = bytes;
                t.micro = j;
                t.after_end = vec![up];
                deps.push(tasks.len());
                tasks.push(t);
            }
            if j > 0 {
                deps.push(compute[s][j - 1]);
            }
            let mut t = Task::new(
                format!("stage {s} #{j}"),
                TaskKind::Compute,
                Place::Card(s),
                vec![Resource::Card(s)],
            );
            t.cycles = stages[s].cycles;
            t.micro = j;
            t.sim = Some(s);
            t.after_end = deps;
            compute[s].push(tasks.len());
            tasks.push(t);
            for &v in &stages[s].outputs {
                if is_output.contains(&v) && !on_host.contains_key(&v) {
                    let bytes = lower::value_bytes(g, v, cfg);
                    on_host.insert(v, tasks.len());
                    tasks.push(up_task(g, cfg, v, s, j, bytes, compute[s][j]));
                }
            }
        }
    }
    let total = schedule(&mut tasks);
    let mut micro = vec![(u64::MAX, 0u64); m];
    let mut window = (u64::MAX, 0u64);
    for t in &tasks {
        if let Some(x) = micro.get_mut(t.micro) {
            x.0 = x.0.min(t.start);
            x.1 = x.1.max(t.end);
        }
        if t.kind == TaskKind::Compute {
            window.0 = window.0.min(t.start);
            window.1 = window.1.max(t.end);
        }
    }
    for x in &mut micro {
        if x.0 == u64::MAX {
            x.0 = 0;
        }
    }
    if window.0 == u64::MAX {
        window.0 = 0;
    }
    let card_stats = card_stats(&tasks, k);
    Ok(PipeRun {
        stages,
        tasks,
        micro,
        total_cycles: total,
        window,
        card_stats,
    })
}

fn up_task(
    g: &Graph,
    cfg: &NpuConfig,
    v: ValueId,
    card: usize,
    j: usize,
    bytes: u64,
    after: usize,
) -> Task {
    let mut t = Task::new(
        format!("{} #{j} to host", g.value(v).name),
        TaskKind::TransferOut,
        Place::Card(card),
        host_port(cfg, card, false),
    );
    t.cycles = cfg.link_cycles(bytes);
    t.bytes = bytes;
    t.micro = j;
    t.after_end = vec![after];
    t
}

/// The pipeline's outputs for one micro-batch: the stages' sub-graphs evaluated in turn
/// (each in its simulated finish order), values passed between them by name.
pub fn pipeline_outputs(
    g: &Graph,
    run: &PipeRun,
    inputs: &[(String, Tensor)],
) -> Result<Vec<(String, Tensor)>, MultiError> {
    let mut vals: HashMap<ValueId, Tensor> = HashMap::new();
    for v in g.runtime_inputs() {
        let name = &g.value(v).name;
        let t = inputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| MultiError::Functional {
                what: "pipeline".into(),
                source: FunctionalError::MissingInput(name.clone()),
            })?;
        vals.insert(v, t);
    }
    for (s, st) in run.stages.iter().enumerate() {
        let mut ins = Vec::with_capacity(st.inputs.len());
        for (&v, &id) in st.inputs.iter().zip(&st.graph.inputs) {
            let t = vals
                .get(&v)
                .cloned()
                .ok_or_else(|| MultiError::Functional {
                    what: format!("stage {s}"),
                    source: FunctionalError::MissingInput(g.value(v).name.clone()),
                })?;
            ins.push((st.graph.value(id).name.clone(), t));
        }
        let order = st.report.finish_order(&st.graph);
        let outs = functional::eval_in_order(&st.graph, &ins, &order).map_err(|source| {
            MultiError::Functional {
                what: format!("stage {s}"),
                source,
            }
        })?;
        for (&v, (_, t)) in st.outputs.iter().zip(outs) {
            vals.insert(v, t);
        }
    }
    g.outputs
        .iter()
        .map(|&v| {
            let name = g.value(v).name.clone();
            let t = match g.constant(v) {
                Some(c) => Some(c.as_ref().clone()),
                None => vals.get(&v).cloned(),
            };
            t.map(|t| (name.clone(), t)).ok_or(MultiError::Functional {
                what: "pipeline".into(),
                source: FunctionalError::Output(name),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Trace.

/// Micro-batches whose every unit command goes into a trace by default (later ones show as
/// one slice per stage on the card's `compute` track, which keeps long runs' traces small).
pub const TRACE_DETAIL_MICRO_BATCHES: usize = 16;

/// Chrome trace of a multi-card run: one process per card (a `compute` track with one
/// slice per stage or slice run, its units' tracks from its simulation placed at that
/// run's start for micro-batches below `detail`, and its link in and out), one for the
/// host CPU when it computes; timestamps in microseconds of simulated time.
pub fn chrome_trace(
    cfg: &NpuConfig,
    cards: usize,
    tasks: &[Task],
    reports: &[&SimReport],
    detail: usize,
) -> serde_json::Value {
    use serde_json::json;
    let us = |c: u64| cfg.seconds(c) * 1e6;
    let mut events = Vec::new();
    const COMPUTE: u64 = 0;
    const LINK_IN: u64 = 200;
    const LINK_OUT: u64 = 201;
    for k in 0..cards {
        let pid = k as u64 + 1;
        events.push(json!({"ph": "M", "pid": pid, "name": "process_name",
            "args": {"name": format!("npu{k} ({})", cfg.name)}}));
        events.push(json!({"ph": "M", "pid": pid, "name": "process_sort_index",
            "args": {"sort_index": pid}}));
        let mut units: Vec<crate::Unit> = Vec::new();
        for r in reports {
            for u in &r.units {
                if !units.contains(&u.unit) {
                    units.push(u.unit);
                }
            }
            if r.program
                .commands
                .iter()
                .any(|c| c.unit == crate::Unit::Host)
                && !units.contains(&crate::Unit::Host)
            {
                units.push(crate::Unit::Host);
            }
        }
        let mut tracks: Vec<(u64, String)> = units
            .into_iter()
            .filter(|u| *u != crate::Unit::HostLink)
            .map(|u| (crate::trace::tid(u), u.name()))
            .collect();
        tracks.push((COMPUTE, "compute".into()));
        tracks.push((LINK_IN, "link in".into()));
        tracks.push((LINK_OUT, "link out".into()));
        for (tid, name) in tracks {
            events.push(
                json!({"ph": "M", "pid": pid, "tid": tid, "name": "thread_name",
                "args": {"name": name}}),
            );
            events.push(
                json!({"ph": "M", "pid": pid, "tid": tid, "name": "thread_sort_index",
                "args": {"sort_index": tid}}),
            );
        }
    }
    let cpu_pid = cards as u64 + 1;
    if tasks.iter().any(|t| t.place == Place::Cpu) {
        events.push(json!({"ph": "M", "pid": cpu_pid, "name": "process_name",
            "args": {"name": "host CPU"}}));
    }
    for t in tasks {
        let base_args = json!({"cycles": t.cycles, "micro_batch": t.micro, "bytes": t.bytes});
        match (t.kind, t.place) {
            (TaskKind::Compute, Place::Cpu) => {
                events.push(json!({"ph": "X", "pid": cpu_pid, "tid": 1, "name": t.label,
                    "ts": us(t.start), "dur": us(t.cycles), "args": base_args}));
            }
            (TaskKind::Compute, Place::Card(k)) => {
                let pid = k as u64 + 1;
                events.push(
                    json!({"ph": "X", "pid": pid, "tid": COMPUTE, "name": t.label,
                    "ts": us(t.start), "dur": us(t.cycles), "args": base_args}),
                );
                let Some(r) = t.sim.and_then(|s| reports.get(s)) else {
                    continue;
                };
                if t.micro >= detail {
                    continue;
                }
                for (i, c) in r.program.commands.iter().enumerate() {
                    let (s, e) = (r.timeline.start[i], r.timeline.end[i]);
                    let mut args = json!({"cycles": c.cycles, "micro_batch": t.micro});
                    if c.bytes > 0 {
                        args["bytes"] = json!(c.bytes);
                    }
                    events.push(json!({"ph": "X", "pid": pid,
                        "tid": crate::trace::tid(c.unit),
                        "name": format!("{} ({})", c.label, t.label),
                        "ts": us(t.start + s), "dur": us(e - s), "args": args}));
                }
            }
            (TaskKind::TransferIn, Place::Card(k)) => {
                events.push(json!({"ph": "X", "pid": k as u64 + 1, "tid": LINK_IN,
                    "name": t.label, "ts": us(t.start), "dur": us(t.cycles), "args": base_args}));
            }
            (TaskKind::TransferOut, Place::Card(k)) => {
                events.push(json!({"ph": "X", "pid": k as u64 + 1, "tid": LINK_OUT,
                    "name": t.label, "ts": us(t.start), "dur": us(t.cycles), "args": base_args}));
                if let Some(p) = t.peer {
                    events.push(json!({"ph": "X", "pid": p as u64 + 1, "tid": LINK_IN,
                        "name": t.label, "ts": us(t.start), "dur": us(t.cycles),
                        "args": base_args}));
                }
            }
            _ => {}
        }
    }
    json!({"traceEvents": events, "displayTimeUnit": "ns"})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(res: Vec<Resource>, cycles: u64, after: Vec<usize>) -> Task {
        let mut t = Task::new(String::new(), TaskKind::Compute, Place::Card(0), res);
        t.cycles = cycles;
        t.after_end = after;
        t
    }

    #[test]
    fn schedule_is_fifo_on_resources_and_respects_dependencies() {
        use Resource::*;
        let mut t = vec![
            task(vec![Card(0)], 10, vec![]), // 0..10
            task(vec![Card(1)], 5, vec![0]), // 10..15
            task(vec![Card(0)], 10, vec![]), // 10..20
            task(vec![Card(1)], 5, vec![2]), // 20..25
            task(vec![HostUp], 3, vec![]),   // 0..3
            task(vec![Card(1)], 2, vec![]),  // 0..2: free before task 1 needs it
        ];
        let span = schedule(&mut t);
        let starts: Vec<u64> = t.iter().map(|x| x.start).collect();
        assert_eq!(starts, vec![0, 10, 10, 20, 0, 0]);
        assert_eq!(span, 25);
    }

    #[test]
    fn rows_split_by_speed_every_card_gets_one() {
        // Two cards of 10 cycles a row and a CPU of 30: 8 rows -> 4, 3, 1 (makespan 40;
        // giving the CPU a second row would take it to 60). Ties go to the lower index.
        assert_eq!(split_rows(8, &[10, 10, 30], 2), vec![4, 3, 1]);
        assert_eq!(split_rows(2, &[10, 10, 1000], 2), vec![1, 1, 0]);
        assert_eq!(split_rows(7, &[10, 10], 2), vec![4, 3]);
        // A slow card still gets its row.
        assert_eq!(split_rows(3, &[1, 1000], 2), vec![2, 1]);
    }
}
