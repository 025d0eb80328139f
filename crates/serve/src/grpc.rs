//! The gRPC front end: `inference.GRPCInferenceService` of the Open Inference Protocol
//! (KServe v2), with Triton's extensions that clients rely on.
//!
//! Served RPCs: `ServerLive`, `ServerReady`, `ModelReady`, `ServerMetadata`, `ModelMetadata`,
//! `ModelInfer`, `ModelStreamInfer`, `ModelConfig` and `ModelStatistics`. Any other Triton
//! method (repository control, shared memory, tracing, logging) answers UNIMPLEMENTED.
//!
//! Inputs may come as typed `contents` or as `raw_input_contents` (one entry per input, the raw
//! little-endian layout of [`crate::types::decode_raw`]); outputs always go back as
//! `raw_output_contents`, as Triton does. Errors are gRPC statuses: each [`ErrorKind`] maps to
//! one code ([`status_of`]) and the message says what is wrong.
//!
//! The message types are generated from `proto/grpc_service.proto` into [`pb`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use millrace::{Tensor, TensorData};
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status};

use crate::error::{ErrorKind, ServeError};
use crate::state::ServerState;
use crate::types::{
    decode_raw, element_count, encode_raw, Datatype, InferInput, InferRequest, InferResponse,
};

/// The protobuf messages and the service's server and client, generated from
/// `proto/grpc_service.proto` (package `inference`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("inference");
}

use pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use pb::infer_parameter::ParameterChoice;

/// Settings of the gRPC front end.
#[derive(Clone, Debug)]
pub struct GrpcOptions {
    /// Largest request message the server decodes, in bytes (a larger request gets
    /// OUT_OF_RANGE from tonic, "decoded message length too large"). `millrace serve` sets it
    /// from `--max-body-size`, the same limit as HTTP bodies.
    pub max_message_size: usize,
    /// Largest response message the server encodes, in bytes. Kept apart from the request
    /// limit: a small request may rightly have a large answer.
    pub max_response_size: usize,
}

impl Default for GrpcOptions {
    /// 64 MiB each way: a batch of 128 224x224 RGB images in FP32 fits.
    fn default() -> GrpcOptions {
        GrpcOptions {
            max_message_size: 64 << 20,
            max_response_size: 64 << 20,
        }
    }
}

impl GrpcOptions {
    /// Requests limited to `max_request_bytes` (as HTTP bodies are), responses to that or
    /// 64 MiB, whichever is larger.
    pub fn with_request_limit(max_request_bytes: usize) -> GrpcOptions {
        GrpcOptions {
            max_message_size: max_request_bytes,
            max_response_size: max_request_bytes.max(GrpcOptions::default().max_response_size),
        }
    }
}

/// Serves gRPC on `listener` until `shutdown` resolves, with [`GrpcOptions::default`].
///
/// After `shutdown` resolves the server stops accepting connections and returns once the
/// requests in flight have been answered.
pub async fn serve(
    state: Arc<ServerState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with(state, listener, shutdown, GrpcOptions::default()).await
}

/// Serves gRPC on `listener` until `shutdown` resolves, with the given options.
pub async fn serve_with(
    state: Arc<ServerState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    opts: GrpcOptions,
) -> Result<(), ServeError> {
    // Small unary replies must not wait for Nagle's algorithm.
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        if let Ok(s) = &s {
            let _ = s.set_nodelay(true);
        }
        s
    });
    tonic::transport::Server::builder()
        .add_service(service(state, &opts))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| ServeError::internal(format!("gRPC server: {e}")))
}

/// The tonic service, for embedding in another tonic server.
pub fn service(
    state: Arc<ServerState>,
    opts: &GrpcOptions,
) -> GrpcInferenceServiceServer<InferenceService> {
    GrpcInferenceServiceServer::new(InferenceService { state })
        .max_decoding_message_size(opts.max_message_size)
        .max_encoding_message_size(opts.max_response_size)
}

/// The gRPC status code of an error kind.
pub fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument | ErrorKind::TooLarge => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The gRPC status of an error: its kind's code and its message.
pub fn status_of(e: ServeError) -> Status {
    Status::new(code_of(e.kind), e.message)
}

/// `inference.GRPCInferenceService` over a [`ServerState`].
pub struct InferenceService {
    state: Arc<ServerState>,
}

fn version_of(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

type StreamInferStream =
    Pin<Box<dyn Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse {
            live: self.state.is_live(),
        }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.state.is_ready(),
        }))
    }

    /// An unknown model or version is "not ready" rather than an error, as in Triton, so
    /// `is_model_ready` in Triton's clients answers `False` instead of raising.
    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let r = request.into_inner();
        let ready = self
            .state
            .model_ready(&r.name, version_of(&r.version))
            .unwrap_or(false);
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        let m = self.state.server_metadata();
        Ok(Response::new(pb::ServerMetadataResponse {
            name: m.name,
            version: m.version,
            extensions: m.extensions,
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let m = self
            .state
            .model_metadata(&r.name, version_of(&r.version))
            .map_err(status_of)?;
        let conv = |v: Vec<crate::types::TensorMetadata>| {
            v.into_iter()
                .map(|t| pb::model_metadata_response::TensorMetadata {
                    name: t.name,
                    datatype: t.datatype,
                    shape: t.shape,
                })
                .collect()
        };
        Ok(Response::new(pb::ModelMetadataResponse {
            name: m.name,
            versions: m.versions,
            platform: m.platform,
            inputs: conv(m.inputs),
            outputs: conv(m.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let deadline = grpc_timeout(request.metadata());
        infer_one(&self.state, request.into_inner(), deadline)
            .await
            .map(Response::new)
            .map_err(status_of)
    }

    type ModelStreamInferStream = StreamInferStream;

    /// Each request of the stream runs as it arrives (so they can batch together); each answer
    /// goes back as soon as it is ready, tagged with the request's id. A failed request is
    /// answered with `error_message` set and the stream goes on, as in Triton.
    async fn model_stream_infer(
        &self,
        request: Request<tonic::Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(128);
        let state = self.state.clone();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(req)) => {
                        let (tx, state) = (tx.clone(), state.clone());
                        tokio::spawn(async move {
                            let echo = pb::ModelInferResponse {
                                model_name: req.model_name.clone(),
                                model_version: req.model_version.clone(),
                                id: req.id.clone(),
                                ..Default::default()
                            };
                            let msg = match infer_one(&state, req, None).await {
                                Ok(r) => pb::ModelStreamInferResponse {
                                    error_message: String::new(),
                                    infer_response: Some(r),
                                },
                                Err(e) => pb::ModelStreamInferResponse {
                                    error_message: e.message,
                                    infer_response: Some(echo),
                                },
                            };
                            // The client may have gone; nothing to do then.
                            let _ = tx.send(Ok(msg)).await;
                        });
                    }
                    Ok(None) => break,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    /// The model's configuration as Triton reports it: `max_batch_size` (0 when the model is
    /// not batched), dims without the batch dimension when it is (with it, as -1 when variable,
    /// when it is not), and the dynamic batching settings in force.
    async fn model_config(
        &self,
        request: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let r = request.into_inner();
        let version = version_of(&r.version);
        let m = self
            .state
            .model_metadata(&r.name, version)
            .map_err(status_of)?;
        let v = self.state.model(&r.name, version).map_err(status_of)?;
        let max_batch = v.max_batch_size();
        let dims = |shape: Vec<i64>| {
            if max_batch > 0 && !shape.is_empty() {
                shape[1..].to_vec()
            } else {
                shape
            }
        };
        let input = m
            .inputs
            .into_iter()
            .map(|t| pb::ModelInput {
                name: t.name,
                data_type: config_data_type(&t.datatype) as i32,
                dims: dims(t.shape),
            })
            .collect();
        let output = m
            .outputs
            .into_iter()
            .map(|t| pb::ModelOutput {
                name: t.name,
                data_type: config_data_type(&t.datatype) as i32,
                dims: dims(t.shape),
            })
            .collect();
        let settings = v.settings();
        let dynamic_batching = v.dynamic_batching().then(|| pb::ModelDynamicBatching {
            preferred_batch_size: settings
                .preferred_batch_sizes
                .iter()
                .map(|&b| i32::try_from(b).unwrap_or(i32::MAX))
                .collect(),
            max_queue_delay_microseconds: u64::try_from(settings.batch_delay.as_micros())
                .unwrap_or(u64::MAX),
        });
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(pb::ModelConfig {
                name: m.name,
                platform: m.platform,
                backend: "millrace".to_string(),
                max_batch_size: i32::try_from(max_batch).unwrap_or(i32::MAX),
                input,
                output,
                dynamic_batching,
                default_model_filename: "model.onnx".to_string(),
            }),
        }))
    }

    /// Triton's statistics extension from the same counters as `/metrics`: every version of
    /// every model when no name is given, else the named model's versions (or the one asked
    /// for). Durations are cumulative nanoseconds of successful requests.
    async fn model_statistics(
        &self,
        request: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let r = request.into_inner();
        let version = version_of(&r.version);
        if !r.name.is_empty() {
            // An unknown model or version is NOT_FOUND.
            self.state.model(&r.name, version).map_err(status_of)?;
        }
        let dur = |count: u64, us: u64| {
            Some(pb::StatisticDuration {
                count,
                ns: us.saturating_mul(1000),
            })
        };
        let model_stats = self
            .state
            .versions()
            .filter(|v| r.name.is_empty() || v.name == r.name)
            .filter(|v| version.is_none() || version == Some(v.version.as_str()))
            .map(|v| {
                let m = v.metrics();
                let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                let ok = ld(&m.success);
                pb::ModelStatistics {
                    name: v.name.clone(),
                    version: v.version.clone(),
                    last_inference: 0,
                    inference_count: ld(&m.inference_count),
                    execution_count: ld(&m.exec_count),
                    inference_stats: Some(pb::InferStatistics {
                        success: dur(ok, ld(&m.request_us)),
                        fail: dur(ld(&m.failure), 0),
                        queue: dur(ok, ld(&m.queue_us)),
                        compute_input: dur(ok, ld(&m.compute_input_us)),
                        compute_infer: dur(ok, ld(&m.compute_infer_us)),
                        compute_output: dur(ok, ld(&m.compute_output_us)),
                        cache_hit: None,
                        cache_miss: None,
                    }),
                    batch_stats: Vec::new(),
                }
            })
            .collect();
        Ok(Response::new(pb::ModelStatisticsResponse { model_stats }))
    }
}

/// The Triton config datatype of a protocol datatype name.
fn config_data_type(datatype: &str) -> pb::DataType {
    use pb::DataType as T;
    match Datatype::parse(datatype) {
        Ok(Datatype::Bool) => T::TypeBool,
        Ok(Datatype::Uint8) => T::TypeUint8,
        Ok(Datatype::Uint16) => T::TypeUint16,
        Ok(Datatype::Uint32) => T::TypeUint32,
        Ok(Datatype::Uint64) => T::TypeUint64,
        Ok(Datatype::Int8) => T::TypeInt8,
        Ok(Datatype::Int16) => T::TypeInt16,
        Ok(Datatype::Int32) => T::TypeInt32,
        Ok(Datatype::Int64) => T::TypeInt64,
        Ok(Datatype::Fp16) => T::TypeFp16,
        Ok(Datatype::Fp32) => T::TypeFp32,
        Ok(Datatype::Fp64) => T::TypeFp64,
        Ok(Datatype::Bf16) => T::TypeBf16,
        Ok(Datatype::Bytes) => T::TypeString,
        Err(_) => T::TypeInvalid,
    }
}

/// The deadline a client set with the `grpc-timeout` header (`<digits><H|M|S|m|u|n>`).
fn grpc_timeout(meta: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let v = meta.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Decodes, runs and encodes one `ModelInfer` request.
pub async fn infer_one(
    state: &Arc<ServerState>,
    req: pb::ModelInferRequest,
    deadline: Option<Duration>,
) -> Result<pb::ModelInferResponse, ServeError> {
    let req = request_from_proto(req, deadline)?;
    let resp = state.infer(req).await?;
    response_to_proto(resp)
}

/// The request timeout Triton's clients send as the `timeout` parameter (microseconds).
fn timeout_param(
    params: &HashMap<String, pb::InferParameter>,
) -> Result<Option<Duration>, ServeError> {
    let Some(p) = params.get("timeout") else {
        return Ok(None);
    };
    match &p.parameter_choice {
        Some(ParameterChoice::Int64Param(us)) if *us >= 0 => {
            Ok(Some(Duration::from_micros(*us as u64)))
        }
        Some(ParameterChoice::Uint64Param(us)) => Ok(Some(Duration::from_micros(*us))),
        other => Err(ServeError::invalid(format!(
            "parameter `timeout` must be a non-negative integer of microseconds, got {other:?}"
        ))),
    }
}

/// Converts a `ModelInferRequest` into the protocol's [`InferRequest`], checking every field.
pub fn request_from_proto(
    req: pb::ModelInferRequest,
    deadline: Option<Duration>,
) -> Result<InferRequest, ServeError> {
    if req.model_name.is_empty() {
        return Err(ServeError::invalid(
            "the request names no model (model_name is empty)",
        ));
    }
    for key in ["sequence_id", "sequence_start", "sequence_end"] {
        if req.parameters.contains_key(key) {
            return Err(ServeError::invalid(format!(
                "parameter `{key}`: sequence batching is not supported by this server"
            )));
        }
    }
    let timeout = match (timeout_param(&req.parameters)?, deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if req.inputs.is_empty() {
        return Err(ServeError::invalid(format!(
            "the request to model `{}` has no inputs",
            req.model_name
        )));
    }
    let raw = !req.raw_input_contents.is_empty();
    if raw && req.raw_input_contents.len() != req.inputs.len() {
        return Err(ServeError::invalid(format!(
            "raw_input_contents has {} entries for {} inputs; it must have one per input, in \
             the order of `inputs`",
            req.raw_input_contents.len(),
            req.inputs.len()
        )));
    }
    let mut seen = HashSet::new();
    let mut raw_contents = req.raw_input_contents.into_iter();
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for input in req.inputs {
        let name = input.name;
        if name.is_empty() {
            return Err(ServeError::invalid("an input has an empty name"));
        }
        if !seen.insert(name.clone()) {
            return Err(ServeError::invalid(format!(
                "input `{name}` is given twice"
            )));
        }
        if input.parameters.contains_key("shared_memory_region") {
            return Err(ServeError::invalid(format!(
                "input `{name}`: shared memory is not supported by this server; send the data \
                 in the request"
            )));
        }
        let datatype = Datatype::parse(&input.datatype)
            .map_err(|e| ServeError::invalid(format!("input `{name}`: {}", e.message)))?;
        let tensor = match raw_contents.next() {
            Some(bytes) => {
                if input.contents.as_ref().is_some_and(|c| contents_len(c) > 0) {
                    return Err(ServeError::invalid(format!(
                        "input `{name}` has data both in `contents` and in raw_input_contents; \
                         use one"
                    )));
                }
                decode_raw(&name, datatype, &input.shape, &bytes)?
            }
            None => decode_typed(
                &name,
                datatype,
                &input.shape,
                input.contents.unwrap_or_default(),
            )?,
        };
        inputs.push(InferInput { name, tensor });
    }
    let mut outputs = Vec::with_capacity(req.outputs.len());
    for o in req.outputs {
        if o.name.is_empty() {
            return Err(ServeError::invalid("a requested output has an empty name"));
        }
        if o.parameters.contains_key("classification") {
            return Err(ServeError::invalid(format!(
                "output `{}`: the classification extension is not supported by this server",
                o.name
            )));
        }
        if o.parameters.contains_key("shared_memory_region") {
            return Err(ServeError::invalid(format!(
                "output `{}`: shared memory is not supported by this server",
                o.name
            )));
        }
        outputs.push(o.name);
    }
    Ok(InferRequest {
        model: req.model_name,
        version: version_of(&req.model_version).map(str::to_string),
        id: version_of(&req.id).map(str::to_string),
        inputs,
        outputs,
        timeout,
    })
}

/// Elements in all the typed fields of `c`.
fn contents_len(c: &pb::InferTensorContents) -> usize {
    c.bool_contents.len()
        + c.int_contents.len()
        + c.int64_contents.len()
        + c.uint_contents.len()
        + c.uint64_contents.len()
        + c.fp32_contents.len()
        + c.fp64_contents.len()
        + c.bytes_contents.len()
}

/// Narrows each value to `T`, refusing values out of its range.
fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(
    name: &str,
    datatype: Datatype,
    v: Vec<S>,
) -> Result<Vec<T>, ServeError> {
    v.into_iter()
        .map(|x| {
            T::try_from(x).map_err(|_| {
                ServeError::invalid(format!(
                    "input `{name}`: value {x} is out of range for {}",
                    datatype.as_str()
                ))
            })
        })
        .collect()
}

/// Decodes an input given as typed `contents`.
fn decode_typed(
    name: &str,
    datatype: Datatype,
    shape: &[i64],
    c: pb::InferTensorContents,
) -> Result<Tensor, ServeError> {
    let n = element_count(shape)
        .map_err(|e| ServeError::invalid(format!("input `{name}`: {}", e.message)))?;
    let (field, len) = match datatype {
        Datatype::Bool => ("bool_contents", c.bool_contents.len()),
        Datatype::Int8 | Datatype::Int16 | Datatype::Int32 => {
            ("int_contents", c.int_contents.len())
        }
        Datatype::Int64 => ("int64_contents", c.int64_contents.len()),
        Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 => {
            ("uint_contents", c.uint_contents.len())
        }
        Datatype::Uint64 => ("uint64_contents", c.uint64_contents.len()),
        Datatype::Fp32 => ("fp32_contents", c.fp32_contents.len()),
        Datatype::Fp64 => ("fp64_contents", c.fp64_contents.len()),
        Datatype::Bytes => ("bytes_contents", c.bytes_contents.len()),
        Datatype::Fp16 | Datatype::Bf16 => {
            return Err(ServeError::invalid(format!(
                "input `{name}`: {} has no typed `contents` field; send it in \
                 raw_input_contents",
                datatype.as_str()
            )))
        }
    };
    let total = contents_len(&c);
    if total != len {
        return Err(ServeError::invalid(format!(
            "input `{name}`: a {} input takes its data in `contents.{field}`, but {} values are \
             in other fields",
            datatype.as_str(),
            total - len
        )));
    }
    if len != n {
        return Err(ServeError::invalid(format!(
            "input `{name}`: shape {shape:?} has {n} elements, `contents.{field}` has {len}"
        )));
    }
    let data = match datatype {
        Datatype::Bool => TensorData::Bool(c.bool_contents),
        Datatype::Int8 => TensorData::I8(narrow(name, datatype, c.int_contents)?),
        Datatype::Int16 => TensorData::I16(narrow(name, datatype, c.int_contents)?),
        Datatype::Int32 => TensorData::I32(c.int_contents),
        Datatype::Int64 => TensorData::I64(c.int64_contents),
        Datatype::Uint8 => TensorData::U8(narrow(name, datatype, c.uint_contents)?),
        Datatype::Uint16 => TensorData::U16(narrow(name, datatype, c.uint_contents)?),
        Datatype::Uint32 => TensorData::U32(c.uint_contents),
        Datatype::Uint64 => TensorData::U64(c.uint64_contents),
        Datatype::Fp32 => TensorData::F32(c.fp32_contents),
        Datatype::Fp64 => TensorData::F64(c.fp64_contents),
        Datatype::Bytes => TensorData::String(
            c.bytes_contents
                .into_iter()
                .enumerate()
                .map(|(i, b)| {
                    String::from_utf8(b).map_err(|_| {
                        ServeError::invalid(format!(
                            "input `{name}`: BYTES element {i} is not UTF-8"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        Datatype::Fp16 | Datatype::Bf16 => unreachable!("refused above"),
    };
    let ushape = shape.iter().map(|&d| d as usize).collect();
    Tensor::new(ushape, data).map_err(|e| ServeError::invalid(format!("input `{name}`: {e}")))
}

/// Converts an [`InferResponse`] into a `ModelInferResponse` with raw output contents.
pub fn response_to_proto(resp: InferResponse) -> Result<pb::ModelInferResponse, ServeError> {
    let mut outputs = Vec::with_capacity(resp.outputs.len());
    let mut raw = Vec::with_capacity(resp.outputs.len());
    for (name, tensor) in resp.outputs {
        let (datatype, bytes) = encode_raw(&name, &tensor)?;
        outputs.push(pb::model_infer_response::InferOutputTensor {
            name,
            datatype: datatype.as_str().to_string(),
            shape: tensor.shape().iter().map(|&d| d as i64).collect(),
            parameters: HashMap::new(),
            contents: None,
        });
        raw.push(bytes);
    }
    Ok(pb::ModelInferResponse {
        model_name: resp.model_name,
        model_version: resp.model_version,
        id: resp.id.unwrap_or_default(),
        parameters: HashMap::new(),
        outputs,
        raw_output_contents: raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(
        name: &str,
        datatype: &str,
        shape: Vec<i64>,
    ) -> pb::model_infer_request::InferInputTensor {
        pb::model_infer_request::InferInputTensor {
            name: name.to_string(),
            datatype: datatype.to_string(),
            shape,
            ..Default::default()
        }
    }

    fn request(inputs: Vec<pb::model_infer_request::InferInputTensor>) -> pb::ModelInferRequest {
        pb::ModelInferRequest {
            model_name: "m".to_string(),
            inputs,
            ..Default::default()
        }
    }

    #[test]
    fn typed_contents_decode_every_datatype() {
        let mut i = input("a", "INT8", vec![3]);
        i.contents = Some(pb::InferTensorContents {
            int_contents: vec![-1, 0, 127],
            ..Default::default()
        });
        let mut u = input("b", "UINT16", vec![1, 2]);
        u.contents = Some(pb::InferTensorContents {
            uint_contents: vec![7, 65535],
            ..Default::default()
        });
        let mut s = input("c", "BYTES", vec![2]);
        s.contents = Some(pb::InferTensorContents {
            bytes_contents: vec![b"hi".to_vec(), Vec::new()],
            ..Default::default()
        });
        let mut f = input("d", "FP32", vec![2, 1]);
        f.contents = Some(pb::InferTensorContents {
            fp32_contents: vec![1.5, -2.0],
            ..Default::default()
        });
        let r = request_from_proto(request(vec![i, u, s, f]), None).unwrap();
        assert_eq!(r.inputs[0].tensor.data(), &TensorData::I8(vec![-1, 0, 127]));
        assert_eq!(r.inputs[1].tensor.shape(), &[1, 2]);
        assert_eq!(r.inputs[1].tensor.data(), &TensorData::U16(vec![7, 65535]));
        assert_eq!(
            r.inputs[2].tensor.data(),
            &TensorData::String(vec!["hi".to_string(), String::new()])
        );
        assert_eq!(r.inputs[3].tensor.data(), &TensorData::F32(vec![1.5, -2.0]));
    }

    #[test]
    fn typed_contents_errors_say_what_is_wrong() {
        let cases: Vec<(pb::model_infer_request::InferInputTensor, &str)> = vec![
            (
                {
                    let mut i = input("x", "INT8", vec![1]);
                    i.contents = Some(pb::InferTensorContents {
                        int_contents: vec![300],
                        ..Default::default()
                    });
                    i
                },
                "out of range for INT8",
            ),
            (
                {
                    let mut i = input("x", "FP32", vec![2, 2]);
                    i.contents = Some(pb::InferTensorContents {
                        fp32_contents: vec![1.0; 3],
                        ..Default::default()
                    });
                    i
                },
                "has 4 elements, `contents.fp32_contents` has 3",
            ),
            (
                {
                    let mut i = input("x", "FP32", vec![1]);
                    i.contents = Some(pb::InferTensorContents {
                        int_contents: vec![1],
                        ..Default::default()
                    });
                    i
                },
                "takes its data in `contents.fp32_contents`",
            ),
            (input("x", "FP16", vec![1]), "send it in raw_input_contents"),
            (input("x", "FLOAT", vec![1]), "unknown datatype `FLOAT`"),
            (input("x", "FP32", vec![-2]), "negative"),
        ];
        for (i, want) in cases {
            let e = request_from_proto(request(vec![i]), None).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument);
            assert!(e.message.contains(want), "`{}` lacks `{want}`", e.message);
        }
    }

    #[test]
    fn raw_contents_must_match_inputs() {
        let mut r = request(vec![
            input("a", "FP32", vec![1]),
            input("b", "FP32", vec![1]),
        ]);
        r.raw_input_contents = vec![vec![0; 4]];
        let e = request_from_proto(r, None).unwrap_err();
        assert!(
            e.message.contains("1 entries for 2 inputs"),
            "{}",
            e.message
        );

        let mut r = request(vec![input("a", "FP32", vec![2])]);
        r.raw_input_contents = vec![vec![0; 4]];
        let e = request_from_proto(r, None).unwrap_err();
        assert!(e.message.contains("need 8 bytes, got 4"), "{}", e.message);

        let mut r = request(vec![
            input("a", "FP32", vec![1]),
            input("a", "FP32", vec![1]),
        ]);
        r.raw_input_contents = vec![vec![0; 4], vec![0; 4]];
        let e = request_from_proto(r, None).unwrap_err();
        assert!(e.message.contains("given twice"), "{}", e.message);
    }

    #[test]
    fn timeouts_take_the_earliest() {
        let mut r = request(vec![input("a", "FP32", vec![0])]);
        r.parameters.insert(
            "timeout".to_string(),
            pb::InferParameter {
                parameter_choice: Some(ParameterChoice::Int64Param(5_000)),
            },
        );
        let got = request_from_proto(r.clone(), Some(Duration::from_secs(1))).unwrap();
        assert_eq!(got.timeout, Some(Duration::from_millis(5)));
        let got = request_from_proto(r, Some(Duration::from_micros(10))).unwrap();
        assert_eq!(got.timeout, Some(Duration::from_micros(10)));

        let mut meta = tonic::metadata::MetadataMap::new();
        meta.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(grpc_timeout(&meta), Some(Duration::from_millis(250)));
        meta.insert("grpc-timeout", "2x".parse().unwrap());
        assert_eq!(grpc_timeout(&meta), None);
    }

    #[test]
    fn error_kinds_map_to_grpc_codes() {
        assert_eq!(code_of(ErrorKind::NotFound), Code::NotFound);
        assert_eq!(code_of(ErrorKind::InvalidArgument), Code::InvalidArgument);
        assert_eq!(code_of(ErrorKind::Unavailable), Code::Unavailable);
        assert_eq!(code_of(ErrorKind::Timeout), Code::DeadlineExceeded);
        assert_eq!(code_of(ErrorKind::Internal), Code::Internal);
    }
}
