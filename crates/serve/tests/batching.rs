//! Dynamic batching, queue limits, timeouts, shutdown, repositories and metrics, end to end
//! through `ServerState` (a tiny ONNX model built in-process, and SqueezeNet from
//! `../shared/models` when present), and the batcher's mechanics with a controllable runner.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use millrace::zoo::builder::{Builder, Dim as BDim, FLOAT};
use millrace::{Model, Tensor};
use millrace_serve::batcher::{BatchPolicy, Batcher, Done, Job, Runner};
use millrace_serve::metrics::ModelMetrics;
use millrace_serve::{ErrorKind, InferInput, InferRequest, ServeError, ServeOptions, ServerState};
use prost::Message;
use tokio::sync::oneshot;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir()
        .join(format!("millrace-serve-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `y = x @ W + b`, `z = relu(y)`, x: [batch, 16] -> y, z: [batch, 8].
fn tiny_model(path: &Path) {
    let mut b = Builder::new("tiny", 7);
    let x = b.input("x", FLOAT, &[BDim::Sym("batch"), BDim::Fixed(16)]);
    let w = b.init_normal("W", &[16, 8], 0.5);
    let bias = b.init_normal("B", &[8], 0.5);
    let m = b.node("MatMul", "/fc", &[&x, &w], vec![]);
    b.node_named_output("Add", "/fc", &[&m, &bias], vec![], Some("y"));
    b.node_named_output("Relu", "/act", &["y"], vec![], Some("z"));
    b.output("y", FLOAT, &[BDim::Sym("batch"), BDim::Fixed(8)]);
    b.output("z", FLOAT, &[BDim::Sym("batch"), BDim::Fixed(8)]);
    std::fs::write(path, b.finish("tiny").encode_to_vec()).unwrap();
}

fn tiny_file(dir: &Path) -> PathBuf {
    let p = dir.join("tiny.onnx");
    tiny_model(&p);
    p
}

fn input(rows: usize, seed: u32) -> Tensor {
    let v: Vec<f32> = (0..rows * 16)
        .map(|i| ((i as u32 * 7919 + seed * 104729) % 1000) as f32 / 250.0 - 2.0)
        .collect();
    Tensor::from_vec(vec![rows, 16], v).unwrap()
}

fn request(model: &str, t: Tensor) -> InferRequest {
    InferRequest {
        model: model.to_string(),
        version: None,
        id: Some("r".to_string()),
        inputs: vec![InferInput {
            name: "x".to_string(),
            tensor: t,
        }],
        outputs: vec![],
        timeout: None,
    }
}

fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let a = a.to_f64_vec().unwrap();
    let b = b.to_f64_vec().unwrap();
    let num: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(1e-30)).sqrt()
}

/// A metric's value for a model from the exposition text.
fn metric(text: &str, name: &str, model: &str) -> i64 {
    let prefix = format!("{name}{{model=\"{model}\",version=\"1\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} for {model} in\n{text}"))
        .parse()
        .unwrap()
}

/// Every line is a comment or `name{labels} integer`.
fn check_exposition(text: &str) {
    for l in text.lines() {
        if l.starts_with("# HELP ") || l.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l}"));
        assert!(value.parse::<i64>().is_ok(), "bad value in {l}");
        let (name, labels) = series.split_once('{').unwrap();
        assert!(name.starts_with("nv_inference_"), "{l}");
        assert!(
            labels.ends_with('}') && labels.contains("model=\"") && labels.contains(",version=\""),
            "{l}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_batched_and_match_single_runs() {
    let dir = scratch("batch");
    let file = tiny_file(&dir);
    let opts = ServeOptions {
        max_batch_size: Some(8),
        batch_delay: Some(Duration::from_millis(200)),
        instances: Some(1),
        threads: Some(1),
        ..ServeOptions::default()
    };
    let state = Arc::new(ServerState::single("tiny", &file, &opts).unwrap());
    let rows = [1usize, 2, 1, 1, 3, 1, 1, 2];
    let mut tasks = Vec::new();
    for (i, &r) in rows.iter().enumerate() {
        let s = state.clone();
        let t = input(r, i as u32);
        tasks.push(tokio::spawn(async move {
            let out = s.infer(request("tiny", t.clone())).await;
            (t, out)
        }));
    }
    let reference = Model::load(&file).unwrap();
    for task in tasks {
        let (x, out) = task.await.unwrap();
        let out = out.unwrap();
        assert_eq!(out.model_name, "tiny");
        assert_eq!(out.id.as_deref(), Some("r"));
        let alone = reference
            .compile(&millrace::CompileOptions {
                threads: Some(1),
                input_shapes: [("x".to_string(), x.shape().to_vec())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            })
            .unwrap()
            .run(&[("x", &x)])
            .unwrap();
        assert_eq!(out.outputs.len(), 2);
        for ((n, got), (m, want)) in out.outputs.iter().zip(&alone) {
            assert_eq!(n, m);
            let e = rel_l2(got, want);
            assert!(e <= 1e-5, "{n}: rel L2 {e}");
        }
    }
    let text = state.metrics_text();
    check_exposition(&text);
    let count = metric(&text, "nv_inference_count", "tiny");
    let execs = metric(&text, "nv_inference_exec_count", "tiny");
    assert_eq!(count, rows.iter().sum::<usize>() as i64);
    assert_eq!(metric(&text, "nv_inference_request_success", "tiny"), 8);
    assert_eq!(metric(&text, "nv_inference_request_failure", "tiny"), 0);
    eprintln!("tiny: {count} rows in 8 requests ran in {execs} executions");
    assert!(execs < 8, "8 concurrent requests ran in {execs} executions");
    assert_eq!(
        metric(&text, "nv_inference_pending_request_count", "tiny"),
        0
    );
    assert!(
        metric(&text, "nv_inference_request_duration_us", "tiny")
            >= metric(&text, "nv_inference_queue_duration_us", "tiny")
    );
    assert!(metric(&text, "nv_inference_compute_infer_duration_us", "tiny") > 0);

    // Requested outputs, and refusals counted as failures.
    let mut r = request("tiny", input(1, 99));
    r.outputs = vec!["z".to_string()];
    let out = state.infer(r).await.unwrap();
    assert_eq!(out.outputs.len(), 1);
    assert_eq!(out.outputs[0].0, "z");
    assert!(out.outputs[0]
        .1
        .to_f32_vec()
        .unwrap()
        .iter()
        .all(|&v| v >= 0.0));
    let e = state.infer(request("tiny", input(9, 1))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.contains("max_batch_size 8"), "{}", e.message);
    let bad = request(
        "tiny",
        Tensor::from_vec(vec![1, 16], vec![0i64; 16]).unwrap(),
    );
    let e = state.infer(bad).await.unwrap_err();
    assert!(
        e.message.contains("expects FP32, got INT64"),
        "{}",
        e.message
    );
    let e = state.infer(request("tiny", input(0, 1))).await.unwrap_err();
    assert!(e.message.contains("empty"), "{}", e.message);
    let mut r = request("tiny", input(1, 1));
    r.outputs = vec!["nope".to_string()];
    assert!(state
        .infer(r)
        .await
        .unwrap_err()
        .message
        .contains("no output `nope`"));
    let mut r = request("tiny", input(1, 1));
    r.timeout = Some(Duration::from_nanos(1));
    assert_eq!(state.infer(r).await.unwrap_err().kind, ErrorKind::Timeout);
    let e = state
        .infer(request("other", input(1, 1)))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    let text = state.metrics_text();
    assert_eq!(metric(&text, "nv_inference_request_success", "tiny"), 9);
    assert_eq!(metric(&text, "nv_inference_request_failure", "tiny"), 5);
    assert_eq!(metric(&text, "nv_inference_count", "tiny"), count + 1);

    // Shutdown: refuses new requests, drains.
    state.begin_shutdown();
    assert!(!state.is_ready());
    let e = state.infer(request("tiny", input(1, 1))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    tokio::time::timeout(Duration::from_secs(10), state.drained())
        .await
        .expect("drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn squeezenet_batches_match_single_runs() {
    let file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/squeezenet1_1.onnx");
    if !file.is_file() {
        eprintln!("skipped: {} not found", file.display());
        return;
    }
    let opts = ServeOptions {
        max_batch_size: Some(4),
        batch_delay: Some(Duration::from_millis(500)),
        instances: Some(1),
        ..ServeOptions::default()
    };
    let state = Arc::new(ServerState::single("sq", &file, &opts).unwrap());
    let model = state.model("sq", None).unwrap();
    let (inputs, _) = model.io_metadata();
    let name = inputs[0].name.clone();
    let mut tasks = Vec::new();
    for i in 0..4u32 {
        let v: Vec<f32> = (0..3 * 224 * 224)
            .map(|k| {
                (((k as u32).wrapping_mul(2654435761).wrapping_add(i * 97)) % 2000) as f32 / 1000.0
                    - 1.0
            })
            .collect();
        let t = Tensor::from_vec(vec![1, 3, 224, 224], v).unwrap();
        let s = state.clone();
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            let req = InferRequest {
                model: "sq".into(),
                version: None,
                id: None,
                inputs: vec![InferInput {
                    name,
                    tensor: t.clone(),
                }],
                outputs: vec![],
                timeout: None,
            };
            (t, s.infer(req).await)
        }));
    }
    for task in tasks {
        let (t, out) = task.await.unwrap();
        let out = out.unwrap();
        let alone = model
            .run_blocking(&InferRequest {
                model: "sq".into(),
                version: None,
                id: None,
                inputs: vec![InferInput {
                    name: name.clone(),
                    tensor: t,
                }],
                outputs: vec![],
                timeout: None,
            })
            .unwrap();
        for ((_, got), (_, want)) in out.outputs.iter().zip(&alone) {
            let e = rel_l2(got, want);
            assert!(e <= 1e-5, "rel L2 {e}");
        }
    }
    let text = state.metrics_text();
    assert_eq!(metric(&text, "nv_inference_count", "sq"), 4);
    let execs = metric(&text, "nv_inference_exec_count", "sq");
    eprintln!("squeezenet: 4 requests ran in {execs} executions");
    assert!(execs < 4, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_with_config_and_a_broken_model() {
    let dir = scratch("repo");
    std::fs::create_dir_all(dir.join("tiny/1")).unwrap();
    tiny_model(&dir.join("tiny/1/model.onnx"));
    std::fs::write(
        dir.join("tiny/config.pbtxt"),
        "name: \"tiny\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: 4\n\
         dynamic_batching { max_queue_delay_microseconds: 1000 }\n\
         instance_group [ { count: 2, kind: KIND_CPU } ]\n\
         parameters { key: \"threads\" value: { string_value: \"1\" } }\n\
         model_warmup [ { name: \"w\" } ]\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("broken/1")).unwrap();
    std::fs::write(dir.join("broken/1/model.onnx"), b"not an onnx file").unwrap();
    std::fs::create_dir_all(dir.join("badcfg/1")).unwrap();
    tiny_model(&dir.join("badcfg/1/model.onnx"));
    std::fs::write(
        dir.join("badcfg/config.pbtxt"),
        "max_batch_size: 4\ndynamic_batching {\n",
    )
    .unwrap();

    let state = Arc::new(ServerState::from_repository(&dir, &ServeOptions::default()).unwrap());
    let errors = state.load_errors().join("\n");
    assert!(
        errors.contains("model `broken` version 1: cannot load"),
        "{errors}"
    );
    assert!(errors.contains("badcfg/config.pbtxt:3:"), "{errors}");
    assert!(
        state.warnings().iter().any(|w| w.contains("model_warmup")),
        "{:?}",
        state.warnings()
    );
    assert!(!state.is_ready(), "strict readiness: a model failed");
    assert!(state.model_ready("tiny", None).unwrap());
    assert!(!state.model_ready("broken", None).unwrap());
    assert!(!state.model_ready("badcfg", None).unwrap());
    assert!(state.model_ready("nope", None).is_err());
    let e = state
        .infer(request("broken", input(1, 1)))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("failed to load"), "{}", e.message);

    let v = state.model("tiny", None).unwrap();
    assert_eq!(v.max_batch_size(), 4);
    assert!(v.dynamic_batching());
    assert_eq!(v.settings().instances, 2);
    assert_eq!(v.settings().threads_per_instance, 1);
    let out = state.infer(request("tiny", input(4, 3))).await.unwrap();
    assert_eq!(out.outputs[0].1.shape(), &[4, 8]);
    let e = state.infer(request("tiny", input(5, 3))).await.unwrap_err();
    assert!(e.message.contains("max_batch_size 4"), "{}", e.message);

    // No model loads at all: an error naming each.
    let empty = scratch("repo-bad");
    std::fs::create_dir_all(empty.join("m/1")).unwrap();
    std::fs::write(empty.join("m/1/model.onnx"), b"junk").unwrap();
    let e = ServerState::from_repository(&empty, &ServeOptions::default())
        .err()
        .unwrap();
    assert!(
        e.message.contains("no model that loads") && e.message.contains("m:"),
        "{}",
        e.message
    );
}

/// A runner that records batch sizes, waits for a gate to open, and fails any batch holding a
/// row whose first value is negative (alone, the row fails too).
struct Gated {
    open: Mutex<bool>,
    cv: Condvar,
    calls: AtomicUsize,
    sizes: Mutex<Vec<usize>>,
}

impl Gated {
    fn new(open: bool) -> Arc<Gated> {
        Arc::new(Gated {
            open: Mutex::new(open),
            cv: Condvar::new(),
            calls: AtomicUsize::new(0),
            sizes: Mutex::new(Vec::new()),
        })
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

impl Runner for Gated {
    fn run(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, ServeError> {
        let mut g = self.open.lock().unwrap();
        while !*g {
            g = self.cv.wait(g).unwrap();
        }
        drop(g);
        self.calls.fetch_add(1, Ordering::SeqCst);
        let t = &inputs[0].1;
        self.sizes.lock().unwrap().push(t.shape()[0]);
        let v = t.to_f32_vec().unwrap();
        if v.chunks(t.shape()[1]).any(|row| row[0] < 0.0) {
            return Err(ServeError::invalid("negative row"));
        }
        let doubled: Vec<f32> = v.iter().map(|x| x * 2.0).collect();
        Ok(vec![(
            "y".into(),
            Tensor::from_vec(t.shape().to_vec(), doubled).unwrap(),
        )])
    }
}

fn policy(max_batch: usize, delay_ms: u64, queue: Option<usize>) -> BatchPolicy {
    BatchPolicy {
        max_batch_size: max_batch,
        combine: max_batch > 0,
        delay: Duration::from_millis(delay_ms),
        preferred: BTreeSet::new(),
        max_queue_size: queue,
    }
}

type Answer = oneshot::Receiver<Result<Done, ServeError>>;

fn job(first: f32, deadline: Option<Duration>) -> (Job, Answer) {
    let (tx, rx) = oneshot::channel();
    let t = Tensor::from_vec(vec![1, 2], vec![first, 1.0]).unwrap();
    let now = Instant::now();
    let j = Job {
        key: Some(vec![("x".into(), t.dtype(), vec![2])]),
        inputs: vec![("x".into(), t)],
        outputs: vec![],
        rows: 1,
        enqueued: now,
        deadline: deadline.map(|d| now + d),
        timeout: deadline,
        reply: tx,
    };
    (j, rx)
}

fn start(runner: Arc<Gated>, p: BatchPolicy, instances: usize) -> (Batcher, Arc<ModelMetrics>) {
    let m = Arc::new(ModelMetrics::default());
    (
        Batcher::start(
            "model `t` version 1".into(),
            p,
            instances,
            runner,
            m.clone(),
        )
        .unwrap(),
        m,
    )
}

#[tokio::test]
async fn queue_full_is_refused_with_a_message() {
    let r = Gated::new(false);
    let (b, m) = start(r.clone(), policy(0, 0, Some(2)), 1);
    let (j0, a0) = job(1.0, None);
    b.submit(j0).unwrap();
    // Wait until the worker holds the first job, so the queue holds exactly what follows.
    while b.queued() > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (j1, a1) = job(2.0, None);
    let (j2, a2) = job(3.0, None);
    b.submit(j1).unwrap();
    b.submit(j2).unwrap();
    assert_eq!(m.pending.load(Ordering::Relaxed), 2);
    let e = b.submit(job(4.0, None).0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(
        e.message
            .contains("queue for model `t` version 1 is full (2 requests waiting)"),
        "{}",
        e.message
    );
    r.open();
    for (a, want) in [(a0, 2.0f32), (a1, 4.0), (a2, 6.0)] {
        let d = a.await.unwrap().unwrap();
        assert_eq!(d.outputs[0].1.to_f32_vec().unwrap()[0], want);
    }
    assert_eq!(m.pending.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_request_past_its_deadline_is_never_run() {
    let r = Gated::new(false);
    let (b, _m) = start(r.clone(), policy(0, 0, None), 1);
    let (j0, a0) = job(1.0, None);
    b.submit(j0).unwrap();
    while b.queued() > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (j1, a1) = job(2.0, Some(Duration::from_millis(20)));
    b.submit(j1).unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    r.open();
    assert!(a0.await.unwrap().is_ok());
    let e = a1.await.unwrap().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(
        e.message
            .contains("timed out after 20 ms while waiting in the queue"),
        "{}",
        e.message
    );
    while b.busy() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        r.calls.load(Ordering::SeqCst),
        1,
        "the expired request must not run"
    );
}

#[tokio::test]
async fn one_bad_request_does_not_fail_its_batch() {
    let r = Gated::new(false);
    let (b, m) = start(r.clone(), policy(8, 300, None), 1);
    let mut answers = Vec::new();
    for v in [1.0f32, -1.0, 3.0, 4.0] {
        let (j, a) = job(v, None);
        b.submit(j).unwrap();
        answers.push((v, a));
    }
    r.open();
    for (v, a) in answers {
        let res = a.await.unwrap();
        if v < 0.0 {
            assert_eq!(res.unwrap_err().message, "negative row");
        } else {
            assert_eq!(
                res.unwrap().outputs[0].1.to_f32_vec().unwrap(),
                vec![2.0 * v, 2.0]
            );
        }
    }
    let sizes = r.sizes.lock().unwrap().clone();
    assert_eq!(sizes[0], 4, "one batch first: {sizes:?}");
    assert_eq!(&sizes[1..], &[1, 1, 1, 1], "then each alone: {sizes:?}");
    assert_eq!(m.exec_count.load(Ordering::Relaxed), 5);
}

#[tokio::test]
async fn batches_respect_max_size_and_shutdown_drains() {
    let r = Gated::new(false);
    let (b, _m) = start(r.clone(), policy(3, 50, None), 1);
    let mut answers = Vec::new();
    for i in 0..7 {
        let (j, a) = job(i as f32, None);
        b.submit(j).unwrap();
        answers.push(a);
    }
    b.shutdown();
    assert!(
        b.submit(job(0.0, None).0).is_err(),
        "no new requests after shutdown"
    );
    r.open();
    for (i, a) in answers.into_iter().enumerate() {
        let d = a.await.unwrap().unwrap();
        assert_eq!(d.outputs[0].1.to_f32_vec().unwrap()[0], 2.0 * i as f32);
    }
    while b.busy() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let sizes = r.sizes.lock().unwrap().clone();
    assert!(sizes.iter().all(|&s| s <= 3), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 7);
    assert!(sizes.len() <= 4, "{sizes:?}");
}

fn job_rows(rows: usize) -> (Job, Answer) {
    let (tx, rx) = oneshot::channel();
    let t = Tensor::from_vec(vec![rows, 2], vec![1.0f32; rows * 2]).unwrap();
    let now = Instant::now();
    let j = Job {
        key: Some(vec![("x".into(), t.dtype(), vec![2])]),
        inputs: vec![("x".into(), t)],
        outputs: vec![],
        rows,
        enqueued: now,
        deadline: None,
        timeout: None,
        reply: tx,
    };
    (j, rx)
}

/// A batch that cannot grow (max_batch_size rows, or the next compatible request does not fit
/// in the rows left) runs at once instead of waiting out the batch delay.
#[tokio::test]
async fn a_full_batch_does_not_wait_for_the_delay() {
    let r = Gated::new(false);
    let (b, _m) = start(r.clone(), policy(4, 10_000, None), 1);
    let mut answers = Vec::new();
    for i in 0..4 {
        let (j, a) = job(i as f32, None);
        b.submit(j).unwrap();
        answers.push(a);
    }
    let t0 = Instant::now();
    r.open();
    for a in answers {
        a.await.unwrap().unwrap();
    }
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "a batch of max_batch_size rows waited {:?}",
        t0.elapsed()
    );
    assert_eq!(r.sizes.lock().unwrap().as_slice(), &[4]);

    // 3 rows, then 2 that cannot join (3 + 2 > 4): the first batch runs at once.
    let r = Gated::new(true);
    let (b, _m) = start(r.clone(), policy(4, 10_000, None), 1);
    let (j3, a3) = job_rows(3);
    let (j2, _a2) = job_rows(2);
    b.submit(j3).unwrap();
    b.submit(j2).unwrap();
    let t0 = Instant::now();
    a3.await.unwrap().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "a batch that cannot grow waited {:?}",
        t0.elapsed()
    );
    b.shutdown();
}
