//! Bad models and bad inputs give clear errors, never panics.
use millrace::onnx::proto::{
    self, attr_type, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto, TypeProto, ValueInfoProto,
};
use millrace::{CompileOptions, Error, Model, Tensor};
use prost::Message;

fn vi(name: &str, elem: i32, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Some(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
                None => tensor_shape_proto::dimension::Value::DimParam("batch".into()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem,
                shape: Some(proto::TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn model(nodes: Vec<NodeProto>, opset: i64) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(GraphProto {
            name: "g".into(),
            node: nodes,
            input: vec![vi("x", 1, &[None, Some(4)])],
            output: vec![vi("y", 1, &[None, Some(4)])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn relu_model() -> ModelProto {
    model(vec![node("r", "Relu", &["x"], &["y"])], 17)
}

fn import(m: &ModelProto) -> Result<Model, Error> {
    Model::from_bytes(&m.encode_to_vec(), None)
}

#[test]
fn a_valid_tiny_model_runs() {
    let m = import(&relu_model()).unwrap();
    let c = m.compile(&CompileOptions::default()).unwrap();
    let x = Tensor::from_vec(vec![1, 4], vec![-1.0f32, 2.0, -3.0, 4.0]).unwrap();
    let y = c.run(&[("x", &x)]).unwrap();
    assert_eq!(y[0].1.as_slice::<f32>().unwrap(), &[0.0, 2.0, 0.0, 4.0]);
}

#[test]
fn garbage_and_truncated_bytes_are_decode_errors() {
    let err = Model::from_bytes(b"definitely not a protobuf \xff\xff\xff", None).unwrap_err();
    assert!(err.to_string().contains("not a valid ONNX model"), "{err}");
    let bytes = relu_model().encode_to_vec();
    for cut in [1, bytes.len() / 3, bytes.len() - 1] {
        assert!(
            Model::from_bytes(&bytes[..cut], None).is_err(),
            "cut at {cut}"
        );
    }
    let err = Model::from_bytes(&[], None).unwrap_err();
    assert!(err.to_string().contains("no graph"), "{err}");
}

#[test]
fn every_unsupported_node_is_listed_at_once() {
    let m = model(
        vec![
            node("a", "FancyOp", &["x"], &["t1"]),
            node("b", "Relu", &["t1"], &["t2"]),
            node("c", "OtherOp", &["t2"], &["t3"]),
            node("d", "FancyOp", &["t3"], &["y"]),
        ],
        17,
    );
    let err = import(&m).unwrap_err();
    let msg = err.to_string();
    for needle in [
        "node `a` (FancyOp)",
        "node `c` (OtherOp)",
        "node `d` (FancyOp)",
        "3 node(s)",
    ] {
        assert!(msg.contains(needle), "missing `{needle}` in: {msg}");
    }
    match err {
        Error::Import(e) => assert_eq!(e.node_issues().len(), 3),
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn unknown_attribute_is_rejected_by_name() {
    let mut n = node("r", "Relu", &["x"], &["y"]);
    n.attribute.push(AttributeProto {
        name: "alpha".into(),
        r#type: attr_type::FLOAT,
        f: 0.5,
        ..Default::default()
    });
    let err = import(&model(vec![n], 17)).unwrap_err().to_string();
    assert!(
        err.contains("node `r` (Relu)") && err.contains("alpha"),
        "{err}"
    );
}

#[test]
fn foreign_domains_and_bad_opsets_are_rejected() {
    let mut n = node("r", "Relu", &["x"], &["y"]);
    n.domain = "com.example".into();
    let err = import(&model(vec![n], 17)).unwrap_err().to_string();
    assert!(err.contains("domain `com.example`"), "{err}");
    assert!(import(&model(vec![node("r", "Relu", &["x"], &["y"])], 99))
        .unwrap_err()
        .to_string()
        .contains("opset 99"));
    let mut m = relu_model();
    m.opset_import.clear();
    assert!(import(&m).unwrap_err().to_string().contains("opset"));
}

#[test]
fn undefined_inputs_and_cycles_are_errors() {
    let err = import(&model(vec![node("r", "Relu", &["nope"], &["y"])], 17))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`nope`"), "{err}");
    let m = model(
        vec![
            node("a", "Relu", &["y"], &["t"]),
            node("b", "Relu", &["t"], &["y"]),
        ],
        17,
    );
    assert!(import(&m).is_err());
    let mut m = relu_model();
    m.graph.as_mut().unwrap().output[0].name = "missing".into();
    assert!(import(&m).unwrap_err().to_string().contains("missing"));
}

#[test]
fn hostile_initializers_are_rejected() {
    let mut m = relu_model();
    m.graph.as_mut().unwrap().initializer.push(TensorProto {
        name: "w".into(),
        dims: vec![1 << 31, 1 << 31],
        data_type: 1,
        ..Default::default()
    });
    assert!(import(&m).unwrap_err().to_string().contains("`w`"));
    let mut m = relu_model();
    m.graph.as_mut().unwrap().initializer.push(TensorProto {
        name: "w".into(),
        dims: vec![3],
        data_type: 1,
        raw_data: vec![0; 5].into(),
        ..Default::default()
    });
    assert!(import(&m).is_err());
}

#[test]
fn wrong_inputs_at_run_time_are_named() {
    let c = import(&relu_model())
        .unwrap()
        .compile(&CompileOptions::default())
        .unwrap();
    let good = Tensor::from_vec(vec![2, 4], vec![0.0f32; 8]).unwrap();
    let err = c.run(&[("z", &good)]).unwrap_err();
    assert!(matches!(err, Error::UnknownInput { .. }), "{err}");
    assert!(err.to_string().contains("`z`") && err.to_string().contains("x"));
    let err = c.run(&[]).unwrap_err();
    assert!(matches!(err, Error::MissingInput { .. }), "{err}");
    let ints = Tensor::from_vec(vec![2, 4], vec![0i64; 8]).unwrap();
    assert!(matches!(
        c.run(&[("x", &ints)]).unwrap_err(),
        Error::InputDType { .. }
    ));
    let bad_shape = Tensor::from_vec(vec![2, 5], vec![0.0f32; 10]).unwrap();
    let err = c.run(&[("x", &bad_shape)]).unwrap_err();
    assert!(matches!(err, Error::InputShape { .. }), "{err}");
    let rank = Tensor::from_vec(vec![8], vec![0.0f32; 8]).unwrap();
    assert!(matches!(
        c.run(&[("x", &rank)]).unwrap_err(),
        Error::InputShape { .. }
    ));
    assert!(matches!(
        c.run(&[("x", &good), ("x", &good)]).unwrap_err(),
        Error::DuplicateInput { .. }
    ));
}

#[test]
fn compile_time_shapes_are_checked() {
    let m = import(&relu_model()).unwrap();
    let mut o = CompileOptions::default();
    o.input_shapes.insert("x".into(), vec![3, 5]);
    assert!(matches!(
        m.compile(&o).unwrap_err(),
        Error::InputShape { .. }
    ));
    let mut o = CompileOptions::default();
    o.input_shapes.insert("q".into(), vec![3, 4]);
    assert!(matches!(
        m.compile(&o).unwrap_err(),
        Error::UnknownInput { .. }
    ));
    let mut o = CompileOptions::default();
    o.input_shapes.insert("x".into(), vec![3, 4]);
    let c = m.compile(&o).unwrap();
    let wrong_batch = Tensor::from_vec(vec![2, 4], vec![0.0f32; 8]).unwrap();
    assert!(matches!(
        c.run(&[("x", &wrong_batch)]).unwrap_err(),
        Error::InputShape { .. }
    ));
}

/// Thousands of corrupted variants of a valid model: import must return Ok or Err, never panic.
#[test]
fn mutated_models_never_panic() {
    let mut m = relu_model();
    m.graph.as_mut().unwrap().initializer.push(TensorProto {
        name: "c".into(),
        dims: vec![4],
        data_type: 1,
        raw_data: vec![0; 16].into(),
        ..Default::default()
    });
    let bytes = m.encode_to_vec();
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() as usize) % b.len();
            b[i] = next() as u8;
        }
        let r = std::panic::catch_unwind(|| {
            if let Ok(model) = Model::from_bytes(&b, None) {
                let _ = model.compile(&CompileOptions::default());
            }
        });
        assert!(r.is_ok(), "panicked on mutated bytes {b:?}");
    }
}
