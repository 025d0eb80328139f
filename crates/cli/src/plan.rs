//! `millrace plan`: what the passes did and the optimized graph; with `--sram SIZE`, which
//! weights stay resident in an on-chip memory of that size, the off-chip traffic per
//! inference with and without them, and the layers that are memory-bound on a roofline.
//!
//! The residency plan takes its weights (and the per-layer FLOPs and bytes of the roofline)
//! from the graph as compiled up to `dead-node-elim`, before fusion: there every
//! Conv/Gemm/MatMul reads its weights as plain constants, so tensor sizes are the logical
//! ones (the fused ops hold packed, padded or Winograd-transformed copies: ResNet-50's are
//! 117.9 MB against 102.2 MB logical at fp32). The activations' working set comes from the
//! optimized graph, the one that runs. See `millrace_memory::residency` for the model.
use crate::model_arg::{LoadArgs, Loaded};
use anyhow::{bail, Context, Result};
use clap::Args;
use millrace_kernels::peak::{fma_peak, triad_bandwidth, FmaVariant};
use millrace_memory::residency::{self, Objective, RenderOptions, WeightDtype};
use millrace_memory::{format_bytes, parse_size, Machine};

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Print the graph as it is after this pass.
    #[arg(long, value_name = "PASS")]
    pub dump_after: Option<String>,
    /// List the passes and exit.
    #[arg(long)]
    pub list_passes: bool,
    /// On-chip memory size (`40MB` = 40e6 bytes, `40MiB`, `512KiB`, `1.5GB`, bytes): plan
    /// which weights stay resident in it instead of printing the graph.
    #[arg(long, value_name = "SIZE")]
    pub sram: Option<String>,
    /// Precision weights and activations are counted at for the residency plan.
    #[arg(long, value_name = "fp32|fp16|int8", default_value = "fp32")]
    pub weight_dtype: String,
    /// Activation bytes to reserve on chip instead of the computed peak of live activations.
    #[arg(long, value_name = "SIZE")]
    pub working_set: Option<String>,
    /// Peak arithmetic rate for the roofline, GFLOP/s (default: measured here, briefly).
    #[arg(long, value_name = "GFLOPS")]
    pub peak_gflops: Option<f64>,
    /// Off-chip bandwidth for the roofline, GB/s (default: measured here, briefly).
    #[arg(long, value_name = "GBS")]
    pub bandwidth_gbs: Option<f64>,
    /// What the resident set maximizes: `traffic` (off-chip bytes saved per inference) or
    /// `time` (roofline time saved on --peak-gflops/--bandwidth-gbs, then bytes).
    #[arg(long, value_name = "traffic|time", default_value = "traffic")]
    pub objective: String,
    /// Also run the model once here and ONNX Runtime (Python, `onnxruntime`) once in a child
    /// process, and compare their peak resident memory with the activation arena.
    #[arg(long)]
    pub ort: bool,
    /// How many critical-path nodes to list in the schedule section.
    #[arg(long, value_name = "N", default_value_t = 12)]
    pub critical: usize,
    /// How many memory-bound layers and streamed tensors to list.
    #[arg(long, value_name = "N", default_value_t = 12)]
    pub top: usize,
    /// Place the optimized graph on devices (`cpu`, `cpu:THREADS`, `npu:FILE.toml`,
    /// comma-separated) and print the placement, copies and estimated latency instead of
    /// the graph.
    #[arg(long, value_name = "LIST")]
    pub devices: Option<String>,
}

pub fn plan(args: &PlanArgs) -> Result<()> {
    if args.list_passes {
        for (name, summary) in millrace::passes() {
            println!("{name:<20} {summary}");
        }
        return Ok(());
    }
    // Validate the residency arguments before the (possibly slow) compile.
    let residency_args = match &args.sram {
        Some(s) => Some((
            match args.objective.as_str() {
                "traffic" | "time" => args.objective.as_str(),
                o => bail!("--objective `{o}`: expected traffic or time"),
            },
            parse_size(s).context("--sram")?,
            args.weight_dtype
                .parse::<WeightDtype>()
                .context("--weight-dtype")?,
            args.working_set
                .as_deref()
                .map(parse_size)
                .transpose()
                .context("--working-set")?,
        )),
        None => None,
    };
    let machine = match residency_args {
        Some(_) => Some(machine(args)?),
        None => None,
    };
    let loaded = Loaded::new(&args.load)?;
    // The optimized graph (the one that runs), or the graph after --dump-after's pass.
    let compiled = loaded.compile_stop_after(args.dump_after.clone())?;
    if let Some(list) = &args.devices {
        let threads = args
            .load
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let mut rates =
            crate::devices::CpuRates::new(args.peak_gflops, args.bandwidth_gbs, threads);
        return crate::devices::plan_devices(&loaded.label, &compiled, list, &mut rates, args.top);
    }
    if residency_args.is_none() || args.dump_after.is_some() {
        passes(&compiled);
        println!();
        print!(
            "{}",
            crate::graph_report::schedule_and_memory(&compiled, args.critical)
        );
        if args.ort {
            println!();
            print!("{}", crate::graph_report::versus_ort(&loaded, &compiled)?);
        }
        println!();
        print!("{}", compiled.graph().dump());
    }

    if let (Some((objective, sram, dtype, given_ws)), Some(machine)) = (residency_args, machine) {
        let (peak_live, _) = residency::working_set(compiled.graph(), dtype);
        let ws = given_ws.unwrap_or(peak_live);
        // Weights at their logical sizes: the graph before fusion prepacks them.
        let unfused = loaded
            .compile_stop_after(Some("dead-node-elim".into()))
            .context("compiling up to dead-node-elim for the residency plan")?;
        let analysis = residency::analyze(unfused.graph(), dtype);
        let p = residency::plan_for(
            &analysis,
            sram,
            Some(ws),
            if objective == "time" {
                Objective::Time(machine.0)
            } else {
                Objective::Traffic
            },
        );
        println!("model: {}", loaded.label);
        print!(
            "{}",
            residency::render(
                &analysis,
                &p,
                &machine.0,
                &RenderOptions {
                    max_streamed: args.top,
                    max_layers: args.top,
                    machine_source: machine.1,
                    objective: if objective == "time" {
                        "roofline time saved per inference"
                    } else {
                        "off-chip bytes saved per inference"
                    },
                    working_set_source: if given_ws.is_some() {
                        "given by --working-set"
                    } else if args.dump_after.is_some() {
                        "peak live activations after --dump-after's pass, execution order"
                    } else {
                        "peak live activations of the optimized graph, execution order"
                    },
                }
            )
        );
        if given_ws.is_some() {
            println!("(computed working set: {})", format_bytes(peak_live));
        }
    }
    Ok(())
}

fn passes(compiled: &millrace::CompiledModel) {
    for r in compiled.pass_reports() {
        println!(
            "pass {:<18} {:>8.2} ms  nodes after: {:<6} {}",
            r.pass,
            r.time.as_secs_f64() * 1e3,
            r.nodes_after,
            if r.changed { "changed" } else { "no change" }
        );
        for (k, v) in &r.stats.counters {
            println!("    {v:>6}  {k}");
        }
    }
}

/// The roofline's ceilings: given, or a quick measurement (all cores, ~0.3 s).
fn machine(args: &PlanArgs) -> Result<(Machine, &'static str)> {
    let threads = args.load.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let (peak, bw, source) = match (args.peak_gflops, args.bandwidth_gbs) {
        (Some(p), Some(b)) => (p, b, "given"),
        (p, b) => {
            let p = p.unwrap_or_else(|| fma_peak(FmaVariant::detect(), threads, 0.05, 2).gflops);
            let b = b.unwrap_or_else(|| triad_bandwidth(threads, 64 << 20, 2));
            (p, b, "measured here; --peak-gflops/--bandwidth-gbs to set")
        }
    };
    Ok((Machine::new(peak, bw)?, source))
}
