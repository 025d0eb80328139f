//! Heterogeneous execution in the CLI: `plan --devices LIST` (the device list, the
//! placement per run of nodes, the copies, fallbacks and the estimated latency) and
//! `bench --groups K --parallel data|pipeline` (CPU thread groups against one group with
//! all threads, alternating in the same run).
//!
//! Device list syntax: comma-separated `cpu` (all threads, or `--threads`), `cpu:THREADS`
//! (a group of that many cores) and `npu:FILE.toml` (a simulated NPU, see [`npu_device`]).
//! CPU rates are the FMA peak and triad bandwidth measured here on that many threads (as
//! `millrace profile` does), or `--peak-gflops` / `--bandwidth-gbs` for all threads, the
//! peak shared out in proportion to a group's threads.
use crate::bench::{percentile, rel_l2};
use crate::model_arg::Loaded;
use anyhow::{bail, Context, Result};
use millrace::{CompileOptions, CompiledModel, PassOptions, Tensor};
use millrace_devices::{partition, CpuDevice, Device, Location, PartitionOptions, Placement};
use millrace_kernels::peak::{fma_peak, triad_bandwidth, FmaVariant};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

/// The simulated NPU described by the TOML file at `path` (see `examples/npu.toml`), named
/// `name` in the placement.
pub fn npu_device(name: String, path: &Path) -> Result<Box<dyn Device>> {
    let cfg = millrace_npu::NpuConfig::from_file(path)
        .with_context(|| format!("--devices: the NPU description {}", path.display()))?;
    Ok(Box::new(millrace_npu::NpuDevice::new(name, cfg)))
}

/// CPU rates for the device list: given for all threads, or measured per thread count.
pub struct CpuRates {
    /// (GFLOP/s, GB/s) for `all_threads`, from flags.
    pub given: (Option<f64>, Option<f64>),
    pub all_threads: usize,
    measured: HashMap<usize, (f64, f64)>,
}

impl CpuRates {
    pub fn new(peak_gflops: Option<f64>, bandwidth_gbs: Option<f64>, all_threads: usize) -> Self {
        CpuRates {
            given: (peak_gflops, bandwidth_gbs),
            all_threads: all_threads.max(1),
            measured: HashMap::new(),
        }
    }

    /// (FLOP/s, bytes/s) of a group of `threads`.
    fn rates(&mut self, threads: usize) -> Result<(f64, f64)> {
        for (what, v) in [
            ("--peak-gflops", self.given.0),
            ("--bandwidth-gbs", self.given.1),
        ] {
            if v.is_some_and(|x| !(x > 0.0 && x.is_finite())) {
                bail!("{what} must be a positive number");
            }
        }
        let (p, b) = match self.given {
            (Some(p), Some(b)) => (p * threads as f64 / self.all_threads as f64, b),
            (p, b) => {
                let m = *self.measured.entry(threads).or_insert_with(|| {
                    (
                        fma_peak(FmaVariant::detect(), threads, 0.04, 3).gflops,
                        triad_bandwidth(threads, 64 << 20, 2),
                    )
                });
                (
                    p.map_or(m.0, |p| p * threads as f64 / self.all_threads as f64),
                    b.unwrap_or(m.1),
                )
            }
        };
        Ok((p * 1e9, b * 1e9))
    }
}

/// Parses `cpu,cpu:4,npu:npu.toml` into devices, named by their spec (a repeated spec gets
/// `#2`, `#3`...).
pub fn parse_devices(list: &str, rates: &mut CpuRates) -> Result<Vec<Box<dyn Device>>> {
    let mut out: Vec<Box<dyn Device>> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for spec in list.split(',').map(str::trim) {
        if spec.is_empty() {
            bail!("--devices `{list}`: empty entry (expected cpu, cpu:THREADS or npu:FILE.toml)");
        }
        let count = seen.entry(spec.to_string()).or_insert(0);
        *count += 1;
        let name = if *count == 1 {
            spec.to_string()
        } else {
            format!("{spec}#{count}")
        };
        let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
        let dev: Box<dyn Device> = match (kind, arg) {
            ("cpu", "") => {
                let t = rates.all_threads;
                let (f, b) = rates.rates(t)?;
                Box::new(CpuDevice::new(name, t, f, b)?)
            }
            ("cpu", n) => {
                let t: usize =
                    n.parse().ok().filter(|&t| t > 0).with_context(|| {
                        format!("--devices `{spec}`: `{n}` is not a thread count")
                    })?;
                let (f, b) = rates.rates(t)?;
                Box::new(CpuDevice::new(name, t, f, b)?)
            }
            ("npu", "") => bail!("--devices `{spec}`: give the NPU's config, npu:FILE.toml"),
            ("npu", file) => npu_device(name, Path::new(file))?,
            _ => bail!(
                "--devices: unknown device `{spec}` (expected cpu, cpu:THREADS or npu:FILE.toml)"
            ),
        };
        out.push(dev);
    }
    if !out.iter().any(|d| d.is_host()) {
        let t = rates.all_threads;
        let (f, b) = rates.rates(t)?;
        eprintln!("note: adding `cpu` ({t} threads): graph inputs and outputs live on the host, and nodes no accelerator takes fall back to it");
        out.insert(0, Box::new(CpuDevice::new("cpu", t, f, b)?));
    }
    Ok(out)
}

fn ms(s: f64) -> String {
    // `+ 0.0` turns the -0.0 an empty sum gives into 0.0.
    format!("{:.3} ms", s * 1e3 + 0.0)
}

fn mib(b: u64) -> String {
    format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64)
}

/// `plan --devices`: places the optimized graph and prints the placement.
pub fn plan_devices(
    label: &str,
    compiled: &CompiledModel,
    list: &str,
    rates: &mut CpuRates,
    top: usize,
) -> Result<()> {
    let devices = parse_devices(list, rates)?;
    println!("model: {label}");
    let refs: Vec<&dyn Device> = devices.iter().map(|d| d.as_ref()).collect();
    let g = compiled.graph();
    let p = partition(g, &refs, &PartitionOptions::default())?;
    print!("{}", render(g, &refs, &p, top));
    Ok(())
}

/// The placement as text: devices, runs of nodes, copies, fallbacks, summary.
pub fn render(g: &millrace::ir::Graph, devs: &[&dyn Device], p: &Placement, top: usize) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let loc = |l: Location| match l {
        Location::Host => "host".to_string(),
        Location::Device(d) => devs[d].name().to_string(),
    };
    let _ = writeln!(s, "devices:");
    for (d, dev) in devs.iter().enumerate() {
        let link = dev.link().map_or("host memory".to_string(), |l| {
            format!(
                "link {:.1} GB/s + {:.1} us per copy",
                l.bandwidth / 1e9,
                l.latency * 1e6
            )
        });
        let _ = writeln!(s, "  [{d}] {:<14} {:?}, {link}", dev.name(), dev.kind());
    }
    let _ = writeln!(s, "\nplacement ({} nodes, in graph order):", g.nodes.len());
    for (r, d) in p.runs() {
        let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
        for n in &g.nodes[r.clone()] {
            *ops.entry(n.op.name()).or_default() += 1;
        }
        let ops: Vec<String> = ops.iter().map(|(o, c)| format!("{o} x{c}")).collect();
        let t: f64 = p.node_time_s[r.clone()].iter().sum();
        let _ = writeln!(
            s,
            "  {:>5}..{:<5} {:<12} {:>10}  {} .. {}  [{}]",
            r.start,
            r.end,
            devs[d].name(),
            ms(t),
            g.nodes[r.start].name,
            g.nodes[r.end - 1].name,
            ops.join(", ")
        );
    }
    let _ = writeln!(s, "\ncopies ({}):", p.transfers.len());
    for t in p.transfers.iter().take(top.max(1) * 4) {
        let _ = writeln!(
            s,
            "  {:<32} {} -> {:<10} {:>12} {:>10}",
            t.name,
            loc(t.from),
            loc(t.to),
            mib(t.bytes),
            ms(t.time_s)
        );
    }
    if p.transfers.len() > top.max(1) * 4 {
        let _ = writeln!(s, "  ... {} more", p.transfers.len() - top.max(1) * 4);
    }
    if !p.fallbacks.is_empty() {
        // Grouped by device and reason.
        let mut groups: BTreeMap<(usize, &str), Vec<&str>> = BTreeMap::new();
        for f in &p.fallbacks {
            groups
                .entry((f.device, f.reason.as_str()))
                .or_default()
                .push(g.nodes[f.node.index()].name.as_str());
        }
        let _ = writeln!(s, "\nfallbacks ({} node refusals):", p.fallbacks.len());
        for ((d, reason), nodes) in groups {
            let shown: Vec<&str> = nodes.iter().take(top.max(1)).copied().collect();
            let more = nodes.len().saturating_sub(shown.len());
            let _ = writeln!(
                s,
                "  {} refused {} node(s): {reason}\n      {}{}",
                devs[d].name(),
                nodes.len(),
                shown.join(", "),
                if more > 0 {
                    format!(" ... {more} more")
                } else {
                    String::new()
                }
            );
        }
    }
    let _ = writeln!(s, "\nsummary (estimates, one device at a time):");
    for d in &p.devices {
        let mem = match d.memory_bytes {
            Some(m) => format!(
                ", weights {} + working set {} of {}",
                mib(d.weight_bytes),
                mib(d.working_set_bytes),
                mib(m)
            ),
            None => String::new(),
        };
        let _ = writeln!(
            s,
            "  {:<14} {:>5} nodes  {:>12}{mem}",
            d.name,
            d.nodes,
            ms(d.compute_s)
        );
    }
    let _ = writeln!(
        s,
        "  transfers      {:>5} copies {:>12}  {}",
        p.transfers.len(),
        ms(p.transfer_s),
        mib(p.transfer_bytes)
    );
    let _ = writeln!(s, "  total latency        {:>12}", ms(p.total_s));
    let _ = writeln!(
        s,
        "  all on {:<14}{:>12}  ({:.2}x)",
        devs[p.host_only_device].name(),
        ms(p.host_only_s),
        if p.total_s > 0.0 {
            p.host_only_s / p.total_s
        } else {
            1.0
        }
    );
    s
}

/// How a split model runs a batch.
enum Split {
    Data(millrace::DataParallel),
    Pipeline(Box<millrace::PipelineParallel>),
}

impl Split {
    fn run(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, millrace::Error> {
        match self {
            Split::Data(m) => m.run_named(inputs),
            Split::Pipeline(m) => m.run_named(inputs),
        }
    }
}

/// What `bench --groups` needs from the bench arguments.
pub struct GroupBench<'a> {
    pub groups: usize,
    pub parallel: &'a str,
    pub micro_batch: Option<usize>,
    pub warmup: usize,
    pub iters: Option<usize>,
    pub seconds: Option<f64>,
    pub json: bool,
}

/// `bench --groups K --parallel data|pipeline`: the split model against `whole` (one group
/// with all threads), runs alternating so both see the same machine state.
pub fn group_bench(
    gb: &GroupBench<'_>,
    loaded: &Loaded,
    whole: &CompiledModel,
    inputs: &[(String, Tensor)],
) -> Result<()> {
    if gb.groups == 0 {
        bail!("--groups must be at least 1");
    }
    let threads = whole.threads();
    let batch = inputs
        .first()
        .and_then(|(_, t)| t.shape().first().copied())
        .unwrap_or(1);
    let a = loaded.args();
    let opts = CompileOptions {
        input_shapes: inputs
            .iter()
            .map(|(n, t)| (n.clone(), t.shape().to_vec()))
            .collect(),
        threads: Some(threads),
        passes: PassOptions {
            disabled: a.no_pass.iter().cloned().collect(),
            stop_after: None,
        },
        schedule: a.schedule,
        idle: a.idle,
    };
    let split = match gb.parallel {
        "data" => Split::Data(
            loaded
                .model
                .compile_data_parallel(
                    &opts,
                    &millrace::DataParallelOptions {
                        groups: gb.groups,
                        threads: Some(threads),
                        speeds: None,
                    },
                )
                .context("splitting the batch across groups")?,
        ),
        "pipeline" => Split::Pipeline(Box::new(
            loaded
                .model
                .compile_pipeline_parallel(
                    &opts,
                    &millrace::PipelineOptions {
                        stages: gb.groups,
                        threads: Some(threads),
                        micro_batch: gb.micro_batch,
                        ..millrace::PipelineOptions::default()
                    },
                )
                .context("cutting the model into stages")?,
        )),
        other => bail!("--parallel `{other}`: expected data or pipeline"),
    };
    let layout: Vec<String> = match &split {
        Split::Data(m) => m
            .groups()
            .iter()
            .map(|g| {
                format!(
                    "{} thread(s) rows {}..{}",
                    g.threads, g.rows.start, g.rows.end
                )
            })
            .collect(),
        Split::Pipeline(m) => m
            .stages()
            .iter()
            .map(|s| {
                format!(
                    "{} thread(s) nodes {}..{} ({:.0}% of cost)",
                    s.threads,
                    s.nodes.start,
                    s.nodes.end,
                    100.0 * s.share
                )
            })
            .collect(),
    };
    for _ in 0..gb.warmup.max(1) {
        split.run(inputs)?;
    }
    let budget = gb.seconds.unwrap_or(3.0);
    let (mut lw, mut ls) = (Vec::new(), Vec::new());
    let (mut tw, mut ts) = (0.0, 0.0);
    let (mut first_w, mut first_s) = (None, None);
    let start = Instant::now();
    loop {
        let t = Instant::now();
        let o = whole.run_named(inputs)?;
        let dt = t.elapsed().as_secs_f64();
        tw += dt;
        lw.push(dt * 1e3);
        first_w.get_or_insert(o);
        let t = Instant::now();
        let o = split.run(inputs)?;
        let dt = t.elapsed().as_secs_f64();
        ts += dt;
        ls.push(dt * 1e3);
        first_s.get_or_insert(o);
        let done = match gb.iters {
            Some(n) => lw.len() >= n,
            None => start.elapsed().as_secs_f64() >= budget && lw.len() >= 5,
        };
        if done {
            break;
        }
    }
    let mut max_err = 0.0f64;
    if let (Some(w), Some(s)) = (&first_w, &first_s) {
        for ((_, x), (_, y)) in w.iter().zip(s) {
            max_err = max_err.max(rel_l2(y, x)?);
        }
    }
    lw.sort_by(f64::total_cmp);
    ls.sort_by(f64::total_cmp);
    let rows_per_s = |total: f64, n: usize| (n * batch) as f64 / total;
    let (fw, fs) = (rows_per_s(tw, lw.len()), rows_per_s(ts, ls.len()));
    let mode = format!("{} x{}", gb.parallel, gb.groups);
    if gb.json {
        let v = serde_json::json!({
            "model": loaded.label,
            "batch": batch,
            "threads": threads,
            "parallel": gb.parallel,
            "groups": gb.groups,
            "layout": layout,
            "runs": lw.len(),
            "one_group": { "throughput_per_s": fw, "latency_ms": { "p50": percentile(&lw, 50.0), "p99": percentile(&lw, 99.0) } },
            "split": { "throughput_per_s": fs, "latency_ms": { "p50": percentile(&ls, 50.0), "p99": percentile(&ls, 99.0) } },
            "throughput_ratio": fs / fw,
            "max_rel_l2_vs_one_group": max_err,
        });
        println!("{v}");
        return Ok(());
    }
    println!("model:      {}", loaded.label);
    println!(
        "batch {batch}, {threads} thread(s), {} alternating runs of each",
        lw.len()
    );
    println!("{mode}:");
    for (i, l) in layout.iter().enumerate() {
        println!("  {i}: {l}");
    }
    for (name, f, l) in [("one group", fw, &lw), (mode.as_str(), fs, &ls)] {
        println!(
            "{name:<14} {f:>9.2} rows/s   latency ms p50 {:>9.3}  p99 {:>9.3}",
            percentile(l, 50.0),
            percentile(l, 99.0)
        );
    }
    println!("split / one group throughput: {:.2}x", fs / fw);
    println!("max relative L2 difference of outputs vs one group: {max_err:.1e}");
    Ok(())
}
