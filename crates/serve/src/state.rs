//! The models being served and how a request reaches one.
//!
//! [`ServerState`] is shared by every front end (HTTP, gRPC): it resolves a model name and
//! version, checks the request against the model's inputs and queues it on that version's
//! [`Batcher`] (dynamic batching, see [`crate::batcher`]), which answers it. Compiled models
//! are cached per set of input shapes (a model with a symbolic batch dimension is compiled
//! once per batch size it sees, each shape only once even when asked for concurrently).
//! Settings come from [`ServeOptions`] and each model's `config.pbtxt` ([`crate::config`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use millrace::{CompileOptions, CompiledModel, Dim, Model, Tensor};
use tokio::sync::oneshot;

use crate::batcher::{BatchKey, BatchPolicy, Batcher, Done, Job, Runner};
use crate::config::{ModelConfig, ModelSettings, DEFAULT_MAX_BATCH_SIZE};
use crate::error::{ErrorKind, ServeError};
use crate::metrics::{self, ModelMetrics};
use crate::repository;
use crate::types::{
    Datatype, InferRequest, InferResponse, ModelMetadata, ServerMetadata, TensorMetadata,
};

/// Server-wide options: defaults for what a model's `config.pbtxt` does not say
/// (command-line flags of `millrace serve`).
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// Intra-op threads per model instance; `None` divides the cores between instances.
    pub threads: Option<usize>,
    /// Largest batch dynamic batching forms; `Some(0)` turns batching off; `None` uses the
    /// model's default (8 when every input and output has a symbolic first dimension, else
    /// no batching).
    pub max_batch_size: Option<usize>,
    /// How long a request may wait for others to batch with; `None`: no wait (batch only
    /// what is already queued).
    pub batch_delay: Option<Duration>,
    /// Model instances running at once, per model version; `None`: 1.
    pub instances: Option<usize>,
    /// Requests that may wait per model version before new ones are refused (503); `None`:
    /// 1024; `Some(0)`: no limit.
    pub max_queue_size: Option<usize>,
    /// Timeout of requests that do not set one; `None`: no timeout.
    pub default_timeout: Option<Duration>,
}

/// Most compiled shapes kept per model version; the least recently used is dropped beyond it.
pub const MAX_COMPILED_SHAPES: usize = 32;

type CompileSlot = Arc<OnceLock<Result<Arc<CompiledModel>, ServeError>>>;
/// Compiled forms by input shapes, each with when it was last asked for.
type CompileCache = HashMap<Vec<Vec<usize>>, (CompileSlot, u64)>;

/// A model and its compiled forms, one per set of input shapes, each compiled once (callers
/// asking for a shape being compiled wait for it rather than compiling it again).
pub struct ModelRunner {
    label: String,
    model: Model,
    threads: usize,
    cache: Mutex<CompileCache>,
    tick: AtomicU64,
}

impl ModelRunner {
    /// The model compiled for these input shapes.
    pub fn compiled_for(
        &self,
        inputs: &[(String, Vec<usize>)],
    ) -> Result<Arc<CompiledModel>, ServeError> {
        let key: Vec<Vec<usize>> = inputs.iter().map(|(_, s)| s.clone()).collect();
        let now = self.tick.fetch_add(1, Ordering::Relaxed);
        let slot = {
            // A poisoned cache only means a compile panicked elsewhere; the map is intact.
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            let slot = {
                let e = cache
                    .entry(key.clone())
                    .or_insert_with(|| (Arc::new(OnceLock::new()), now));
                e.1 = now;
                e.0.clone()
            };
            if cache.len() > MAX_COMPILED_SHAPES {
                let oldest = cache
                    .iter()
                    .filter(|(k, _)| **k != key)
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    cache.remove(&k);
                }
            }
            slot
        };
        slot.get_or_init(|| {
            let mut opts = CompileOptions {
                threads: Some(self.threads),
                ..CompileOptions::default()
            };
            for (name, shape) in inputs {
                opts.input_shapes.insert(name.clone(), shape.clone());
            }
            self.model
                .compile(&opts)
                .map(Arc::new)
                .map_err(|e| runtime_error(&self.label, e))
        })
        .clone()
    }
}

impl Runner for ModelRunner {
    fn run(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, ServeError> {
        let shapes: Vec<(String, Vec<usize>)> = inputs
            .iter()
            .map(|(n, t)| (n.clone(), t.shape().to_vec()))
            .collect();
        self.compiled_for(&shapes)?
            .run_named(inputs)
            .map_err(|e| runtime_error(&self.label, e))
    }
}

/// A millrace error as a protocol error: problems with the request's inputs are the
/// client's (400), the rest are the server's (500).
pub fn runtime_error(label: &str, e: millrace::Error) -> ServeError {
    use millrace::Error as E;
    let kind = match &e {
        E::UnknownInput { .. }
        | E::MissingInput { .. }
        | E::DuplicateInput { .. }
        | E::InputDType { .. }
        | E::InputShape { .. }
        | E::SymbolConflict { .. }
        | E::Infer(_)
        | E::Pass(_) => ErrorKind::InvalidArgument,
        _ => ErrorKind::Internal,
    };
    ServeError::new(kind, format!("{label}: {e}"))
}

/// One version of one model: the model, its settings, its queue and workers, its metrics.
pub struct ModelVersion {
    /// The model's name in the repository.
    pub name: String,
    /// The version directory's name (`"1"` for `--model`).
    pub version: String,
    /// Where it was loaded from.
    pub path: PathBuf,
    label: String,
    inputs: Vec<millrace::IoInfo>,
    outputs: Vec<millrace::IoInfo>,
    runner: Arc<ModelRunner>,
    batcher: Batcher,
    metrics: Arc<ModelMetrics>,
    settings: ModelSettings,
    max_batch_size: usize,
}

/// Why a model cannot be batched along its first dimension, if it cannot.
fn not_batchable(inputs: &[millrace::IoInfo], outputs: &[millrace::IoInfo]) -> Option<String> {
    let mut symbol: Option<&str> = None;
    for (what, io) in inputs
        .iter()
        .map(|i| ("input", i))
        .chain(outputs.iter().map(|o| ("output", o)))
    {
        match io.shape.as_deref().and_then(|s| s.first()) {
            Some(Dim::Sym(s)) => match symbol {
                None => symbol = Some(s),
                Some(prev) if prev == s => {}
                Some(prev) => {
                    return Some(format!(
                        "{what} `{}` has first dimension `{s}`, others `{prev}`",
                        io.name
                    ))
                }
            },
            Some(Dim::Known(n)) => {
                return Some(format!(
                    "{what} `{}` has a fixed first dimension {n}",
                    io.name
                ))
            }
            None => {
                return Some(format!(
                    "{what} `{}` has no declared first dimension",
                    io.name
                ))
            }
        }
    }
    if inputs.is_empty() {
        return Some("it has no inputs".to_string());
    }
    None
}

/// The request checked against the model, ready to queue.
struct Prepared {
    inputs: Vec<(String, Tensor)>,
    rows: usize,
    key: Option<BatchKey>,
}

impl ModelVersion {
    /// Loads an ONNX file with the server-wide options only (no `config.pbtxt`).
    pub fn load(
        name: &str,
        version: &str,
        path: &Path,
        opts: &ServeOptions,
    ) -> Result<ModelVersion, ServeError> {
        let mut warnings = Vec::new();
        ModelVersion::load_with(
            name,
            version,
            path,
            None,
            &ModelSettings::resolve(None, opts),
            &mut warnings,
        )
    }

    /// Loads an ONNX file with resolved settings, compiles it for one row (when its shapes
    /// allow) so a model that cannot run fails now, and starts its workers.
    pub fn load_with(
        name: &str,
        version: &str,
        path: &Path,
        config: Option<&ModelConfig>,
        settings: &ModelSettings,
        warnings: &mut Vec<String>,
    ) -> Result<ModelVersion, ServeError> {
        let label = format!("model `{name}` version {version}");
        // Decoded on one instance's threads, not every core of the machine.
        let model =
            Model::load_with_threads(path, settings.threads_per_instance.max(1)).map_err(|e| {
                ServeError::internal(format!("{label}: cannot load {}: {e}", path.display()))
            })?;
        let inputs = model.inputs();
        let outputs = model.outputs();
        if let Some(c) = config {
            for (what, names, io) in [
                ("input", &c.input_names, &inputs),
                ("output", &c.output_names, &outputs),
            ] {
                for n in names {
                    if !io.iter().any(|i| &i.name == n) {
                        warnings.push(format!(
                            "{label}: config.pbtxt declares {what} `{n}`, which the model does not have"
                        ));
                    }
                }
            }
        }
        let why_not = not_batchable(&inputs, &outputs);
        let max_batch_size = match (settings.max_batch_size, &why_not) {
            (Some(0), _) => 0,
            (None, None) => DEFAULT_MAX_BATCH_SIZE,
            (None, Some(_)) => 0,
            (Some(n), None) => n,
            (Some(n), Some(why)) => {
                if settings.max_batch_from_config {
                    return Err(ServeError::internal(format!(
                        "{label}: config.pbtxt sets max_batch_size {n}, but the model cannot be batched ({why}); set max_batch_size: 0"
                    )));
                }
                warnings.push(format!(
                    "{label}: not batched ({why}); requests run as they are"
                ));
                0
            }
        };
        let runner = Arc::new(ModelRunner {
            label: label.clone(),
            model,
            threads: settings
                .threads_per_instance
                .saturating_mul(settings.instances)
                .max(1),
            cache: Mutex::new(HashMap::new()),
            tick: AtomicU64::new(0),
        });
        // Warm-up: the common one-row shape, when every other dimension is known.
        let warm: Option<Vec<(String, Vec<usize>)>> = inputs
            .iter()
            .map(|i| {
                let shape = i.shape.as_ref()?;
                let dims = shape
                    .iter()
                    .enumerate()
                    .map(|(k, d)| match d {
                        Dim::Known(n) => Some(*n),
                        Dim::Sym(_) if k == 0 && max_batch_size > 0 => Some(1),
                        Dim::Sym(_) => None,
                    })
                    .collect::<Option<Vec<usize>>>()?;
                Some((i.name.clone(), dims))
            })
            .collect();
        if let Some(shapes) = warm {
            runner.compiled_for(&shapes).map_err(|e| {
                ServeError::internal(format!(
                    "{label} ({}) cannot be compiled: {}",
                    path.display(),
                    e.message
                ))
            })?;
        }
        let metrics = Arc::new(ModelMetrics::default());
        let policy = BatchPolicy {
            max_batch_size,
            combine: settings.dynamic_batching && max_batch_size > 0,
            delay: settings.batch_delay,
            preferred: settings.preferred_batch_sizes.clone(),
            max_queue_size: settings.max_queue_size,
        };
        let batcher = Batcher::start(
            label.clone(),
            policy,
            settings.instances,
            runner.clone(),
            metrics.clone(),
        )?;
        Ok(ModelVersion {
            name: name.to_string(),
            version: version.to_string(),
            path: path.to_path_buf(),
            label,
            inputs,
            outputs,
            runner,
            batcher,
            metrics,
            settings: settings.clone(),
            max_batch_size,
        })
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &ModelSettings {
        &self.settings
    }

    /// The largest batch in rows; 0 when the model is not batched.
    pub fn max_batch_size(&self) -> usize {
        self.max_batch_size
    }

    /// Whether requests are combined into batches.
    pub fn dynamic_batching(&self) -> bool {
        self.batcher.policy().combine
    }

    /// Its counters.
    pub fn metrics(&self) -> &ModelMetrics {
        &self.metrics
    }

    /// Requests waiting in its queue.
    pub fn queued(&self) -> usize {
        self.batcher.queued()
    }

    /// The protocol metadata of the model's inputs and outputs.
    pub fn io_metadata(&self) -> (Vec<TensorMetadata>, Vec<TensorMetadata>) {
        let conv = |io: &[millrace::IoInfo]| {
            io.iter()
                .map(|i| TensorMetadata {
                    name: i.name.clone(),
                    datatype: datatype_name(i.dtype),
                    // Unknown rank: one variable dimension is the closest the protocol has.
                    shape: i.shape.as_ref().map_or_else(
                        || vec![-1],
                        |s| {
                            s.iter()
                                .map(|d| match d {
                                    Dim::Known(n) => *n as i64,
                                    Dim::Sym(_) => -1,
                                })
                                .collect()
                        },
                    ),
                })
                .collect()
        };
        (conv(&self.inputs), conv(&self.outputs))
    }

    /// The model compiled for these input shapes (compiled once on first use, then cached).
    pub fn compiled_for(
        &self,
        inputs: &[(String, Vec<usize>)],
    ) -> Result<Arc<CompiledModel>, ServeError> {
        self.runner.compiled_for(inputs)
    }

    /// Checks a request's inputs and requested outputs against the model; puts the inputs in
    /// the model's order.
    fn prepare(
        &self,
        given: Vec<crate::types::InferInput>,
        wanted: &[String],
    ) -> Result<Prepared, ServeError> {
        let label = &self.label;
        let mut slots: Vec<Option<Tensor>> = vec![None; self.inputs.len()];
        for input in given {
            let Some(k) = self.inputs.iter().position(|d| d.name == input.name) else {
                let names: Vec<&str> = self.inputs.iter().map(|d| d.name.as_str()).collect();
                return Err(ServeError::invalid(format!(
                    "{label} has no input `{}`; its inputs are: {}",
                    input.name,
                    names.join(", ")
                )));
            };
            let d = &self.inputs[k];
            if slots[k].is_some() {
                return Err(ServeError::invalid(format!(
                    "input `{}` is given twice",
                    input.name
                )));
            }
            let t = input.tensor;
            if d.dtype.is_some_and(|x| x != t.dtype()) {
                return Err(ServeError::invalid(format!(
                    "input `{}`: {label} expects {}, got {}",
                    d.name,
                    datatype_name(d.dtype),
                    datatype_name(Some(t.dtype())),
                )));
            }
            if let Some(shape) = &d.shape {
                let fits = shape.len() == t.rank()
                    && shape
                        .iter()
                        .zip(t.shape())
                        .all(|(d, &n)| d.known().is_none_or(|k| k == n));
                if !fits {
                    return Err(ServeError::invalid(format!(
                        "input `{}`: {label} expects shape {}, got {:?}",
                        d.name,
                        shape_text(shape),
                        t.shape()
                    )));
                }
            }
            slots[k] = Some(t);
        }
        let mut inputs = Vec::with_capacity(slots.len());
        for (d, slot) in self.inputs.iter().zip(slots) {
            let Some(t) = slot else {
                return Err(ServeError::invalid(format!(
                    "missing input `{}` ({} {}) for {label}",
                    d.name,
                    datatype_name(d.dtype),
                    d.shape
                        .as_deref()
                        .map_or_else(|| "?".to_string(), shape_text)
                )));
            };
            inputs.push((d.name.clone(), t));
        }
        for (i, w) in wanted.iter().enumerate() {
            if !self.outputs.iter().any(|o| &o.name == w) {
                let names: Vec<&str> = self.outputs.iter().map(|o| o.name.as_str()).collect();
                return Err(ServeError::invalid(format!(
                    "{label} has no output `{w}`; its outputs are: {}",
                    names.join(", ")
                )));
            }
            if wanted[..i].contains(w) {
                return Err(ServeError::invalid(format!(
                    "output `{w}` is asked for twice"
                )));
            }
        }
        let mut rows = 1;
        let mut key = None;
        if self.max_batch_size > 0 {
            let (first_name, first) = &inputs[0];
            rows = first.shape()[0];
            for (n, t) in &inputs[1..] {
                if t.shape()[0] != rows {
                    return Err(ServeError::invalid(format!(
                        "inputs `{first_name}` and `{n}` have different batch sizes ({rows} and {})",
                        t.shape()[0]
                    )));
                }
            }
            if rows == 0 {
                return Err(ServeError::invalid(format!(
                    "the batch is empty: input `{first_name}` has 0 rows"
                )));
            }
            if rows > self.max_batch_size {
                return Err(ServeError::invalid(format!(
                    "a batch of {rows} rows is larger than the max_batch_size {} of {label}",
                    self.max_batch_size
                )));
            }
            if self.batcher.policy().combine {
                key = Some(
                    inputs
                        .iter()
                        .map(|(n, t)| (n.clone(), t.dtype(), t.shape()[1..].to_vec()))
                        .collect(),
                );
            }
        }
        Ok(Prepared { inputs, rows, key })
    }

    /// Checks the request and runs it alone on the calling thread (no queue, no metrics).
    pub fn run_blocking(&self, req: &InferRequest) -> Result<Vec<(String, Tensor)>, ServeError> {
        let p = self.prepare(req.inputs.clone(), &req.outputs)?;
        let outputs = self.runner.run(&p.inputs)?;
        select_outputs(&self.label, outputs, &req.outputs)
    }

    /// Queues a request and waits for its answer (or its deadline), counting it in the metrics.
    pub async fn infer(&self, req: InferRequest) -> Result<InferResponse, ServeError> {
        let start = Instant::now();
        let id = req.id.clone();
        let r = self.infer_inner(req, start).await;
        match r {
            Ok((done, rows)) => {
                self.metrics
                    .record_success(rows as u64, start.elapsed(), &done.timings);
                Ok(InferResponse {
                    model_name: self.name.clone(),
                    model_version: self.version.clone(),
                    id,
                    outputs: done.outputs,
                })
            }
            Err(e) => {
                self.metrics.record_failure();
                Err(e)
            }
        }
    }

    async fn infer_inner(
        &self,
        req: InferRequest,
        start: Instant,
    ) -> Result<(Done, usize), ServeError> {
        let p = self.prepare(req.inputs, &req.outputs)?;
        let timeout = req
            .timeout
            .or(self.settings.default_timeout)
            .filter(|t| !t.is_zero());
        let deadline = timeout.and_then(|t| start.checked_add(t));
        let (tx, rx) = oneshot::channel();
        self.batcher.submit(Job {
            inputs: p.inputs,
            outputs: req.outputs,
            rows: p.rows,
            key: p.key,
            enqueued: start,
            deadline,
            timeout,
            reply: tx,
        })?;
        let answer = match deadline {
            Some(d) => match tokio::time::timeout_at(tokio::time::Instant::from_std(d), rx).await {
                Ok(a) => a,
                Err(_) => {
                    return Err(ServeError::new(
                        ErrorKind::Timeout,
                        format!(
                            "the request to {} timed out after {} ms",
                            self.label,
                            timeout.unwrap_or_default().as_millis()
                        ),
                    ))
                }
            },
            None => rx.await,
        };
        let done = answer.map_err(|_| {
            ServeError::internal(format!(
                "{}: the worker stopped without answering",
                self.label
            ))
        })??;
        Ok((done, p.rows))
    }
}

fn shape_text(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| match d {
            Dim::Known(n) => n.to_string(),
            Dim::Sym(s) => s.clone(),
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// The protocol's name for a dtype (millrace's own name when the protocol has none).
pub fn datatype_name(d: Option<millrace::DType>) -> String {
    match d {
        None => "unknown".to_string(),
        Some(d) => Datatype::from_dtype(d)
            .map(|x| x.as_str().to_string())
            .unwrap_or_else(|| d.to_string()),
    }
}

/// Keeps the outputs asked for, in the order asked for (all of them when none are named).
pub fn select_outputs(
    model: &str,
    outputs: Vec<(String, Tensor)>,
    wanted: &[String],
) -> Result<Vec<(String, Tensor)>, ServeError> {
    if wanted.is_empty() {
        return Ok(outputs);
    }
    let mut by_name: HashMap<String, Tensor> = outputs.into_iter().collect();
    wanted
        .iter()
        .map(|w| {
            by_name
                .remove(w)
                .map(|t| (w.clone(), t))
                .ok_or_else(|| ServeError::invalid(format!("model `{model}` has no output `{w}`")))
        })
        .collect()
}

/// A model name with its versions.
pub struct ServedModel {
    /// Versions loaded, by name.
    pub versions: BTreeMap<String, Arc<ModelVersion>>,
    /// The version used when a request names none (the highest loaded number).
    pub default: String,
    /// Versions that failed to load, with why.
    pub failed: BTreeMap<String, String>,
}

/// Everything the front ends share.
///
/// Loading: a model whose `config.pbtxt` is malformed, that has no version, or whose model
/// file does not load or compile does not stop the others; it is reported by
/// [`ServerState::load_errors`], requests to it get 503 with the reason, it is not ready, and
/// neither is the server (strict readiness, as Triton's default). A repository where no
/// model loads at all is an error.
pub struct ServerState {
    models: BTreeMap<String, ServedModel>,
    failed: BTreeMap<String, String>,
    warnings: Vec<String>,
    shutting_down: AtomicBool,
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Counts a request as in flight until dropped.
struct InFlight<'a>(&'a ServerState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl ServerState {
    /// Serves one ONNX file as model `name`, version `1`, with the options as its settings.
    /// A file that does not load or compile is an error.
    pub fn single(name: &str, path: &Path, opts: &ServeOptions) -> Result<ServerState, ServeError> {
        let mut warnings = Vec::new();
        let v = Arc::new(ModelVersion::load_with(
            name,
            "1",
            path,
            None,
            &ModelSettings::resolve(None, opts),
            &mut warnings,
        )?);
        let mut versions = BTreeMap::new();
        versions.insert("1".to_string(), v);
        let mut models = BTreeMap::new();
        models.insert(
            name.to_string(),
            ServedModel {
                versions,
                default: "1".to_string(),
                failed: BTreeMap::new(),
            },
        );
        let mut s = ServerState::from_models(models);
        s.warnings = warnings;
        Ok(s)
    }

    /// Serves every model of a Triton-layout repository (see [`crate::config`] for the layout
    /// and `config.pbtxt`).
    pub fn from_repository(dir: &Path, opts: &ServeOptions) -> Result<ServerState, ServeError> {
        let scan = repository::scan(dir)?;
        let mut warnings = scan.warnings;
        let mut failed: BTreeMap<String, String> = scan.failed.into_iter().collect();
        let mut models = BTreeMap::new();
        for m in scan.models {
            let settings = ModelSettings::resolve(m.config.as_ref(), opts);
            let mut served = ServedModel {
                versions: BTreeMap::new(),
                default: String::new(),
                failed: BTreeMap::new(),
            };
            for (version, file) in &m.versions {
                match ModelVersion::load_with(
                    &m.name,
                    version,
                    file,
                    m.config.as_ref(),
                    &settings,
                    &mut warnings,
                ) {
                    Ok(v) => {
                        served.versions.insert(version.clone(), Arc::new(v));
                    }
                    Err(e) => {
                        served.failed.insert(version.clone(), e.message);
                    }
                }
            }
            let default = served
                .versions
                .keys()
                .max_by_key(|v| v.parse::<u64>().unwrap_or(0))
                .cloned();
            match default {
                Some(d) => {
                    served.default = d;
                    models.insert(m.name, served);
                }
                None => {
                    let why: Vec<String> = served.failed.into_values().collect();
                    failed.insert(m.name, why.join("; "));
                }
            }
        }
        if models.is_empty() {
            let mut msg = format!(
                "model repository {} has no model that loads (expected <model>/<version>/model.onnx)",
                dir.display()
            );
            for (name, why) in &failed {
                msg.push_str(&format!("\n  {name}: {why}"));
            }
            return Err(ServeError::internal(msg));
        }
        let mut s = ServerState::from_models(models);
        s.failed = failed;
        s.warnings = warnings;
        Ok(s)
    }

    /// Serves already loaded models.
    pub fn from_models(models: BTreeMap<String, ServedModel>) -> ServerState {
        ServerState {
            models,
            failed: BTreeMap::new(),
            warnings: Vec::new(),
            shutting_down: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
        }
    }

    /// Remarks from loading (ignored config fields, skipped directories, models served
    /// without batching and why), for the CLI to print.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Models and versions that failed to load, each `"model[ version]: why"`.
    pub fn load_errors(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .failed
            .iter()
            .map(|(n, why)| format!("model `{n}`: {why}"))
            .collect();
        for m in self.models.values() {
            out.extend(m.failed.values().cloned());
        }
        out
    }

    /// Names of the models served (those that failed to load included).
    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        let mut v: Vec<&str> = self
            .models
            .keys()
            .chain(self.failed.keys())
            .map(|s| s.as_str())
            .collect();
        v.sort_unstable();
        v.into_iter()
    }

    /// Every loaded model version.
    pub fn versions(&self) -> impl Iterator<Item = &Arc<ModelVersion>> {
        self.models.values().flat_map(|m| m.versions.values())
    }

    /// Requests being handled now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Resolves once no request is in flight and every model's queue is empty and idle
    /// (after [`ServerState::begin_shutdown`]), then stops the queues' workers.
    pub async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                break;
            }
            notified.await;
        }
        // A request whose client gave up (timeout) may still be running in a worker.
        while self.versions().any(|v| v.batcher.busy()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Nothing admitted is left and nothing new is admitted: the workers may go.
        if self.shutting_down.load(Ordering::Acquire) {
            for v in self.versions() {
                v.batcher.shutdown();
            }
        }
    }

    /// The Prometheus text exposition of the server's metrics (`/metrics`).
    pub fn metrics_text(&self) -> String {
        let rows: Vec<(&str, &str, &ModelMetrics)> = self
            .versions()
            .map(|v| (v.name.as_str(), v.version.as_str(), v.metrics()))
            .collect();
        metrics::render(rows.into_iter())
    }

    /// `/v2/health/live`.
    pub fn is_live(&self) -> bool {
        true
    }

    /// `/v2/health/ready`: every model loaded and not shutting down.
    pub fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Acquire)
            && self.failed.is_empty()
            && self.models.values().all(|m| m.failed.is_empty())
    }

    /// Stops accepting new requests (SIGTERM); requests already admitted, queued or running
    /// still finish. The model queues keep taking the admitted ones (a request can be
    /// admitted and still be decoding its inputs when this is called); [`Self::drained`]
    /// stops them once every admitted request has been answered.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Resolves a model name and optional version.
    pub fn model(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Arc<ModelVersion>, ServeError> {
        if let Some(why) = self.failed.get(name) {
            return Err(ServeError::unavailable(format!(
                "model `{name}` failed to load: {why}"
            )));
        }
        let m = self.models.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.model_names().collect();
            ServeError::not_found(format!(
                "unknown model `{name}`; this server has: {}",
                names.join(", ")
            ))
        })?;
        let v = version.filter(|v| !v.is_empty()).unwrap_or(&m.default);
        if let Some(why) = m.failed.get(v) {
            return Err(ServeError::unavailable(format!("failed to load: {why}")));
        }
        m.versions.get(v).cloned().ok_or_else(|| {
            let vs: Vec<&str> = m.versions.keys().map(|s| s.as_str()).collect();
            ServeError::not_found(format!(
                "model `{name}` has no version `{v}`; it has: {}",
                vs.join(", ")
            ))
        })
    }

    /// `/v2/models/{m}/ready`: false for a model or version that failed to load, or while
    /// shutting down; an error for an unknown model or version.
    pub fn model_ready(&self, name: &str, version: Option<&str>) -> Result<bool, ServeError> {
        match self.model(name, version) {
            Ok(_) => Ok(!self.shutting_down.load(Ordering::Acquire)),
            Err(e) if e.kind == ErrorKind::Unavailable => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET /v2`.
    pub fn server_metadata(&self) -> ServerMetadata {
        ServerMetadata {
            name: "millrace".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: vec!["binary_tensor_data".to_string()],
        }
    }

    /// `GET /v2/models/{m}[/versions/{v}]`.
    pub fn model_metadata(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<ModelMetadata, ServeError> {
        let v = self.model(name, version)?;
        let (inputs, outputs) = v.io_metadata();
        let versions = self
            .models
            .get(name)
            .map(|m| m.versions.keys().cloned().collect())
            .unwrap_or_default();
        Ok(ModelMetadata {
            name: name.to_string(),
            versions,
            platform: "onnx_onnxv1".to_string(),
            inputs,
            outputs,
        })
    }

    /// Runs a request through its model version's queue (dynamic batching) and waits for the
    /// answer; refused with 503 once shutting down.
    pub async fn infer(self: &Arc<Self>, req: InferRequest) -> Result<InferResponse, ServeError> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let _guard = InFlight(self);
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(ServeError::unavailable("the server is shutting down"));
        }
        let v = self.model(&req.model, req.version.as_deref())?;
        v.infer(req).await
    }
}
