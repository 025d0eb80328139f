//! The REST front end: the Open Inference Protocol's HTTP endpoints (KServe v2 / Triton), with
//! Triton's binary tensor data extension.
//!
//! Endpoints (all under `/v2`):
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/v2/health/live`, `/v2/health/ready` | 200 or 503, empty body |
//! | GET | `/v2` | server metadata |
//! | GET | `/v2/models/{m}[/versions/{v}]` | model metadata |
//! | GET | `/v2/models/{m}[/versions/{v}]/ready` | 200 or 503, empty body |
//! | POST | `/v2/models/{m}[/versions/{v}]/infer` | inference |
//! | POST | `/v2/repository/index` | the models and versions served (Triton's extension) |
//!
//! An infer body is a JSON request, optionally followed by binary tensor data: when the
//! `Inference-Header-Content-Length: N` header is present, the first `N` bytes are the JSON and
//! the rest holds, in order, the raw bytes of every input whose `parameters.binary_data_size`
//! is set. Outputs asked for with `parameters.binary_data: true` (or all outputs, when the
//! request's `parameters.binary_data_output` is true and an output says nothing) come back the
//! same way: raw after the JSON, with `binary_data_size` set and the header in the response.
//!
//! Every error is a JSON object `{"error": "<message>"}` with the status of its
//! [`ErrorKind`](crate::ErrorKind); unknown routes get 404, wrong methods 405.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::ser::Error as _;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use millrace::{Tensor, TensorData};

use crate::error::{ErrorKind, ServeError};
use crate::state::ServerState;
use crate::types::{
    decode_raw, element_count, encode_raw, Datatype, InferInput, InferRequest, InferResponse,
    ModelMetadata, TensorMetadata,
};

/// The header giving the length of the JSON part of a body with binary tensor data.
pub const HEADER_CONTENT_LENGTH: &str = "inference-header-content-length";

/// The body size limit when none is configured: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;

#[derive(Clone)]
struct Http {
    state: Arc<ServerState>,
    max_body_bytes: usize,
}

/// The router of the REST endpoints, refusing infer bodies over `max_body_bytes` (413).
pub fn router(state: Arc<ServerState>, max_body_bytes: usize) -> Router {
    let h = Http {
        state,
        max_body_bytes,
    };
    Router::new()
        .route("/v2/health/live", get(health_live))
        .route("/v2/health/ready", get(health_ready))
        .route("/v2", get(server_metadata))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/models/:model", get(model_metadata))
        .route("/v2/models/:model/versions/:version", get(version_metadata))
        .route("/v2/models/:model/ready", get(model_ready))
        .route(
            "/v2/models/:model/versions/:version/ready",
            get(version_ready),
        )
        .route("/v2/models/:model/infer", post(model_infer))
        .route(
            "/v2/models/:model/versions/:version/infer",
            post(version_infer),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(h)
}

// ---------------------------------------------------------------------------------------------
// Responses

/// The JSON error response of a [`ServeError`].
pub fn error_response(e: &ServeError) -> Response {
    let status =
        StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &serde_json::json!({ "error": e.message }))
}

fn json_response(status: StatusCode, v: &impl Serialize) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from(body),
        )
            .into_response(),
        Err(e) => error_response(&ServeError::internal(format!(
            "could not encode the response as JSON: {e}"
        ))),
    }
}

fn status_only(ok: bool) -> Response {
    if ok {
        StatusCode::OK.into_response()
    } else {
        StatusCode::SERVICE_UNAVAILABLE.into_response()
    }
}

async fn no_route(method: Method, uri: Uri) -> Response {
    error_response(&ServeError::not_found(format!(
        "no endpoint {method} {}; the API is under /v2 (health/live, health/ready, \
         models/{{model}}[/versions/{{version}}][/ready|/infer], repository/index)",
        uri.path()
    )))
}

async fn wrong_method(method: Method, uri: Uri) -> Response {
    let e = ServeError::new(
        ErrorKind::InvalidArgument,
        format!("{} does not take {method}", uri.path()),
    );
    let mut r = error_response(&e);
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

fn path_error(e: PathRejection) -> Response {
    error_response(&ServeError::invalid(format!("bad path: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Health and metadata

async fn health_live(State(h): State<Http>) -> Response {
    status_only(h.state.is_live())
}

async fn health_ready(State(h): State<Http>) -> Response {
    status_only(h.state.is_ready())
}

#[derive(Serialize)]
struct ServerMetadataJson {
    name: String,
    version: String,
    extensions: Vec<String>,
}

async fn server_metadata(State(h): State<Http>) -> Response {
    let m = h.state.server_metadata();
    json_response(
        StatusCode::OK,
        &ServerMetadataJson {
            name: m.name,
            version: m.version,
            extensions: m.extensions,
        },
    )
}

#[derive(Serialize)]
struct TensorMetadataJson {
    name: String,
    datatype: String,
    shape: Vec<i64>,
}

#[derive(Serialize)]
struct ModelMetadataJson {
    name: String,
    versions: Vec<String>,
    platform: String,
    inputs: Vec<TensorMetadataJson>,
    outputs: Vec<TensorMetadataJson>,
}

fn metadata_json(m: ModelMetadata) -> ModelMetadataJson {
    let conv = |v: Vec<TensorMetadata>| {
        v.into_iter()
            .map(|t| TensorMetadataJson {
                name: t.name,
                datatype: t.datatype,
                shape: t.shape,
            })
            .collect()
    };
    ModelMetadataJson {
        name: m.name,
        versions: m.versions,
        platform: m.platform,
        inputs: conv(m.inputs),
        outputs: conv(m.outputs),
    }
}

fn metadata(h: &Http, model: &str, version: Option<&str>) -> Response {
    match h.state.model_metadata(model, version) {
        Ok(m) => json_response(StatusCode::OK, &metadata_json(m)),
        Err(e) => error_response(&e),
    }
}

async fn model_metadata(State(h): State<Http>, p: Result<Path<String>, PathRejection>) -> Response {
    match p {
        Ok(Path(m)) => metadata(&h, &m, None),
        Err(e) => path_error(e),
    }
}

async fn version_metadata(
    State(h): State<Http>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    match p {
        Ok(Path((m, v))) => metadata(&h, &m, Some(&v)),
        Err(e) => path_error(e),
    }
}

fn ready(h: &Http, model: &str, version: Option<&str>) -> Response {
    match h.state.model_ready(model, version) {
        Ok(r) => status_only(r),
        Err(e) => error_response(&e),
    }
}

async fn model_ready(State(h): State<Http>, p: Result<Path<String>, PathRejection>) -> Response {
    match p {
        Ok(Path(m)) => ready(&h, &m, None),
        Err(e) => path_error(e),
    }
}

async fn version_ready(
    State(h): State<Http>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    match p {
        Ok(Path((m, v))) => ready(&h, &m, Some(&v)),
        Err(e) => path_error(e),
    }
}

#[derive(Serialize)]
struct IndexEntry {
    name: String,
    version: String,
    state: &'static str,
}

/// Triton's model repository index: one entry per model version, all `READY` (every model of
/// the repository is loaded at start). The request body (`{"ready": bool}`) is accepted and,
/// since every listed model is ready, needs no filtering.
async fn repository_index(State(h): State<Http>) -> Response {
    let state_name = if h.state.is_ready() {
        "READY"
    } else {
        "UNAVAILABLE"
    };
    let mut out = Vec::new();
    for name in h.state.model_names() {
        let versions = h
            .state
            .model_metadata(name, None)
            .map(|m| m.versions)
            .unwrap_or_default();
        for version in versions {
            out.push(IndexEntry {
                name: name.to_string(),
                version,
                state: state_name,
            });
        }
    }
    json_response(StatusCode::OK, &out)
}

// ---------------------------------------------------------------------------------------------
// Inference

async fn model_infer(
    State(h): State<Http>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match p {
        Ok(Path(m)) => infer(&h, m, None, &headers, body).await,
        Err(e) => path_error(e),
    }
}

async fn version_infer(
    State(h): State<Http>,
    p: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match p {
        Ok(Path((m, v))) => infer(&h, m, Some(v), &headers, body).await,
        Err(e) => path_error(e),
    }
}

async fn infer(
    h: &Http,
    model: String,
    version: Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    match infer_inner(h, model, version, headers, body).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn infer_inner(
    h: &Http,
    model: String,
    version: Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ServeError> {
    // Unknown model or version: say so before reading a large body.
    h.state.model(&model, version.as_deref())?;
    let bytes = read_body(body, headers, h.max_body_bytes).await?;
    let header_len = header_length(headers)?;
    let parsed = parse_infer_body(&bytes, header_len)?;
    let (request, wanted) = parsed.into_request(model, version)?;
    let response = h.state.infer(request).await?;
    encode_response(response, &wanted)
}

/// Reads the whole body, refusing more than `max` bytes (413).
async fn read_body(mut body: Body, headers: &HeaderMap, max: usize) -> Result<Vec<u8>, ServeError> {
    let too_large = |size: String| {
        ServeError::new(
            ErrorKind::TooLarge,
            format!(
                "the request body is {size}, over the server's limit of {max} bytes \
                 (millrace serve --max-body-size)"
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared {
        if n > max as u64 {
            return Err(too_large(format!("{n} bytes")));
        }
    }
    let mut buf = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame
            .map_err(|e| ServeError::invalid(format!("could not read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                return Err(too_large(format!("more than {max} bytes")));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}

/// The `Inference-Header-Content-Length` header, if present.
fn header_length(headers: &HeaderMap) -> Result<Option<usize>, ServeError> {
    let Some(v) = headers.get(HEADER_CONTENT_LENGTH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("");
    s.trim().parse::<usize>().map(Some).map_err(|_| {
        ServeError::invalid(format!(
            "Inference-Header-Content-Length `{}` is not a byte count",
            String::from_utf8_lossy(v.as_bytes())
        ))
    })
}

/// `$inference_request` as JSON.
#[derive(Deserialize)]
struct JsonRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<JsonInput>,
    #[serde(default)]
    outputs: Option<Vec<JsonRequestedOutput>>,
}

/// `$request_input`.
#[derive(Deserialize)]
struct JsonInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    data: Option<Value>,
}

/// `$request_output`.
#[derive(Deserialize)]
struct JsonRequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// A parsed infer body: the JSON request and the binary part after it.
struct ParsedBody<'a> {
    json: JsonRequest,
    binary: &'a [u8],
    has_binary_part: bool,
}

/// Splits a body at `header_len` (the binary extension) and parses the JSON part.
fn parse_infer_body(body: &[u8], header_len: Option<usize>) -> Result<ParsedBody<'_>, ServeError> {
    let (json, binary) = match header_len {
        Some(n) if n > body.len() => {
            return Err(ServeError::invalid(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )))
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    if json.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ServeError::invalid(
            "the request has no JSON body; expected {\"inputs\": [...]}",
        ));
    }
    let json: JsonRequest = serde_json::from_slice(json)
        .map_err(|e| ServeError::invalid(format!("malformed JSON request: {e}")))?;
    Ok(ParsedBody {
        json,
        binary,
        has_binary_part: header_len.is_some(),
    })
}

/// One output of the response: its name and whether it goes back as binary data.
type WantedOutputs = Option<Vec<(String, bool)>>;

/// What the response needs to know about the request's `outputs`: each output asked for with
/// its binary flag (`None`: all outputs, binary when `binary_data_output` is set).
#[derive(Debug)]
struct Wanted {
    outputs: WantedOutputs,
    binary_default: bool,
}

fn bool_param(
    params: Option<&Map<String, Value>>,
    key: &str,
    what: &str,
) -> Result<Option<bool>, ServeError> {
    match params.and_then(|p| p.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ServeError::invalid(format!(
            "{what}: parameter `{key}` must be true or false, got {v}"
        ))),
    }
}

fn refuse_shared_memory(params: Option<&Map<String, Value>>, what: &str) -> Result<(), ServeError> {
    if let Some(k) = params.and_then(|p| p.keys().find(|k| k.starts_with("shared_memory_"))) {
        return Err(ServeError::invalid(format!(
            "{what}: parameter `{k}`: this server does not support the shared-memory extension"
        )));
    }
    Ok(())
}

impl ParsedBody<'_> {
    /// Decodes the inputs (JSON or binary) into an [`InferRequest`].
    fn into_request(
        self,
        model: String,
        version: Option<String>,
    ) -> Result<(InferRequest, Wanted), ServeError> {
        let params = self.json.parameters.as_ref();
        let timeout = match params.and_then(|p| p.get("timeout")) {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(0) => None,
                Some(us) => Some(Duration::from_micros(us)),
                None => {
                    return Err(ServeError::invalid(format!(
                        "parameter `timeout` must be a whole number of microseconds, got {v}"
                    )))
                }
            },
        };
        let binary_default = bool_param(params, "binary_data_output", "request")?.unwrap_or(false);

        let mut rest = self.binary;
        let mut inputs = Vec::with_capacity(self.json.inputs.len());
        let mut seen = HashSet::new();
        for input in self.json.inputs {
            let name = input.name;
            if !seen.insert(name.clone()) {
                return Err(ServeError::invalid(format!(
                    "input `{name}` is given twice"
                )));
            }
            let what = format!("input `{name}`");
            let dt = Datatype::parse(&input.datatype)
                .map_err(|e| ServeError::invalid(format!("{what}: {}", e.message)))?;
            let p = input.parameters.as_ref();
            refuse_shared_memory(p, &what)?;
            let size = match p.and_then(|p| p.get("binary_data_size")) {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or_else(|| {
                    ServeError::invalid(format!(
                        "{what}: `binary_data_size` must be a byte count, got {v}"
                    ))
                })?),
            };
            let tensor = match (size, input.data) {
                (Some(_), Some(_)) => {
                    return Err(ServeError::invalid(format!(
                        "{what} has both `data` and `binary_data_size`; give one"
                    )))
                }
                (None, None) => {
                    return Err(ServeError::invalid(format!(
                        "{what} has no `data` (and no `binary_data_size` for binary data)"
                    )))
                }
                (Some(n), None) => {
                    if !self.has_binary_part {
                        return Err(ServeError::invalid(format!(
                            "{what} has `binary_data_size` {n} but the request has no binary \
                             part (no Inference-Header-Content-Length header)"
                        )));
                    }
                    let n_usize = usize::try_from(n).unwrap_or(usize::MAX);
                    if n_usize > rest.len() {
                        return Err(ServeError::invalid(format!(
                            "{what} has `binary_data_size` {n} but only {} bytes of binary data \
                             are left (the binary part after the JSON is {} bytes)",
                            rest.len(),
                            self.binary.len()
                        )));
                    }
                    let (raw, tail) = rest.split_at(n_usize);
                    rest = tail;
                    decode_raw(&name, dt, &input.shape, raw)?
                }
                (None, Some(data)) => json_tensor(&name, dt, &input.shape, &data)?,
            };
            inputs.push(InferInput { name, tensor });
        }
        if !rest.is_empty() {
            return Err(ServeError::invalid(format!(
                "{} bytes of binary data are left after the inputs' `binary_data_size`s \
                 (the binary part is {} bytes)",
                rest.len(),
                self.binary.len()
            )));
        }

        let mut outputs_wanted = None;
        let mut names = Vec::new();
        if let Some(outs) = self.json.outputs.filter(|o| !o.is_empty()) {
            let mut list = Vec::with_capacity(outs.len());
            let mut seen = HashSet::new();
            for o in outs {
                let what = format!("output `{}`", o.name);
                if !seen.insert(o.name.clone()) {
                    return Err(ServeError::invalid(format!("{what} is asked for twice")));
                }
                let p = o.parameters.as_ref();
                refuse_shared_memory(p, &what)?;
                if p.is_some_and(|p| p.contains_key("classification")) {
                    return Err(ServeError::invalid(format!(
                        "{what}: this server does not support the classification extension"
                    )));
                }
                let binary = bool_param(p, "binary_data", &what)?.unwrap_or(binary_default);
                names.push(o.name.clone());
                list.push((o.name, binary));
            }
            outputs_wanted = Some(list);
        }
        Ok((
            InferRequest {
                model,
                version,
                id: self.json.id,
                inputs,
                outputs: names,
                timeout,
            },
            Wanted {
                outputs: outputs_wanted,
                binary_default,
            },
        ))
    }
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        other => out.push(other),
    }
}

/// Short text of a JSON value for messages.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(37).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

/// A tensor from a JSON `data` array (flat or nested, row-major).
fn json_tensor(
    name: &str,
    dt: Datatype,
    shape: &[i64],
    data: &Value,
) -> Result<Tensor, ServeError> {
    let n = element_count(shape)
        .map_err(|e| ServeError::invalid(format!("input `{name}`: {}", e.message)))?;
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    if flat.len() != n {
        return Err(ServeError::invalid(format!(
            "input `{name}`: shape {shape:?} has {n} elements but `data` has {}",
            flat.len()
        )));
    }
    let bad = |i: usize, v: &Value, want: &str| {
        ServeError::invalid(format!(
            "input `{name}` ({}): element {i} is {}, expected {want}",
            dt.as_str(),
            show(v)
        ))
    };
    macro_rules! ints {
        ($variant:ident, $t:ty, $get:ident) => {
            TensorData::$variant(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.$get()
                            .and_then(|x| <$t>::try_from(x).ok())
                            .ok_or_else(|| {
                                bad(i, v, concat!("an integer in the range of ", stringify!($t)))
                            })
                    })
                    .collect::<Result<Vec<$t>, _>>()?,
            )
        };
    }
    macro_rules! floats {
        ($variant:ident, $conv:expr) => {
            TensorData::$variant(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| v.as_f64().map($conv).ok_or_else(|| bad(i, v, "a number")))
                    .collect::<Result<Vec<_>, _>>()?,
            )
        };
    }
    let td = match dt {
        Datatype::Bool => TensorData::Bool(
            flat.iter()
                .enumerate()
                .map(|(i, v)| v.as_bool().ok_or_else(|| bad(i, v, "true or false")))
                .collect::<Result<_, _>>()?,
        ),
        Datatype::Uint8 => ints!(U8, u8, as_u64),
        Datatype::Uint16 => ints!(U16, u16, as_u64),
        Datatype::Uint32 => ints!(U32, u32, as_u64),
        Datatype::Uint64 => ints!(U64, u64, as_u64),
        Datatype::Int8 => ints!(I8, i8, as_i64),
        Datatype::Int16 => ints!(I16, i16, as_i64),
        Datatype::Int32 => ints!(I32, i32, as_i64),
        Datatype::Int64 => ints!(I64, i64, as_i64),
        Datatype::Fp16 => floats!(F16, millrace::f16::from_f64),
        Datatype::Bf16 => floats!(BF16, millrace::bf16::from_f64),
        Datatype::Fp32 => floats!(F32, |x| x as f32),
        Datatype::Fp64 => floats!(F64, |x| x),
        Datatype::Bytes => TensorData::String(
            flat.iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(i, v, "a string"))
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let ushape = shape.iter().map(|&d| d as usize).collect();
    Tensor::new(ushape, td).map_err(|e| ServeError::invalid(format!("input `{name}`: {e}")))
}

/// A tensor's elements as a flat JSON array.
struct JsonData<'a>(&'a Tensor);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.data() {
            TensorData::F32(v) => v.serialize(s),
            TensorData::F64(v) => v.serialize(s),
            TensorData::F16(v) => s.collect_seq(v.iter().map(|x| x.to_f32())),
            TensorData::BF16(v) => s.collect_seq(v.iter().map(|x| x.to_f32())),
            TensorData::I8(v) => v.serialize(s),
            TensorData::I16(v) => v.serialize(s),
            TensorData::I32(v) => v.serialize(s),
            TensorData::I64(v) => v.serialize(s),
            TensorData::U8(v) => v.serialize(s),
            TensorData::U16(v) => v.serialize(s),
            TensorData::U32(v) => v.serialize(s),
            TensorData::U64(v) => v.serialize(s),
            TensorData::Bool(v) => v.serialize(s),
            TensorData::String(v) => v.serialize(s),
            _ => Err(S::Error::custom(format!(
                "dtype {} has no protocol datatype",
                self.0.dtype()
            ))),
        }
    }
}

/// `$response_output`.
#[derive(Serialize)]
struct JsonOutput<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

/// `$inference_response`.
#[derive(Serialize)]
struct JsonResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<JsonOutput<'a>>,
}

/// The HTTP response of an inference: JSON, then the binary outputs if any were asked for.
fn encode_response(r: InferResponse, wanted: &Wanted) -> Result<Response, ServeError> {
    let binary_flag = |name: &str| match &wanted.outputs {
        None => wanted.binary_default,
        Some(list) => list
            .iter()
            .find(|(n, _)| n == name)
            .map_or(wanted.binary_default, |(_, b)| *b),
    };
    let mut tail = Vec::new();
    let mut any_binary = false;
    let mut outputs = Vec::with_capacity(r.outputs.len());
    for (name, t) in &r.outputs {
        if binary_flag(name) {
            any_binary = true;
            let (dt, bytes) = encode_raw(name, t)?;
            let mut p = Map::new();
            p.insert("binary_data_size".into(), Value::from(bytes.len()));
            tail.extend_from_slice(&bytes);
            outputs.push(JsonOutput {
                name,
                datatype: dt.as_str(),
                shape: t.shape(),
                parameters: Some(p),
                data: None,
            });
        } else {
            let dt = Datatype::from_dtype(t.dtype()).ok_or_else(|| {
                ServeError::internal(format!(
                    "output `{name}` has dtype {}, which the protocol cannot carry",
                    t.dtype()
                ))
            })?;
            outputs.push(JsonOutput {
                name,
                datatype: dt.as_str(),
                shape: t.shape(),
                parameters: None,
                data: Some(JsonData(t)),
            });
        }
    }
    let json = serde_json::to_vec(&JsonResponse {
        model_name: &r.model_name,
        model_version: &r.model_version,
        id: r.id.as_deref(),
        outputs,
    })
    .map_err(|e| ServeError::internal(format!("could not encode the response: {e}")))?;
    if !any_binary {
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from(json),
        )
            .into_response());
    }
    let json_len = json.len();
    let mut body = json;
    body.extend_from_slice(&tail);
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from(body),
    )
        .into_response();
    resp.headers_mut()
        .insert(HEADER_CONTENT_LENGTH, HeaderValue::from(json_len));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<(InferRequest, Wanted), ServeError> {
        parse_infer_body(body.as_bytes(), None)?.into_request("m".into(), None)
    }

    #[test]
    fn nested_json_data_is_row_major() {
        let (r, _) = parse(
            r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"INT32","data":[[1,2],[3,4]]}]}"#,
        )
        .unwrap();
        assert_eq!(r.inputs[0].tensor.as_slice::<i32>().unwrap(), &[1, 2, 3, 4]);
    }

    #[test]
    fn json_errors_say_what_is_wrong() {
        let e = parse(r#"{"inputs": [}"#).unwrap_err();
        assert!(e.message.contains("line 1 column"), "{}", e.message);
        let e = parse(r#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#)
            .unwrap_err();
        assert!(e.message.contains("3 elements"), "{}", e.message);
        let e = parse(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"UINT8","data":[300]}]}"#)
            .unwrap_err();
        assert!(e.message.contains("element 0 is 300"), "{}", e.message);
        let e = parse(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"BOOL","data":[1]}]}"#)
            .unwrap_err();
        assert!(e.message.contains("true or false"), "{}", e.message);
        let e = parse(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"F32","data":[1]}]}"#)
            .unwrap_err();
        assert!(
            e.message.contains("unknown datatype `F32`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn binary_inputs_are_cut_in_order() {
        let json = r#"{"inputs":[
            {"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},
            {"name":"b","shape":[1],"datatype":"INT64","data":[7]},
            {"name":"c","shape":[1],"datatype":"INT16","parameters":{"binary_data_size":2}}]}"#;
        let mut body = json.as_bytes().to_vec();
        body.extend_from_slice(&1.5f32.to_le_bytes());
        body.extend_from_slice(&(-2.0f32).to_le_bytes());
        body.extend_from_slice(&(-3i16).to_le_bytes());
        let (r, _) = parse_infer_body(&body, Some(json.len()))
            .unwrap()
            .into_request("m".into(), None)
            .unwrap();
        assert_eq!(r.inputs[0].tensor.as_slice::<f32>().unwrap(), &[1.5, -2.0]);
        assert_eq!(r.inputs[1].tensor.as_slice::<i64>().unwrap(), &[7]);
        assert_eq!(r.inputs[2].tensor.as_slice::<i16>().unwrap(), &[-3]);

        // One byte short, one byte over.
        let e = parse_infer_body(&body[..body.len() - 1], Some(json.len()))
            .unwrap()
            .into_request("m".into(), None)
            .unwrap_err();
        assert!(e.message.contains("only 1 bytes"), "{}", e.message);
        body.push(0);
        let e = parse_infer_body(&body, Some(json.len()))
            .unwrap()
            .into_request("m".into(), None)
            .unwrap_err();
        assert!(
            e.message.contains("1 bytes of binary data are left"),
            "{}",
            e.message
        );
        let e = parse_infer_body(&body, Some(body.len() + 1)).err().unwrap();
        assert!(e.message.contains("has only"), "{}", e.message);
    }

    #[test]
    fn output_flags() {
        let (r, w) = parse(
            r#"{"parameters":{"binary_data_output":true,"timeout":1500},
                "inputs":[],
                "outputs":[{"name":"y"},{"name":"z","parameters":{"binary_data":false}}]}"#,
        )
        .unwrap();
        assert_eq!(r.outputs, vec!["y", "z"]);
        assert_eq!(r.timeout, Some(Duration::from_micros(1500)));
        assert_eq!(
            w.outputs.unwrap(),
            vec![("y".to_string(), true), ("z".to_string(), false)]
        );
    }
}
