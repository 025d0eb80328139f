//! Partitioning: every node of an optimized graph placed on one device, by what each device
//! supports, what it costs there, and what moving values between devices costs.
//!
//! # Cost model
//!
//! A placement's estimated latency is the sum of each node's
//! [`Device::node_time`] on its device (devices run one after another: sequential over
//! devices) plus every transfer. Memory is either host memory (the CPU and its core groups,
//! [`Device::is_host`]) or one accelerator's own memory. A value produced in accelerator
//! `A`'s memory and read anywhere else is downloaded once to the host
//! ([`Device::download_time`]); each other accelerator `B` that reads it then pays one
//! upload ([`Device::upload_time`]): `A -> host -> B`. Graph inputs start in host memory
//! and graph outputs must end there. Constants (weights) are loaded onto a device once, at
//! load time, and cost nothing per inference; they count against the device's
//! [`Device::memory_bytes`] with a working-set estimate (the largest inputs + outputs of
//! one node placed there). A node whose activations have an unknown size cannot go to an
//! accelerator (its transfers could not be costed).
//!
//! # Algorithm
//!
//! 1. **Support.** Each node gets the devices that support it (and whose memory can hold
//!    its weights and activations). A node no accelerator takes falls back to a host device;
//!    every refusal is recorded with its reason ([`Fallback`]). A node no device supports is
//!    an error.
//! 2. **Dynamic programming over the topological order** (a Viterbi pass): the nodes are
//!    taken in order as if they formed a chain; for each device `d` the pass keeps the
//!    cheapest placement of the nodes so far that puts the latest node on `d`. Placing node
//!    `i` on `d` after a given prefix costs its time on `d` plus the transfers its inputs
//!    then need, which the prefix determines exactly (where each input was produced and
//!    which earlier readers already brought it to the host or to `d`); a graph output
//!    placed on an accelerator pays its download. Summing these increments over a whole
//!    placement gives exactly its cost, so the pass sees transfers a greedy choice would
//!    not: a run of convolutions moves to the accelerator even when the first one alone
//!    would not pay for the upload of its input.
//! 3. **Memory.** While an accelerator's weights and working set exceed its memory, the
//!    node whose move back to its best other device costs least per weight byte freed is
//!    moved (recorded as a fallback).
//! 4. **Ping-pong removal** (local search, repeated until nothing improves, at most
//!    [`PartitionOptions::max_rounds`] rounds): every maximal run of consecutive nodes on
//!    one device (an island) is tried whole on each other device, then every single node;
//!    a change is kept when it lowers the total cost and keeps every device within its
//!    memory. This removes islands too small to pay for the copies around them, and joins
//!    runs split by a node that was slightly cheaper on the other side.
//!
//! The DP is exact for a chain whose values are each read once; for other graphs steps
//! 2-4 are a heuristic (optimal placement of a DAG with transfer costs is NP-hard).
//! Cost: `O(N D^2 (in-degree + readers))` for the DP and `O(rounds (R + N) D (N + E))`
//! for the refinement, for `N` nodes, `E` edges, `D` devices and `R` islands.
use crate::device::Device;
use crate::DeviceError;
use millrace_ir::{Graph, NodeId, ValueId};
use std::collections::{HashMap, HashSet};
use std::ops::Range;

/// Where a value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// Host memory (every host device computes in it).
    Host,
    /// The memory of the accelerator at this index of the device list.
    Device(usize),
}

/// One copy of a value over a host link, inserted at a device boundary.
#[derive(Clone, Debug, PartialEq)]
pub struct Transfer {
    pub value: ValueId,
    /// The value's name in the graph.
    pub name: String,
    pub from: Location,
    pub to: Location,
    pub bytes: u64,
    /// Estimated seconds.
    pub time_s: f64,
}

/// A device that could not take a node, and why; the node runs elsewhere.
#[derive(Clone, Debug, PartialEq)]
pub struct Fallback {
    pub node: NodeId,
    /// Index of the device that refused it.
    pub device: usize,
    pub reason: String,
}

/// What one device does in a placement.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceSummary {
    pub name: String,
    /// Nodes placed on it.
    pub nodes: usize,
    /// Estimated seconds of compute per inference.
    pub compute_s: f64,
    /// Weight bytes it holds (constants read by its nodes, each counted once).
    pub weight_bytes: u64,
    /// Largest input + output bytes of one of its nodes (the working-set estimate).
    pub working_set_bytes: u64,
    /// Its memory, if limited.
    pub memory_bytes: Option<u64>,
}

/// A graph's nodes placed on devices.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// Device index of each node, in graph order.
    pub node_device: Vec<usize>,
    /// Estimated seconds of each node on its device.
    pub node_time_s: Vec<f64>,
    /// The copies, in the order of the nodes that first need them.
    pub transfers: Vec<Transfer>,
    /// Devices that refused nodes placed elsewhere (unsupported, memory).
    pub fallbacks: Vec<Fallback>,
    /// Per device, in the order given.
    pub devices: Vec<DeviceSummary>,
    /// Seconds spent in transfers per inference.
    pub transfer_s: f64,
    /// Bytes moved per inference.
    pub transfer_bytes: u64,
    /// Estimated latency of one inference: compute + transfers, one device at a time.
    pub total_s: f64,
    /// The same graph wholly on the best single host device, for comparison.
    pub host_only_s: f64,
    /// That host device.
    pub host_only_device: usize,
}

impl Placement {
    /// Maximal runs of consecutive nodes (graph order) on one device: (nodes, device).
    pub fn runs(&self) -> Vec<(Range<usize>, usize)> {
        let mut out: Vec<(Range<usize>, usize)> = Vec::new();
        for (i, &d) in self.node_device.iter().enumerate() {
            match out.last_mut() {
                Some((r, last)) if *last == d => r.end = i + 1,
                _ => out.push((i..i + 1, d)),
            }
        }
        out
    }
}

/// Knobs of the partitioner.
#[derive(Clone, Debug)]
pub struct PartitionOptions {
    /// Rounds of ping-pong removal (0 keeps the DP's placement).
    pub max_rounds: usize,
}

impl Default for PartitionOptions {
    fn default() -> PartitionOptions {
        PartitionOptions { max_rounds: 8 }
    }
}

/// A non-constant value as the partitioner sees it.
struct Val {
    id: ValueId,
    bytes: u64,
    /// Producing node; `None` for a graph input.
    producer: Option<usize>,
    /// Reading nodes, sorted, each once.
    readers: Vec<usize>,
    is_output: bool,
    /// Per device: upload and download seconds.
    up: Vec<f64>,
    down: Vec<f64>,
}

struct Problem<'a> {
    devices: &'a [&'a dyn Device],
    loc: Vec<Location>,
    /// `time[n][d]`: `None` where `d` cannot take `n`.
    time: Vec<Vec<Option<f64>>>,
    vals: Vec<Val>,
    /// Per node: the `vals` it reads (each once) and the graph outputs it writes.
    reads: Vec<Vec<usize>>,
    writes_output: Vec<Vec<usize>>,
    /// Per node: (constant index, bytes) of the weights it reads.
    weights: Vec<Vec<(usize, u64)>>,
    /// Per node: input + output bytes of its activations.
    act: Vec<u64>,
    n_consts: usize,
}

/// Places every node of `graph` (optimized, types inferred, concrete shapes) on one of
/// `devices`. At least one device must be a host device ([`Device::is_host`]): nodes no
/// accelerator takes fall back to it, and graph inputs and outputs live in its memory.
pub fn partition(
    graph: &Graph,
    devices: &[&dyn Device],
    opts: &PartitionOptions,
) -> Result<Placement, DeviceError> {
    if devices.len() > 64 {
        return Err(DeviceError::Invalid(format!(
            "{} devices given; at most 64 are supported",
            devices.len()
        )));
    }
    if !devices.iter().any(|d| d.is_host()) {
        return Err(DeviceError::NoHost);
    }
    let mut names = HashSet::new();
    for d in devices {
        if !names.insert(d.name()) {
            return Err(DeviceError::Invalid(format!(
                "device name `{}` is given twice",
                d.name()
            )));
        }
    }
    let (p, mut fallbacks) = Problem::new(graph, devices)?;
    let mut assign = p.viterbi();
    p.fit_memory(&mut assign, &mut fallbacks);
    p.refine(&mut assign, opts.max_rounds);
    // A memory move may have been undone by the refinement when room was freed elsewhere.
    fallbacks.retain(|f| assign[f.node.index()] != f.device);
    fallbacks.sort_by_key(|f| (f.node, f.device));
    Ok(p.placement(graph, &assign, fallbacks))
}

impl<'a> Problem<'a> {
    fn new(
        graph: &Graph,
        devices: &'a [&'a dyn Device],
    ) -> Result<(Problem<'a>, Vec<Fallback>), DeviceError> {
        let n = graph.nodes.len();
        let nd = devices.len();
        let loc: Vec<Location> = devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                if d.is_host() {
                    Location::Host
                } else {
                    Location::Device(i)
                }
            })
            .collect();
        let size = |v: ValueId| -> Option<u64> {
            graph
                .values
                .get(v.index())
                .and_then(|x| x.ty.size_bytes())
                .map(|b| b as u64)
        };
        // Values: graph inputs, then node outputs.
        let mut index: HashMap<ValueId, usize> = HashMap::new();
        let mut vals: Vec<Val> = Vec::new();
        let mut unknown: HashSet<ValueId> = HashSet::new();
        let outputs: HashSet<ValueId> = graph.outputs.iter().copied().collect();
        let mut add = |v: ValueId, producer: Option<usize>, vals: &mut Vec<Val>| {
            if graph.constants.contains_key(&v) || index.contains_key(&v) {
                return;
            }
            let bytes = size(v);
            if bytes.is_none() {
                unknown.insert(v);
            }
            let bytes = bytes.unwrap_or(0);
            index.insert(v, vals.len());
            vals.push(Val {
                id: v,
                bytes,
                producer,
                readers: Vec::new(),
                is_output: outputs.contains(&v),
                up: devices.iter().map(|d| d.upload_time(bytes)).collect(),
                down: devices.iter().map(|d| d.download_time(bytes)).collect(),
            });
        };
        for &v in &graph.inputs {
            add(v, None, &mut vals);
        }
        for (i, node) in graph.nodes.iter().enumerate() {
            for &v in &node.outputs {
                add(v, Some(i), &mut vals);
            }
        }
        let mut const_index: HashMap<ValueId, usize> = HashMap::new();
        // Weights a fused node holds inside itself (prepacked at compile time), one pseudo
        // constant each, numbered after the graph's constants.
        let mut own: Vec<(usize, u64)> = Vec::new();
        let mut reads = vec![Vec::new(); n];
        let mut writes_output = vec![Vec::new(); n];
        let mut weights = vec![Vec::new(); n];
        let mut act = vec![0u64; n];
        let mut node_unknown = vec![false; n];
        for (i, node) in graph.nodes.iter().enumerate() {
            for v in node.inputs.iter().flatten() {
                if let Some(t) = graph.constants.get(v) {
                    let next = const_index.len();
                    let ci = *const_index.entry(*v).or_insert(next);
                    if !weights[i].iter().any(|&(c, _)| c == ci) {
                        weights[i].push((ci, t.size_bytes() as u64));
                    }
                } else if let Some(&k) = index.get(v) {
                    if !reads[i].contains(&k) {
                        reads[i].push(k);
                        act[i] += vals[k].bytes;
                        node_unknown[i] |= unknown.contains(v);
                    }
                } else {
                    // Read before any producer: the graph is not in topological order.
                    return Err(DeviceError::Invalid(format!(
                        "node `{}` reads `{}`, which no earlier node produces",
                        node.name,
                        graph.values.get(v.index()).map_or("?", |x| x.name.as_str())
                    )));
                }
            }
            let held = node.op.own_weight_bytes();
            if held > 0 {
                own.push((i, held));
            }
            for v in &node.outputs {
                if let Some(&k) = index.get(v) {
                    act[i] += vals[k].bytes;
                    node_unknown[i] |= unknown.contains(v);
                    if vals[k].is_output {
                        writes_output[i].push(k);
                    }
                }
            }
            for &k in &reads[i] {
                vals[k].readers.push(i);
            }
        }
        for (j, &(i, bytes)) in own.iter().enumerate() {
            weights[i].push((const_index.len() + j, bytes));
        }
        let mut time = vec![vec![None; nd]; n];
        let mut fallbacks = Vec::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            let id = NodeId(i as u32);
            let wbytes: u64 = weights[i].iter().map(|&(_, b)| b).sum();
            for (d, dev) in devices.iter().enumerate() {
                let verdict = dev.supports(graph, id).and_then(|()| {
                    if dev.is_host() {
                        return Ok(());
                    }
                    if node_unknown[i] {
                        return Err("an input or output has an unknown size, so its \
                                    transfers cannot be costed"
                            .to_string());
                    }
                    match dev.memory_bytes() {
                        Some(m) if wbytes + act[i] > m => Err(format!(
                            "needs {} bytes (weights {wbytes}, activations {}), the device has {m}",
                            wbytes + act[i],
                            act[i]
                        )),
                        _ => Ok(()),
                    }
                });
                match verdict {
                    Ok(()) => {
                        let t = dev.node_time(graph, id);
                        time[i][d] = Some(if t.is_finite() { t.max(0.0) } else { f64::MAX });
                    }
                    Err(reason) => fallbacks.push(Fallback {
                        node: id,
                        device: d,
                        reason,
                    }),
                }
            }
            if time[i].iter().all(Option::is_none) {
                let reasons = fallbacks
                    .iter()
                    .filter(|f| f.node == id)
                    .map(|f| format!("{}: {}", devices[f.device].name(), f.reason))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(DeviceError::Unplaceable {
                    node: node.name.clone(),
                    op: node.op.name().to_string(),
                    reasons,
                });
            }
        }
        let n_consts = const_index.len() + own.len();
        Ok((
            Problem {
                devices,
                loc,
                time,
                vals,
                reads,
                writes_output,
                weights,
                act,
                n_consts,
            },
            fallbacks,
        ))
    }

    fn src(&self, v: &Val, assign: &[usize]) -> Location {
        v.producer.map_or(Location::Host, |p| self.loc[assign[p]])
    }

    /// Transfers value `k` needs under `assign`: (from, to, seconds).
    fn value_transfers(
        &self,
        k: usize,
        assign: &[usize],
        out: &mut Vec<(Location, Location, f64)>,
    ) {
        let v = &self.vals[k];
        let src = self.src(v, assign);
        let mut need_host = v.is_output && src != Location::Host;
        let mut accs: Vec<usize> = Vec::new();
        for &r in &v.readers {
            match self.loc[assign[r]] {
                l if l == src => {}
                Location::Host => need_host = true,
                Location::Device(b) => {
                    if !accs.contains(&b) {
                        accs.push(b)
                    }
                }
            }
        }
        if let Location::Device(a) = src {
            if need_host || !accs.is_empty() {
                out.push((src, Location::Host, v.down[a]));
            }
        }
        for b in accs {
            out.push((Location::Host, Location::Device(b), v.up[b]));
        }
    }

    /// Weights and working set per device under `assign`.
    fn memory_use(&self, assign: &[usize]) -> Vec<(u64, u64)> {
        let mut use_ = vec![(0u64, 0u64); self.devices.len()];
        // Bit `d` of `seen[c]`: constant `c` is already loaded on device `d` (a constant
        // read on two devices is loaded on both).
        let mut seen = vec![0u64; self.n_consts];
        for (i, &d) in assign.iter().enumerate() {
            for &(c, b) in &self.weights[i] {
                if seen[c] & (1 << d) == 0 {
                    seen[c] |= 1 << d;
                    use_[d].0 += b;
                }
            }
            use_[d].1 = use_[d].1.max(self.act[i]);
        }
        use_
    }

    /// Devices over their memory under `assign`.
    fn over_memory(&self, assign: &[usize]) -> Option<usize> {
        let use_ = self.memory_use(assign);
        self.devices.iter().enumerate().find_map(|(d, dev)| {
            let (w, a) = use_[d];
            match dev.memory_bytes() {
                Some(m) if !dev.is_host() && w + a > m => Some(d),
                _ => None,
            }
        })
    }

    /// Total estimated seconds, ignoring memory.
    fn cost_unchecked(
        &self,
        assign: &[usize],
        scratch: &mut Vec<(Location, Location, f64)>,
    ) -> f64 {
        let mut t = 0.0;
        for (i, &d) in assign.iter().enumerate() {
            match self.time[i][d] {
                Some(x) => t += x,
                None => return f64::INFINITY,
            }
        }
        for k in 0..self.vals.len() {
            scratch.clear();
            self.value_transfers(k, assign, scratch);
            t += scratch.iter().map(|x| x.2).sum::<f64>();
        }
        t
    }

    /// Total estimated seconds; infinite when a device's memory overflows.
    fn cost(&self, assign: &[usize], scratch: &mut Vec<(Location, Location, f64)>) -> f64 {
        if self.over_memory(assign).is_some() {
            return f64::INFINITY;
        }
        self.cost_unchecked(assign, scratch)
    }

    /// Seconds placing node `i` on `d` adds after the placement `prefix` of nodes `0..i`.
    fn increment(&self, i: usize, d: usize, prefix: &[usize]) -> Option<f64> {
        let mut t = self.time[i][d]?;
        let here = self.loc[d];
        for &k in &self.reads[i] {
            let v = &self.vals[k];
            let src = self.src(v, prefix);
            if here == src {
                continue;
            }
            let mut on_host = src == Location::Host || v.is_output;
            let mut on_here = false;
            for &r in v.readers.iter().take_while(|&&r| r < i) {
                let l = self.loc[prefix[r]];
                on_host |= l != src;
                on_here |= l == here;
            }
            if on_here {
                continue;
            }
            if let (Location::Device(a), false) = (src, on_host) {
                t += v.down[a];
            }
            if let Location::Device(b) = here {
                t += v.up[b];
            }
        }
        if let Location::Device(a) = here {
            for &k in &self.writes_output[i] {
                t += self.vals[k].down[a];
            }
        }
        Some(t)
    }

    /// Step 2: the DP over the topological order (see the module docs).
    fn viterbi(&self) -> Vec<usize> {
        let nd = self.devices.len();
        // Per device: cost so far and the placement of the prefix ending on it.
        let mut states: Vec<Option<(f64, Vec<usize>)>> = vec![Some((0.0, Vec::new()))];
        for i in 0..self.time.len() {
            let mut next: Vec<Option<(f64, Vec<usize>)>> = vec![None; nd];
            for (d, slot) in next.iter_mut().enumerate() {
                let mut best: Option<(f64, usize)> = None;
                for (s, st) in states.iter().enumerate() {
                    let Some((c, prefix)) = st else { continue };
                    let Some(inc) = self.increment(i, d, prefix) else {
                        break; // `d` cannot take node `i`
                    };
                    let total = c + inc;
                    if best.is_none_or(|(b, _)| total < b) {
                        best = Some((total, s));
                    }
                }
                if let Some((c, s)) = best {
                    if let Some((_, prefix)) = &states[s] {
                        let mut p = Vec::with_capacity(self.time.len());
                        p.extend_from_slice(prefix);
                        p.push(d);
                        *slot = Some((c, p));
                    }
                }
            }
            states = next;
        }
        states
            .into_iter()
            .flatten()
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, p)| p)
            .unwrap_or_default()
    }

    /// Step 3: moves nodes off accelerators whose memory overflows.
    fn fit_memory(&self, assign: &mut [usize], fallbacks: &mut Vec<Fallback>) {
        let mut scratch = Vec::new();
        while let Some(d) = self.over_memory(assign) {
            let base = self.cost_unchecked(assign, &mut scratch);
            let mut best: Option<(f64, usize, usize)> = None; // (cost per byte, node, to)
            for i in 0..assign.len() {
                if assign[i] != d {
                    continue;
                }
                let freed: u64 = self.weights[i].iter().map(|&(_, b)| b).sum::<u64>().max(1);
                for to in (0..self.devices.len()).filter(|&to| to != d) {
                    if self.time[i][to].is_none() {
                        continue;
                    }
                    assign[i] = to;
                    let c = (self.cost_unchecked(assign, &mut scratch) - base) / freed as f64;
                    assign[i] = d;
                    if best.is_none_or(|(b, _, _)| c < b) {
                        best = Some((c, i, to));
                    }
                }
            }
            // Every node on `d` can go to a host device, so this always finds one.
            let Some((_, i, to)) = best else { break };
            assign[i] = to;
            fallbacks.push(Fallback {
                node: NodeId(i as u32),
                device: d,
                reason: format!(
                    "device memory ({} bytes) cannot hold the weights and activations of all the nodes that would run faster there",
                    self.devices[d].memory_bytes().unwrap_or(0)
                ),
            });
        }
    }

    /// Step 4: island and single-node moves while they lower the cost.
    fn refine(&self, assign: &mut [usize], max_rounds: usize) {
        let mut scratch = Vec::new();
        let mut current = self.cost(assign, &mut scratch);
        let nd = self.devices.len();
        for _ in 0..max_rounds {
            let mut improved = false;
            // Islands: maximal runs on one device.
            let mut start = 0;
            while start < assign.len() {
                let d0 = assign[start];
                let mut end = start + 1;
                while end < assign.len() && assign[end] == d0 {
                    end += 1;
                }
                let mut best: Option<(f64, usize)> = None;
                for d in (0..nd).filter(|&d| d != d0) {
                    if (start..end).any(|i| self.time[i][d].is_none()) {
                        continue;
                    }
                    assign[start..end].iter_mut().for_each(|x| *x = d);
                    let c = self.cost(assign, &mut scratch);
                    if c < current - 1e-15 && best.is_none_or(|(b, _)| c < b) {
                        best = Some((c, d));
                    }
                }
                let keep = best.map_or(d0, |(_, d)| d);
                assign[start..end].iter_mut().for_each(|x| *x = keep);
                if let Some((c, _)) = best {
                    current = c;
                    improved = true;
                }
                start = end;
            }
            // Single nodes.
            for i in 0..assign.len() {
                let d0 = assign[i];
                let mut best: Option<(f64, usize)> = None;
                for d in (0..nd).filter(|&d| d != d0 && self.time[i][d].is_some()) {
                    assign[i] = d;
                    let c = self.cost(assign, &mut scratch);
                    if c < current - 1e-15 && best.is_none_or(|(b, _)| c < b) {
                        best = Some((c, d));
                    }
                }
                assign[i] = best.map_or(d0, |(_, d)| d);
                if let Some((c, _)) = best {
                    current = c;
                    improved = true;
                }
            }
            if !improved {
                break;
            }
        }
    }

    fn placement(&self, graph: &Graph, assign: &[usize], fallbacks: Vec<Fallback>) -> Placement {
        let nd = self.devices.len();
        let node_time_s: Vec<f64> = assign
            .iter()
            .enumerate()
            .map(|(i, &d)| self.time[i][d].unwrap_or(f64::INFINITY))
            .collect();
        // Transfers in the order of the first node that needs each.
        let mut transfers: Vec<(usize, Transfer)> = Vec::new();
        let mut scratch = Vec::new();
        for (k, v) in self.vals.iter().enumerate() {
            scratch.clear();
            self.value_transfers(k, assign, &mut scratch);
            for &(from, to, time_s) in &scratch {
                let when = match to {
                    Location::Host => v
                        .readers
                        .iter()
                        .copied()
                        .find(|&r| self.loc[assign[r]] != from)
                        .unwrap_or(usize::MAX),
                    Location::Device(b) => v
                        .readers
                        .iter()
                        .copied()
                        .find(|&r| self.loc[assign[r]] == Location::Device(b))
                        .unwrap_or(usize::MAX),
                };
                transfers.push((
                    when,
                    Transfer {
                        value: v.id,
                        name: graph
                            .values
                            .get(v.id.index())
                            .map_or_else(String::new, |x| x.name.clone()),
                        from,
                        to,
                        bytes: v.bytes,
                        time_s,
                    },
                ));
            }
        }
        // Downloads before uploads of the same value.
        transfers.sort_by_key(|(when, t)| (*when, t.value, t.to != Location::Host));
        let transfers: Vec<Transfer> = transfers.into_iter().map(|(_, t)| t).collect();
        let transfer_s = transfers.iter().map(|t| t.time_s).sum::<f64>();
        let transfer_bytes = transfers.iter().map(|t| t.bytes).sum::<u64>();
        let use_ = self.memory_use(assign);
        let devices = (0..nd)
            .map(|d| DeviceSummary {
                name: self.devices[d].name().to_string(),
                nodes: assign.iter().filter(|&&x| x == d).count(),
                compute_s: assign
                    .iter()
                    .zip(&node_time_s)
                    .filter(|(&x, _)| x == d)
                    .map(|(_, t)| t)
                    .sum(),
                weight_bytes: use_[d].0,
                working_set_bytes: use_[d].1,
                memory_bytes: self.devices[d].memory_bytes(),
            })
            .collect::<Vec<_>>();
        let compute: f64 = node_time_s.iter().sum();
        // The best single host device for the whole graph.
        let (host_only_device, host_only_s) = (0..nd)
            .filter(|&d| self.devices[d].is_host())
            .map(|d| {
                let t: f64 = (0..assign.len())
                    .map(|i| self.time[i][d].unwrap_or(f64::INFINITY))
                    .sum();
                (d, t)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, f64::INFINITY));
        Placement {
            node_device: assign.to_vec(),
            node_time_s,
            transfers,
            fallbacks,
            devices,
            transfer_s,
            transfer_bytes,
            total_s: compute + transfer_s,
            host_only_s,
            host_only_device,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuDevice, DeviceKind, HostLink};
    use millrace_core::{DType, Tensor};
    use millrace_ir::{Cost, InferCtx, Inputs, Op, OpError, ValueType};
    use std::sync::Arc;

    /// An op that only has a name and a cost.
    #[derive(Debug)]
    struct FakeOp {
        name: &'static str,
        flops: u64,
    }

    impl Op for FakeOp {
        fn name(&self) -> &'static str {
            self.name
        }
        fn infer(&self, _: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
            Err(OpError::unsupported(self.name, "fake"))
        }
        fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
            let b = |ts: &[ValueType]| ts.iter().filter_map(|t| t.size_bytes()).sum::<usize>();
            Cost {
                flops: self.flops,
                bytes_read: b(inputs) as u64,
                bytes_written: b(outputs) as u64,
            }
        }
        fn eval(&self, _: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
            Err(OpError::unsupported(self.name, "fake"))
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    /// An accelerator that runs the listed ops at a fixed rate, behind a link.
    struct Accel {
        name: String,
        ops: Vec<&'static str>,
        flops_per_s: f64,
        /// Per op name: extra seconds per node.
        extra: Vec<(&'static str, f64)>,
        link: HostLink,
        memory: Option<u64>,
    }

    impl Accel {
        fn new(ops: &[&'static str], bandwidth: f64) -> Accel {
            Accel {
                name: "npu".into(),
                ops: ops.to_vec(),
                flops_per_s: 1e12,
                extra: Vec::new(),
                link: HostLink {
                    bandwidth,
                    latency: 1e-6,
                },
                memory: None,
            }
        }
    }

    impl Device for Accel {
        fn name(&self) -> &str {
            &self.name
        }
        fn kind(&self) -> DeviceKind {
            DeviceKind::Npu
        }
        fn supports(&self, g: &Graph, n: NodeId) -> Result<(), String> {
            let op = g.nodes[n.index()].op.name();
            if self.ops.contains(&op) {
                Ok(())
            } else {
                Err(format!("{op} is not supported"))
            }
        }
        fn node_time(&self, g: &Graph, n: NodeId) -> f64 {
            let node = &g.nodes[n.index()];
            let extra = self
                .extra
                .iter()
                .find(|(o, _)| *o == node.op.name())
                .map_or(0.0, |e| e.1);
            1e-6 + extra + g.node_cost(node).flops as f64 / self.flops_per_s
        }
        fn memory_bytes(&self) -> Option<u64> {
            self.memory
        }
        fn link(&self) -> Option<HostLink> {
            Some(self.link)
        }
    }

    /// 1 MiB activations.
    const ELEMS: usize = 1 << 18;
    const CONV_FLOPS: u64 = 100_000_000;

    fn cpu() -> CpuDevice {
        // 10 GFLOP/s, 10 GB/s: a Conv takes 10 ms, a Relu 0.2 ms (bytes-bound).
        CpuDevice::new("cpu", 1, 10e9, 10e9)
            .unwrap()
            .with_node_overhead(0.0)
            .unwrap()
    }

    /// A chain `x -> op0 -> op1 -> ... -> y`; Convs read a weight of `weight_bytes`.
    fn chain(ops: &[&'static str], weight_bytes: usize) -> Graph {
        let mut g = Graph::new("chain");
        let ty = ValueType::concrete(DType::F32, &[ELEMS]);
        let mut prev = g.add_value("x", ty.clone());
        g.inputs.push(prev);
        for (i, &op) in ops.iter().enumerate() {
            let out = g.add_value(format!("v{i}"), ty.clone());
            let mut inputs = vec![Some(prev)];
            if op == "Conv" {
                let w = g.add_constant(
                    format!("w{i}"),
                    Tensor::from_vec(vec![weight_bytes / 4], vec![0.0f32; weight_bytes / 4])
                        .unwrap(),
                );
                inputs.push(Some(w));
            }
            let flops = if op == "Conv" {
                CONV_FLOPS
            } else {
                ELEMS as u64
            };
            g.add_node(
                format!("n{i}_{op}"),
                Arc::new(FakeOp { name: op, flops }),
                inputs,
                vec![out],
            );
            prev = out;
        }
        g.outputs.push(prev);
        g
    }

    fn place(g: &Graph, devs: &[&dyn Device]) -> Placement {
        let p = partition(g, devs, &PartitionOptions::default()).unwrap();
        // The summary adds up.
        let compute: f64 = p.node_time_s.iter().sum();
        let moved: f64 = p.transfers.iter().map(|t| t.time_s).sum();
        assert!((p.total_s - compute - moved).abs() < 1e-12, "{p:?}");
        let per_dev: f64 = p.devices.iter().map(|d| d.compute_s).sum();
        assert!((per_dev - compute).abs() < 1e-12);
        assert!(
            p.total_s <= p.host_only_s + 1e-12,
            "worse than the host alone"
        );
        p
    }

    #[test]
    fn slow_link_keeps_everything_on_the_cpu() {
        let g = chain(&["Conv", "Relu", "Conv", "Relu"], 1024);
        let (c, a) = (cpu(), Accel::new(&["Conv", "Relu"], 1e6)); // 1 MB/s: 1 s per copy
        let p = place(&g, &[&c, &a]);
        assert_eq!(p.node_device, vec![0; 4]);
        assert!(p.transfers.is_empty());
        assert_eq!(p.transfer_bytes, 0);
        assert!((p.total_s - p.host_only_s).abs() < 1e-12);
    }

    #[test]
    fn fast_link_moves_everything_with_one_copy_each_way() {
        let g = chain(&["Conv", "Relu", "Conv", "Relu"], 1024);
        let (c, a) = (cpu(), Accel::new(&["Conv", "Relu"], 10e9));
        let p = place(&g, &[&c, &a]);
        assert_eq!(p.node_device, vec![1; 4]);
        let dirs: Vec<_> = p
            .transfers
            .iter()
            .map(|t| (t.name.as_str(), t.from, t.to))
            .collect();
        assert_eq!(
            dirs,
            vec![
                ("x", Location::Host, Location::Device(1)),
                ("v3", Location::Device(1), Location::Host)
            ]
        );
        assert_eq!(p.transfer_bytes, 2 * 4 * ELEMS as u64);
        assert!(p.total_s < 0.1 * p.host_only_s);
    }

    #[test]
    fn a_conv_only_device_takes_the_convs_and_the_rest_falls_back() {
        let g = chain(&["Conv", "Relu", "Conv", "Relu"], 1024);
        let (c, a) = (cpu(), Accel::new(&["Conv"], 10e9));
        let p = place(&g, &[&c, &a]);
        assert_eq!(p.node_device, vec![1, 0, 1, 0]);
        // Each conv: its input up, its output down.
        assert_eq!(p.transfers.len(), 4);
        assert_eq!(
            p.transfers
                .iter()
                .filter(|t| t.to == Location::Host)
                .count(),
            2
        );
        let fb: Vec<_> = p
            .fallbacks
            .iter()
            .map(|f| (f.node.index(), f.device))
            .collect();
        assert_eq!(fb, vec![(1, 1), (3, 1)]);
        assert!(p.fallbacks[0].reason.contains("Relu is not supported"));
        assert_eq!(p.devices[1].nodes, 2);
        assert_eq!(p.devices[1].weight_bytes, 2 * 1024);
    }

    #[test]
    fn an_unsupported_op_in_the_middle_copies_both_ways() {
        let g = chain(&["Conv", "Conv", "Weird", "Conv", "Conv"], 1024);
        let (c, a) = (cpu(), Accel::new(&["Conv", "Relu"], 10e9));
        let p = place(&g, &[&c, &a]);
        assert_eq!(p.node_device, vec![1, 1, 0, 1, 1]);
        let dirs: Vec<_> = p
            .transfers
            .iter()
            .map(|t| (t.name.as_str(), t.from, t.to))
            .collect();
        let (h, n) = (Location::Host, Location::Device(1));
        assert_eq!(
            dirs,
            vec![("x", h, n), ("v1", n, h), ("v2", h, n), ("v4", n, h)]
        );
        assert_eq!(p.runs(), vec![(0..2, 1), (2..3, 0), (3..5, 1)]);
        assert_eq!(p.fallbacks.len(), 1);
        assert_eq!(p.fallbacks[0].node, NodeId(2));
    }

    #[test]
    fn a_small_island_slower_on_the_accelerator_stays_there() {
        // The Relu costs 0.3 ms on the accelerator against 0.2 ms on the CPU, but moving
        // it out costs two 1 MiB copies (0.1 ms each plus latency) ... and more so at 5 GB/s.
        let g = chain(&["Conv", "Relu", "Conv"], 1024);
        let c = cpu();
        let mut a = Accel::new(&["Conv", "Relu"], 5e9);
        a.extra.push(("Relu", 3e-4));
        let p = place(&g, &[&c, &a]);
        assert_eq!(p.node_device, vec![1, 1, 1]);
        assert_eq!(p.transfers.len(), 2);
    }

    #[test]
    fn a_node_cheaper_on_the_cpu_than_its_copies_moves_out() {
        // Same graph, but the accelerator's Relu is so slow (5 ms) that two copies pay.
        let g = chain(&["Conv", "Relu", "Conv"], 1024);
        let c = cpu();
        let mut a = Accel::new(&["Conv", "Relu"], 10e9);
        a.extra.push(("Relu", 5e-3));
        let p = place(&g, &[&c, &a]);
        assert_eq!(p.node_device, vec![1, 0, 1]);
        assert_eq!(p.transfers.len(), 4);
        assert!(p.fallbacks.is_empty(), "moved for cost, not refused");
    }

    #[test]
    fn a_value_read_twice_on_the_accelerator_is_uploaded_once() {
        // x -> Conv a, Conv b -> Add(a, b) -> y, all on the accelerator.
        let mut g = Graph::new("diamond");
        let ty = ValueType::concrete(DType::F32, &[ELEMS]);
        let x = g.add_value("x", ty.clone());
        g.inputs.push(x);
        let (a, b, y) = (
            g.add_value("a", ty.clone()),
            g.add_value("b", ty.clone()),
            g.add_value("y", ty.clone()),
        );
        let conv = || {
            Arc::new(FakeOp {
                name: "Conv",
                flops: CONV_FLOPS,
            })
        };
        g.add_node("ca", conv(), vec![Some(x)], vec![a]);
        g.add_node("cb", conv(), vec![Some(x)], vec![b]);
        g.add_node(
            "add",
            Arc::new(FakeOp {
                name: "Add",
                flops: ELEMS as u64,
            }),
            vec![Some(a), Some(b)],
            vec![y],
        );
        g.outputs.push(y);
        let (c, acc) = (cpu(), Accel::new(&["Conv", "Add"], 10e9));
        let p = place(&g, &[&c, &acc]);
        assert_eq!(p.node_device, vec![1, 1, 1]);
        assert_eq!(p.transfers.len(), 2, "{:?}", p.transfers);
    }

    #[test]
    fn an_output_also_read_on_the_host_is_downloaded_once() {
        // Conv (accelerator) -> v0 is a graph output and read by Weird (host).
        let mut g = chain(&["Conv", "Weird"], 1024);
        let v0 = g.find_value("v0").unwrap();
        g.outputs.push(v0);
        let (c, a) = (cpu(), Accel::new(&["Conv"], 10e9));
        let p = place(&g, &[&c, &a]);
        assert_eq!(p.node_device, vec![1, 0]);
        let downs = p
            .transfers
            .iter()
            .filter(|t| t.to == Location::Host)
            .count();
        assert_eq!(downs, 1, "{:?}", p.transfers);
    }

    #[test]
    fn device_memory_limits_what_moves() {
        // Four convs with 1 MiB of weights each; room for two of them (plus activations).
        let g = chain(&["Conv", "Conv", "Conv", "Conv"], 1 << 20);
        let c = cpu();
        let mut a = Accel::new(&["Conv"], 10e9);
        a.memory = Some((2 << 20) + 2 * 4 * ELEMS as u64 + 1024);
        let p = place(&g, &[&c, &a]);
        let on_acc = p.node_device.iter().filter(|&&d| d == 1).count();
        assert_eq!(on_acc, 2, "{:?}", p.node_device);
        assert!(p.devices[1].weight_bytes + p.devices[1].working_set_bytes <= a.memory.unwrap());
        assert_eq!(p.fallbacks.len(), 2);
        assert!(p.fallbacks[0].reason.contains("memory"));
        // A node that alone does not fit is refused outright.
        a.memory = Some(1 << 20);
        let p = place(&g, &[&c, &a]);
        assert_eq!(p.node_device, vec![0; 4]);
        assert!(p.fallbacks[0].reason.contains("needs"), "{:?}", p.fallbacks);
    }

    #[test]
    fn the_fastest_cpu_group_is_chosen() {
        let g = chain(&["Conv", "Relu"], 1024);
        let small = CpuDevice::new("cpu:1", 1, 10e9, 10e9).unwrap();
        let big = CpuDevice::new("cpu:4", 4, 40e9, 20e9).unwrap();
        let p = place(&g, &[&small, &big]);
        assert_eq!(p.node_device, vec![1, 1]);
        assert!(p.transfers.is_empty(), "host groups share memory");
        assert_eq!(p.host_only_device, 1);
    }

    #[test]
    fn bad_device_lists_are_errors() {
        let g = chain(&["Conv", "Weird"], 1024);
        let a = Accel::new(&["Conv"], 10e9);
        let opts = PartitionOptions::default();
        assert_eq!(partition(&g, &[&a], &opts), Err(DeviceError::NoHost));
        let (c1, c2) = (cpu(), cpu());
        assert!(matches!(
            partition(&g, &[&c1, &c2], &opts),
            Err(DeviceError::Invalid(m)) if m.contains("twice")
        ));
        // A node nobody runs: a host "device" that refuses Weird.
        struct Picky(CpuDevice);
        impl Device for Picky {
            fn name(&self) -> &str {
                "picky"
            }
            fn kind(&self) -> DeviceKind {
                DeviceKind::Cpu
            }
            fn supports(&self, g: &Graph, n: NodeId) -> Result<(), String> {
                match g.nodes[n.index()].op.name() {
                    "Weird" => Err("no".into()),
                    _ => Ok(()),
                }
            }
            fn node_time(&self, g: &Graph, n: NodeId) -> f64 {
                self.0.node_time(g, n)
            }
            fn memory_bytes(&self) -> Option<u64> {
                None
            }
            fn link(&self) -> Option<HostLink> {
                None
            }
        }
        let e = partition(&g, &[&Picky(cpu()), &a], &opts).unwrap_err();
        assert!(
            matches!(&e, DeviceError::Unplaceable { node, .. } if node == "n1_Weird"),
            "{e}"
        );
        assert!(e.to_string().contains("npu: Weird is not supported"), "{e}");
    }

    #[test]
    fn copies_are_weighed_against_the_whole_run() {
        // One conv alone: 10 ms on the CPU vs ~0.1 ms + two copies at 0.2 GB/s (5.2 ms
        // each): moving it does not pay. Three convs in a chain: 30 ms against ~0.3 ms and
        // the same two copies: they move together.
        let (c, a) = (cpu(), Accel::new(&["Conv"], 0.2e9));
        let one = place(&chain(&["Conv"], 1024), &[&c, &a]);
        assert_eq!(one.node_device, vec![0]);
        let three = place(&chain(&["Conv", "Conv", "Conv"], 1024), &[&c, &a]);
        assert_eq!(three.node_device, vec![1, 1, 1]);
        assert_eq!(three.transfers.len(), 2);
    }

    #[test]
    fn refinement_removes_ping_pong() {
        // Start from Conv(npu) Relu(cpu) Relu(cpu) Conv(npu): the two-node host island pays
        // four copies; on the accelerator the Relus are nearly free.
        let g = chain(&["Conv", "Relu", "Relu", "Conv"], 1024);
        let (c, a) = (cpu(), Accel::new(&["Conv", "Relu"], 10e9));
        let devs: [&dyn Device; 2] = [&c, &a];
        let (p, _) = Problem::new(&g, &devs).unwrap();
        let mut assign = vec![1, 0, 0, 1];
        let mut scratch = Vec::new();
        let before = p.cost(&assign, &mut scratch);
        p.refine(&mut assign, 4);
        assert_eq!(assign, vec![1, 1, 1, 1]);
        assert!(p.cost(&assign, &mut scratch) < before);
        // The DP's increments add up to the exact cost of a placement.
        for assign in [vec![1, 0, 0, 1], vec![0, 1, 0, 1], vec![1, 1, 1, 1]] {
            let sum: f64 = (0..4)
                .map(|i| p.increment(i, assign[i], &assign[..i]).unwrap())
                .sum();
            assert!((sum - p.cost(&assign, &mut scratch)).abs() < 1e-12);
        }
    }
}
