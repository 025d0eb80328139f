//! Every built-in model builds, round-trips through protobuf, has torchvision's / HF's
//! parameter count, a well-formed graph, and shapes that propagate to the declared output.

use std::collections::{HashMap, HashSet};

use millrace_onnx::proto::{
    tensor_shape_proto::dimension, type_proto, AttributeProto, ModelProto, NodeProto,
};
use millrace_zoo::{
    build, build_bytes, default_input_shapes, describe, names, parameter_count, ZooError,
};
use prost::Message;

fn check_model(name: &str, params: usize) -> ModelProto {
    let t = std::time::Instant::now();
    let m = build(name).unwrap();
    eprintln!("{name}: built in {:?}", t.elapsed());
    assert_eq!(m.ir_version, 8);
    assert_eq!(m.producer_name, "millrace-zoo");
    assert_eq!(m.opset_import.len(), 1);
    assert_eq!(m.opset_import[0].version, 17);
    assert_eq!(parameter_count(&m), params, "{name} parameter count");
    assert!(describe(name).is_some());

    let g = m.graph.as_ref().unwrap();
    // Unique node names; unique values; every input defined before use.
    let mut node_names = HashSet::new();
    let mut defined: HashSet<&str> = HashSet::new();
    for i in &g.input {
        assert!(defined.insert(&i.name), "duplicate value {}", i.name);
    }
    for t in &g.initializer {
        assert!(defined.insert(&t.name), "duplicate value {}", t.name);
        assert_eq!(
            t.raw_data.len(),
            t.dims.iter().product::<i64>() as usize * if t.data_type == 7 { 8 } else { 4 }
        );
    }
    for n in &g.node {
        assert!(!n.name.is_empty());
        assert!(
            node_names.insert(n.name.clone()),
            "duplicate node name {}",
            n.name
        );
        for a in &n.attribute {
            assert_ne!(a.r#type, 0, "{}: attribute {} has no type", n.name, a.name);
        }
        for i in &n.input {
            assert!(
                defined.contains(i.as_str()),
                "{}: input {i} undefined",
                n.name
            );
        }
        for o in &n.output {
            assert!(defined.insert(o), "duplicate value {o}");
        }
    }
    for o in &g.output {
        assert!(defined.contains(o.name.as_str()));
    }

    // Declared inputs/outputs match the defaults.
    let shapes = default_input_shapes(name).unwrap();
    assert_eq!(shapes.len(), g.input.len());
    for ((n, s), i) in shapes.iter().zip(&g.input) {
        assert_eq!(*n, i.name);
        assert_eq!(
            s.len(),
            dims_of(i.r#type.as_ref().unwrap(), &HashMap::new()).len()
        );
    }

    // Shapes propagate to the declared output, for two sizes of the symbolic dims.
    for (batch, seq) in [(1, 128), (2, 7)] {
        let syms = HashMap::from([("batch".to_string(), batch), ("sequence".to_string(), seq)]);
        let inputs: Vec<(String, Vec<i64>)> = g
            .input
            .iter()
            .map(|i| (i.name.clone(), dims_of(i.r#type.as_ref().unwrap(), &syms)))
            .collect();
        let out = infer(&m, &inputs);
        for o in &g.output {
            assert_eq!(
                out[&o.name],
                dims_of(o.r#type.as_ref().unwrap(), &syms),
                "{name}: output {}",
                o.name
            );
        }
    }

    // Protobuf round trip.
    let t = std::time::Instant::now();
    let bytes = m.encode_to_vec();
    eprintln!("{name}: {} bytes encoded in {:?}", bytes.len(), t.elapsed());
    let back = ModelProto::decode(bytes.as_slice()).unwrap();
    let gb = back.graph.as_ref().unwrap();
    assert_eq!(gb.node.len(), g.node.len());
    assert_eq!(gb.initializer.len(), g.initializer.len());
    assert_eq!(parameter_count(&back), params);
    drop(back);
    m
}

fn dims_of(t: &millrace_onnx::proto::TypeProto, syms: &HashMap<String, i64>) -> Vec<i64> {
    let Some(type_proto::Value::TensorType(tt)) = &t.value else {
        panic!("not a tensor type")
    };
    tt.shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| match d.value.as_ref().unwrap() {
            dimension::Value::DimValue(v) => *v,
            dimension::Value::DimParam(p) => *syms.get(p).unwrap_or(&-1),
        })
        .collect()
}

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

fn ints(n: &NodeProto, name: &str) -> Vec<i64> {
    attr(n, name).map(|a| a.ints.clone()).unwrap_or_default()
}

fn broadcast(a: &[i64], b: &[i64]) -> Vec<i64> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let x = if i + a.len() >= r {
                a[i + a.len() - r]
            } else {
                1
            };
            let y = if i + b.len() >= r {
                b[i + b.len() - r]
            } else {
                1
            };
            assert!(x == y || x == 1 || y == 1, "broadcast {a:?} {b:?}");
            x.max(y)
        })
        .collect()
}

/// A small shape inference over the ops the zoo uses (int64 values tracked for shape math).
fn infer(m: &ModelProto, inputs: &[(String, Vec<i64>)]) -> HashMap<String, Vec<i64>> {
    let g = m.graph.as_ref().unwrap();
    let mut sh: HashMap<String, Vec<i64>> = inputs.iter().cloned().collect();
    let mut val: HashMap<String, Vec<i64>> = HashMap::new();
    for t in &g.initializer {
        sh.insert(t.name.clone(), t.dims.clone());
        if t.data_type == 7 {
            val.insert(
                t.name.clone(),
                t.raw_data
                    .chunks(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            );
        }
    }
    for n in &g.node {
        let s = |i: usize| sh[&n.input[i]].clone();
        let o: Vec<i64> = match n.op_type.as_str() {
            "Conv" => {
                let (x, w) = (s(0), s(1));
                let (k, p, st) = (ints(n, "kernel_shape"), ints(n, "pads"), ints(n, "strides"));
                let grp = attr(n, "group").unwrap().i;
                assert_eq!(x[1], w[1] * grp, "{}: channels", n.name);
                assert_eq!(&w[2..], &k[..]);
                if n.input.len() > 2 {
                    assert_eq!(s(2), vec![w[0]]);
                }
                let sp = |i: usize| (x[2 + i] + p[i] + p[i + 2] - k[i]) / st[i] + 1;
                vec![x[0], w[0], sp(0), sp(1)]
            }
            "MaxPool" => {
                let x = s(0);
                let (k, p, st) = (ints(n, "kernel_shape"), ints(n, "pads"), ints(n, "strides"));
                let ceil = attr(n, "ceil_mode").unwrap().i == 1;
                let sp = |i: usize| {
                    let num = x[2 + i] + p[i] + p[i + 2] - k[i];
                    let mut o = if ceil {
                        (num + st[i] - 1) / st[i] + 1
                    } else {
                        num / st[i] + 1
                    };
                    // PyTorch: the last window must start inside the input or left padding.
                    if ceil && (o - 1) * st[i] >= x[2 + i] + p[i] {
                        o -= 1;
                    }
                    o
                };
                vec![x[0], x[1], sp(0), sp(1)]
            }
            "BatchNormalization" => {
                for i in 1..5 {
                    assert_eq!(s(i), vec![s(0)[1]], "{}", n.name);
                }
                s(0)
            }
            "LayerNormalization" => {
                let x = s(0);
                assert_eq!(s(1), vec![*x.last().unwrap()]);
                assert_eq!(s(2), vec![*x.last().unwrap()]);
                x
            }
            "Relu" | "Erf" | "Softmax" | "Cast" => s(0),
            "Clip" => {
                assert!(s(1).is_empty() && s(2).is_empty());
                s(0)
            }
            "Add" | "Sub" | "Mul" | "Div" => broadcast(&s(0), &s(1)),
            "Concat" => {
                let axis = attr(n, "axis").unwrap().i as usize;
                let mut o = s(0);
                o[axis] = n.input.iter().map(|i| sh[i][axis]).sum();
                o
            }
            "GlobalAveragePool" => {
                let x = s(0);
                vec![x[0], x[1], 1, 1]
            }
            "Flatten" => {
                let x = s(0);
                vec![x[0], x[1..].iter().product()]
            }
            "Gemm" => {
                let (x, w, b) = (s(0), s(1), s(2));
                assert_eq!(attr(n, "transB").unwrap().i, 1);
                assert_eq!(x[1], w[1], "{}", n.name);
                assert_eq!(b, vec![w[0]]);
                vec![x[0], w[0]]
            }
            "MatMul" => {
                let (a, b) = (s(0), s(1));
                assert_eq!(a[a.len() - 1], b[b.len() - 2], "{}: {a:?} x {b:?}", n.name);
                let mut o = broadcast(&a[..a.len() - 2], &b[..b.len() - 2]);
                o.push(a[a.len() - 2]);
                o.push(b[b.len() - 1]);
                o
            }
            "Gather" => {
                assert_eq!(attr(n, "axis").unwrap().i, 0);
                let (d, i) = (s(0), s(1));
                if let (Some(dv), Some(iv)) = (val.get(&n.input[0]), val.get(&n.input[1])) {
                    let v: Vec<i64> = iv.iter().map(|&k| dv[k as usize]).collect();
                    val.insert(n.output[0].clone(), v);
                }
                let mut o = i;
                o.extend_from_slice(&d[1..]);
                o
            }
            "Shape" => {
                val.insert(n.output[0].clone(), s(0));
                vec![s(0).len() as i64]
            }
            "Unsqueeze" => {
                let axes = val[&n.input[1]].clone();
                if let Some(v) = val.get(&n.input[0]).cloned() {
                    val.insert(n.output[0].clone(), v);
                }
                let mut o = s(0);
                for a in axes {
                    o.insert(a as usize, 1);
                }
                o
            }
            "Slice" => {
                let (st, en, ax) = (&val[&n.input[1]], &val[&n.input[2]], &val[&n.input[3]]);
                let mut o = s(0);
                for k in 0..ax.len() {
                    let a = ax[k] as usize;
                    o[a] = en[k].min(o[a]) - st[k];
                }
                o
            }
            "Reshape" => {
                let x = s(0);
                let t = &val[&n.input[1]];
                let mut o: Vec<i64> = t
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| if d == 0 { x[i] } else { d })
                    .collect();
                assert!(!o.contains(&-1));
                assert_eq!(
                    o.iter().product::<i64>(),
                    x.iter().product::<i64>(),
                    "{}",
                    n.name
                );
                o.shrink_to_fit();
                o
            }
            "Transpose" => {
                let x = s(0);
                ints(n, "perm").iter().map(|&p| x[p as usize]).collect()
            }
            op => panic!("shape test: unhandled op {op}"),
        };
        sh.insert(n.output[0].clone(), o);
    }
    sh
}

#[test]
fn resnet50() {
    let m = check_model("resnet50", 25_557_032);
    let g = m.graph.unwrap();
    assert_eq!(g.node.iter().filter(|n| n.op_type == "Conv").count(), 53);
    assert!(g
        .initializer
        .iter()
        .any(|t| t.name == "layer1.0.conv1.weight"));
    assert!(g
        .initializer
        .iter()
        .any(|t| t.name == "layer4.2.bn3.running_var"));
}

#[test]
fn mobilenet_v2() {
    let m = check_model("mobilenet_v2", 3_504_872);
    let g = m.graph.unwrap();
    assert_eq!(g.node.iter().filter(|n| n.op_type == "Conv").count(), 52);
    assert_eq!(g.node.iter().filter(|n| n.op_type == "Add").count(), 10);
    assert_eq!(g.node.iter().filter(|n| n.op_type == "Clip").count(), 35);
}

#[test]
fn googlenet() {
    let m = check_model("googlenet", 6_624_904);
    let g = m.graph.unwrap();
    assert_eq!(g.node.iter().filter(|n| n.op_type == "Conv").count(), 57);
    assert_eq!(g.node.iter().filter(|n| n.op_type == "Concat").count(), 9);
}

#[test]
fn vgg16() {
    let m = check_model("vgg16", 138_357_544);
    let g = m.graph.unwrap();
    assert_eq!(g.node.iter().filter(|n| n.op_type == "Conv").count(), 13);
    assert_eq!(g.node.iter().filter(|n| n.op_type == "Gemm").count(), 3);
}

#[test]
fn bert() {
    let m = check_model("bert", 108_891_648);
    let g = m.graph.unwrap();
    assert_eq!(
        g.node
            .iter()
            .filter(|n| n.op_type == "LayerNormalization")
            .count(),
        25
    );
    assert_eq!(g.node.iter().filter(|n| n.op_type == "Softmax").count(), 12);
    assert_eq!(g.node.iter().filter(|n| n.op_type == "Erf").count(), 12);
    assert_eq!(
        g.node.iter().filter(|n| n.op_type == "MatMul").count(),
        12 * 8
    );
}

#[test]
fn builds_are_deterministic() {
    assert_eq!(
        build_bytes("mobilenet_v2").unwrap(),
        build_bytes("mobilenet_v2").unwrap()
    );
}

#[test]
fn unknown_names_list_the_known_ones() {
    let e = build("resnet51").unwrap_err();
    let ZooError::Unknown { name, known } = &e;
    assert_eq!(name, "resnet51");
    assert_eq!(
        known,
        &names().iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    assert!(e.to_string().contains("mobilenet_v2"));
    assert!(build_bytes("nope").is_err());
    assert!(describe("nope").is_none());
    assert!(default_input_shapes("nope").is_none());
    assert_eq!(
        names(),
        ["resnet50", "mobilenet_v2", "googlenet", "vgg16", "bert"]
    );
}

/// `load_model` decodes the file from a shared buffer (each initializer's raw data a slice
/// of it, not a copy): the message equals one decoded from a plain slice, and the file
/// imports to the same constants as `import_model` on its bytes.
#[test]
fn file_load_decodes_like_a_slice() {
    let bytes = build_bytes("mobilenet_v2").unwrap();
    let from_slice = ModelProto::decode(&bytes[..]).unwrap();
    let shared = ModelProto::decode(prost::bytes::Bytes::from(bytes.clone())).unwrap();
    assert!(from_slice == shared, "the two decodings differ");
    let path = std::env::temp_dir().join(format!("millrace-zoo-load-{}.onnx", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let loaded = millrace_onnx::load_model(&path);
    let _ = std::fs::remove_file(&path);
    let loaded = loaded.unwrap();
    let imported = millrace_onnx::import_model(&bytes, None).unwrap();
    let g = from_slice.graph.as_ref().unwrap();
    assert!(!g.initializer.is_empty());
    for t in &g.initializer {
        let get = |m: &millrace_onnx::OnnxModel| {
            let id = m.graph.find_value(&t.name).unwrap();
            m.graph.constant(id).cloned().unwrap()
        };
        assert_eq!(get(&loaded), get(&imported), "initializer {}", t.name);
    }
}
