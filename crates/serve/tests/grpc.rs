//! The gRPC front end end to end: an in-process server on a free port serving SqueezeNet 1.1,
//! a tonic client calling every RPC, inference outputs compared with `CompiledModel::run` on the
//! same input (and with ONNX Runtime's reference), and each bad request checked for its status.
//!
//! Needs `../shared/models/squeezenet1_1.onnx` beside the repository; skips with a message when
//! it is absent.

use std::path::PathBuf;
use std::sync::Arc;

use millrace::{CompileOptions, Model};
use millrace_serve::grpc::pb;
use millrace_serve::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use millrace_serve::{ServeOptions, ServerState};
use tonic::transport::Channel;
use tonic::Code;

const MODEL: &str = "squeezenet";

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32_from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn raw_request(id: &str, input: &str, shape: &[usize], data: &[f32]) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: MODEL.to_string(),
        id: id.to_string(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: input.to_string(),
            datatype: "FP32".to_string(),
            shape: shape.iter().map(|&d| d as i64).collect(),
            ..Default::default()
        }],
        raw_input_contents: vec![f32_bytes(data)],
        ..Default::default()
    }
}

/// The single output of a response, decoded from raw_output_contents.
fn output_of(r: &pb::ModelInferResponse) -> (Vec<i64>, Vec<f32>) {
    assert_eq!(r.outputs.len(), 1, "one output expected");
    assert_eq!(
        r.raw_output_contents.len(),
        1,
        "outputs come as raw contents"
    );
    assert_eq!(r.outputs[0].datatype, "FP32");
    (
        r.outputs[0].shape.clone(),
        f32_from_bytes(&r.raw_output_contents[0]),
    )
}

async fn expect_code<T: std::fmt::Debug>(
    what: &str,
    got: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    says: &str,
) {
    match got {
        Ok(r) => panic!("{what}: expected {code:?}, got a response {r:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{what}: {}", s.message());
            assert!(
                s.message().contains(says),
                "{what}: message `{}` does not say `{says}`",
                s.message()
            );
            eprintln!("{what}: {:?} {}", s.code(), s.message());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_serves_squeezenet() {
    let dir = models_dir();
    let path = dir.join("squeezenet1_1.onnx");
    if !path.is_file() {
        eprintln!(
            "skipping: {} not found (the shared test models sit beside the repository)",
            path.display()
        );
        return;
    }

    // The input and the two references: millrace's own run and ONNX Runtime's.
    let inputs = millrace::read_npz(&dir.join("squeezenet1_1.inputs.npz")).unwrap();
    let (in_name, in_tensor) = inputs[0].clone();
    let shape = in_tensor.shape().to_vec();
    let data = in_tensor.to_f32_vec().unwrap();
    let ort = millrace::read_npz(&dir.join("squeezenet1_1.outputs.npz")).unwrap();
    let ort = ort[0].1.to_f32_vec().unwrap();
    let model = Model::load(&path).unwrap();
    let mut opts = CompileOptions::default();
    opts.input_shapes.insert(in_name.clone(), shape.clone());
    let compiled = model.compile(&opts).unwrap();
    let direct = compiled.run(&[(in_name.as_str(), &in_tensor)]).unwrap();
    let (out_name, direct) = (direct[0].0.clone(), direct[0].1.to_f32_vec().unwrap());
    assert!(
        rel_l2(&direct, &ort) <= 1e-4,
        "the direct run disagrees with ORT"
    );

    // The server.
    let state = Arc::new(ServerState::single(MODEL, &path, &ServeOptions::default()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(millrace_serve::grpc::serve(
        state.clone(),
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = GrpcInferenceServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);

    // Health and metadata.
    let live = c.server_live(pb::ServerLiveRequest {}).await.unwrap();
    assert!(live.into_inner().live);
    let ready = c.server_ready(pb::ServerReadyRequest {}).await.unwrap();
    assert!(ready.into_inner().ready);
    let ready = |name: &str, version: &str| pb::ModelReadyRequest {
        name: name.to_string(),
        version: version.to_string(),
    };
    assert!(
        c.model_ready(ready(MODEL, ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        c.model_ready(ready(MODEL, "1"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !c.model_ready(ready("nope", ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !c.model_ready(ready(MODEL, "7"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let meta = c
        .server_metadata(pb::ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "millrace");
    assert!(!meta.version.is_empty());
    let mm = c
        .model_metadata(pb::ModelMetadataRequest {
            name: MODEL.to_string(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mm.name, MODEL);
    assert_eq!(mm.versions, vec!["1".to_string()]);
    assert_eq!(mm.inputs.len(), 1);
    assert_eq!(mm.inputs[0].name, in_name);
    assert_eq!(mm.inputs[0].datatype, "FP32");
    assert_eq!(mm.inputs[0].shape[1..], [3, 224, 224]);
    assert_eq!(mm.outputs[0].name, out_name);
    let cfg = c
        .model_config(pb::ModelConfigRequest {
            name: MODEL.to_string(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(cfg.name, MODEL);
    assert_eq!(cfg.input[0].name, in_name);
    assert_eq!(cfg.input[0].data_type, pb::DataType::TypeFp32 as i32);
    if cfg.max_batch_size > 0 {
        assert_eq!(cfg.input[0].dims, mm.inputs[0].shape[1..]);
    } else {
        assert_eq!(cfg.input[0].dims, mm.inputs[0].shape);
    }
    expect_code(
        "ModelStatistics of an unknown model",
        c.model_statistics(pb::ModelStatisticsRequest {
            name: "nope".to_string(),
            version: String::new(),
        })
        .await,
        Code::NotFound,
        "nope",
    )
    .await;
    expect_code(
        "ModelMetadata of an unknown model",
        c.model_metadata(pb::ModelMetadataRequest {
            name: "nope".to_string(),
            version: String::new(),
        })
        .await,
        Code::NotFound,
        "nope",
    )
    .await;
    expect_code(
        "ModelConfig of an unknown version",
        c.model_config(pb::ModelConfigRequest {
            name: MODEL.to_string(),
            version: "3".to_string(),
        })
        .await,
        Code::NotFound,
        "3",
    )
    .await;

    // Inference with raw contents: the same numbers as the direct run.
    let r = c
        .model_infer(raw_request("raw-1", &in_name, &shape, &data))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.model_name, MODEL);
    assert_eq!(r.model_version, "1");
    assert_eq!(r.id, "raw-1");
    assert_eq!(r.outputs[0].name, out_name);
    let (oshape, got) = output_of(&r);
    assert_eq!(oshape, vec![1, 1000]);
    let e = rel_l2(&got, &direct);
    assert!(
        e <= 1e-5,
        "raw gRPC output vs CompiledModel::run: rel L2 {e}"
    );
    assert!(rel_l2(&got, &ort) <= 1e-4, "raw gRPC output vs ORT");

    // Typed contents, with the output asked for by name.
    let mut typed = raw_request("typed", &in_name, &shape, &[]);
    typed.raw_input_contents.clear();
    typed.inputs[0].contents = Some(pb::InferTensorContents {
        fp32_contents: data.clone(),
        ..Default::default()
    });
    typed
        .outputs
        .push(pb::model_infer_request::InferRequestedOutputTensor {
            name: out_name.clone(),
            ..Default::default()
        });
    let r = c.model_infer(typed).await.unwrap().into_inner();
    let (_, got) = output_of(&r);
    let e = rel_l2(&got, &direct);
    assert!(
        e <= 1e-5,
        "typed gRPC output vs CompiledModel::run: rel L2 {e}"
    );

    // A batch of two (the input twice): each row equals the single run.
    let mut two = data.clone();
    two.extend_from_slice(&data);
    let mut shape2 = shape.clone();
    shape2[0] = 2;
    let r = c
        .model_infer(raw_request("two", &in_name, &shape2, &two))
        .await
        .unwrap()
        .into_inner();
    let (oshape, got) = output_of(&r);
    assert_eq!(oshape, vec![2, 1000]);
    for row in got.chunks(1000) {
        let e = rel_l2(row, &direct);
        assert!(e <= 1e-5, "batch row vs single run: rel L2 {e}");
    }

    // The stream: three requests, three answers matched by id, one of them an error.
    let mut bad = raw_request("s-bad", &in_name, &shape, &data);
    bad.model_name = "nope".to_string();
    let reqs = vec![
        raw_request("s-0", &in_name, &shape, &data),
        bad,
        raw_request("s-2", &in_name, &shape, &data),
    ];
    let mut answers = c
        .model_stream_infer(tokio_stream::iter(reqs))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(a) = answers.message().await.unwrap() {
        let resp = a.infer_response.unwrap();
        if resp.id == "s-bad" {
            assert!(a.error_message.contains("nope"), "{}", a.error_message);
        } else {
            assert!(a.error_message.is_empty(), "{}", a.error_message);
            let (_, got) = output_of(&resp);
            assert!(rel_l2(&got, &direct) <= 1e-5, "stream output");
        }
        seen.push(resp.id);
    }
    seen.sort();
    assert_eq!(seen, vec!["s-0", "s-2", "s-bad"]);

    // Bad requests: each gets its status and a message naming what is wrong.
    let mut r = raw_request("x", &in_name, &shape, &data);
    r.model_name = "resnet9000".to_string();
    expect_code(
        "unknown model",
        c.model_infer(r).await,
        Code::NotFound,
        "resnet9000",
    )
    .await;

    let mut r = raw_request("x", &in_name, &shape, &data);
    r.model_version = "42".to_string();
    expect_code(
        "unknown version",
        c.model_infer(r).await,
        Code::NotFound,
        "42",
    )
    .await;

    let mut r = raw_request("x", &in_name, &shape, &data);
    r.inputs[0].name = "pixels".to_string();
    expect_code(
        "unknown input",
        c.model_infer(r).await,
        Code::InvalidArgument,
        "pixels",
    )
    .await;

    let mut r = raw_request("x", &in_name, &shape, &data);
    r.inputs[0].datatype = "FP64".to_string();
    r.raw_input_contents[0].extend_from_slice(&f32_bytes(&data));
    expect_code(
        "wrong datatype",
        c.model_infer(r).await,
        Code::InvalidArgument,
        "FP",
    )
    .await;

    let mut r = raw_request("x", &in_name, &shape, &data);
    r.inputs[0].datatype = "FLOAT32".to_string();
    expect_code(
        "unknown datatype",
        c.model_infer(r).await,
        Code::InvalidArgument,
        "FLOAT32",
    )
    .await;

    let mut r = raw_request("x", &in_name, &shape, &data);
    r.raw_input_contents[0].truncate(1000);
    expect_code(
        "truncated raw data",
        c.model_infer(r).await,
        Code::InvalidArgument,
        "bytes",
    )
    .await;

    let r = raw_request("x", &in_name, &[1, 3, 224], &data[..3 * 224]);
    expect_code(
        "wrong rank",
        c.model_infer(r).await,
        Code::InvalidArgument,
        "",
    )
    .await;

    let r = raw_request("x", &in_name, &[1, 3, 7, 7], &data[..3 * 49]);
    expect_code(
        "wrong spatial size",
        c.model_infer(r).await,
        Code::InvalidArgument,
        "",
    )
    .await;

    let mut r = raw_request("x", &in_name, &shape, &data);
    r.outputs
        .push(pb::model_infer_request::InferRequestedOutputTensor {
            name: "logits".to_string(),
            ..Default::default()
        });
    expect_code(
        "unknown output",
        c.model_infer(r).await,
        Code::InvalidArgument,
        "logits",
    )
    .await;

    let mut r = raw_request("x", &in_name, &shape, &data);
    r.raw_input_contents.push(Vec::new());
    expect_code(
        "extra raw entry",
        c.model_infer(r).await,
        Code::InvalidArgument,
        "2 entries",
    )
    .await;

    let mut r = raw_request("x", &in_name, &shape, &data);
    r.inputs.clear();
    r.raw_input_contents.clear();
    expect_code(
        "no inputs",
        c.model_infer(r).await,
        Code::InvalidArgument,
        "no inputs",
    )
    .await;

    // Still serving after all that.
    let r = c
        .model_infer(raw_request("after", &in_name, &shape, &data))
        .await
        .unwrap()
        .into_inner();
    assert!(rel_l2(&output_of(&r).1, &direct) <= 1e-5);

    // Statistics count what ran (all versions when no name is given).
    let stats = c
        .model_statistics(pb::ModelStatisticsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.model_stats.len(), 1);
    let st = &stats.model_stats[0];
    assert_eq!((st.name.as_str(), st.version.as_str()), (MODEL, "1"));
    assert!(st.inference_count >= 7, "{st:?}");
    assert!(st.execution_count >= 1 && st.execution_count <= st.inference_count);
    let ok = st
        .inference_stats
        .as_ref()
        .unwrap()
        .success
        .as_ref()
        .unwrap();
    assert!(ok.count >= 6 && ok.ns > 0, "{ok:?}");

    // A clean stop.
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert_eq!(state.in_flight(), 0);
}

/// The gRPC request limit follows the server's body limit (`--max-body-size`): with 1 MiB, a
/// one-image request (602 KB) is answered and a 1.2 MB one is refused by the transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_message_limit_follows_max_body_size() {
    let dir = models_dir();
    let path = dir.join("squeezenet1_1.onnx");
    if !path.is_file() {
        eprintln!("skipping: {} not found", path.display());
        return;
    }
    let input = Model::load(&path).unwrap().inputs()[0].name.clone();
    let state = Arc::new(ServerState::single(MODEL, &path, &ServeOptions::default()).unwrap());
    let config = millrace_serve::ServerConfig {
        host: "127.0.0.1".into(),
        http_port: 0,
        grpc_port: 0,
        metrics_port: 0,
        max_body_bytes: 1 << 20,
    };
    let server = millrace_serve::start(state, &config).await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = GrpcInferenceServiceClient::new(channel).max_encoding_message_size(64 << 20);
    let one = vec![0.5f32; 3 * 224 * 224];
    let r = client
        .model_infer(raw_request("small", &input, &[1, 3, 224, 224], &one))
        .await;
    assert!(r.is_ok(), "a 602 KB request under a 1 MiB limit: {r:?}");
    let two = vec![0.5f32; 2 * 3 * 224 * 224 + 1024];
    let r = client
        .model_infer(raw_request("big", &input, &[two.len()], &two))
        .await;
    match r {
        Ok(_) => panic!("a 1.2 MB request passed a 1 MiB limit"),
        Err(s) => {
            assert!(
                matches!(s.code(), Code::OutOfRange | Code::ResourceExhausted),
                "{:?} {}",
                s.code(),
                s.message()
            );
            assert!(s.message().contains("too large"), "{}", s.message());
        }
    }
    server.shutdown();
    server.wait().await.unwrap();
}
