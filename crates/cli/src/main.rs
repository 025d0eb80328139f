//! The `millrace` command line: info, run, bench, peak, profile, plan, serve, zoo.
//!
//! Errors are reported with their full cause chain; nothing here panics on bad input.

mod alloc_count;
mod bench;
mod graph_report;
mod model_arg;
mod plan;
mod profile;
mod serve;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use millrace::{write_npz, Tensor};
use model_arg::{LoadArgs, Loaded};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "millrace",
    version,
    about = "An ONNX inference engine: compile a model, run it, measure it."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Inputs, outputs, op histogram, parameters, weight bytes and MACs of a model.
    Info {
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Run a model on inputs from an .npz/.npy file (or seeded random inputs) and save the outputs.
    Run(RunArgs),
    /// Measure latency and throughput (`--by-op`: time and GFLOP/s per op type).
    Bench(bench::BenchArgs),
    /// Measure the machine's peak fp32 FMA rate and triad memory bandwidth.
    Peak(bench::PeakArgs),
    /// Per-node time, GFLOP/s and roofline bound; writes a Chrome trace and an SVG timeline.
    Profile(profile::ProfileArgs),
    /// Show the optimized graph and what each pass did; with `--sram SIZE`, which weights
    /// stay resident on chip, off-chip traffic and memory-bound layers.
    Plan(plan::PlanArgs),
    /// Serve models over HTTP and gRPC (KServe v2 / Triton protocol) with dynamic batching
    /// and Prometheus metrics.
    Serve(serve::ServeArgs),
    /// Write a built-in model to an ONNX file (`millrace zoo resnet50 -o resnet50.onnx`), or list them.
    Zoo {
        /// Built-in model name; omit to list them.
        name: Option<String>,
        #[arg(short, long, value_name = "FILE.onnx")]
        output: Option<PathBuf>,
    },
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Input arrays keyed by graph input name (.npz), or one .npy for a single-input model.
    #[arg(long, value_name = "IN.npz")]
    inputs: Option<PathBuf>,
    /// Where to write the outputs, keyed by graph output name.
    #[arg(long, value_name = "OUT.npz")]
    outputs: Option<PathBuf>,
    /// Seed for random inputs when --inputs is not given.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = dispatch(cli) {
        eprintln!("error: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(1);
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Info { load } => info(&load),
        Cmd::Run(args) => run(&args),
        Cmd::Bench(args) => bench::bench(&args),
        Cmd::Peak(args) => bench::peak(&args),
        Cmd::Profile(args) => profile::profile(&args),
        Cmd::Plan(args) => plan::plan(&args),
        Cmd::Serve(args) => serve::serve(&args),
        Cmd::Zoo { name, output } => zoo(name, output),
    }
}

fn info(load: &LoadArgs) -> Result<()> {
    let loaded = Loaded::new(load)?;
    let m = &loaded.model;
    println!("model:    {}", loaded.label);
    println!(
        "opset:    {}   producer: {}",
        m.opset(),
        if m.producer().is_empty() {
            "-"
        } else {
            m.producer()
        }
    );
    println!("inputs:");
    for i in m.inputs() {
        println!("  {i}");
    }
    println!("outputs:");
    for o in m.outputs() {
        println!("  {o}");
    }
    let g = m.graph();
    let mut hist: std::collections::BTreeMap<&str, usize> = Default::default();
    for n in &g.nodes {
        *hist.entry(n.op.name()).or_default() += 1;
    }
    println!("nodes:    {}", g.nodes.len());
    let mut ops: Vec<_> = hist.into_iter().collect();
    ops.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (op, n) in ops {
        println!("  {op:<24} {n:>6}");
    }
    let params: usize = g
        .constants
        .values()
        .filter(|t| t.dtype().is_float() && t.len() > 1)
        .map(|t| t.len())
        .sum();
    println!("parameters:   {params} ({:.2} M)", params as f64 / 1e6);
    println!(
        "weight bytes: {} ({:.1} MiB)",
        g.constant_bytes(),
        g.constant_bytes() as f64 / (1 << 20) as f64
    );
    // Cost needs concrete shapes: compile with the default input shapes, stopping
    // before the fusion passes so MACs count the model as exported.
    let compiled = loaded.compile_stop_after(Some("dead-node-elim".into()))?;
    let cg = compiled.graph();
    let (mut flops, mut macs) = (0u64, 0u64);
    for n in &cg.nodes {
        let c = cg.node_cost(n);
        flops += c.flops;
        if matches!(
            n.op.name(),
            "Conv" | "ConvTranspose" | "Gemm" | "MatMul" | "Einsum"
        ) {
            macs += c.flops / 2;
        }
    }
    let shapes: Vec<String> = loaded
        .specs()?
        .iter()
        .map(|s| format!("{}={:?}", s.name, s.shape))
        .collect();
    println!(
        "MACs:         {macs} ({:.3} G) at {}",
        macs as f64 / 1e9,
        shapes.join(" ")
    );
    println!(
        "FLOPs:        {flops} ({:.3} G, all ops)",
        flops as f64 / 1e9
    );
    Ok(())
}

fn run(args: &RunArgs) -> Result<()> {
    let loaded = Loaded::new(&args.load)?;
    let inputs: Vec<(String, Tensor)> = match &args.inputs {
        Some(p) => model_arg::read_inputs(p, &loaded)?,
        None => loaded.random(args.seed)?,
    };
    let shapes = inputs
        .iter()
        .map(|(n, t)| (n.clone(), t.shape().to_vec()))
        .collect();
    let compiled = loaded.compile_with(shapes, None)?;
    let t0 = std::time::Instant::now();
    let outputs = compiled.run_named(&inputs)?;
    let dt = t0.elapsed();
    for (name, t) in &outputs {
        println!("{name}: {} {:?}{}", t.dtype(), t.shape(), summary(t));
    }
    eprintln!(
        "ran in {:.2} ms on {} thread(s)",
        dt.as_secs_f64() * 1e3,
        compiled.threads()
    );
    if let Some(out) = &args.outputs {
        write_npz(out, &outputs).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// A one-line look at a tensor's values: first few, min/max, argmax of the last row.
fn summary(t: &Tensor) -> String {
    let Ok(v) = t.to_f64_vec() else {
        return String::new();
    };
    if v.is_empty() {
        return String::new();
    }
    let head: Vec<String> = v.iter().take(5).map(|x| format!("{x:.5}")).collect();
    let (mut lo, mut hi, mut arg) = (f64::INFINITY, f64::NEG_INFINITY, 0);
    for (i, &x) in v.iter().enumerate() {
        lo = lo.min(x);
        if x > hi {
            hi = x;
            arg = i;
        }
    }
    format!(
        "  [{} ...] min {lo:.4} max {hi:.4} argmax(flat) {arg}",
        head.join(", ")
    )
}

fn zoo(name: Option<String>, output: Option<PathBuf>) -> Result<()> {
    let Some(name) = name else {
        for n in millrace::zoo::names() {
            println!("{n:<14} {}", millrace::zoo::describe(n).unwrap_or(""));
        }
        return Ok(());
    };
    let Some(out) = output else {
        bail!("give the output file with -o FILE.onnx")
    };
    let bytes = millrace::zoo::build_bytes(&name)?;
    std::fs::write(&out, bytes).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
