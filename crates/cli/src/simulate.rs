//! `millrace simulate MODEL --accel NPU.toml`: the model on a simulated NPU (see
//! `millrace_npu`): latency, per-unit utilization, SRAM peak, DRAM and host-link traffic,
//! ops that fell back to the host, the tiles chosen for the heaviest layers, a Chrome trace,
//! and the real outputs (computed in the simulated finish order) checked against a reference.
use crate::model_arg::{self, LoadArgs, Loaded};
use anyhow::{bail, Context, Result};
use clap::Args;
use millrace::Tensor;
use millrace_memory::format_bytes;
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
    /// Simulated cards (multi-card execution is not implemented yet: only 1 is accepted).
    #[arg(long, default_value_t = 1)]
    pub cards: usize,
    /// How several cards share the work: data or pipeline (reserved for --cards > 1).
    #[arg(long, value_name = "data|pipeline")]
    pub parallel: Option<String>,
}

pub fn simulate(args: &SimulateArgs) -> Result<()> {
    if args.cards != 1 || args.parallel.is_some() {
        bail!("--cards/--parallel: multi-card simulation is not implemented yet (use --cards 1)");
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
