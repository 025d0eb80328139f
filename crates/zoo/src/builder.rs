//! A small ONNX graph builder: initializers, nodes with PyTorch-exporter-style names,
//! typed graph inputs/outputs with symbolic dims, and seeded weight initialization.

use std::collections::{HashMap, HashSet};

use millrace_onnx::proto::{
    attr_type, tensor_shape_proto::dimension, tensor_shape_proto::Dimension, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// The opset every zoo model is built at.
pub const OPSET: i64 = 17;
/// The IR version every zoo model declares.
pub const IR_VERSION: i64 = 8;
/// `ModelProto.producer_name` of zoo models.
pub const PRODUCER: &str = "millrace-zoo";

/// ONNX element type codes used here.
pub const FLOAT: i32 = 1;
/// ONNX `INT64`.
pub const INT64: i32 = 7;

/// One dimension of a declared graph input or output.
#[derive(Clone, Debug)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A symbolic size, e.g. `"batch"`.
    Sym(&'static str),
}

/// `int` attribute.
pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INT,
        i: v,
        ..Default::default()
    }
}

/// `ints` attribute.
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INTS,
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// `float` attribute.
pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::FLOAT,
        f: v,
        ..Default::default()
    }
}

/// `string` attribute.
pub fn attr_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::STRING,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// `tensor` attribute.
pub fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::TENSOR,
        t: Some(t),
        ..Default::default()
    }
}

/// A float tensor proto with raw little-endian data.
pub fn f32_proto(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    assert_eq!(
        dims.iter().product::<usize>(),
        data.len(),
        "tensor {name}: shape/data mismatch"
    );
    let mut raw = Vec::with_capacity(data.len() * 4);
    for &x in data {
        raw.extend_from_slice(&x.to_le_bytes());
    }
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: FLOAT,
        raw_data: raw.into(),
        ..Default::default()
    }
}

/// An int64 tensor proto with raw little-endian data.
pub fn i64_proto(name: &str, dims: &[usize], data: &[i64]) -> TensorProto {
    assert_eq!(
        dims.iter().product::<usize>(),
        data.len(),
        "tensor {name}: shape/data mismatch"
    );
    let mut raw = Vec::with_capacity(data.len() * 8);
    for &x in data {
        raw.extend_from_slice(&x.to_le_bytes());
    }
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: INT64,
        raw_data: raw.into(),
        ..Default::default()
    }
}

/// SplitMix64: a small, fast generator for the bulk of the weights (seeded per chunk).
struct SplitMix64(u64);

impl RngCore for SplitMix64 {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for c in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// Elements per independently seeded chunk of a large random tensor.
const CHUNK: usize = 1 << 18;

/// Fills `raw` (little-endian f32s) with N(0, std^2) samples.
fn fill_normal_bytes(raw: &mut [u8], seed: u64, std: f32) {
    let fill = |(i, chunk): (usize, &mut [u8])| {
        let mut g = SplitMix64(seed ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        g.next_u64();
        for c in chunk.chunks_exact_mut(4) {
            let z: f32 = StandardNormal.sample(&mut g);
            c.copy_from_slice(&(std * z).to_le_bytes());
        }
    };
    let chunks: Vec<(usize, &mut [u8])> = raw.chunks_mut(CHUNK * 4).enumerate().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chunks.len());
    if threads <= 1 {
        chunks.into_iter().for_each(fill);
        return;
    }
    let per = chunks.len().div_ceil(threads);
    let mut chunks = chunks;
    std::thread::scope(|s| {
        while !chunks.is_empty() {
            let rest = chunks.split_off(per.min(chunks.len()));
            let mine = std::mem::replace(&mut chunks, rest);
            s.spawn(move || mine.into_iter().for_each(fill));
        }
    });
}

/// Builds one ONNX graph.
pub struct Builder {
    graph: GraphProto,
    rng: StdRng,
    node_names: HashSet<String>,
    values: HashSet<String>,
    consts: HashMap<(i32, Vec<usize>, Vec<u64>), String>,
    n_consts: usize,
}

impl Builder {
    /// A new, empty graph whose weights are drawn from a generator seeded with `seed`.
    pub fn new(graph_name: &str, seed: u64) -> Builder {
        Builder {
            graph: GraphProto {
                name: graph_name.into(),
                ..Default::default()
            },
            rng: StdRng::seed_from_u64(seed),
            node_names: HashSet::new(),
            values: HashSet::new(),
            consts: HashMap::new(),
            n_consts: 0,
        }
    }

    fn claim_value(&mut self, name: &str) {
        assert!(
            self.values.insert(name.to_string()),
            "value name {name:?} defined twice"
        );
    }

    fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|d| Dimension {
                value: Some(match d {
                    Dim::Fixed(n) => dimension::Value::DimValue(*n),
                    Dim::Sym(s) => dimension::Value::DimParam((*s).to_string()),
                }),
                denotation: String::new(),
            })
            .collect();
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type,
                    shape: Some(TensorShapeProto { dim }),
                })),
                denotation: String::new(),
            }),
            doc_string: String::new(),
        }
    }

    /// Declares a graph input; returns its name.
    pub fn input(&mut self, name: &str, elem_type: i32, dims: &[Dim]) -> String {
        self.claim_value(name);
        self.graph
            .input
            .push(Self::value_info(name, elem_type, dims));
        name.to_string()
    }

    /// Declares a graph output (the value must be produced by a node).
    pub fn output(&mut self, name: &str, elem_type: i32, dims: &[Dim]) {
        assert!(self.values.contains(name), "output {name:?} is not defined");
        self.graph
            .output
            .push(Self::value_info(name, elem_type, dims));
    }

    /// Adds an initializer; returns its name.
    pub fn initializer(&mut self, t: TensorProto) -> String {
        let name = t.name.clone();
        self.claim_value(&name);
        self.graph.initializer.push(t);
        name
    }

    /// Adds a float initializer.
    pub fn init_f32(&mut self, name: &str, dims: &[usize], data: Vec<f32>) -> String {
        self.initializer(f32_proto(name, dims, &data))
    }

    /// Adds an int64 initializer.
    pub fn init_i64(&mut self, name: &str, dims: &[usize], data: Vec<i64>) -> String {
        self.initializer(i64_proto(name, dims, &data))
    }

    fn constant(
        &mut self,
        elem: i32,
        dims: &[usize],
        bits: Vec<u64>,
        make: impl FnOnce(&str) -> TensorProto,
    ) -> String {
        let key = (elem, dims.to_vec(), bits);
        if let Some(n) = self.consts.get(&key) {
            return n.clone();
        }
        let name = format!("onnx::Constant_{}", self.n_consts);
        self.n_consts += 1;
        self.initializer(make(&name));
        self.consts.insert(key, name.clone());
        name
    }

    /// A shared float constant (an initializer that is not a parameter).
    pub fn const_f32(&mut self, dims: &[usize], data: &[f32]) -> String {
        let bits = data.iter().map(|x| x.to_bits() as u64).collect();
        self.constant(FLOAT, dims, bits, |n| f32_proto(n, dims, data))
    }

    /// A shared float scalar constant.
    pub fn scalar_f32(&mut self, v: f32) -> String {
        self.const_f32(&[], &[v])
    }

    /// A shared int64 constant (an initializer that is not a parameter).
    pub fn const_i64(&mut self, dims: &[usize], data: &[i64]) -> String {
        let bits = data.iter().map(|&x| x as u64).collect();
        self.constant(INT64, dims, bits, |n| i64_proto(n, dims, data))
    }

    /// Adds a node named like PyTorch's exporter does (`{scope}/{op}`, with `_1`, `_2`, ...
    /// appended when taken) with one output `{node}_output_0`; returns the output name.
    pub fn node(
        &mut self,
        op: &str,
        scope: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        self.node_named_output(op, scope, inputs, attrs, None)
    }

    /// Like [`Builder::node`], but the output gets the given name when `out` is `Some`.
    pub fn node_named_output(
        &mut self,
        op: &str,
        scope: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        out: Option<&str>,
    ) -> String {
        for i in inputs {
            assert!(
                i.is_empty() || self.values.contains(*i),
                "node {scope}/{op}: input {i:?} undefined"
            );
        }
        let base = format!("{scope}/{op}");
        let mut name = base.clone();
        let mut k = 1;
        while self.node_names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.node_names.insert(name.clone());
        let output = out
            .map(str::to_string)
            .unwrap_or_else(|| format!("{name}_output_0"));
        self.claim_value(&output);
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            name,
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        output
    }

    /// Draws `n` values from N(mean, std^2) (small tensors).
    pub fn normal(&mut self, n: usize, mean: f32, std: f32) -> Vec<f32> {
        let rng = &mut self.rng;
        (0..n)
            .map(|_| {
                let z: f32 = StandardNormal.sample(rng);
                mean + std * z
            })
            .collect()
    }

    /// Adds a float initializer drawn from N(0, std^2). The data is generated straight into
    /// the tensor's raw bytes in fixed-size chunks, each from its own fast generator seeded
    /// from the model's `StdRng`, on all cores: deterministic whatever the core count.
    pub fn init_normal(&mut self, name: &str, dims: &[usize], std: f32) -> String {
        let n: usize = dims.iter().product();
        let seed = self.rng.next_u64();
        let mut raw = vec![0u8; n * 4];
        fill_normal_bytes(&mut raw, seed, std);
        self.initializer(TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            raw_data: raw.into(),
            ..Default::default()
        })
    }

    /// Draws `n` values from U[lo, hi).
    pub fn uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        let rng = &mut self.rng;
        (0..n).map(|_| rng.gen_range(lo..hi)).collect()
    }

    /// Finishes the model (opset 17, IR version 8).
    pub fn finish(self, doc: &str) -> ModelProto {
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: PRODUCER.into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(self.graph),
            ..Default::default()
        }
    }
}

/// PyTorch-exporter scope of a module path: `layer1.0.conv1` → `/layer1/layer1.0/conv1`
/// (a numeric component joins the previous segment, as the exporter names Sequential items).
pub fn torch_scope(path: &str) -> String {
    if path.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let mut seg = String::new();
    for c in path.split('.') {
        if c.chars().all(|ch| ch.is_ascii_digit()) && !seg.is_empty() {
            seg = format!("{seg}.{c}");
        } else {
            seg = c.to_string();
        }
        out.push('/');
        out.push_str(&seg);
    }
    out
}

/// Vision-model layers shared by the CNNs: torch-named Conv / BatchNorm / Linear.
impl Builder {
    /// `nn.Conv2d` as a `Conv` node, weight Kaiming-normal (fan_out, ReLU gain) as torchvision
    /// initializes it (fan_out counted per group), bias (when present) zero. `module` is the torch module path.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        module: &str,
        x: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        groups: usize,
        bias: bool,
    ) -> String {
        // fan_out per group: for a depthwise conv, torch's `cout * k * k` would shrink the
        // activations ~C-fold per layer, as nothing (no trained BN statistics) rescales them.
        let fan_out = (cout / groups) * k * k;
        let std = (2.0 / fan_out as f32).sqrt();
        let wn = self.init_normal(
            &format!("{module}.weight"),
            &[cout, cin / groups, k, k],
            std,
        );
        let mut inputs = vec![x.to_string(), wn];
        if bias {
            inputs.push(self.init_f32(&format!("{module}.bias"), &[cout], vec![0.0; cout]));
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let (k, s, p) = (k as i64, stride as i64, pad as i64);
        self.node(
            "Conv",
            &torch_scope(module),
            &inputs,
            vec![
                attr_ints("dilations", &[1, 1]),
                attr_int("group", groups as i64),
                attr_ints("kernel_shape", &[k, k]),
                attr_ints("pads", &[p, p, p, p]),
                attr_ints("strides", &[s, s]),
            ],
        )
    }

    /// `nn.BatchNorm2d` (eval) as `BatchNormalization`: weight `gamma`, bias 0, running mean
    /// N(0, 0.1^2), running variance U[0.5, 1.5].
    pub fn batch_norm(&mut self, module: &str, x: &str, c: usize, eps: f32, gamma: f32) -> String {
        let g = self.init_f32(&format!("{module}.weight"), &[c], vec![gamma; c]);
        let b = self.init_f32(&format!("{module}.bias"), &[c], vec![0.0; c]);
        let mean = self.normal(c, 0.0, 0.1);
        let m = self.init_f32(&format!("{module}.running_mean"), &[c], mean);
        let var = self.uniform(c, 0.5, 1.5);
        let v = self.init_f32(&format!("{module}.running_var"), &[c], var);
        self.node(
            "BatchNormalization",
            &torch_scope(module),
            &[x, &g, &b, &m, &v],
            vec![attr_float("epsilon", eps), attr_float("momentum", 0.9)],
        )
    }

    /// `nn.Linear` as `Gemm` (transB = 1), weight N(0, 0.01^2), bias 0.
    pub fn linear_gemm(
        &mut self,
        module: &str,
        x: &str,
        fin: usize,
        fout: usize,
        out: Option<&str>,
    ) -> String {
        let wn = self.init_normal(&format!("{module}.weight"), &[fout, fin], 0.01);
        let bn = self.init_f32(&format!("{module}.bias"), &[fout], vec![0.0; fout]);
        self.node_named_output(
            "Gemm",
            &torch_scope(module),
            &[x, &wn, &bn],
            vec![
                attr_float("alpha", 1.0),
                attr_float("beta", 1.0),
                attr_int("transB", 1),
            ],
            out,
        )
    }

    /// `Relu` in the given scope.
    pub fn relu(&mut self, scope: &str, x: &str) -> String {
        self.node("Relu", scope, &[x], vec![])
    }

    /// `MaxPool` (square kernel).
    pub fn max_pool(&mut self, scope: &str, x: &str, k: i64, s: i64, p: i64, ceil: bool) -> String {
        self.node(
            "MaxPool",
            scope,
            &[x],
            vec![
                attr_int("ceil_mode", ceil as i64),
                attr_ints("kernel_shape", &[k, k]),
                attr_ints("pads", &[p, p, p, p]),
                attr_ints("strides", &[s, s]),
            ],
        )
    }

    /// `GlobalAveragePool` + `Flatten(axis 1)` + the classifier `Gemm` writing `output`:
    /// the common head of the vision models.
    pub fn classifier_head(
        &mut self,
        x: &str,
        fc_module: &str,
        fin: usize,
        classes: usize,
    ) -> String {
        let p = self.node("GlobalAveragePool", "", &[x], vec![]);
        let f = self.node("Flatten", "", &[&p], vec![attr_int("axis", 1)]);
        self.linear_gemm(fc_module, &f, fin, classes, Some("output"))
    }

    /// Declares the vision input `input` f32 [batch, 3, 224, 224].
    pub fn vision_input(&mut self) -> String {
        self.input(
            "input",
            FLOAT,
            &[
                Dim::Sym("batch"),
                Dim::Fixed(3),
                Dim::Fixed(224),
                Dim::Fixed(224),
            ],
        )
    }

    /// Declares the vision output `output` f32 [batch, classes].
    pub fn vision_output(&mut self, classes: i64) {
        self.output("output", FLOAT, &[Dim::Sym("batch"), Dim::Fixed(classes)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_the_exporter() {
        assert_eq!(torch_scope("layer1.0.conv1"), "/layer1/layer1.0/conv1");
        assert_eq!(
            torch_scope("features.0.0"),
            "/features/features.0/features.0.0"
        );
        assert_eq!(torch_scope("fc"), "/fc");
        assert_eq!(torch_scope(""), "");
    }

    #[test]
    fn node_names_are_deduplicated() {
        let mut b = Builder::new("g", 0);
        let x = b.input("x", FLOAT, &[Dim::Fixed(1)]);
        let a = b.relu("/s", &x);
        let c = b.relu("/s", &a);
        assert_eq!(a, "/s/Relu_output_0");
        assert_eq!(c, "/s/Relu_1_output_0");
        let k1 = b.scalar_f32(1.0);
        let k2 = b.scalar_f32(1.0);
        assert_eq!(k1, k2);
    }
}

#[cfg(test)]
mod sampler_tests {
    use super::*;

    #[test]
    fn bulk_normal_has_the_asked_std() {
        let n = 3 * CHUNK + 1234;
        let mut raw = vec![0u8; n * 4];
        fill_normal_bytes(&mut raw, 7, 0.5);
        let v: Vec<f64> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect();
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64).sqrt();
        assert!(mean.abs() < 0.005, "mean {mean}");
        assert!((std - 0.5).abs() < 0.005, "std {std}");
        // Chunks are independent streams.
        assert_ne!(&raw[..64], &raw[CHUNK * 4..CHUNK * 4 + 64]);
        let mut again = vec![0u8; n * 4];
        fill_normal_bytes(&mut again, 7, 0.5);
        assert_eq!(raw, again);
    }
}
