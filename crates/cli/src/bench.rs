//! `millrace bench`: latency percentiles and throughput.
use crate::model_arg::{read_inputs, LoadArgs, Loaded};
use anyhow::{bail, Result};
use clap::Args;
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
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    if args.iters == Some(0) {
        bail!("--iters must be at least 1");
    }
    if args.seconds.is_some_and(|s| !(s > 0.0 && s.is_finite())) {
        bail!("--seconds must be a positive number");
    }
    let loaded = Loaded::new(&args.load)?;
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
    if args.json {
        let v = serde_json::json!({
            "model": loaded.label,
            "latency_ms": { "min": min, "mean": mean, "p50": p50, "p90": p90, "p99": p99 },
            "throughput_per_s": throughput,
            "batch": batch,
            "threads": compiled.threads(),
            "iters": lat.len(),
            "compile_ms": compile_time.as_secs_f64() * 1e3,
        });
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
    }
    Ok(())
}
