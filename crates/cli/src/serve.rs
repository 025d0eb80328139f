//! `millrace serve`: an inference server speaking the Open Inference Protocol (KServe v2 /
//! Triton) over HTTP and gRPC, with Prometheus metrics, for one ONNX file (`--model`) or a
//! Triton-layout model repository (`--model-repository`).
//!
//! The tokio runtime lives here; Ctrl-C or SIGTERM stops accepting, answers the requests in
//! flight, and exits 0.
use anyhow::{bail, Context, Result};
use clap::Args;
use millrace_memory::parse_size;
use millrace_serve::{ServeOptions, ServerConfig, ServerState};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// A Triton-layout repository: DIR/<model>/<version>/model.onnx (every model is served).
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "model",
        required_unless_present = "model"
    )]
    pub model_repository: Option<PathBuf>,
    /// One ONNX file, served as version 1.
    #[arg(long, value_name = "FILE.onnx")]
    pub model: Option<PathBuf>,
    /// The name --model is served under (default: the file name without extension).
    #[arg(long, requires = "model")]
    pub name: Option<String>,
    /// Address to listen on (127.0.0.1 for this machine only).
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// REST port (0: any free port).
    #[arg(long, default_value_t = 8000)]
    pub http_port: u16,
    /// gRPC port (0: any free port).
    #[arg(long, default_value_t = 8001)]
    pub grpc_port: u16,
    /// Prometheus metrics port, serving GET /metrics (0: any free port).
    #[arg(long, default_value_t = 8002)]
    pub metrics_port: u16,
    /// Intra-op threads per model instance (default: the cores divided between instances).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Largest batch dynamic batching forms; 0 turns batching off (default: the model's
    /// config.pbtxt, else batching on when every input has a symbolic first dimension).
    #[arg(long, value_name = "N")]
    pub max_batch_size: Option<usize>,
    /// How long a request waits for others to batch with, in microseconds (default: 0, batch
    /// only what is already queued).
    #[arg(long, value_name = "US")]
    pub batch_delay_us: Option<u64>,
    /// Model instances running at once, per model version (default 1).
    #[arg(long, value_name = "N")]
    pub instances: Option<usize>,
    /// Requests that may wait per model version before new ones get 503.
    #[arg(long, value_name = "N")]
    pub max_queue_size: Option<usize>,
    /// Timeout of requests that set none, in milliseconds (default: none).
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Largest HTTP request body (413 above) and gRPC request message: 64MiB, 512KiB, 1GB, bytes.
    #[arg(long, value_name = "SIZE", default_value = "64MiB")]
    pub max_body_size: String,
}

pub fn serve(args: &ServeArgs) -> Result<()> {
    for (flag, v) in [
        ("--threads", args.threads),
        ("--instances", args.instances),
        ("--max-queue-size", args.max_queue_size),
    ] {
        if v == Some(0) {
            bail!("{flag} must be at least 1");
        }
    }
    let max_body = parse_size(&args.max_body_size).context("--max-body-size")?;
    let max_body_bytes = usize::try_from(max_body).context("--max-body-size is too large")?;
    if max_body_bytes == 0 {
        bail!("--max-body-size must be more than 0 bytes");
    }
    let opts = ServeOptions {
        threads: args.threads,
        max_batch_size: args.max_batch_size,
        batch_delay: args.batch_delay_us.map(Duration::from_micros),
        instances: args.instances,
        max_queue_size: args.max_queue_size,
        default_timeout: args.timeout_ms.map(Duration::from_millis),
    };
    let state = match (&args.model_repository, &args.model) {
        (Some(dir), _) => {
            if !dir.is_dir() {
                bail!("--model-repository {}: not a directory", dir.display());
            }
            ServerState::from_repository(dir, &opts)
                .with_context(|| format!("loading the model repository {}", dir.display()))?
        }
        (None, Some(path)) => {
            let name = match &args.name {
                Some(n) => n.clone(),
                None => path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_string)
                    .with_context(|| {
                        format!("cannot name the model from {}; pass --name", path.display())
                    })?,
            };
            if name.is_empty() || name.contains('/') {
                bail!("--name `{name}`: a model name must be non-empty and have no `/`");
            }
            ServerState::single(&name, path, &opts)
                .with_context(|| format!("loading {}", path.display()))?
        }
        (None, None) => bail!("pass --model FILE.onnx or --model-repository DIR"),
    };
    for w in state.warnings() {
        eprintln!("warning: {w}");
    }
    for e in state.load_errors() {
        eprintln!("error: {e} (not ready; requests to it get 503)");
    }
    let names: Vec<&str> = state.model_names().collect();
    println!("serving {}", names.join(", "));
    let config = ServerConfig {
        host: args.host.clone(),
        http_port: args.http_port,
        grpc_port: args.grpc_port,
        metrics_port: args.metrics_port,
        max_body_bytes,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("millrace-serve")
        .build()
        .context("starting the async runtime")?;
    // The first Ctrl-C / SIGTERM drains; a second one exits at once. The handlers are
    // installed now, before the listeners open.
    // Once the drain is over, a second signal changes nothing: the exit is clean (0).
    let _guard = runtime.enter();
    let first = millrace_serve::shutdown_signal();
    let drained = Arc::new(AtomicBool::new(false));
    let drained_seen = drained.clone();
    let shutdown = async move {
        first.await;
        tokio::spawn(async move {
            millrace_serve::shutdown_signal().await;
            if drained_seen.load(Ordering::SeqCst) {
                return;
            }
            eprintln!("second signal: exiting without waiting for requests in flight");
            std::process::exit(130);
        });
    };
    runtime.block_on(async {
        let r = millrace_serve::run(Arc::new(state), &config, shutdown).await;
        drained.store(true, Ordering::SeqCst);
        r
    })?;
    Ok(())
}
