//! The models being served and how a request reaches one.
//!
//! [`ServerState`] is shared by every front end (HTTP, gRPC): it resolves a model name and
//! version, checks the request against the model's inputs, and runs it. Compiled models are
//! cached per set of input shapes (a model with a symbolic batch dimension is compiled once per
//! batch size it sees).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace::{CompileOptions, CompiledModel, Dim, Model, Tensor};

use crate::error::ServeError;
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
    /// model's default (batching on when every input has a symbolic first dimension).
    pub max_batch_size: Option<usize>,
    /// How long a request may wait for others to batch with; `None`: no wait (batch only
    /// what is already queued).
    pub batch_delay: Option<Duration>,
    /// Model instances running at once, per model version; `None`: 1.
    pub instances: Option<usize>,
    /// Requests that may wait per model version before new ones are refused (503); `None`: a
    /// default of the server's choosing.
    pub max_queue_size: Option<usize>,
    /// Timeout of requests that do not set one; `None`: no timeout.
    pub default_timeout: Option<Duration>,
}

/// One version of one model.
pub struct ModelVersion {
    /// The model's name in the repository.
    pub name: String,
    /// The version directory's name (`"1"` for `--model`).
    pub version: String,
    /// Where it was loaded from.
    pub path: PathBuf,
    model: Model,
    threads: Option<usize>,
    compiled: Mutex<HashMap<Vec<Vec<usize>>, Arc<CompiledModel>>>,
}

impl ModelVersion {
    /// Loads an ONNX file.
    pub fn load(
        name: &str,
        version: &str,
        path: &Path,
        opts: &ServeOptions,
    ) -> Result<ModelVersion, ServeError> {
        let model = Model::load(path).map_err(|e| {
            ServeError::internal(format!("model `{name}` ({}): {e}", path.display()))
        })?;
        Ok(ModelVersion {
            name: name.to_string(),
            version: version.to_string(),
            path: path.to_path_buf(),
            model,
            threads: opts.threads,
            compiled: Mutex::new(HashMap::new()),
        })
    }

    /// The protocol metadata of the model's inputs and outputs.
    pub fn io_metadata(&self) -> (Vec<TensorMetadata>, Vec<TensorMetadata>) {
        let conv = |io: Vec<millrace::IoInfo>| {
            io.into_iter()
                .map(|i| TensorMetadata {
                    name: i.name,
                    datatype: datatype_name(i.dtype),
                    // Unknown rank: one variable dimension is the closest the protocol has.
                    shape: i.shape.map_or_else(
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
        (conv(self.model.inputs()), conv(self.model.outputs()))
    }

    /// The model compiled for these input shapes (compiled on first use, then cached).
    pub fn compiled_for(
        &self,
        inputs: &[(String, Vec<usize>)],
    ) -> Result<Arc<CompiledModel>, ServeError> {
        let key: Vec<Vec<usize>> = inputs.iter().map(|(_, s)| s.clone()).collect();
        if let Some(c) = self.lock_cache().get(&key) {
            return Ok(c.clone());
        }
        let mut opts = CompileOptions {
            threads: self.threads,
            ..CompileOptions::default()
        };
        for (name, shape) in inputs {
            opts.input_shapes.insert(name.clone(), shape.clone());
        }
        let c = Arc::new(
            self.model
                .compile(&opts)
                .map_err(|e| ServeError::invalid(format!("model `{}`: {e}", self.name)))?,
        );
        self.lock_cache().insert(key, c.clone());
        Ok(c)
    }

    fn lock_cache(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Vec<Vec<usize>>, Arc<CompiledModel>>> {
        // A poisoned cache only means a compile panicked elsewhere; the map itself is intact.
        self.compiled.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks the request's inputs against the model and runs it on the calling thread.
    pub fn run_blocking(&self, req: &InferRequest) -> Result<Vec<(String, Tensor)>, ServeError> {
        let declared = self.model.inputs();
        for input in &req.inputs {
            let Some(d) = declared.iter().find(|d| d.name == input.name) else {
                let names: Vec<&str> = declared.iter().map(|d| d.name.as_str()).collect();
                return Err(ServeError::invalid(format!(
                    "model `{}` has no input `{}`; its inputs are: {}",
                    self.name,
                    input.name,
                    names.join(", ")
                )));
            };
            if d.dtype.is_some_and(|t| t != input.tensor.dtype()) {
                return Err(ServeError::invalid(format!(
                    "input `{}`: model `{}` expects {}, got {}",
                    input.name,
                    self.name,
                    datatype_name(d.dtype),
                    datatype_name(Some(input.tensor.dtype())),
                )));
            }
        }
        let shapes: Vec<(String, Vec<usize>)> = req
            .inputs
            .iter()
            .map(|i| (i.name.clone(), i.tensor.shape().to_vec()))
            .collect();
        let compiled = self.compiled_for(&shapes)?;
        let args: Vec<(&str, &Tensor)> = req
            .inputs
            .iter()
            .map(|i| (i.name.as_str(), &i.tensor))
            .collect();
        let outputs = compiled
            .run(&args)
            .map_err(|e| ServeError::invalid(format!("model `{}`: {e}", self.name)))?;
        select_outputs(&self.name, outputs, &req.outputs)
    }
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

/// A model name with its versions, the latest first in `default`.
pub struct ServedModel {
    /// Versions by name.
    pub versions: BTreeMap<String, Arc<ModelVersion>>,
    /// The version used when a request names none (the highest number).
    pub default: String,
}

/// Everything the front ends share.
pub struct ServerState {
    models: BTreeMap<String, ServedModel>,
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
    /// Serves one ONNX file as model `name`, version `1`.
    pub fn single(name: &str, path: &Path, opts: &ServeOptions) -> Result<ServerState, ServeError> {
        let v = Arc::new(ModelVersion::load(name, "1", path, opts)?);
        let mut versions = BTreeMap::new();
        versions.insert("1".to_string(), v);
        let mut models = BTreeMap::new();
        models.insert(
            name.to_string(),
            ServedModel {
                versions,
                default: "1".to_string(),
            },
        );
        Ok(ServerState::from_models(models))
    }

    /// Serves every model of a Triton-layout repository: `dir/<model>/<version>/model.onnx`.
    pub fn from_repository(dir: &Path, opts: &ServeOptions) -> Result<ServerState, ServeError> {
        let read = |p: &Path| {
            std::fs::read_dir(p)
                .map_err(|e| ServeError::internal(format!("model repository {}: {e}", p.display())))
        };
        let mut models = BTreeMap::new();
        for entry in read(dir)? {
            let entry = entry.map_err(|e| ServeError::internal(e.to_string()))?;
            if !entry.path().is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut versions = BTreeMap::new();
            for v in read(&entry.path())? {
                let v = v.map_err(|e| ServeError::internal(e.to_string()))?;
                let file = v.path().join("model.onnx");
                let vname = v.file_name().to_string_lossy().into_owned();
                if vname.parse::<u64>().is_ok() && file.is_file() {
                    versions.insert(
                        vname.clone(),
                        Arc::new(ModelVersion::load(&name, &vname, &file, opts)?),
                    );
                }
            }
            let default = versions
                .keys()
                .max_by_key(|v| v.parse::<u64>().unwrap_or(0))
                .cloned();
            if let Some(default) = default {
                models.insert(name, ServedModel { versions, default });
            }
        }
        if models.is_empty() {
            return Err(ServeError::internal(format!(
                "model repository {} has no models (expected <model>/<version>/model.onnx)",
                dir.display()
            )));
        }
        Ok(ServerState::from_models(models))
    }

    /// Serves already loaded models.
    pub fn from_models(models: BTreeMap<String, ServedModel>) -> ServerState {
        ServerState {
            models,
            shutting_down: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
        }
    }

    /// Names of the models served.
    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(|s| s.as_str())
    }

    /// Requests being handled now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Resolves once no request is in flight (after [`ServerState::begin_shutdown`]).
    pub async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// The Prometheus text exposition of the server's metrics (`/metrics`).
    pub fn metrics_text(&self) -> String {
        String::new()
    }

    /// `/v2/health/live`.
    pub fn is_live(&self) -> bool {
        true
    }

    /// `/v2/health/ready`: every model loaded and not shutting down.
    pub fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Acquire)
    }

    /// Stops accepting new requests (SIGTERM); requests already in flight still finish.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Resolves a model name and optional version.
    pub fn model(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Arc<ModelVersion>, ServeError> {
        let m = self.models.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.model_names().collect();
            ServeError::not_found(format!(
                "unknown model `{name}`; this server has: {}",
                names.join(", ")
            ))
        })?;
        let v = version.filter(|v| !v.is_empty()).unwrap_or(&m.default);
        m.versions.get(v).cloned().ok_or_else(|| {
            let vs: Vec<&str> = m.versions.keys().map(|s| s.as_str()).collect();
            ServeError::not_found(format!(
                "model `{name}` has no version `{v}`; it has: {}",
                vs.join(", ")
            ))
        })
    }

    /// `/v2/models/{m}/ready`.
    pub fn model_ready(&self, name: &str, version: Option<&str>) -> Result<bool, ServeError> {
        self.model(name, version).map(|_| self.is_ready())
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

    /// Runs a request (on a blocking thread, so the async front ends stay responsive).
    pub async fn infer(self: &Arc<Self>, req: InferRequest) -> Result<InferResponse, ServeError> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let _guard = InFlight(self);
        if !self.is_ready() {
            return Err(ServeError::unavailable("the server is shutting down"));
        }
        let v = self.model(&req.model, req.version.as_deref())?;
        let id = req.id.clone();
        let (name, version) = (v.name.clone(), v.version.clone());
        let outputs = tokio::task::spawn_blocking(move || v.run_blocking(&req))
            .await
            .map_err(|e| ServeError::internal(format!("the model's worker failed: {e}")))??;
        Ok(InferResponse {
            model_name: name,
            model_version: version,
            id,
            outputs,
        })
    }
}
