//! Streams over real models: the frames that come out of a K-stage stream equal plain runs
//! of the whole model, frame by frame, in order.
mod common;

use common::{assert_matches, rel_l2, shared_models};
use millrace::{read_npz, CompileOptions, CompiledModel, Model, StreamOptions, Tensor};

fn compile(name: &str, threads: usize) -> (CompiledModel, Vec<(String, Tensor)>) {
    let dir = shared_models();
    let model = Model::load(dir.join(format!("{name}.onnx"))).unwrap();
    let inputs = read_npz(&dir.join(format!("{name}.inputs.npz"))).unwrap();
    let mut opts = CompileOptions {
        threads: Some(threads),
        ..CompileOptions::default()
    };
    for (n, t) in &inputs {
        opts.input_shapes.insert(n.clone(), t.shape().to_vec());
    }
    (model.compile(&opts).unwrap(), inputs)
}

/// The stored input, scaled differently per frame so frames cannot be confused.
fn frames(inputs: &[(String, Tensor)], n: usize) -> Vec<Vec<(String, Tensor)>> {
    (0..n)
        .map(|i| {
            inputs
                .iter()
                .map(|(name, t)| {
                    let v: Vec<f32> = t
                        .to_f64_vec()
                        .unwrap()
                        .iter()
                        .map(|x| (*x * (1.0 + 0.1 * i as f64)) as f32)
                        .collect();
                    (
                        name.clone(),
                        Tensor::from_vec(t.shape().to_vec(), v).unwrap(),
                    )
                })
                .collect()
        })
        .collect()
}

fn stream_matches_plain_runs(name: &str) {
    let want_ref = read_npz(&shared_models().join(format!("{name}.outputs.npz"))).unwrap();
    let (m, inputs) = compile(name, 2);
    let fs = frames(&inputs, 4);
    let plain: Vec<_> = fs.iter().map(|f| m.run_named(f).unwrap()).collect();
    for (costs, stages) in [("estimated", 2), ("estimated", 3), ("measured", 3)] {
        let node_costs = (costs == "measured").then(|| m.measure_node_costs(&inputs, 1).unwrap());
        let mut s = m
            .stream(&StreamOptions {
                stages,
                node_costs,
                ..StreamOptions::default()
            })
            .unwrap();
        assert_eq!(s.stages().len(), stages);
        let got = s.run_all(fs.clone());
        assert_eq!(got.len(), fs.len());
        for (i, (g, w)) in got.iter().zip(&plain).enumerate() {
            let what = format!("{name}, {stages} stages ({costs}), frame {i}");
            assert_eq!(g.frame, i as u64, "{what}");
            let outs = g.outputs.as_ref().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(outs.len(), w.len(), "{what}");
            for ((gn, gt), (wn, wt)) in outs.iter().zip(w) {
                assert_eq!(gn, wn, "{what}");
                assert_eq!(gt.shape(), wt.shape(), "{what}");
                // Stages run on fewer threads than the whole model; kernels may then sum
                // in another order, so allow rounding only.
                let err = rel_l2(gt, wt);
                assert!(
                    err <= 1e-6,
                    "{what}/{gn}: relative L2 error {err:.3e} vs a plain run"
                );
            }
            if i == 0 {
                assert_matches(&what, outs, &want_ref, 1e-4);
            }
        }
    }
}

#[test]
fn squeezenet_stream_matches_plain_runs() {
    stream_matches_plain_runs("squeezenet1_1");
}

#[test]
fn googlenet_stream_matches_plain_runs() {
    stream_matches_plain_runs("googlenet");
}

#[test]
fn a_wrong_frame_fails_alone() {
    let (m, inputs) = compile("squeezenet1_1", 2);
    let mut s = m
        .stream(&StreamOptions {
            stages: 2,
            ..StreamOptions::default()
        })
        .unwrap();
    let (name, t) = &inputs[0];
    let mut shape = t.shape().to_vec();
    shape[2] += 1;
    let n: usize = shape.iter().product();
    let bad = vec![(
        name.clone(),
        Tensor::from_vec(shape, vec![0.0f32; n]).unwrap(),
    )];
    let got = s.run_all(vec![inputs.clone(), bad, inputs.clone()]);
    assert!(got[0].outputs.is_ok());
    let e = got[1].outputs.as_ref().unwrap_err().to_string();
    assert!(e.contains("expected shape"), "{e}");
    assert_eq!(
        got[2].outputs.as_ref().unwrap(),
        got[0].outputs.as_ref().unwrap()
    );
}

#[test]
fn more_stages_than_nodes_is_an_error() {
    let (m, _) = compile("squeezenet1_1", 1);
    let n = m.graph().nodes.len();
    let e = m
        .stream(&StreamOptions {
            stages: n + 1,
            ..StreamOptions::default()
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("at most {n} stages")), "{e}");
}
