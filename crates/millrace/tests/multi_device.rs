//! Data and pipeline parallelism across CPU thread groups on real models: a batch split
//! across groups (or flowing through stages as micro-batches) equals the single model run
//! on all threads, and row 0 (the stored input) still matches ONNX Runtime.
mod common;

use common::{assert_matches, rel_l2};
use millrace::{read_npz, CompileOptions, DataParallelOptions, Model, PipelineOptions, Tensor};
use std::path::PathBuf;

/// The shared models folder, or `None` (the test then skips, saying why).
fn models() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: reference models not found at {}", dir.display());
        None
    }
}

struct Case {
    model: Model,
    /// The batch: row `i` is the stored input scaled by `1 + 0.1 i`.
    inputs: Vec<(String, Tensor)>,
    opts: CompileOptions,
    reference: Vec<(String, Tensor)>,
}

fn case(name: &str, batch: usize, threads: usize) -> Option<Case> {
    let dir = models()?;
    let path = dir.join(format!("{name}.onnx"));
    if !path.exists() {
        eprintln!("skipped: {} not found", path.display());
        return None;
    }
    let model = Model::load(&path).unwrap();
    let stored = read_npz(&dir.join(format!("{name}.inputs.npz"))).unwrap();
    let reference = read_npz(&dir.join(format!("{name}.outputs.npz"))).unwrap();
    let mut opts = CompileOptions {
        threads: Some(threads),
        ..CompileOptions::default()
    };
    let inputs: Vec<(String, Tensor)> = stored
        .iter()
        .map(|(n, t)| {
            assert_eq!(t.shape()[0], 1, "{name}: stored input `{n}` is not batch 1");
            let one = t.to_f64_vec().unwrap();
            let mut v = Vec::with_capacity(one.len() * batch);
            for i in 0..batch {
                v.extend(one.iter().map(|x| (*x * (1.0 + 0.1 * i as f64)) as f32));
            }
            let mut shape = t.shape().to_vec();
            shape[0] = batch;
            opts.input_shapes.insert(n.clone(), shape.clone());
            (n.clone(), Tensor::from_vec(shape, v).unwrap())
        })
        .collect();
    Some(Case {
        model,
        inputs,
        opts,
        reference,
    })
}

/// The first row of each output.
fn row0(outs: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    outs.iter()
        .map(|(n, t)| {
            let row: usize = t.shape()[1..].iter().product();
            let v = t.to_f64_vec().unwrap()[..row]
                .iter()
                .map(|&x| x as f32)
                .collect();
            let mut s = t.shape().to_vec();
            s[0] = 1;
            (n.clone(), Tensor::from_vec(s, v).unwrap())
        })
        .collect()
}

fn assert_close(what: &str, got: &[(String, Tensor)], want: &[(String, Tensor)]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for ((gn, gt), (wn, wt)) in got.iter().zip(want) {
        assert_eq!(gn, wn, "{what}");
        assert_eq!(gt.shape(), wt.shape(), "{what}/{gn}");
        let err = rel_l2(gt, wt);
        assert!(
            err <= 1e-5,
            "{what}/{gn}: relative L2 error {err:.3e} vs one group"
        );
    }
}

fn data_parallel_matches_one_group(name: &str) {
    let Some(c) = case(name, 4, 2) else { return };
    let whole = c.model.compile(&c.opts).unwrap();
    let want = whole.run_named(&c.inputs).unwrap();
    assert_matches(&format!("{name} row 0"), &row0(&want), &c.reference, 1e-4);
    for speeds in [None, Some(vec![3.0, 1.0])] {
        let dp = c
            .model
            .compile_data_parallel(
                &c.opts,
                &DataParallelOptions {
                    groups: 2,
                    threads: Some(2),
                    speeds: speeds.clone(),
                },
            )
            .unwrap();
        let g = dp.groups();
        assert_eq!(g.len(), 2);
        assert_eq!(g.iter().map(|g| g.threads).collect::<Vec<_>>(), vec![1, 1]);
        let expect_rows = if speeds.is_some() {
            vec![0..3, 3..4]
        } else {
            vec![0..2, 2..4]
        };
        assert_eq!(
            g.iter().map(|g| g.rows.clone()).collect::<Vec<_>>(),
            expect_rows
        );
        let got = dp.run_named(&c.inputs).unwrap();
        assert_close(&format!("{name} data parallel {speeds:?}"), &got, &want);
        // Twice: run state is reused correctly.
        let again = dp.run_named(&c.inputs).unwrap();
        assert_close(&format!("{name} data parallel, second run"), &again, &want);
    }
}

#[test]
fn data_parallel_squeezenet() {
    data_parallel_matches_one_group("squeezenet1_1");
}

#[test]
fn data_parallel_resnet50() {
    data_parallel_matches_one_group("resnet50");
}

#[test]
fn pipeline_parallel_squeezenet() {
    let Some(c) = case("squeezenet1_1", 4, 2) else {
        return;
    };
    let want = c
        .model
        .compile(&c.opts)
        .unwrap()
        .run_named(&c.inputs)
        .unwrap();
    for micro in [None, Some(1), Some(4)] {
        let pp = c
            .model
            .compile_pipeline_parallel(
                &c.opts,
                &PipelineOptions {
                    stages: 2,
                    threads: Some(2),
                    micro_batch: micro,
                    ..PipelineOptions::default()
                },
            )
            .unwrap();
        assert_eq!(pp.micro_batch(), micro.unwrap_or(2));
        assert_eq!(pp.stages().len(), 2);
        let got = pp.run_named(&c.inputs).unwrap();
        assert_close(&format!("pipeline, micro-batch {micro:?}"), &got, &want);
    }
}

#[test]
fn bad_splits_are_errors() {
    let Some(c) = case("squeezenet1_1", 2, 2) else {
        return;
    };
    let dp = |groups, threads| {
        c.model.compile_data_parallel(
            &c.opts,
            &DataParallelOptions {
                groups,
                threads: Some(threads),
                speeds: None,
            },
        )
    };
    let msg = |r: Result<millrace::DataParallel, millrace::Error>| match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    assert!(msg(dp(3, 4)).contains("batch of 2"));
    assert!(msg(dp(2, 1)).contains("need at least 2 threads"));
    assert!(msg(dp(0, 1)).contains("at least one group"));
    let ok = dp(2, 2).unwrap();
    // A batch of the wrong size is refused, not mis-split.
    let c4 = case("squeezenet1_1", 4, 2).unwrap();
    let e = ok.run_named(&c4.inputs).unwrap_err().to_string();
    assert!(e.contains("batch of 2"), "{e}");
    let pp = c.model.compile_pipeline_parallel(
        &c.opts,
        &PipelineOptions {
            micro_batch: Some(3),
            ..PipelineOptions::default()
        },
    );
    assert!(pp.is_err());
}
