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
//! [`ErrorKind`]; unknown routes get 404, wrong methods 405. A body refused
//! without being read (unknown model, over `--max-body-size`, ...) is read and discarded after
//! the answer, within bounds (see [`linger`]), so clients that send the whole body before
//! reading see the status rather than a reset connection.

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

async fn no_route(
    State(h): State<Http>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    linger(body, &headers, h.max_body_bytes);
    error_response(&ServeError::not_found(format!(
        "no endpoint {method} {}; the API is under /v2 (health/live, health/ready, \
         models/{{model}}[/versions/{{version}}][/ready|/infer], repository/index)",
        uri.path()
    )))
}

async fn wrong_method(
    State(h): State<Http>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    linger(body, &headers, h.max_body_bytes);
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
async fn repository_index(State(h): State<Http>, headers: HeaderMap, body: Body) -> Response {
    linger(body, &headers, h.max_body_bytes);
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
        Err(e) => {
            linger(body, &headers, h.max_body_bytes);
            path_error(e)
        }
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
        Err(e) => {
            linger(body, &headers, h.max_body_bytes);
            path_error(e)
        }
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
    // Every refusal below happens before the body is read: `linger` reads and discards it in
    // the background, so a client that writes its whole body before reading the answer gets
    // the status instead of a broken pipe.
    if let Err(e) = h.state.model(&model, version.as_deref()) {
        linger(body, headers, h.max_body_bytes);
        return Err(e);
    }
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        let enc = String::from_utf8_lossy(enc.as_bytes());
        if !enc.trim().eq_ignore_ascii_case("identity") {
            linger(body, headers, h.max_body_bytes);
            return Err(ServeError::invalid(format!(
                "Content-Encoding `{enc}` is not supported; send the body uncompressed"
            )));
        }
    }
    let header_len = match header_length(headers) {
        Ok(n) => n,
        Err(e) => {
            linger(body, headers, h.max_body_bytes);
            return Err(e);
        }
    };
    let bytes = read_body(body, headers, h.max_body_bytes).await?;
    let parsed = parse_infer_body(&bytes, header_len)?;
    let (request, wanted) = parsed.into_request(model, version)?;
    let response = h.state.infer(request).await?;
    encode_response(response, &wanted)
}

/// How long [`linger`] keeps reading a body it discards, in all.
///
/// nginx's lingering close reads for up to 30 s (`lingering_time`) with at most 5 s between
/// reads (`lingering_timeout`); an inference server's clients are usually near (a cluster
/// network or loopback), where the bytes [`linger_budget`] allows arrive in well under a
/// second, so 5 s in all and 2 s between reads free the connection sooner and still let a
/// slow client finish.
pub const LINGER_TIME: Duration = Duration::from_secs(5);

/// The longest wait between two reads of a discarded body (see [`LINGER_TIME`]).
pub const LINGER_IDLE: Duration = Duration::from_secs(2);

/// How many bytes [`linger`] reads at most: the body limit, but at least 64 MiB.
///
/// A body within the limit is read whole, so its client always sees the answer. A body over
/// the limit is read on only while it is at most 64 MiB or the limit, whichever is larger:
/// enough for the common case (a request a little too large, or a JSON body where binary
/// was meant) while an endless or huge upload costs the server a bounded amount of reading.
pub fn linger_budget(max_body_bytes: usize) -> u64 {
    (max_body_bytes as u64).max(64 << 20)
}

/// Discards a request body the answer does not need, in the background, so the client gets
/// the answer (an error, mostly) rather than a connection reset.
///
/// When a server answers and closes while the client is still sending, the unread bytes make
/// the kernel reset the connection, and a client that writes its whole body before reading
/// (Python's `http.client`, `requests`, many others) gets a broken pipe and never sees the
/// status. As nginx does on a refusal (its "lingering close"), the body is read and thrown
/// away after the answer is sent: hyper keeps reading the connection as long as the body is
/// held, and closes it once the body is dropped before its end.
///
/// Bounds: at most [`linger_budget`] bytes, [`LINGER_TIME`] in all and [`LINGER_IDLE`]
/// between reads. A body whose declared `Content-Length` is already over the budget, or one
/// sent with `Expect: 100-continue` (the client waits for our go-ahead, which reading would
/// give), is dropped at once: the client gets the answer without sending the body.
pub fn linger(body: Body, headers: &HeaderMap, max_body_bytes: usize) {
    let budget = linger_budget(max_body_bytes);
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let declared = declared_length(headers);
    if expects_continue || declared.is_some_and(|n| n > budget) || declared == Some(0) {
        return;
    }
    // Outside a runtime (never, under axum) the body is simply dropped.
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let mut body = body;
        let mut read = 0u64;
        let drain = async {
            loop {
                let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
                match tokio::time::timeout(LINGER_IDLE, next).await {
                    Ok(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            read += data.len() as u64;
                            if read > budget {
                                return;
                            }
                        }
                    }
                    // The end, a broken connection, or a client that went quiet.
                    Ok(None) | Ok(Some(Err(_))) | Err(_) => return,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    });
}

/// The `Content-Length` header, if present and a number.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Reads the whole body, refusing more than `max` bytes (413; the rest of the body is then
/// discarded by [`linger`] so the client sees the 413).
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
    let declared = declared_length(headers);
    if let Some(n) = declared {
        if n > max as u64 {
            linger(body, headers, max);
            return Err(too_large(format!("{n} bytes")));
        }
    }
    let mut buf = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame
            .map_err(|e| ServeError::invalid(format!("could not read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                linger(body, headers, max);
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
    let json = parse_json_request(json)?;
    Ok(ParsedBody {
        json,
        binary,
        has_binary_part: header_len.is_some(),
    })
}

/// Parses the JSON part, naming the field at fault when the JSON is well formed but of the
/// wrong shape (`inputs[0].shape[1]: expected an integer, got a string "x"`).
fn parse_json_request(json: &[u8]) -> Result<JsonRequest, ServeError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let parsed: Result<JsonRequest, _> = serde_path_to_error::deserialize(&mut de);
    let request = parsed.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let at = if path.is_empty() || path == "." {
                    "the request".to_string()
                } else {
                    format!("`{path}`")
                };
                ServeError::invalid(format!(
                    "JSON request: {at}: {} (an infer request is {{\"inputs\": [{{\"name\", \
                     \"shape\", \"datatype\", \"data\"}}, ...]}})",
                    describe_json_error(&path, &inner)
                ))
            }
            _ => ServeError::invalid(format!("malformed JSON request: {inner}")),
        }
    })?;
    // Trailing characters after the object are an error too (as `from_slice` says).
    de.end()
        .map_err(|e| ServeError::invalid(format!("malformed JSON request: {e}")))?;
    Ok(request)
}

/// serde's message for a JSON value of the wrong type, in JSON's words and with what the field
/// holds: "expected an array of input tensors, got a number".
fn describe_json_error(path: &str, e: &serde_json::Error) -> String {
    let msg = e.to_string();
    // serde_json appends " at line L column C"; the path says where already.
    let msg = msg
        .rsplit_once(" at line ")
        .map_or(msg.as_str(), |(m, _)| m)
        .to_string();
    let Some(rest) = msg.strip_prefix("invalid type: ") else {
        return msg;
    };
    let Some((got, want)) = rest.split_once(", expected ") else {
        return msg;
    };
    let got = match got.split_whitespace().next().unwrap_or("") {
        "integer" | "floating" => format!("a number ({})", got.split_once(' ').map_or("", |p| p.1)),
        "string" => got.to_string(),
        "boolean" => got.to_string(),
        "sequence" => "an array".to_string(),
        "map" => "an object".to_string(),
        "null" | "unit" => "null".to_string(),
        _ => got.to_string(),
    };
    // The last path segment names the field (array indices aside).
    let field = path
        .rsplit('.')
        .next()
        .unwrap_or("")
        .split('[')
        .next()
        .unwrap_or("");
    let want = match (field, want) {
        ("inputs", "a sequence") => "an array of input tensors".to_string(),
        ("outputs", "a sequence") => "an array of requested outputs".to_string(),
        ("shape", "a sequence") => "an array of dimensions".to_string(),
        ("parameters", "a map") => "an object of parameters".to_string(),
        (_, "a sequence") => "an array".to_string(),
        (_, "a map") | (_, "struct JsonRequest") | (_, "struct JsonInput") => {
            "an object".to_string()
        }
        (_, "struct JsonRequestedOutput") => "an object".to_string(),
        (_, "i64") => "an integer".to_string(),
        (_, w) => w.to_string(),
    };
    format!("expected {want}, got {got}")
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
    fn json_inputs_of_every_kind() {
        let (r, _) = parse(
            r#"{"inputs":[
                {"name":"b","shape":[2],"datatype":"BOOL","data":[true,false]},
                {"name":"s","shape":[1,2],"datatype":"BYTES","data":[["x","yz"]]},
                {"name":"h","shape":[1],"datatype":"FP16","data":[0.5]},
                {"name":"g","shape":[1],"datatype":"BF16","data":[-2]},
                {"name":"u","shape":[],"datatype":"UINT64","data":18446744073709551615},
                {"name":"i","shape":[1],"datatype":"INT8","data":[-128]}]}"#,
        )
        .unwrap();
        let t = |i: usize| &r.inputs[i].tensor;
        assert_eq!(t(0).as_slice::<bool>().unwrap(), &[true, false]);
        assert_eq!(t(1).shape(), &[1, 2]);
        assert_eq!(t(1).as_slice::<String>().unwrap(), &["x", "yz"]);
        assert_eq!(t(2).as_slice::<millrace::f16>().unwrap()[0].to_f32(), 0.5);
        assert_eq!(t(3).as_slice::<millrace::bf16>().unwrap()[0].to_f32(), -2.0);
        assert_eq!(t(4).as_slice::<u64>().unwrap(), &[u64::MAX]);
        assert_eq!(t(5).as_slice::<i8>().unwrap(), &[-128]);
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
    fn responses_carry_every_datatype_as_json_and_binary() {
        let outputs = vec![
            (
                "s".to_string(),
                Tensor::from_vec(vec![2], vec!["ab".to_string(), "c".to_string()]).unwrap(),
            ),
            (
                "b".to_string(),
                Tensor::from_vec(vec![1, 2], vec![true, false]).unwrap(),
            ),
            (
                "h".to_string(),
                Tensor::from_vec(vec![1], vec![millrace::f16::from_f32(1.5)]).unwrap(),
            ),
            (
                "u".to_string(),
                Tensor::from_vec(vec![2], vec![7u8, 255]).unwrap(),
            ),
            (
                "f".to_string(),
                Tensor::from_vec(vec![1], vec![0.1f32]).unwrap(),
            ),
        ];
        let resp = |wanted: Wanted| {
            let r = InferResponse {
                model_name: "m".into(),
                model_version: "1".into(),
                id: Some("x".into()),
                outputs: outputs.clone(),
            };
            encode_response(r, &wanted).unwrap()
        };
        let body = |r: Response| {
            let headers = r.headers().clone();
            let bytes = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(axum::body::to_bytes(r.into_body(), usize::MAX))
                .unwrap();
            (headers, bytes)
        };
        let (h, b) = body(resp(Wanted {
            outputs: None,
            binary_default: false,
        }));
        assert!(h.get(HEADER_CONTENT_LENGTH).is_none());
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["id"], "x");
        let o = &v["outputs"];
        assert_eq!(o[0]["datatype"], "BYTES");
        assert_eq!(o[0]["data"], serde_json::json!(["ab", "c"]));
        assert_eq!(o[1]["datatype"], "BOOL");
        assert_eq!(o[1]["shape"], serde_json::json!([1, 2]));
        assert_eq!(o[1]["data"], serde_json::json!([true, false]));
        assert_eq!(o[2]["datatype"], "FP16");
        assert_eq!(o[2]["data"], serde_json::json!([1.5]));
        assert_eq!(o[3]["data"], serde_json::json!([7, 255]));
        assert_eq!(o[4]["data"][0].as_f64().unwrap() as f32, 0.1f32);

        // Binary for `s` and `h` only: raw bytes in response order after the JSON.
        let (h, b) = body(resp(Wanted {
            outputs: Some(vec![
                ("s".into(), true),
                ("h".into(), true),
                ("b".into(), false),
            ]),
            binary_default: false,
        }));
        let n: usize = h[HEADER_CONTENT_LENGTH].to_str().unwrap().parse().unwrap();
        let v: Value = serde_json::from_slice(&b[..n]).unwrap();
        assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 11);
        assert!(v["outputs"][0].get("data").is_none());
        assert_eq!(v["outputs"][2]["parameters"]["binary_data_size"], 2);
        let mut want = vec![2, 0, 0, 0, b'a', b'b', 1, 0, 0, 0, b'c'];
        want.extend_from_slice(&millrace::f16::from_f32(1.5).to_bits().to_le_bytes());
        assert_eq!(&b[n..], &want[..]);
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
