//! `millrace simulate MODEL --accel NPU.toml`: the model on a simulated NPU (see
//! `millrace_npu`): latency, per-unit utilization, SRAM peak, DRAM and host-link traffic,
//! ops that fell back to the host, the tiles chosen for the heaviest layers, a Chrome trace,
//! and the real outputs (computed in the simulated finish order) checked against a reference.
//!
//! With `--cards K --parallel data|pipeline`, K identical cards (see `millrace_npu::multi`):
//! the batch split by rows (and, with `--with-cpu`, some rows on the host CPU), or the model
//! cut into K stages with `--micro-batches` flowing; a table per device (rows or stage, time,
//! utilization, link bytes and time), throughput and latency against one card, a trace with
//! one process per card, and the outputs checked against one card's.
use crate::model_arg::{self, LoadArgs, Loaded};
use anyhow::{bail, Context, Result};
use clap::Args;
use millrace::Tensor;
use millrace_memory::format_bytes;
use millrace_npu::multi::Parallel;
use millrace_npu::{lower::Work, trace, NpuConfig, SimOptions};
use std::path::PathBuf;

#[derive(Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// The NPU description (see examples/npu.toml).
    #[arg(long, value_name = "FILE.toml")]
    pub accel: PathBuf,
    /// Write a Chrome trace (one track per unit; open in Perfetto or chrome://tracing).
    #[arg(long, value_name = "FILE.json")]
    pub trace: Option<PathBuf>,
    /// Input arrays keyed by graph input name (.npz), or one .npy; default: seeded random.
    #[arg(long, value_name = "IN.npz")]
    pub inputs: Option<PathBuf>,
    /// Reference outputs (.npz keyed by output name): check the simulated outputs against
    /// them (relative L2 error <= --tolerance), exit 1 if any differs.
    #[arg(long, value_name = "REF.npz")]
    pub check: Option<PathBuf>,
    /// Relative L2 tolerance for --check.
    #[arg(long, default_value_t = 1e-4)]
    pub tolerance: f64,
    /// Back-to-back inferences to simulate.
    #[arg(long, default_value_t = 1)]
    pub inferences: usize,
    /// Keep weights resident in SRAM across inferences (chosen by the residency knapsack);
    /// use with --inferences 2 to see the second inference skip their loads.
    #[arg(long)]
    pub resident: bool,
    /// How many of the heaviest matrix layers to list with their tiles.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub top: usize,
    /// Seed for random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip computing the outputs (timing only).
    #[arg(long)]
    pub no_outputs: bool,
    /// Simulated cards (identical, each described by --accel). With --parallel, the run is
    /// compared with one card doing all the work.
    #[arg(long, default_value_t = 1)]
    pub cards: usize,
    /// How the cards share the work: `data` splits the batch (--batch) by rows, `pipeline`
    /// cuts the model into one stage per card with --micro-batches flowing through.
    #[arg(long, value_name = "data|pipeline")]
    pub parallel: Option<String>,
    /// Pipeline: micro-batches the batch is cut into (the batch must be a multiple;
    /// default: one row each).
    #[arg(long, value_name = "M")]
    pub micro_batches: Option<usize>,
    /// Data parallel: the host CPU takes rows too (its speed from the partitioner's
    /// roofline, at --peak-gflops / --bandwidth-gbs or assumed rates).
    #[arg(long)]
    pub with_cpu: bool,
    /// The host CPU's peak for --with-cpu, GFLOP/s for all --threads (default: 80 per thread).
    #[arg(long, value_name = "GFLOPS")]
    pub peak_gflops: Option<f64>,
    /// The host CPU's memory bandwidth for --with-cpu, GB/s (default: 12 per thread, at
    /// most 20).
    #[arg(long, value_name = "GBS")]
    pub bandwidth_gbs: Option<f64>,
}

pub fn simulate(args: &SimulateArgs) -> Result<()> {
    let parallel: Option<Parallel> = args.parallel.as_deref().map(str::parse).transpose()?;
    if args.cards == 0 {
        bail!("--cards must be at least 1");
    }
    match parallel {
        None if args.cards > 1 => {
            bail!(
                "--cards {}: say how the cards share the work with --parallel data|pipeline",
                args.cards
            )
        }
        None => {
            if args.micro_batches.is_some() || args.with_cpu {
                bail!("--micro-batches and --with-cpu need --parallel (pipeline, data)");
            }
        }
        Some(p) => return multi(args, p),
    }
    if args.inferences == 0 {
        bail!("--inferences must be at least 1");
    }
    let cfg = NpuConfig::from_file(&args.accel)?;
    let loaded = Loaded::new(&args.load)?;
    let inputs: Vec<(String, Tensor)> = match &args.inputs {
        Some(p) => model_arg::read_inputs(p, &loaded)?,
        None => loaded.random(args.seed)?,
    };
    let shapes = inputs
        .iter()
        .map(|(n, t)| (n.clone(), t.shape().to_vec()))
        .collect();
    let compiled = loaded.compile_with(shapes, Some(1))?;
    let g = compiled.graph();
    let opts = SimOptions {
        inferences: args.inferences,
        resident_weights: args.resident,
    };
    let r = millrace_npu::simulate(g, &cfg, &opts).context("simulating")?;
    println!("model:   {}", loaded.label);
    println!("device:  {}", cfg.summary());
    let ms = |c: u64| r.seconds(c) * 1e3;
    for k in 0..r.inference_end.len() {
        println!(
            "latency: inference {}: {:.3} ms ({} cycles){}",
            k + 1,
            ms(r.latency_cycles(k)),
            r.latency_cycles(k),
            if k == 0 {
                ""
            } else {
                " after the previous one"
            }
        );
    }
    println!(
        "total:   {:.3} ms for {} inference(s)",
        ms(r.total_cycles),
        r.inference_end.len()
    );
    println!("\nunit          busy ms   util  commands");
    for u in &r.units {
        println!(
            "{:<12} {:>8.3} {:>5.1}%  {:>8}",
            u.unit.name(),
            ms(u.busy_cycles),
            100.0 * u.utilization,
            u.commands
        );
    }
    println!(
        "\nSRAM peak:       {} of {} (resident weights {})",
        format_bytes(r.sram_peak),
        format_bytes(cfg.sram_bytes),
        format_bytes(r.program.resident_bytes)
    );
    for k in 0..r.dram_read.len() {
        println!(
            "DRAM traffic:    inference {}: {} read, {} written; host link {}",
            k + 1,
            format_bytes(r.dram_read[k]),
            format_bytes(r.dram_write[k]),
            format_bytes(r.link_bytes[k])
        );
    }
    let fb = millrace_npu::lower::fallbacks(&r.program);
    if fb.is_empty() {
        println!("host fall-back:  none (every node runs on the NPU)");
    } else {
        println!("host fall-back:  {} node(s)", fb.len());
        for (name, op, why) in &fb {
            println!("  {name} ({op}): {why}");
        }
    }
    let top = millrace_npu::sim::top_matrix_nodes(&r, args.top);
    if !top.is_empty() {
        println!("\nheaviest matrix layers (first inference):");
        println!("  node                            op            ms     GEMM (MxKxN)          tiles   unit");
        for i in top {
            let w = &r.program.works[i];
            let span = r.nodes[i].span.map_or(0, |(a, b)| b - a);
            let gemm = match &w.work {
                Work::Matrix { batch, m, k, n, .. } => {
                    if *batch > 1 {
                        format!("{batch}x {m}x{k}x{n}")
                    } else {
                        format!("{m}x{k}x{n}")
                    }
                }
                _ => String::new(),
            };
            let tiles = r.program.tilings[i]
                .map(|t| format!("{} on {:?}", t.tiles, t.axis))
                .unwrap_or_default();
            let unit = r.program.matrix_unit[i].map_or(String::new(), |u| u.to_string());
            println!(
                "  {:<31} {:<12} {:>7.3}  {:<20} {:>8}   {}",
                truncate(&w.name, 31),
                w.op,
                ms(span),
                gemm,
                tiles,
                unit
            );
        }
    }
    if let Some(path) = &args.trace {
        let json = trace::chrome_trace(&r);
        std::fs::write(path, serde_json::to_vec(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {} (open in https://ui.perfetto.dev)", path.display());
    }
    if args.no_outputs && args.check.is_none() {
        return Ok(());
    }
    let outs = millrace_npu::outputs(g, &r, &inputs).context("computing the outputs")?;
    for (name, t) in &outs {
        println!("output {name}: {} {:?}", t.dtype(), t.shape());
    }
    if let Some(path) = &args.check {
        let refs =
            millrace::read_npz(path).with_context(|| format!("reading {}", path.display()))?;
        let mut bad = 0;
        for (name, t) in &outs {
            let Some((_, want)) = refs.iter().find(|(n, _)| n == name) else {
                println!("check {name}: not in the reference file, skipped");
                continue;
            };
            match millrace_npu::functional::rel_l2(t, want) {
                Some(e) if e <= args.tolerance => println!("check {name}: rel L2 {e:.2e} ok"),
                Some(e) => {
                    bad += 1;
                    println!(
                        "check {name}: rel L2 {e:.2e} FAILS (> {:.0e})",
                        args.tolerance
                    )
                }
                None => {
                    bad += 1;
                    println!(
                        "check {name}: shape {:?} differs from the reference {:?}",
                        t.shape(),
                        want.shape()
                    )
                }
            }
        }
        if bad > 0 {
            bail!("{bad} output(s) differ from {}", path.display());
        }
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}~")
    }
}

/// The batch (first dimension shared by every input), from the inputs' shapes.
fn batch_of(shapes: &[(String, Vec<usize>)]) -> Result<usize> {
    let mut batch = None;
    for (n, s) in shapes {
        let Some(&b) = s.first() else {
            bail!("input `{n}` is a scalar: it has no batch dimension to split");
        };
        match batch {
            None => batch = Some(b),
            Some(x) if x != b => {
                bail!("inputs disagree on the batch (first dimension): {x} and {b} (`{n}`)")
            }
            _ => {}
        }
    }
    batch.context("the model has no inputs")
}

fn check_outputs(
    what: &str,
    outs: &[(String, Tensor)],
    reference: &[(String, Tensor)],
    tolerance: f64,
) -> usize {
    let mut bad = 0;
    for (name, t) in outs {
        let Some((_, want)) = reference.iter().find(|(n, _)| n == name) else {
            println!("check {name} against {what}: not there, skipped");
            continue;
        };
        match millrace_npu::functional::rel_l2(t, want) {
            Some(e) if e <= tolerance => println!("check {name} against {what}: rel L2 {e:.2e} ok"),
            Some(e) => {
                bad += 1;
                println!("check {name} against {what}: rel L2 {e:.2e} FAILS (> {tolerance:.0e})")
            }
            None => {
                bad += 1;
                println!(
                    "check {name} against {what}: shape {:?} differs from {:?}",
                    t.shape(),
                    want.shape()
                )
            }
        }
    }
    bad
}

/// `--cards K --parallel data|pipeline`.
fn multi(args: &SimulateArgs, parallel: Parallel) -> Result<()> {
    use millrace_npu::multi;
    if args.inferences != 1 || args.resident {
        bail!("--inferences and --resident apply to one card; with --parallel, use --batch and --micro-batches");
    }
    if args.with_cpu && parallel == Parallel::Pipeline {
        bail!("--with-cpu: only data parallel hands rows to the CPU");
    }
    if parallel == Parallel::Data && args.micro_batches.is_some() {
        bail!("--micro-batches applies to --parallel pipeline");
    }
    let cfg = NpuConfig::from_file(&args.accel)?;
    let loaded = Loaded::new(&args.load)?;
    // Inputs from the file, or random ones made only when outputs are computed (timing a
    // large batch needs only the shapes).
    let wants_outputs = !args.no_outputs || args.check.is_some();
    let mut inputs: Vec<(String, Tensor)> = match &args.inputs {
        Some(p) => model_arg::read_inputs(p, &loaded)?,
        None => Vec::new(),
    };
    let shapes: Vec<(String, Vec<usize>)> = if args.inputs.is_some() {
        inputs
            .iter()
            .map(|(n, t)| (n.clone(), t.shape().to_vec()))
            .collect()
    } else {
        loaded
            .specs()?
            .into_iter()
            .map(|s| (s.name, s.shape))
            .collect()
    };
    let batch = batch_of(&shapes)?;
    if wants_outputs && args.inputs.is_none() {
        inputs = loaded.random(args.seed)?;
    }
    let shapes_for = |rows: usize| {
        shapes
            .iter()
            .map(|(n, s)| {
                let mut s = s.clone();
                s[0] = rows;
                (n.clone(), s)
            })
            .collect::<std::collections::HashMap<_, _>>()
    };
    let ms = |c: u64| cfg.seconds(c) * 1e3;
    println!("model:   {}", loaded.label);
    println!("device:  {} x {}", args.cards, cfg.summary());
    println!(
        "links:   {}; activations between cards {}",
        if cfg.link_shared {
            "one host link shared by all cards (host_link.shared = true)"
        } else {
            "one host link per card (host_link.shared = false)"
        },
        if cfg.peer_to_peer {
            "go card to card (peer_to_peer = true, one transfer)"
        } else {
            "go card -> host -> card (two transfers)"
        }
    );
    let link_cell = |bytes: u64, cycles: u64| {
        if bytes == 0 {
            "-".to_string()
        } else {
            format!("{} {:.3} ms", format_bytes(bytes), ms(cycles))
        }
    };
    let (outs, single_outs, trace_json) = match parallel {
        Parallel::Data => {
            let cpu = if args.with_cpu {
                let threads = args
                    .load
                    .threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                let d = millrace_devices::CpuDevice::with_default_rates("cpu", threads)?;
                let peak = args.peak_gflops.map_or(d.peak_flops(), |g| g * 1e9);
                let bw = args.bandwidth_gbs.map_or(d.bandwidth(), |g| g * 1e9);
                Some(millrace_devices::CpuDevice::new("cpu", threads, peak, bw)?)
            } else {
                None
            };
            if let Some(c) = &cpu {
                println!(
                    "host:    cpu, {} threads, roofline {:.0} GFLOP/s, {:.1} GB/s{}",
                    c.threads(),
                    c.peak_flops() / 1e9,
                    c.bandwidth() / 1e9,
                    if args.peak_gflops.is_some() && args.bandwidth_gbs.is_some() {
                        " (given)"
                    } else {
                        " (partly assumed: pass --peak-gflops and --bandwidth-gbs)"
                    }
                );
            }
            let mut graphs = multi::GraphCache::new(|rows| {
                loaded
                    .compile_with(shapes_for(rows), Some(1))
                    .map(|c| c.graph().clone())
                    .map_err(|e| format!("{e:#}"))
            });
            let opts = multi::DataOptions {
                cards: args.cards,
                batch,
                cpu,
            };
            let r = multi::data_parallel(&cfg, &opts, &mut graphs)?;
            let rows: Vec<usize> = r.run.devices.iter().map(|d| d.rows.len()).collect();
            println!(
                "mode:    data parallel, batch {batch} split by rows: {:?} from one-row simulations{}\n",
                r.run.estimate_rows,
                if rows == r.run.estimate_rows {
                    String::new()
                } else {
                    format!(", {rows:?} after moving rows off the slowest device")
                }
            );
            println!("device  rows         est/row ms  compute ms   done ms   util   link in              link out");
            for d in &r.run.devices {
                let (link_in, link_out) = match d.place {
                    multi::Place::Card(k) => {
                        let s = &r.run.card_stats[k];
                        (
                            link_cell(s.bytes_in, s.link_in_cycles),
                            link_cell(s.bytes_out, s.link_out_cycles),
                        )
                    }
                    multi::Place::Cpu => ("(host memory)".into(), "-".into()),
                };
                let util = if r.run.latency_cycles > 0 {
                    100.0 * d.compute_cycles as f64 / r.run.latency_cycles as f64
                } else {
                    0.0
                };
                println!(
                    "{:<7} {:<12} {:>10.3} {:>11.3} {:>9.3} {:>5.1}%   {:<20} {}",
                    d.name,
                    format!("{}..{} ({})", d.rows.start, d.rows.end, d.rows.len()),
                    ms(d.row_cycles),
                    ms(d.compute_cycles),
                    ms(d.done),
                    util,
                    link_in,
                    link_out
                );
            }
            let tput = r.run.throughput(&cfg);
            let tput1 = r.single.throughput(&cfg);
            println!(
                "\nlatency:    {:.3} ms (slowest device, transfers included); throughput {:.1} rows/s",
                ms(r.run.latency_cycles),
                tput
            );
            println!(
                "one card:   {:.3} ms for all {batch} rows (transfers included); throughput {:.1} rows/s",
                ms(r.single.latency_cycles),
                tput1
            );
            println!(
                "speedup:    {:.2}x throughput, {:.2}x lower latency than one card",
                r.speedup(),
                r.speedup()
            );
            let reports: Vec<&millrace_npu::SimReport> = r.run.reports.iter().collect();
            let trace_json = args.trace.as_ref().map(|_| {
                multi::chrome_trace(
                    &cfg,
                    args.cards,
                    &r.run.tasks,
                    &reports,
                    multi::TRACE_DETAIL_MICRO_BATCHES,
                )
            });
            if !wants_outputs {
                (None, None, trace_json)
            } else {
                let outs = multi::data_outputs(&r.run, &mut graphs, &inputs)?;
                let single = multi::data_outputs(&r.single, &mut graphs, &inputs)?;
                (Some(outs), Some(single), trace_json)
            }
        }
        Parallel::Pipeline => {
            let m = args.micro_batches.unwrap_or(batch);
            if m == 0 {
                bail!("--micro-batches must be at least 1");
            }
            if batch % m != 0 {
                bail!("--micro-batches {m}: the batch of {batch} row(s) is not a multiple of it");
            }
            let rows = batch / m;
            let compiled = loaded.compile_with(shapes_for(rows), Some(1))?;
            let g = compiled.graph();
            let opts = multi::PipelineOptions {
                cards: args.cards,
                micro_batches: m,
            };
            let r = multi::pipeline(g, &cfg, &opts)?;
            println!(
                "mode:    pipeline parallel, {m} micro-batch(es) of {rows} row(s), stages balanced on simulated node times\n"
            );
            println!("card  nodes        est ms   stage ms   busy ms   util   link in              link out");
            for (k, st) in r.run.stages.iter().enumerate() {
                let s = &r.run.card_stats[k];
                println!(
                    "npu{:<2} {:<12} {:>6.3} {:>10.3} {:>9.3} {:>5.1}%   {:<20} {}",
                    k,
                    format!("{}..{}", st.nodes.start, st.nodes.end),
                    ms(st.estimate_cycles),
                    ms(st.cycles),
                    ms(s.busy_cycles),
                    100.0 * r.run.utilization(k),
                    link_cell(s.bytes_in, s.link_in_cycles),
                    link_cell(s.bytes_out, s.link_out_cycles)
                );
            }
            let lat: Vec<u64> = r.run.micro.iter().map(|(a, b)| b - a).collect();
            let lat1: Vec<u64> = r.single.micro.iter().map(|(a, b)| b - a).collect();
            println!(
                "\nmicro-batch latency: first {:.3} ms, mean {:.3} ms, last {:.3} ms (first transfer to outputs on the host)",
                ms(lat.first().copied().unwrap_or(0)),
                r.run.mean_latency() / cfg.clock_hz * 1e3,
                ms(lat.last().copied().unwrap_or(0))
            );
            let k = args.cards as f64;
            println!(
                "total:      {:.3} ms for {m} micro-batches; throughput {:.1} micro-batches/s ({:.1} rows/s); bubble {:.1}% (balanced ideal (K-1)/(M+K-1) = {:.1}%)",
                ms(r.run.total_cycles),
                r.run.throughput(&cfg),
                r.run.throughput(&cfg) * rows as f64,
                100.0 * r.run.bubble_fraction(),
                100.0 * (k - 1.0) / (m as f64 + k - 1.0)
            );
            println!(
                "one card:   {:.3} ms for the {m} micro-batches one after another ({:.3} ms each); throughput {:.1} micro-batches/s",
                ms(r.single.total_cycles),
                ms(lat1.first().copied().unwrap_or(0)),
                r.single.throughput(&cfg)
            );
            println!(
                "speedup:    {:.2}x throughput; micro-batch latency {:.2}x one card's",
                r.speedup(),
                if r.single.mean_latency() > 0.0 {
                    r.run.mean_latency() / r.single.mean_latency()
                } else {
                    0.0
                }
            );
            let reports: Vec<&millrace_npu::SimReport> =
                r.run.stages.iter().map(|s| &s.report).collect();
            let trace_json = args.trace.as_ref().map(|_| {
                multi::chrome_trace(
                    &cfg,
                    args.cards,
                    &r.run.tasks,
                    &reports,
                    multi::TRACE_DETAIL_MICRO_BATCHES,
                )
            });
            if !wants_outputs {
                (None, None, trace_json)
            } else {
                let mut parts = Vec::with_capacity(m);
                let mut single = Vec::with_capacity(m);
                for j in 0..m {
                    let range = j * rows..(j + 1) * rows;
                    let mb: Vec<(String, Tensor)> = inputs
                        .iter()
                        .map(|(n, t)| {
                            multi::slice_rows(t, &range)
                                .map(|s| (n.clone(), s))
                                .with_context(|| format!("input `{n}`: rows {range:?}"))
                        })
                        .collect::<Result<_>>()?;
                    parts.push(multi::pipeline_outputs(g, &r.run, &mb)?);
                    single.push(multi::pipeline_outputs(g, &r.single, &mb)?);
                }
                (
                    Some(multi::concat_rows(parts).map_err(anyhow::Error::msg)?),
                    Some(multi::concat_rows(single).map_err(anyhow::Error::msg)?),
                    trace_json,
                )
            }
        }
    };
    if let (Some(path), Some(json)) = (&args.trace, trace_json) {
        std::fs::write(path, serde_json::to_vec(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "wrote {} (one process per card; unit tracks for the first {} micro-batches; open in https://ui.perfetto.dev)",
            path.display(),
            multi::TRACE_DETAIL_MICRO_BATCHES
        );
    }
    let (Some(outs), Some(single)) = (outs, single_outs) else {
        return Ok(());
    };
    for (name, t) in &outs {
        println!("output {name}: {} {:?}", t.dtype(), t.shape());
    }
    let mut bad = check_outputs("one card", &outs, &single, args.tolerance);
    if let Some(path) = &args.check {
        let refs =
            millrace::read_npz(path).with_context(|| format!("reading {}", path.display()))?;
        bad += check_outputs(&path.display().to_string(), &outs, &refs, args.tolerance);
    }
    if bad > 0 {
        bail!("{bad} output(s) differ");
    }
    Ok(())
}
