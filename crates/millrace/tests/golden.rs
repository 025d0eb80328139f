//! Every model in ../shared/models, run on its stored inputs, against ONNX Runtime's stored
//! outputs: relative L2 error at most 1e-4 and the same argmax.
mod common;

use common::{assert_matches, shared_models};
use millrace::{read_npz, CompileOptions, Model, Schedule};

fn golden(name: &str) {
    golden_without(name, None);
}

/// Runs `name` with the pass `skip` turned off (all passes when `None`).
fn golden_without(name: &str, skip: Option<&str>) {
    let dir = shared_models();
    let model =
        Model::load(dir.join(format!("{name}.onnx"))).unwrap_or_else(|e| panic!("{name}: {e}"));
    let inputs = read_npz(&dir.join(format!("{name}.inputs.npz"))).unwrap();
    let want = read_npz(&dir.join(format!("{name}.outputs.npz"))).unwrap();
    let mut opts = CompileOptions::default();
    for (n, t) in &inputs {
        opts.input_shapes.insert(n.clone(), t.shape().to_vec());
    }
    if let Some(p) = skip {
        opts.passes.disabled.insert(p.to_string());
    }
    let name = &format!("{name} without {}", skip.unwrap_or("nothing"));
    let compiled = model
        .compile(&opts)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = compiled
        .run_named(&inputs)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_matches(name, &got, &want, 1e-4);
}

/// Outputs stay equal to the references with each optimization pass turned off in turn
/// (every pass of the pipeline, as `millrace plan --list-passes` lists them).
#[test]
fn each_pass_can_be_turned_off() {
    for (pass, _) in millrace::passes() {
        for model in ["squeezenet1_1", "bert_small", "mobilenet_v2", "googlenet"] {
            golden_without(model, Some(pass));
        }
    }
}

/// Both schedules give the reference outputs, on the first run and on later runs that
/// reuse the pooled arena, on one thread and on two.
#[test]
fn every_schedule_matches_on_every_shared_model() {
    let dir = shared_models();
    for name in [
        "squeezenet1_1",
        "googlenet",
        "resnet50",
        "mobilenet_v2",
        "bert_small",
    ] {
        let model = Model::load(dir.join(format!("{name}.onnx"))).unwrap();
        let inputs = read_npz(&dir.join(format!("{name}.inputs.npz"))).unwrap();
        let want = read_npz(&dir.join(format!("{name}.outputs.npz"))).unwrap();
        for (schedule, threads) in [
            (Schedule::Sequential, 2),
            (Schedule::Parallel, 2),
            (Schedule::Parallel, 1),
        ] {
            let mut opts = CompileOptions {
                schedule,
                threads: Some(threads),
                ..Default::default()
            };
            for (n, t) in &inputs {
                opts.input_shapes.insert(n.clone(), t.shape().to_vec());
            }
            let compiled = model.compile(&opts).unwrap();
            for run in 0..2 {
                let label = format!("{name} {schedule} {threads} thread(s), run {run}");
                let got = compiled
                    .run_named(&inputs)
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                assert_matches(&label, &got, &want, 1e-4);
            }
        }
    }
}

#[test]
fn resnet50_matches_onnxruntime() {
    golden("resnet50");
}

#[test]
fn mobilenet_v2_matches_onnxruntime() {
    golden("mobilenet_v2");
}

#[test]
fn squeezenet1_1_matches_onnxruntime() {
    golden("squeezenet1_1");
}

#[test]
fn googlenet_matches_onnxruntime() {
    golden("googlenet");
}

#[test]
fn bert_small_matches_onnxruntime() {
    golden("bert_small");
}

/// Any other model dropped into ../shared/models is checked too.
#[test]
fn every_shared_model_matches() {
    let known = [
        "resnet50",
        "mobilenet_v2",
        "squeezenet1_1",
        "googlenet",
        "bert_small",
    ];
    for entry in std::fs::read_dir(shared_models()).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".onnx"))
        else {
            continue;
        };
        if !known.contains(&stem) && path.with_file_name(format!("{stem}.outputs.npz")).exists() {
            golden(stem);
        }
    }
}

/// The compiled model runs from many threads at once and gives the same answer.
#[test]
fn concurrent_runs_share_one_model() {
    let dir = shared_models();
    let model = Model::load(dir.join("squeezenet1_1.onnx")).unwrap();
    let inputs = read_npz(&dir.join("squeezenet1_1.inputs.npz")).unwrap();
    let want = read_npz(&dir.join("squeezenet1_1.outputs.npz")).unwrap();
    let compiled = std::sync::Arc::new(
        model
            .compile(&CompileOptions {
                threads: Some(1),
                ..Default::default()
            })
            .unwrap(),
    );
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (c, inputs, want) = (compiled.clone(), &inputs, &want);
            s.spawn(move || {
                for _ in 0..2 {
                    let got = c.run_named(inputs).unwrap();
                    assert_matches("squeezenet1_1 (threaded)", &got, want, 1e-4);
                }
            });
        }
    });
}
