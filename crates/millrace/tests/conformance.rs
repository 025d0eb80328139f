//! The ONNX backend node test suite (onnx==1.22.0, 1,765 cases), run by millrace itself.
//!
//! Each case ends as pass, fail (ran, wrong answer) or unsupported (refused with an error
//! that says millrace does not implement it). A panic or a hang is a failure of this test.
//! The test fails when any case gives a wrong answer, or when a case listed in
//! `conformance/expected_pass.txt` stops passing; it reports cases that newly pass.
//! `MILLRACE_BLESS=1` rewrites `conformance/expected_pass.txt` and `CONFORMANCE.md`.
//! The data comes from `MILLRACE_ONNX_NODE_DIR`, else from the installed `onnx` package
//! (`scripts/test.sh` installs onnx==1.22.0).
mod common;

use millrace::{
    onnx::value_from_pb_bytes, CompileOptions, Error, Model, Tensor, TensorData, Value, ValueKind,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-7;
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Pass,
    Fail(String),
    /// Refused at load (import or compile).
    UnsupportedLoad(String),
    /// Refused while running (an op met a case it does not implement).
    UnsupportedRun(String),
}

fn node_dir() -> PathBuf {
    if let Ok(d) = std::env::var("MILLRACE_ONNX_NODE_DIR") {
        return PathBuf::from(d);
    }
    let py = std::env::var("MILLRACE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&py)
        .args([
            "-c",
            "import onnx, os; print(onnx.__version__); print(os.path.dirname(onnx.__file__))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {py} to find the onnx package: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let (Some(version), Some(dir)) = (lines.next(), lines.next()) else {
        panic!("the onnx Python package is not installed (scripts/test.sh installs onnx==1.22.0)");
    };
    assert_eq!(
        version, "1.22.0",
        "the node suite must come from onnx==1.22.0"
    );
    PathBuf::from(dir).join("backend/test/data/node")
}

fn read_pb(path: &Path, kind: &ValueKind) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    value_from_pb_bytes(&bytes, kind).map_err(|e| format!("{}: {e}", path.display()))
}

fn compare_values(got: &Value, want: &Value) -> Result<(), String> {
    match (got, want) {
        (Value::Tensor(g), Value::Tensor(w)) => compare(g, w),
        (Value::Sequence(g), Value::Sequence(w)) => {
            if g.len() != w.len() {
                return Err(format!("sequence of {} != expected {}", g.len(), w.len()));
            }
            g.iter()
                .zip(w)
                .enumerate()
                .try_for_each(|(i, (a, b))| compare(a, b).map_err(|e| format!("element {i}: {e}")))
        }
        (Value::Optional(None), Value::Optional(None)) => Ok(()),
        (Value::Optional(Some(g)), Value::Optional(Some(w))) => compare_values(g, w),
        // An optional output holding a value compares with the value itself.
        (Value::Optional(Some(g)), w) => compare_values(g, w),
        (g, Value::Optional(Some(w))) => compare_values(g, w),
        (g, w) => Err(format!("a {} where a {} is expected", g.kind(), w.kind())),
    }
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok().map(|e| e.path()))
                .filter_map(|p| {
                    let name = p.file_name()?.to_str()?.to_string();
                    let n = name
                        .strip_prefix(prefix)?
                        .strip_suffix(".pb")?
                        .parse()
                        .ok()?;
                    Some((n, p))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

/// The ONNX backend runner's comparison.
fn compare(got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.dtype() != want.dtype() {
        return Err(format!(
            "dtype {} != expected {}",
            got.dtype(),
            want.dtype()
        ));
    }
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?} != expected {:?}",
            got.shape(),
            want.shape()
        ));
    }
    match (got.data(), want.data()) {
        (TensorData::String(a), TensorData::String(b)) => {
            if a != b {
                return Err("strings differ".into());
            }
        }
        _ if want.dtype().is_float() => {
            let (a, b) = (
                got.to_f64_vec().map_err(|e| e.to_string())?,
                want.to_f64_vec().map_err(|e| e.to_string())?,
            );
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                let ok = if y.is_nan() {
                    x.is_nan()
                } else if y.is_infinite() {
                    x == y
                } else {
                    (x - y).abs() <= ATOL + RTOL * y.abs()
                };
                if !ok {
                    return Err(format!("element {i}: {x} != expected {y}"));
                }
            }
        }
        (a, b) => {
            if a != b {
                return Err("values differ".into());
            }
        }
    }
    Ok(())
}

fn is_unsupported(e: &Error) -> bool {
    match e {
        Error::Import(_) => true,
        Error::Node { source, .. } => source.is_unsupported(),
        Error::Pass(p) => p.to_string().contains("unsupported"),
        _ => false,
    }
}

fn run_case(dir: &Path) -> Outcome {
    let model = match Model::load(dir.join("model.onnx")) {
        Ok(m) => m,
        Err(e) => return Outcome::UnsupportedLoad(e.to_string()),
    };
    let ins: Vec<(String, ValueKind)> = model
        .inputs()
        .into_iter()
        .map(|i| (i.name, i.kind))
        .collect();
    let out_kinds: Vec<ValueKind> = model.outputs().into_iter().map(|o| o.kind).collect();
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    sets.sort();
    for set in sets {
        let mut inputs = Vec::new();
        for (i, p) in numbered(&set, "input_").into_iter().enumerate() {
            let Some((name, kind)) = ins.get(i) else {
                return Outcome::Fail(format!("more input files than inputs ({p:?})"));
            };
            let v = match read_pb(&p, kind) {
                Ok(v) => v,
                Err(e) => return Outcome::UnsupportedLoad(format!("input data: {e}")),
            };
            inputs.push((name.clone(), v));
        }
        let mut wants = Vec::new();
        for (i, p) in numbered(&set, "output_").into_iter().enumerate() {
            match read_pb(&p, out_kinds.get(i).unwrap_or(&ValueKind::Tensor)) {
                Ok(t) => wants.push(t),
                Err(e) => return Outcome::UnsupportedLoad(format!("output data: {e}")),
            }
        }
        let opts = CompileOptions {
            input_shapes: inputs
                .iter()
                .filter_map(|(n, v)| v.as_tensor().map(|t| (n.clone(), t.shape().to_vec())))
                .collect(),
            threads: Some(1),
            ..Default::default()
        };
        let compiled = match model.compile(&opts) {
            Ok(c) => c,
            Err(e) if is_unsupported(&e) => return Outcome::UnsupportedLoad(e.to_string()),
            Err(e) => return Outcome::Fail(format!("compile: {e}")),
        };
        let refs: Vec<(&str, &Value)> = inputs.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let got = match compiled.run_values(&refs) {
            Ok(g) => g,
            Err(e) if is_unsupported(&e) => return Outcome::UnsupportedRun(e.to_string()),
            Err(e) => return Outcome::Fail(format!("run: {e}")),
        };
        if got.len() != wants.len() {
            return Outcome::Fail(format!("{} outputs, expected {}", got.len(), wants.len()));
        }
        for ((name, g), w) in got.iter().zip(&wants) {
            if let Err(e) = compare_values(g, w) {
                return Outcome::Fail(format!("output `{name}`: {e}"));
            }
        }
    }
    Outcome::Pass
}

/// Runs a case on its own thread so a panic or a hang is caught and reported.
fn guarded(dir: PathBuf) -> Outcome {
    let (tx, rx) = mpsc::channel();
    let d = dir.clone();
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            let r = std::panic::catch_unwind(|| run_case(&d));
            let _ = tx.send(r);
        })
        .expect("spawn");
    match rx.recv_timeout(CASE_TIMEOUT) {
        Ok(Ok(o)) => o,
        Ok(Err(p)) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            Outcome::Fail(format!("PANIC: {}", msg.unwrap_or_default()))
        }
        Err(_) => Outcome::Fail(format!("HANG: no result after {CASE_TIMEOUT:?}")),
    }
}

fn snake(op: &str) -> String {
    let mut s = String::new();
    let chars: Vec<char> = op.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower) {
                s.push('_');
            }
        }
        s.extend(c.to_lowercase());
    }
    s
}

/// Op types used by a model file, read without importing it.
fn model_ops(path: &Path) -> Vec<String> {
    use millrace::onnx::proto::ModelProto;
    use prost::Message;
    let Ok(bytes) = std::fs::read(path) else {
        return vec![];
    };
    let Ok(m) = ModelProto::decode(bytes.as_slice()) else {
        return vec![];
    };
    m.graph
        .map(|g| g.node.into_iter().map(|n| n.op_type).collect())
        .unwrap_or_default()
}

#[test]
fn onnx_node_suite() {
    let root = node_dir();
    let mut cases: Vec<String> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()))
        .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with("test_"))
        .collect();
    cases.sort();
    // MILLRACE_CONFORMANCE_FILTER=sub1,sub2 runs only cases whose name contains one of them
    // (for working on an op); the expectation check is then skipped.
    let filter: Vec<String> = std::env::var("MILLRACE_CONFORMANCE_FILTER")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    assert!(
        cases.len() >= 1700,
        "expected the full suite, found {} cases in {}",
        cases.len(),
        root.display()
    );

    if !filter.is_empty() {
        cases.retain(|c| filter.iter().any(|f| c.contains(f.as_str())));
    }
    // Run cases on a few workers; each case is guarded on its own thread.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2);
    let queue = std::sync::Mutex::new(cases.clone().into_iter());
    let results = std::sync::Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some(case) = queue.lock().unwrap().next() else {
                    break;
                };
                let outcome = guarded(root.join(&case));
                results.lock().unwrap().insert(case, outcome);
            });
        }
    });
    let results = results.into_inner().unwrap();

    // Attribute each case to an op: the op whose snake_case name is the longest prefix.
    let ops_of: BTreeMap<&String, Vec<String>> = cases
        .iter()
        .map(|c| (c, model_ops(&root.join(c).join("model.onnx"))))
        .collect();
    let all_ops: BTreeSet<String> = ops_of.values().flatten().cloned().collect();
    let op_of = |case: &str| -> String {
        let rest = case.trim_start_matches("test_");
        let best = all_ops
            .iter()
            .filter(|op| {
                let s = snake(op);
                rest == s || rest.starts_with(&format!("{s}_"))
            })
            .max_by_key(|op| snake(op).len());
        best.cloned()
            .or_else(|| {
                ops_of
                    .get(&case.to_string())
                    .and_then(|v| v.first().cloned())
            })
            .unwrap_or_else(|| "?".into())
    };

    let mut per_op: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    let mut unsupported_ops: BTreeMap<String, usize> = BTreeMap::new();
    let (mut pass, mut fail, mut unsup) = (vec![], vec![], vec![]);
    for (case, o) in &results {
        let op = op_of(case);
        let slot = per_op.entry(op.clone()).or_default();
        match o {
            Outcome::Pass => {
                slot[0] += 1;
                pass.push(case.clone());
            }
            Outcome::Fail(msg) => {
                slot[1] += 1;
                fail.push((case.clone(), msg.clone()));
            }
            Outcome::UnsupportedLoad(msg) | Outcome::UnsupportedRun(msg) => {
                slot[2] += 1;
                unsup.push((case.clone(), msg.clone()));
                for line in msg
                    .lines()
                    .filter(|l| l.contains("operator is not supported"))
                {
                    if let Some(op) = line.split('(').nth(1).and_then(|s| s.split(')').next()) {
                        *unsupported_ops.entry(op.to_string()).or_default() += 1;
                    }
                }
            }
        }
    }
    let total = results.len();
    let rate = 100.0 * pass.len() as f64 / total as f64;

    let mut md = String::new();
    md.push_str("# ONNX conformance\n\n");
    md.push_str("Generated by `crates/millrace/tests/conformance.rs` (`MILLRACE_BLESS=1 cargo test --release -p millrace --test conformance`) ");
    md.push_str("from the backend node test suite of onnx==1.22.0. Comparison as the ONNX backend runner: same dtype and shape, ");
    md.push_str("rtol 1e-3 and atol 1e-7 for floats, NaN where NaN is expected, exact for integers, bools and strings.\n\n");
    md.push_str(&format!(
        "**{} of {total} cases pass ({rate:.1}%)**; {} fail (wrong answer); {} unsupported (refused with an error).\n\n",
        pass.len(),
        fail.len(),
        unsup.len()
    ));
    md.push_str("## Ops millrace does not implement\n\nOp (cases that need it): ");
    let mut uo: Vec<_> = unsupported_ops.iter().collect();
    uo.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    md.push_str(
        &uo.iter()
            .map(|(op, n)| format!("{op} ({n})"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    md.push_str("\n\n## Per op\n\n| op | pass | fail | unsupported |\n|---|---:|---:|---:|\n");
    for (op, [p, f, u]) in &per_op {
        md.push_str(&format!("| {op} | {p} | {f} | {u} |\n"));
    }
    if !fail.is_empty() {
        md.push_str("\n## Failing cases\n\n");
        for (c, m) in &fail {
            md.push_str(&format!("- `{c}`: {}\n", m.lines().next().unwrap_or("")));
        }
    }
    md.push_str("\n## Unsupported cases and why\n\n");
    for (c, m) in &unsup {
        let first = m
            .lines()
            .find(|l| l.contains("node `"))
            .unwrap_or(m.lines().next().unwrap_or(""));
        md.push_str(&format!(
            "- `{c}`: {}\n",
            first.trim().trim_start_matches("- ")
        ));
    }

    let repo = common::repo_root();
    let out_dir = repo.join("target/conformance");
    std::fs::create_dir_all(&out_dir).ok();
    std::fs::write(out_dir.join("CONFORMANCE.md"), &md).ok();
    let expected_path = repo.join("conformance/expected_pass.txt");
    if !filter.is_empty() {
        for (c, o) in &results {
            eprintln!("{c}: {o:?}");
        }
        assert!(fail.is_empty(), "{} case(s) give wrong answers", fail.len());
        return;
    }
    if std::env::var("MILLRACE_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(repo.join("CONFORMANCE.md"), &md).unwrap();
        std::fs::write(&expected_path, pass.join("\n") + "\n").unwrap();
    }
    let expected: BTreeSet<String> = std::fs::read_to_string(&expected_path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let passing: BTreeSet<String> = pass.iter().cloned().collect();
    let regressed: Vec<_> = expected.difference(&passing).collect();
    let newly: Vec<_> = passing.difference(&expected).collect();

    eprintln!(
        "conformance: {} pass, {} fail, {} unsupported of {total} ({rate:.1}%)",
        pass.len(),
        fail.len(),
        unsup.len()
    );
    eprintln!("report: {}", out_dir.join("CONFORMANCE.md").display());
    if !newly.is_empty() {
        eprintln!(
            "{} case(s) newly pass; run `MILLRACE_BLESS=1 cargo test --release -p millrace --test conformance` to record them: {}",
            newly.len(),
            newly.iter().take(20).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    for (c, m) in &fail {
        eprintln!("FAIL {c}: {}", m.lines().next().unwrap_or(""));
    }
    assert!(
        fail.is_empty(),
        "{} case(s) give wrong answers (see above)",
        fail.len()
    );
    assert!(
        regressed.is_empty(),
        "{} expected-pass case(s) no longer pass: {regressed:?}",
        regressed.len()
    );
}
