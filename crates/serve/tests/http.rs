//! The REST front end end to end: a server started in-process on free ports with SqueezeNet,
//! spoken to over plain TCP with a minimal HTTP/1.1 client. Checks every endpoint, that JSON
//! and binary inference give the same outputs as `CompiledModel::run` on the same input, that
//! every malformed request gets the right status and a message (and the server still answers
//! afterwards), and the graceful shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use millrace::{CompileOptions, Model, Tensor};
use millrace_serve::{start, ServeOptions, Server, ServerConfig, ServerState};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MODEL: &str = "squeezenet";

/// `../shared/models/squeezenet1_1.onnx`, or `None` (with a printed reason) when absent.
fn model_path() -> Option<PathBuf> {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/squeezenet1_1.onnx");
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("skipping: {} not found", p.display());
        None
    }
}

fn config(max_body_bytes: usize) -> ServerConfig {
    ServerConfig {
        host: "127.0.0.1".into(),
        http_port: 0,
        grpc_port: 0,
        metrics_port: 0,
        max_body_bytes,
    }
}

async fn serve(max_body_bytes: usize) -> Option<(Arc<ServerState>, Server)> {
    let path = model_path()?;
    let state = Arc::new(ServerState::single(MODEL, &path, &ServeOptions::default()).unwrap());
    let server = start(state.clone(), &config(max_body_bytes)).await.unwrap();
    Some((state, server))
}

struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {}", self.json()))
            .to_string()
    }
}

/// Sends one request on a fresh connection (`Connection: close`) and reads the whole answer.
/// `body: None` sends the headers only (with `content_length` as declared).
async fn send_raw(addr: SocketAddr, head: String, body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (and close) before reading all of a body it refuses.
    let _ = s.write_all(body).await;
    read_response(&mut s).await
}

/// Reads one response: up to the end of its body when it has a `Content-Length`, else to EOF
/// (so a server that keeps the connection open a while after answering does not hold us).
async fn read_response(s: &mut TcpStream) -> Resp {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .split("\r\n")
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == "content-length")
                .and_then(|(_, v)| v.trim().parse::<usize>().ok());
            if len.is_some_and(|n| buf.len() >= end + 4 + n) {
                break;
            }
        }
        let n = s.read(&mut chunk).await.expect("read response");
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_response(&buf)
}

/// Sends the whole request before reading anything, as Python's `http.client` and most
/// simple clients do, and requires the body to be taken: a server that answers and closes
/// without reading it makes this write fail (broken pipe or reset) and the status is lost.
async fn write_all_then_read(addr: SocketAddr, head: String, body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("write the head");
    s.write_all(body)
        .await
        .expect("write the whole body: the server must read (and discard) what it refuses");
    read_response(&mut s).await
}

fn parse_response(buf: &[u8]) -> Resp {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(buf)));
    let head = std::str::from_utf8(&buf[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t == "chunked")
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 2 + n + 2..];
        }
        body = out;
    }
    Resp {
        status,
        headers,
        body,
    }
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Resp {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    send_raw(addr, head, body).await
}

async fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"").await
}

async fn post_json(addr: SocketAddr, path: &str, body: &Value) -> Resp {
    request(addr, "POST", path, &[], body.to_string().as_bytes()).await
}

/// A JSON header followed by binary data, with `Inference-Header-Content-Length`.
async fn post_binary(addr: SocketAddr, path: &str, header: &Value, binary: &[u8]) -> Resp {
    let json = header.to_string();
    let mut body = json.as_bytes().to_vec();
    body.extend_from_slice(binary);
    request(
        addr,
        "POST",
        path,
        &[("Inference-Header-Content-Length", json.len().to_string())],
        &body,
    )
    .await
}

async fn assert_alive(addr: SocketAddr) {
    assert_eq!(get(addr, "/v2/health/live").await.status, 200);
}

fn input_name(path: &std::path::Path) -> String {
    Model::load(path).unwrap().inputs()[0].name.clone()
}

/// A deterministic pseudo-random image batch.
fn image(batch: usize) -> Vec<f32> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..batch * 3 * 224 * 224)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// The model's outputs on `data` from `CompiledModel::run` directly.
fn reference(
    path: &std::path::Path,
    name: &str,
    data: &[f32],
    batch: usize,
) -> Vec<(String, Tensor)> {
    let model = Model::load(path).unwrap();
    let mut opts = CompileOptions::default();
    opts.input_shapes
        .insert(name.to_string(), vec![batch, 3, 224, 224]);
    let compiled = model.compile(&opts).unwrap();
    let x = Tensor::from_vec(vec![batch, 3, 224, 224], data.to_vec()).unwrap();
    compiled.run(&[(name, &x)]).unwrap()
}

fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints() {
    let Some((state, server)) = serve(64 << 20).await else {
        return;
    };
    let a = server.http_addr;
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/squeezenet/ready",
    ] {
        let r = get(a, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.body.is_empty(), "{path}");
    }
    assert_eq!(
        get(a, "/v2/models/squeezenet/versions/1/ready")
            .await
            .status,
        200
    );

    let r = get(a, "/v2").await;
    assert_eq!(r.status, 200);
    let m = r.json();
    assert_eq!(m["name"], "millrace");
    assert!(m["version"].is_string());
    assert!(m["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("binary_tensor_data")));

    for path in ["/v2/models/squeezenet", "/v2/models/squeezenet/versions/1"] {
        let r = get(a, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.headers["content-type"].starts_with("application/json"));
        let m = r.json();
        assert_eq!(m["name"], MODEL);
        assert_eq!(m["versions"], json!(["1"]));
        assert_eq!(m["platform"], "onnx_onnxv1");
        let input = &m["inputs"][0];
        assert_eq!(input["datatype"], "FP32");
        assert_eq!(input["shape"], json!([-1, 3, 224, 224]));
        assert_eq!(m["outputs"][0]["datatype"], "FP32");
        assert_eq!(m["outputs"][0]["shape"].as_array().unwrap().len(), 2);
    }

    let r = request(a, "POST", "/v2/repository/index", &[], b"{}").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!([{"name": MODEL, "version": "1", "state": "READY"}])
    );

    let r = get(server.metrics_addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    assert_eq!(String::from_utf8(r.body).unwrap(), state.metrics_text());
    assert_eq!(get(server.metrics_addr, "/other").await.status, 404);

    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_binary_infer_match_the_direct_run() {
    let Some((_state, server)) = serve(64 << 20).await else {
        return;
    };
    let path = model_path().unwrap();
    let a = server.http_addr;
    let name = input_name(&path);
    let batch = 2;
    let data = image(batch);
    let want = reference(&path, &name, &data, batch);
    let (out_name, want_t) = &want[0];
    let want_v = want_t.as_slice::<f32>().unwrap();

    // JSON in, JSON out (nested data for the first row would be fine too; flat here).
    let req = json!({
        "id": "req-7",
        "inputs": [{"name": name, "shape": [batch, 3, 224, 224], "datatype": "FP32", "data": data}],
    });
    let r = post_json(a, "/v2/models/squeezenet/infer", &req).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["id"], "req-7");
    assert_eq!(v["model_name"], MODEL);
    assert_eq!(v["model_version"], "1");
    let out = &v["outputs"][0];
    assert_eq!(out["name"], out_name.as_str());
    assert_eq!(out["datatype"], "FP32");
    let shape: Vec<usize> = serde_json::from_value(out["shape"].clone()).unwrap();
    assert_eq!(shape, want_t.shape());
    let got: Vec<f32> = out["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let err = rel_l2(&got, want_v);
    assert!(err <= 1e-6, "JSON infer: rel L2 {err}");

    // Binary in, binary out (what tritonclient sends by default), through the versioned path.
    let raw: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    let header = json!({
        "inputs": [{"name": name, "shape": [batch, 3, 224, 224], "datatype": "FP32",
                    "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": out_name, "parameters": {"binary_data": true}}],
    });
    let r = post_binary(a, "/v2/models/squeezenet/versions/1/infer", &header, &raw).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["content-type"], "application/octet-stream");
    let n: usize = r.headers["inference-header-content-length"]
        .parse()
        .unwrap();
    let v: Value = serde_json::from_slice(&r.body[..n]).unwrap();
    let out = &v["outputs"][0];
    assert!(out.get("data").is_none());
    let size = out["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
    assert_eq!(size, r.body.len() - n);
    assert_eq!(size, want_v.len() * 4);
    let got: Vec<f32> = r.body[n..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let err = rel_l2(&got, want_v);
    assert!(err <= 1e-6, "binary infer: rel L2 {err}");

    // Binary in, JSON out; and request-level binary_data_output with no outputs named.
    let header_json_out = json!({
        "inputs": [{"name": name, "shape": [batch, 3, 224, 224], "datatype": "FP32",
                    "parameters": {"binary_data_size": raw.len()}}],
    });
    let r = post_binary(a, "/v2/models/squeezenet/infer", &header_json_out, &raw).await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("application/json"));
    assert!(!r.headers.contains_key("inference-header-content-length"));
    let got: Vec<f32> = r.json()["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert!(rel_l2(&got, want_v) <= 1e-6);

    let mut all_binary = header_json_out.clone();
    all_binary["parameters"] = json!({"binary_data_output": true});
    let r = post_binary(a, "/v2/models/squeezenet/infer", &all_binary, &raw).await;
    assert_eq!(r.status, 200);
    let n: usize = r.headers["inference-header-content-length"]
        .parse()
        .unwrap();
    assert_eq!(r.body.len() - n, want_v.len() * 4);

    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let Some((state, server)) = serve(4 << 20).await else {
        return;
    };
    let path = model_path().unwrap();
    let a = server.http_addr;
    let name = input_name(&path);
    let infer = "/v2/models/squeezenet/infer";
    let one = |shape: Value, datatype: &str, data: Value| json!({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]});
    let image1 = image(1);

    // (request, expected status, a phrase the message must contain)
    let mut cases: Vec<(&str, Resp, u16, &str)> = Vec::new();
    cases.push((
        "unknown model",
        post_json(
            a,
            "/v2/models/nope/infer",
            &one(json!([1]), "FP32", json!([0])),
        )
        .await,
        404,
        "unknown model `nope`",
    ));
    cases.push((
        "unknown version",
        post_json(
            a,
            "/v2/models/squeezenet/versions/9/infer",
            &one(json!([1]), "FP32", json!([0])),
        )
        .await,
        404,
        "no version `9`",
    ));
    cases.push((
        "unknown model metadata",
        get(a, "/v2/models/nope").await,
        404,
        "unknown model",
    ));
    cases.push((
        "unknown model ready",
        get(a, "/v2/models/nope/ready").await,
        404,
        "unknown model",
    ));
    cases.push((
        "unknown input",
        post_json(
            a,
            infer,
            &json!({"inputs": [{"name": "pixels", "shape": [1], "datatype": "FP32", "data": [0]}]}),
        )
        .await,
        400,
        "no input `pixels`",
    ));
    cases.push((
        "shape vs data",
        post_json(
            a,
            infer,
            &one(json!([1, 3, 224, 224]), "FP32", json!([1.0, 2.0])),
        )
        .await,
        400,
        "has 150528 elements but `data` has 2",
    ));
    cases.push((
        "wrong datatype",
        post_json(
            a,
            infer,
            &one(json!([1, 3, 224, 224]), "FP64", json!(image1)),
        )
        .await,
        400,
        "expects FP32, got FP64",
    ));
    cases.push((
        "unknown datatype",
        post_json(a, infer, &one(json!([1]), "FLOAT32", json!([0]))).await,
        400,
        "unknown datatype `FLOAT32`",
    ));
    cases.push((
        "data of the wrong kind",
        post_json(a, infer, &one(json!([2]), "FP32", json!([1.0, "x"]))).await,
        400,
        "element 1 is \"x\", expected a number",
    ));
    cases.push((
        "malformed JSON",
        request(a, "POST", infer, &[], b"{\"inputs\": [\n  {\"name\": }]}").await,
        400,
        "line 2 column",
    ));
    cases.push((
        "missing inputs",
        request(a, "POST", infer, &[], b"{}").await,
        400,
        "missing field `inputs`",
    ));
    cases.push((
        "empty body",
        request(a, "POST", infer, &[], b"").await,
        400,
        "no JSON body",
    ));
    let header = json!({"inputs": [{"name": name, "shape": [1, 3, 224, 224], "datatype": "FP32",
                                    "parameters": {"binary_data_size": 602112}}]});
    let hjson = header.to_string();
    cases.push((
        "header length over the body",
        request(
            a,
            "POST",
            infer,
            &[(
                "Inference-Header-Content-Length",
                (hjson.len() + 10).to_string(),
            )],
            hjson.as_bytes(),
        )
        .await,
        400,
        "but the body has only",
    ));
    cases.push((
        "header length not a number",
        request(
            a,
            "POST",
            infer,
            &[("Inference-Header-Content-Length", "ten".into())],
            hjson.as_bytes(),
        )
        .await,
        400,
        "not a byte count",
    ));
    cases.push((
        "truncated binary data",
        post_binary(a, infer, &header, &[0u8; 1000]).await,
        400,
        "only 1000 bytes of binary data are left",
    ));
    cases.push((
        "binary data left over",
        post_binary(a, infer, &header, &vec![0u8; 602112 + 4]).await,
        400,
        "4 bytes of binary data are left",
    ));
    cases.push((
        "binary_data_size without a binary part",
        post_json(a, infer, &header).await,
        400,
        "no Inference-Header-Content-Length",
    ));
    cases.push((
        "binary size disagrees with the shape",
        post_binary(
            a,
            infer,
            &json!({"inputs": [{"name": name, "shape": [1, 3, 224, 224], "datatype": "FP32",
                                "parameters": {"binary_data_size": 8}}]}),
            &[0u8; 8],
        )
        .await,
        400,
        "need 602112 bytes, got 8",
    ));
    cases.push((
        "unknown output",
        post_json(a, infer, &json!({"inputs": [{"name": name, "shape": [1, 3, 224, 224], "datatype": "FP32", "data": image1}],
                                    "outputs": [{"name": "logits"}]})).await,
        400,
        "no output `logits`",
    ));
    cases.push((
        "bad timeout",
        post_json(
            a,
            infer,
            &json!({"parameters": {"timeout": "soon"}, "inputs": []}),
        )
        .await,
        400,
        "timeout",
    ));
    cases.push((
        "declared body over the limit",
        send_raw(
            a,
            format!("POST {infer} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", 5 << 20),
            b"",
        )
        .await,
        413,
        "over the server's limit of 4194304 bytes",
    ));
    // A chunked body (no Content-Length) that grows over the limit.
    let chunk = vec![b' '; 1 << 20];
    let mut chunked = Vec::new();
    for _ in 0..5 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    cases.push((
        "streamed body over the limit",
        send_raw(
            a,
            format!("POST {infer} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"),
            &chunked,
        )
        .await,
        413,
        "over the server's limit",
    ));
    cases.push((
        "compressed body",
        request(
            a,
            "POST",
            infer,
            &[("Content-Encoding", "gzip".into())],
            b"\x1f\x8b",
        )
        .await,
        400,
        "Content-Encoding `gzip` is not supported",
    ));
    cases.push((
        "unknown route",
        get(a, "/v2/nothing/here").await,
        404,
        "no endpoint GET /v2/nothing/here",
    ));
    cases.push((
        "wrong method",
        get(a, infer).await,
        405,
        "does not take GET",
    ));

    for (what, r, status, phrase) in &cases {
        assert_eq!(
            r.status,
            *status,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let msg = r.error();
        assert!(
            msg.contains(phrase),
            "{what}: message {msg:?} lacks {phrase:?}"
        );
    }
    // Still serving, and still right.
    assert_alive(a).await;
    let r = post_json(
        a,
        infer,
        &one(json!([1, 3, 224, 224]), "FP32", json!(image1)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(state.in_flight(), 0);

    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_requests_in_flight() {
    let Some((state, server)) = serve(64 << 20).await else {
        return;
    };
    let path = model_path().unwrap();
    let a = server.http_addr;
    let name = input_name(&path);
    let batch = 4;
    let raw: Vec<u8> = image(batch).iter().flat_map(|x| x.to_le_bytes()).collect();
    let header = json!({"inputs": [{"name": name, "shape": [batch, 3, 224, 224], "datatype": "FP32",
                                    "parameters": {"binary_data_size": raw.len()}}]});
    let pending =
        tokio::spawn(
            async move { post_binary(a, "/v2/models/squeezenet/infer", &header, &raw).await },
        );
    // Wait for the request to be in flight, then shut down under it.
    let t0 = std::time::Instant::now();
    while state.in_flight() == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.shutdown();
    assert!(!state.is_ready());
    let r = pending.await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("the server did not stop")
        .unwrap();
    assert_eq!(state.in_flight(), 0);
    assert!(
        TcpStream::connect(a).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_shutting_down() {
    let Some((state, server)) = serve(64 << 20).await else {
        return;
    };
    // Readiness and new requests while the state drains (the listener is still open here).
    state.begin_shutdown();
    let a = server.http_addr;
    assert_eq!(get(a, "/v2/health/live").await.status, 200);
    assert_eq!(get(a, "/v2/health/ready").await.status, 503);
    assert_eq!(get(a, "/v2/models/squeezenet/ready").await.status, 503);
    let r = post_json(
        a,
        "/v2/models/squeezenet/infer",
        &json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0]}]}),
    )
    .await;
    assert_eq!(r.status, 503);
    assert!(r.error().contains("shutting down"));
    server.shutdown();
    server.wait().await.unwrap();
}

/// A body the server refuses (wrong model or version, unknown route, unsupported encoding, over
/// `--max-body-size` with or without a `Content-Length`) is read and discarded, so a client
/// that writes its whole body before reading gets the status, not a broken pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_bodies_are_read_so_the_client_sees_the_status() {
    let limit = 1 << 20;
    let Some((state, server)) = serve(limit).await else {
        return;
    };
    let a = server.http_addr;
    let name = input_name(&model_path().unwrap());
    // A binary request of one image: 602 KB, within the limit.
    let header = json!({"inputs": [{"name": name, "shape": [1, 3, 224, 224], "datatype": "FP32",
        "parameters": {"binary_data_size": 3 * 224 * 224 * 4}}]})
    .to_string();
    let mut body = header.as_bytes().to_vec();
    for v in image(1) {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let head = |path: &str, extra: &str, len: usize| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {len}\r\n\
             Inference-Header-Content-Length: {}\r\n{extra}\r\n",
            header.len()
        )
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "wrong model",
            head("/v2/models/resnet9000/infer", "", body.len()),
            404,
            "resnet9000",
        ),
        (
            "wrong version",
            head("/v2/models/squeezenet/versions/42/infer", "", body.len()),
            404,
            "42",
        ),
        (
            "unknown route",
            head("/v2/models/squeezenet/infer2", "", body.len()),
            404,
            "no endpoint",
        ),
        (
            "compressed body",
            head(
                "/v2/models/squeezenet/infer",
                "Content-Encoding: br\r\n",
                body.len(),
            ),
            400,
            "Content-Encoding",
        ),
    ];
    for (what, h, status, phrase) in cases {
        let r = write_all_then_read(a, h, &body).await;
        assert_eq!(
            r.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.error().contains(phrase), "{what}: {}", r.error());
    }

    // Over the limit with a Content-Length: refused at once, the body read and dropped.
    let big = vec![b' '; 3 * limit];
    let r = write_all_then_read(a, head("/v2/models/squeezenet/infer", "", big.len()), &big).await;
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.error()
            .contains("over the server's limit of 1048576 bytes"),
        "{}",
        r.error()
    );

    // Over the limit, chunked (no Content-Length): refused once the limit is passed.
    let mut chunked = Vec::new();
    for part in big.chunks(256 << 10) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = write_all_then_read(
        a,
        "POST /v2/models/squeezenet/infer HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
            .to_string(),
        &chunked,
    )
    .await;
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));

    // A client that waits for `100 Continue` is refused without being asked for the body.
    let mut s = TcpStream::connect(a).await.unwrap();
    s.write_all(
        format!(
            "POST /v2/models/squeezenet/infer HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\
             Expect: 100-continue\r\n\r\n",
            1u64 << 30
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));

    // Keep-alive: after a refused body within the limit is read whole, the same connection
    // answers the next request.
    let mut s = TcpStream::connect(a).await.unwrap();
    let keep =
        head("/v2/models/resnet9000/infer", "", body.len()).replace("Connection: close\r\n", "");
    s.write_all(keep.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    assert_eq!(read_response(&mut s).await.status, 404);
    s.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await.status, 200);

    // Still serving, and right.
    let r = write_all_then_read(
        a,
        head("/v2/models/squeezenet/infer", "", body.len()),
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(state.in_flight(), 0);
    server.shutdown();
    server.wait().await.unwrap();
}

/// JSON of the wrong shape names the field at fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_errors_name_the_field() {
    let Some((_state, server)) = serve(4 << 20).await else {
        return;
    };
    let a = server.http_addr;
    let infer = "/v2/models/squeezenet/infer";
    let cases: &[(&str, &[&str])] = &[
        (
            r#"{"inputs": 7}"#,
            &[
                "`inputs`",
                "expected an array of input tensors, got a number",
            ],
        ),
        (
            r#"{"inputs": [{"name": "x", "shape": [1, "a"], "datatype": "FP32", "data": [1]}]}"#,
            &["`inputs[0].shape[1]`", "expected an integer", "\"a\""],
        ),
        (
            r#"{"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}"#,
            &["`inputs[0]`", "missing field `name`"],
        ),
        (
            r#"{"inputs": [], "outputs": {"name": "y"}}"#,
            &[
                "`outputs`",
                "expected an array of requested outputs, got an object",
            ],
        ),
        (
            r#""hello""#,
            &["the request", "expected an object, got string \"hello\""],
        ),
    ];
    for (body, phrases) in cases {
        let r = request(a, "POST", infer, &[], body.as_bytes()).await;
        assert_eq!(r.status, 400, "{body}");
        let msg = r.error();
        for p in *phrases {
            assert!(msg.contains(p), "{body}: {msg:?} lacks {p:?}");
        }
    }
    server.shutdown();
    server.wait().await.unwrap();
}
