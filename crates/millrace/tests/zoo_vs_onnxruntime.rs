//! The built-in models against ONNX Runtime (Python `onnxruntime`, which `.ci/run`
//! installs). A missing Python or onnxruntime fails the test: it is never skipped.
mod common;

use common::{assert_matches, repo_root};
use millrace::{input_specs, random_inputs, read_npz, write_npz, CompileOptions, Model};
use std::collections::HashMap;
use std::process::Command;

fn python() -> String {
    std::env::var("MILLRACE_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn check(name: &str) {
    let dir = std::env::temp_dir().join(format!("millrace-zoo-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let onnx = dir.join(format!("{name}.onnx"));
    let bytes = millrace::zoo::build_bytes(name).unwrap();
    std::fs::write(&onnx, &bytes).unwrap();
    let model = Model::from_bytes(&bytes, None).unwrap_or_else(|e| panic!("{name}: {e}"));
    let shapes: HashMap<String, Vec<usize>> = millrace::zoo::default_input_shapes(name)
        .unwrap()
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
    let specs = input_specs(model.graph(), &shapes, &HashMap::new(), 1).unwrap();
    let inputs = random_inputs(model.graph(), &specs, 7).unwrap();
    let in_npz = dir.join("in.npz");
    let ref_npz = dir.join("ref.npz");
    write_npz(&in_npz, &inputs).unwrap();
    let status = Command::new(python())
        .arg(repo_root().join("scripts/ort_reference.py"))
        .args([&onnx, &in_npz, &ref_npz])
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (set MILLRACE_PYTHON or install python3)",
                python()
            )
        });
    assert!(
        status.success(),
        "{name}: ONNX Runtime reference failed (is onnxruntime installed? .ci/run installs it)"
    );
    let want = read_npz(&ref_npz).unwrap();
    let opts = CompileOptions {
        input_shapes: shapes,
        ..Default::default()
    };
    let got = model
        .compile(&opts)
        .unwrap()
        .run_named(&inputs)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_matches(name, &got, &want, 1e-4);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn builtin_resnet50_matches_onnxruntime() {
    check("resnet50");
}

#[test]
fn builtin_mobilenet_v2_matches_onnxruntime() {
    check("mobilenet_v2");
}

#[test]
fn builtin_googlenet_matches_onnxruntime() {
    check("googlenet");
}

#[test]
fn builtin_vgg16_matches_onnxruntime() {
    check("vgg16");
}

#[test]
fn builtin_bert_matches_onnxruntime() {
    check("bert");
}
