//! `millrace bench`: latency percentiles and throughput; `--by-op` adds a per-op-type
//! profile (time share and GFLOP/s). `millrace peak`: the machine's measured fp32 FMA rate
//! and triad memory bandwidth, the ceilings those GFLOP/s are compared against.
//!
//! The per-op profile runs the model again with per-node timing on: every node's time is
//! the median over the profiled runs, and node times are summed per op type. FLOPs come
//! from each op's cost model at the compiled shapes (a multiply-add counts as 2).
use crate::model_arg::{read_inputs, LoadArgs, Loaded};
use anyhow::{bail, Result};
use clap::Args;
use millrace_kernels::peak::{core_round_trip_ns, fma_peak, triad_bandwidth, FmaVariant};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Inputs (.npz/.npy); default: seeded random inputs.
    #[arg(long, value_name = "IN.npz")]
    pub inputs: Option<PathBuf>,
    /// Untimed runs first.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Timed runs (overrides --seconds).
    #[arg(long)]
    pub iters: Option<usize>,
    /// Run timed iterations for this long (default 3 s, at least 5 runs).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// After timing, profile every node and print time and GFLOP/s per op type.
    #[arg(long)]
    pub by_op: bool,
    /// Profiled runs for --by-op (default: the timed runs, 3 to 20).
    #[arg(long, value_name = "N")]
    pub profile_iters: Option<usize>,
    /// With --by-op, also list this many slowest nodes.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub top_nodes: usize,
    /// Throughput mode: run --frames inputs one after another on the whole model, then
    /// pipelined through --stages stages running at the same time, and compare.
    #[arg(long)]
    pub stream: bool,
    /// With --stream: number of stages (default: the threads).
    #[arg(long, value_name = "K")]
    pub stages: Option<usize>,
    /// With --stream: frames timed in each mode.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub frames: usize,
    /// With --stream: balance stages by `measured` node times (a profiled run) or by the
    /// `estimated` cost model.
    #[arg(long, value_name = "measured|estimated", default_value = "measured")]
    pub stage_costs: String,
    /// With --stream: frames in flight at once (default: stages + 1). Fewer lowers
    /// per-frame latency (less queueing), more hides uneven stages.
    #[arg(long, value_name = "N")]
    pub in_flight: Option<usize>,
    /// Split the threads into K groups acting as separate devices (see --parallel) and
    /// compare with one group of all threads, runs alternating.
    #[arg(long, value_name = "K")]
    pub groups: Option<usize>,
    /// With --groups: `data` splits the batch (--batch) across the groups, `pipeline` cuts
    /// the model into K stages with micro-batches flowing through them.
    #[arg(long, value_name = "data|pipeline", default_value = "data")]
    pub parallel: String,
    /// With --groups --parallel pipeline: rows per micro-batch (default: batch / K).
    #[arg(long, value_name = "M")]
    pub micro_batch: Option<usize>,
}

#[derive(Args)]
pub struct PeakArgs {
    /// Threads for the multi-thread measurements (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seconds each thread runs per try.
    #[arg(long, default_value_t = 0.3)]
    pub seconds: f64,
    /// Tries; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Size of each of the three triad arrays, in MiB (keep it well above the L3 cache).
    #[arg(long, default_value_t = 128)]
    pub array_mib: usize,
    /// Also measure every FMA variant this CPU runs on one thread.
    #[arg(long)]
    pub all_variants: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Measure only the core-to-core round trip (a fraction of a second): how far apart
    /// the scheduler has put two threads right now.
    #[arg(long)]
    pub round_trip_only: bool,
}

/// Round trips per batch and batches of [`core_round_trip_ns`].
const RTT_TRIPS: u64 = 20_000;
const RTT_BATCHES: usize = 5;

/// Peak resident memory of this process (VmHWM) in MiB; `None` off Linux.
pub fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn peak(args: &PeakArgs) -> Result<()> {
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be a positive number");
    }
    if args.array_mib == 0 {
        bail!("--array-mib must be at least 1");
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let rtt = core_round_trip_ns(RTT_TRIPS, RTT_BATCHES);
    if args.round_trip_only {
        if args.json {
            println!("{}", serde_json::json!({ "core_round_trip_ns": rtt }));
        } else {
            println!("{}", round_trip_line(rtt));
        }
        return Ok(());
    }
    let variant = FmaVariant::detect();
    let one = fma_peak(variant, 1, args.seconds, args.reps);
    let many = fma_peak(variant, threads, args.seconds, args.reps);
    let bw = triad_bandwidth(threads, args.array_mib << 20, args.reps.max(3));
    let others: Vec<(&str, f64)> = if args.all_variants {
        FmaVariant::available()
            .into_iter()
            .map(|v| (v.name(), fma_peak(v, 1, args.seconds, args.reps).gflops))
            .collect()
    } else {
        Vec::new()
    };
    if args.json {
        let mut v = serde_json::json!({
            "variant": variant.name(),
            "threads": threads,
            "gflops_1t": one.gflops,
            "gflops": many.gflops,
            "triad_gbs": bw,
            "triad_array_mib": args.array_mib,
            "core_round_trip_ns": rtt,
        });
        if !others.is_empty() {
            v["variants_1t"] = others
                .iter()
                .map(|(n, g)| (n.to_string(), serde_json::json!(g)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        println!("{v}");
    } else {
        println!("fp32 FMA peak ({}):", variant.name());
        println!("  1 thread:    {:8.1} GFLOP/s", one.gflops);
        println!(
            "  {threads} thread(s): {:8.1} GFLOP/s ({:.1} per thread)",
            many.gflops,
            many.gflops / threads as f64
        );
        for (n, g) in &others {
            println!("  variant {n:<10} 1 thread: {g:8.1} GFLOP/s");
        }
        println!(
            "triad bandwidth, {threads} thread(s), 3 x {} MiB: {bw:.1} GB/s",
            args.array_mib
        );
        println!("{}", round_trip_line(rtt));
    }
    Ok(())
}

/// The text line for a measured (or not measured) core-to-core round trip.
fn round_trip_line(rtt: Option<f64>) -> String {
    match rtt {
        Some(ns) => format!("core-to-core round trip: {ns:.0} ns"),
        None => "core-to-core round trip: not measured (one CPU)".to_string(),
    }
}

/// Time and work of one op type in a profile.
struct OpRow {
    op: &'static str,
    count: usize,
    ms: f64,
    flops: u64,
}

/// One node's profile: op type, FLOPs, and its time in each profiled run (ms).
struct NodeTimes {
    node: String,
    op: &'static str,
    flops: u64,
    ms: Vec<f64>,
}

/// Runs the model `runs` times with per-node timing; one entry per node in plan order.
fn profile(
    compiled: &millrace::CompiledModel,
    inputs: &[(String, millrace::Tensor)],
    runs: usize,
) -> Result<Vec<NodeTimes>> {
    let mut nodes: Vec<NodeTimes> = Vec::new();
    for r in 0..runs {
        let (_, steps) = compiled.run_named_profiled(inputs)?;
        if r == 0 {
            nodes = steps
                .iter()
                .map(|s| NodeTimes {
                    node: s.node.clone(),
                    op: s.op,
                    flops: s.cost.flops,
                    ms: Vec::with_capacity(runs),
                })
                .collect();
        }
        if steps.len() != nodes.len() {
            bail!("profiled runs returned different numbers of steps");
        }
        for (n, s) in nodes.iter_mut().zip(&steps) {
            n.ms.push(s.time.as_secs_f64() * 1e3);
        }
    }
    Ok(nodes)
}

/// Per-op-type rows, slowest first: the sum over the type's nodes of each node's median time.
fn by_op(nodes: &mut [NodeTimes]) -> Vec<OpRow> {
    let mut rows: HashMap<&'static str, OpRow> = HashMap::new();
    for n in nodes.iter_mut() {
        n.ms.sort_by(f64::total_cmp);
        let med = percentile(&n.ms, 50.0);
        let r = rows.entry(n.op).or_insert(OpRow {
            op: n.op,
            count: 0,
            ms: 0.0,
            flops: 0,
        });
        r.count += 1;
        r.ms += if med.is_nan() { 0.0 } else { med };
        r.flops += n.flops;
    }
    let mut rows: Vec<OpRow> = rows.into_values().collect();
    rows.sort_by(|a, b| b.ms.total_cmp(&a.ms).then(a.op.cmp(b.op)));
    rows
}

/// GFLOP/s of `flops` done in `ms` milliseconds (0 when either is 0).
fn gflops(flops: u64, ms: f64) -> f64 {
    if ms > 0.0 {
        flops as f64 / (ms * 1e6)
    } else {
        0.0
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Throughput and latency of one way of running frames.
struct ModeStats {
    frames: usize,
    wall_s: f64,
    /// Per-frame latency, sorted (ms).
    lat: Vec<f64>,
}

impl ModeStats {
    fn new(frames: usize, wall_s: f64, mut lat: Vec<f64>) -> ModeStats {
        lat.sort_by(f64::total_cmp);
        ModeStats {
            frames,
            wall_s,
            lat,
        }
    }
    fn fps(&self, batch: usize) -> f64 {
        (self.frames * batch) as f64 / self.wall_s
    }
    fn json(&self, batch: usize) -> serde_json::Value {
        serde_json::json!({
            "frames": self.frames,
            "wall_s": self.wall_s,
            "throughput_per_s": self.fps(batch),
            "latency_ms": {
                "p50": percentile(&self.lat, 50.0),
                "p99": percentile(&self.lat, 99.0),
                "mean": self.lat.iter().sum::<f64>() / self.lat.len().max(1) as f64,
            },
        })
    }
}

/// `bench --stream`: frames one after another on the whole model vs. through a stream.
fn stream_bench(
    args: &BenchArgs,
    label: &str,
    compiled: &millrace::CompiledModel,
    inputs: &[(String, millrace::Tensor)],
    batch: usize,
) -> Result<()> {
    if args.frames == 0 {
        bail!("--frames must be at least 1");
    }
    if args.by_op {
        bail!("--by-op and --stream cannot be combined");
    }
    let threads = compiled.threads();
    let stages = args.stages.unwrap_or(threads);
    if stages == 0 {
        bail!("--stages must be at least 1");
    }
    if stages > threads && !args.json {
        eprintln!(
            "warning: {stages} stages on {threads} thread(s): stages share cores, so expect little or no gain"
        );
    }
    let node_costs = match args.stage_costs.as_str() {
        "measured" => Some(compiled.measure_node_costs(inputs, 5)?),
        "estimated" => None,
        other => bail!("--stage-costs `{other}`: expected measured or estimated"),
    };
    // (a) One after another, the whole model on every thread.
    let mut lat = Vec::with_capacity(args.frames);
    let mut first_plain = None;
    let start = Instant::now();
    for _ in 0..args.frames {
        let t = Instant::now();
        let out = compiled.run_named(inputs)?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        first_plain.get_or_insert(out);
    }
    let plain = ModeStats::new(args.frames, start.elapsed().as_secs_f64(), lat);
    // (b) Through the stream.
    let mut stream = compiled.stream(&millrace::StreamOptions {
        stages,
        threads: Some(threads),
        node_costs,
        ..millrace::StreamOptions::default()
    })?;
    let window = args.in_flight.unwrap_or(stages + 1);
    if window == 0 {
        bail!("--in-flight must be at least 1");
    }
    let warm = args.warmup.max(stages + 1);
    for r in stream.run_all_window(vec![inputs.to_vec(); warm], window) {
        r.outputs?;
    }
    let frames = vec![inputs.to_vec(); args.frames];
    let start = Instant::now();
    let results = stream.run_all_window(frames, window);
    let wall = start.elapsed().as_secs_f64();
    let mut lat = Vec::with_capacity(results.len());
    let mut first_stream = None;
    for r in results {
        lat.push(r.latency.as_secs_f64() * 1e3);
        let out = r.outputs?;
        first_stream.get_or_insert(out);
    }
    let piped = ModeStats::new(args.frames, wall, lat);
    // The stream must compute what the whole model computes.
    let mut max_err = 0.0f64;
    if let (Some(a), Some(b)) = (&first_plain, &first_stream) {
        for ((_, x), (_, y)) in a.iter().zip(b) {
            max_err = max_err.max(rel_l2(y, x)?);
        }
    }
    let ratio = piped.fps(batch) / plain.fps(batch);
    let split: Vec<_> = stream.stages().to_vec();
    if args.json {
        let v = serde_json::json!({
            "model": label,
            "batch": batch,
            "threads": threads,
            "stages": stages,
            "stage_costs": args.stage_costs,
            "in_flight": window,
            "sequential": plain.json(batch),
            "stream": piped.json(batch),
            "throughput_ratio": ratio,
            "max_rel_l2_vs_sequential": max_err,
            "stage_split": split.iter().map(|s| serde_json::json!({
                "nodes": [s.nodes.start, s.nodes.end],
                "share": s.share,
                "threads": s.threads,
                "inputs": s.inputs,
                "outputs": s.outputs,
            })).collect::<Vec<_>>(),
            "peak_rss_mb": peak_rss_mb(),
        });
        println!("{v}");
        return Ok(());
    }
    println!("model:      {label}");
    println!(
        "batch {batch}, {threads} thread(s), {} frames per mode, stages balanced by {} cost, {window} frame(s) in flight",
        args.frames, args.stage_costs
    );
    println!("stages:");
    for (i, s) in split.iter().enumerate() {
        println!(
            "  {i}: nodes {:>4}..{:<4} ({:>3} nodes) {:>5.1}% of cost, {} thread(s), {} value(s) in",
            s.nodes.start,
            s.nodes.end,
            s.nodes.len(),
            100.0 * s.share,
            s.threads,
            s.inputs.len()
        );
    }
    for (name, m) in [("sequential", &plain), ("stream", &piped)] {
        println!(
            "{name:<11} {:>8.2} frames/s   latency ms p50 {:>8.3}  p99 {:>8.3}",
            m.fps(batch),
            percentile(&m.lat, 50.0),
            percentile(&m.lat, 99.0)
        );
    }
    println!("stream / sequential throughput: {ratio:.2}x");
    println!("max relative L2 difference of outputs vs sequential: {max_err:.1e}");
    if let Some(r) = peak_rss_mb() {
        println!("peak RSS:   {r:.1} MiB");
    }
    Ok(())
}

/// Relative L2 difference ||a - b|| / ||b||.
pub(crate) fn rel_l2(a: &millrace::Tensor, b: &millrace::Tensor) -> Result<f64> {
    let (a, b) = (a.to_f64_vec()?, b.to_f64_vec()?);
    if a.len() != b.len() {
        return Ok(f64::INFINITY);
    }
    let num: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    Ok(if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    })
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    if args.iters == Some(0) {
        bail!("--iters must be at least 1");
    }
    if args.seconds.is_some_and(|s| !(s > 0.0 && s.is_finite())) {
        bail!("--seconds must be a positive number");
    }
    if args.profile_iters == Some(0) {
        bail!("--profile-iters must be at least 1");
    }
    let t_load = Instant::now();
    let loaded = Loaded::new(&args.load)?;
    let load_time = t_load.elapsed();
    let inputs = match &args.inputs {
        Some(p) => read_inputs(p, &loaded)?,
        None => loaded.random(args.seed)?,
    };
    let batch = inputs
        .first()
        .and_then(|(_, t)| t.shape().first().copied())
        .unwrap_or(1);
    let shapes = inputs
        .iter()
        .map(|(n, t)| (n.clone(), t.shape().to_vec()))
        .collect();
    let t0 = Instant::now();
    let compiled = loaded.compile_with(shapes, None)?;
    let compile_time = t0.elapsed();
    for _ in 0..args.warmup {
        compiled.run_named(&inputs)?;
    }
    if let Some(groups) = args.groups {
        let gb = crate::devices::GroupBench {
            groups,
            parallel: &args.parallel,
            micro_batch: args.micro_batch,
            warmup: args.warmup,
            iters: args.iters,
            seconds: args.seconds,
            json: args.json,
        };
        return crate::devices::group_bench(&gb, &loaded, &compiled, &inputs);
    }
    if args.stream {
        return stream_bench(args, &loaded.label, &compiled, &inputs, batch);
    }
    let budget = Duration::from_secs_f64(args.seconds.unwrap_or(3.0));
    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let b = match args.iters {
            Some(n) => indicatif::ProgressBar::new(n as u64),
            None => indicatif::ProgressBar::new_spinner(),
        };
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos} runs {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut lat = Vec::new();
    let start = Instant::now();
    loop {
        let t = Instant::now();
        compiled.run_named(&inputs)?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        if let Some(b) = &bar {
            b.inc(1);
        }
        let done = match args.iters {
            Some(n) => lat.len() >= n,
            None => start.elapsed() >= budget && lat.len() >= 5,
        };
        if done {
            break;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mean = lat.iter().sum::<f64>() / lat.len() as f64;
    let mut sorted = lat.clone();
    sorted.sort_by(f64::total_cmp);
    let throughput = (lat.len() * batch) as f64 / wall;
    let (p50, p90, p99) = (
        percentile(&sorted, 50.0),
        percentile(&sorted, 90.0),
        percentile(&sorted, 99.0),
    );
    let min = sorted.first().copied().unwrap_or(f64::NAN);
    let flops = compiled.cost().flops;
    let model_gflops = gflops(flops, p50);
    let profile_rows = if args.by_op {
        let runs = args.profile_iters.unwrap_or(lat.len().clamp(3, 20));
        let mut nodes = profile(&compiled, &inputs, runs)?;
        let rows = by_op(&mut nodes);
        // by_op sorted each node's times: the slowest nodes by median.
        let mut slow: Vec<(f64, &NodeTimes)> =
            nodes.iter().map(|n| (percentile(&n.ms, 50.0), n)).collect();
        slow.sort_by(|a, b| b.0.total_cmp(&a.0));
        let top: Vec<(String, &'static str, f64, u64)> = slow
            .iter()
            .take(args.top_nodes)
            .map(|(ms, n)| (n.node.clone(), n.op, *ms, n.flops))
            .collect();
        Some((runs, rows, top))
    } else {
        None
    };
    let rss = peak_rss_mb();
    // One more steady-state run, counting its heap allocations (the outputs it returns
    // are among them).
    let (alloc_calls, alloc_bytes, out) =
        crate::alloc_count::measure(|| compiled.run_named(&inputs));
    let out_bytes: usize = out?.iter().map(|(_, t)| t.size_bytes()).sum();
    let mem = compiled.memory_report();
    if args.json {
        let mut v = serde_json::json!({
            "model": loaded.label,
            "latency_ms": { "min": min, "mean": mean, "p50": p50, "p90": p90, "p99": p99 },
            "throughput_per_s": throughput,
            "schedule": compiled.schedule().to_string(),
            "parallel": compiled.is_parallel(),
            "allocations_per_run": { "calls": alloc_calls, "bytes": alloc_bytes, "output_bytes": out_bytes },
            "arena_bytes": mem.arena_bytes,
            "batch": batch,
            "threads": compiled.threads(),
            "iters": lat.len(),
            "load_ms": load_time.as_secs_f64() * 1e3,
            "compile_ms": compile_time.as_secs_f64() * 1e3,
            "samples_ms": lat,
            "gflop": flops as f64 / 1e9,
            "gflop_per_s": model_gflops,
            "peak_rss_mb": rss,
        });
        if let Some((runs, rows, _)) = &profile_rows {
            let total: f64 = rows.iter().map(|r| r.ms).sum();
            v["profile_runs"] = serde_json::json!(runs);
            v["profile_total_ms"] = serde_json::json!(total);
            v["by_op"] = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "op": r.op,
                        "count": r.count,
                        "ms": r.ms,
                        "share": if total > 0.0 { r.ms / total } else { 0.0 },
                        "gflop": r.flops as f64 / 1e9,
                        "gflop_per_s": gflops(r.flops, r.ms),
                    })
                })
                .collect::<Vec<_>>()
                .into();
        }
        println!("{v}");
    } else {
        println!("model:      {}", loaded.label);
        println!(
            "batch {batch}, {} thread(s), {} timed runs after {} warmup",
            compiled.threads(),
            lat.len(),
            args.warmup
        );
        println!("compile:    {:.1} ms", compile_time.as_secs_f64() * 1e3);
        println!(
            "latency ms: min {min:.3}  mean {mean:.3}  p50 {p50:.3}  p90 {p90:.3}  p99 {p99:.3}"
        );
        println!("throughput: {throughput:.2} inferences/s");
        println!(
            "work:       {:.3} GFLOP per run, {model_gflops:.1} GFLOP/s at the median",
            flops as f64 / 1e9
        );
        println!("load:       {:.1} ms", load_time.as_secs_f64() * 1e3);
        if let Some(r) = rss {
            println!("peak RSS:   {r:.1} MiB");
        }
        println!(
            "schedule:   {} ({}); arena {:.2} MiB for {} activations",
            compiled.schedule(),
            if compiled.is_parallel() {
                "branch-parallel"
            } else {
                "sequential"
            },
            mem.arena_bytes as f64 / (1u64 << 20) as f64,
            mem.arena_values
        );
        println!(
            "allocated:  {alloc_calls} heap allocations, {alloc_bytes} bytes in a steady-state run (the returned outputs: {out_bytes} bytes)"
        );
        if let Some((runs, rows, top)) = &profile_rows {
            let total: f64 = rows.iter().map(|r| r.ms).sum();
            if !top.is_empty() {
                println!();
                println!("slowest nodes (median ms):");
                for (name, op, ms, flops) in top {
                    println!(
                        "  {:>8.3} ms {:>7.1} GFLOP/s  {op:<14} {name}",
                        ms,
                        gflops(*flops, *ms)
                    );
                }
            }
            println!();
            println!(
                "per op type (median node times over {runs} profiled runs; sum {total:.3} ms):"
            );
            println!(
                "  {:<22} {:>6} {:>10} {:>7} {:>10} {:>9}",
                "op", "nodes", "ms", "share", "GFLOP", "GFLOP/s"
            );
            for r in rows {
                println!(
                    "  {:<22} {:>6} {:>10.3} {:>6.1}% {:>10.4} {:>9.1}",
                    r.op,
                    r.count,
                    r.ms,
                    if total > 0.0 {
                        100.0 * r.ms / total
                    } else {
                        0.0
                    },
                    r.flops as f64 / 1e9,
                    gflops(r.flops, r.ms)
                );
            }
        }
    }
    Ok(())
}
