//! ONNX `ModelProto` -> IR [`Graph`].
use crate::error::{ImportError, NodeIssue};
use crate::proto::{
    self, attr_type, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, TypeProto,
};
use crate::tensor::{sparse_to_dense, tensor_from_proto};
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{verify, Attr, Attributes, Graph, ValueId, ValueKind, ValueType};
use millrace_ops::Registry;
use prost::Message;
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::Path;

/// Newest `ai.onnx` opset millrace imports.
pub const MAX_OPSET: i64 = 27;

/// An imported model: its graph and what the file said about itself.
#[derive(Clone, Debug)]
pub struct OnnxModel {
    pub graph: Graph,
    pub opset: i64,
    pub ir_version: i64,
    pub producer: String,
}

/// Reads and imports a model file; external data is looked up beside it.
pub fn load_model(path: &Path) -> Result<OnnxModel, ImportError> {
    let io = |e| ImportError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let bytes = file_bytes(path).map_err(io)?;
    // Decoding from `Bytes` leaves each initializer's raw data in the file's buffer (a
    // slice of it) instead of copying it out first: one pass and one allocation less
    // over all the weights.
    let model = ModelProto::decode(bytes).map_err(|e| ImportError::Decode(e.to_string()))?;
    import_proto(model, path.parent())
}

/// The file's contents: a regular file mapped into memory (read-only, private), anything
/// else (a pipe, a file the OS will not map) read. Mapping skips the copy of the whole
/// file into a fresh buffer and the zeroing of that buffer's pages: measured with
/// `perf record` on GoogLeNet (27 MB), the copy and the page faults took over a fifth of
/// load + compile.
fn file_bytes(path: &Path) -> std::io::Result<prost::bytes::Bytes> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_file() && meta.len() > 0 {
        // SAFETY: the map is read-only and lives as long as the `Bytes` that owns it
        // (the decoded model's initializers are slices of it, copied out during import).
        // Like every memory-mapped loader, it assumes the file is not truncated or
        // rewritten while the model loads; a concurrent truncation would fault on
        // access instead of returning an error.
        if let Ok(map) = unsafe { memmap2::Mmap::map(&file) } {
            return Ok(prost::bytes::Bytes::from_owner(map));
        }
    }
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut buf)?;
    Ok(prost::bytes::Bytes::from(buf))
}

/// Imports a serialized model. `base_dir` is where external data files live, if any.
pub fn import_model(bytes: &[u8], base_dir: Option<&Path>) -> Result<OnnxModel, ImportError> {
    let model = ModelProto::decode(bytes).map_err(|e| ImportError::Decode(e.to_string()))?;
    import_proto(model, base_dir)
}

/// Imports a decoded model.
fn import_proto(model: ModelProto, base_dir: Option<&Path>) -> Result<OnnxModel, ImportError> {
    let graph_proto = model.graph.as_ref().ok_or(ImportError::NoGraph)?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| {
            ImportError::Model("the model declares no ai.onnx opset (opset_import)".into())
        })?;
    if !(1..=MAX_OPSET).contains(&opset) {
        return Err(ImportError::Model(format!(
            "ai.onnx opset {opset} is not supported (millrace imports opsets 1 to {MAX_OPSET})"
        )));
    }
    let mut ctx = Ctx {
        opset,
        base_dir,
        anon: 0,
        functions: &model.functions,
    };
    let mut graph = ctx.import_graph(graph_proto, &[])?;
    verify(&graph)?;
    graph.infer_types().map_err(|e| ImportError::Nodes {
        issues: vec![NodeIssue {
            node: e.node.clone(),
            op: op_of(&graph, &e.node),
            msg: format!("shape inference failed: {}", e.source),
        }],
    })?;
    Ok(OnnxModel {
        graph,
        opset,
        ir_version: model.ir_version,
        producer: model.producer_name.clone(),
    })
}

fn op_of(g: &Graph, node: &str) -> String {
    g.nodes
        .iter()
        .find(|n| n.name == node)
        .map(|n| n.op.name().to_string())
        .unwrap_or_default()
}

struct Ctx<'a> {
    opset: i64,
    base_dir: Option<&'a Path>,
    anon: usize,
    functions: &'a [proto::FunctionProto],
}

/// The kind of a declared type (tensor, sequence, optional) and its element tensor type.
fn kind_and_type(tp: &TypeProto, anon: &mut usize) -> Option<(ValueKind, ValueType)> {
    match tp.value.as_ref()? {
        type_proto::Value::TensorType(_) => Some((ValueKind::Tensor, value_type(tp, anon)?)),
        type_proto::Value::SequenceType(s) => {
            let (inner, ty) = kind_and_type(s.elem_type.as_ref()?, anon)?;
            (inner == ValueKind::Tensor).then_some({
                (
                    ValueKind::Sequence,
                    ValueType {
                        dtype: ty.dtype,
                        shape: None,
                    },
                )
            })
        }
        type_proto::Value::OptionalType(o) => {
            let (inner, ty) = kind_and_type(o.elem_type.as_ref()?, anon)?;
            Some((
                ValueKind::Optional(Box::new(inner)),
                ValueType {
                    dtype: ty.dtype,
                    shape: None,
                },
            ))
        }
        _ => None,
    }
}

/// The IR type of a declared ONNX type; `None` for non-tensor types.
fn value_type(tp: &TypeProto, anon: &mut usize) -> Option<ValueType> {
    let type_proto::Value::TensorType(t) = tp.value.as_ref()? else {
        return None;
    };
    let dtype = DType::from_onnx_code(t.elem_type);
    let shape = t.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(proto::tensor_shape_proto::dimension::Value::DimValue(v)) if *v >= 0 => {
                    Dim::Known(*v as usize)
                }
                Some(proto::tensor_shape_proto::dimension::Value::DimParam(p)) if !p.is_empty() => {
                    Dim::Sym(p.clone())
                }
                _ => {
                    *anon += 1;
                    Dim::Sym(format!("unk__{anon}"))
                }
            })
            .collect()
    });
    Some(ValueType { dtype, shape })
}

impl Ctx<'_> {
    /// Imports a graph. `captures` are the enclosing scope's values a subgraph uses (its
    /// free variables), with their types; they become [`Graph::captures`].
    fn import_graph(
        &mut self,
        g: &GraphProto,
        captures: &[(String, ValueType)],
    ) -> Result<Graph, ImportError> {
        let mut graph = Graph::new(if g.name.is_empty() {
            "main"
        } else {
            g.name.as_str()
        });
        let mut names: HashMap<String, ValueId> = HashMap::new();
        let local = defined_names(g);
        for (name, ty) in captures {
            // A name the subgraph defines itself shadows the outer one.
            let vname = if local.contains(name.as_str()) {
                format!("outer::{name}")
            } else {
                name.clone()
            };
            let id = graph.add_value(vname.clone(), ty.clone());
            graph.captures.push(id);
            names.insert(vname, id);
        }

        // Decoded on the current rayon pool (the caller's, under `ThreadPool::install`):
        // most of a load is these copies and the page faults of their fresh memory, and
        // both scale with threads. Errors still come back in file order.
        let base_dir = self.base_dir;
        let decoded: Vec<Result<Tensor, ImportError>> = g
            .initializer
            .par_iter()
            .map(|t| tensor_from_proto(t, base_dir))
            .collect();
        for (t, tensor) in g.initializer.iter().zip(decoded) {
            let tensor = tensor?;
            if names.contains_key(&t.name) || t.name.is_empty() {
                return Err(ImportError::Tensor {
                    name: t.name.clone(),
                    msg: "initializer name is empty or repeated".into(),
                });
            }
            names.insert(t.name.clone(), graph.add_constant(t.name.clone(), tensor));
        }
        for s in &g.sparse_initializer {
            let name = s
                .values
                .as_ref()
                .map(|v| v.name.clone())
                .unwrap_or_default();
            let tensor = sparse_to_dense(s, self.base_dir)?;
            if names.contains_key(&name) || name.is_empty() {
                return Err(ImportError::Tensor {
                    name,
                    msg: "sparse initializer name is empty or repeated".into(),
                });
            }
            names.insert(name.clone(), graph.add_constant(name, tensor));
        }
        for vi in &g.input {
            if names.contains_key(&vi.name) && !captures.iter().any(|(n, _)| n == &vi.name) {
                // IR < 4 lists initializers among inputs: they stay constants.
                continue;
            }
            if vi.name.is_empty() {
                return Err(ImportError::Value {
                    name: vi.name.clone(),
                    msg: "graph input without a name".into(),
                });
            }
            let (kind, ty) = match vi.r#type.as_ref() {
                None => (ValueKind::Tensor, ValueType::unknown()),
                Some(t) => kind_and_type(t, &mut self.anon).ok_or_else(|| ImportError::Value {
                    name: vi.name.clone(),
                    msg: "only tensor, sequence-of-tensor and optional graph inputs are supported (not maps)".into(),
                })?,
            };
            let id = graph.add_value(vi.name.clone(), ty);
            if kind != ValueKind::Tensor {
                graph.kinds.insert(id, kind);
            }
            names.insert(vi.name.clone(), id);
            graph.inputs.push(id);
        }
        let mut declared: HashMap<&str, ValueType> = HashMap::new();
        for vi in g.value_info.iter().chain(&g.output) {
            if let Some(t) = vi
                .r#type
                .as_ref()
                .and_then(|t| value_type(t, &mut self.anon))
            {
                declared.insert(vi.name.as_str(), t);
            }
        }

        let nodes = self.expand_functions(&g.node)?;
        let order = topo_order(&nodes, &names)?;
        let registry = Registry::global();
        let mut issues = Vec::new();
        for (i, &ni) in order.iter().enumerate() {
            let n = &nodes[ni];
            let node_name = if n.name.is_empty() {
                format!("{}_{}", n.op_type, i)
            } else {
                n.name.clone()
            };
            let issue = |msg: String| NodeIssue {
                node: node_name.clone(),
                op: n.op_type.clone(),
                msg,
            };
            // Values of this scope that the node's subgraphs use: appended as inputs.
            let mut free = std::collections::BTreeSet::new();
            for a in &n.attribute {
                for sg in a.g.iter().map(|b| b.as_ref()).chain(&a.graphs) {
                    free_vars(sg, &mut free);
                }
            }
            let mut captures = Vec::with_capacity(free.len());
            for name in &free {
                match names.get(name) {
                    Some(&id) => captures.push((name.clone(), id)),
                    None => issues.push(issue(format!(
                        "subgraph uses `{name}`, which is not defined in an enclosing scope"
                    ))),
                }
            }
            // Inputs.
            let mut inputs = Vec::with_capacity(n.input.len() + captures.len());
            for name in &n.input {
                if name.is_empty() {
                    inputs.push(None);
                } else if let Some(&id) = names.get(name) {
                    inputs.push(Some(id));
                } else {
                    issues.push(issue(format!(
                        "input `{name}` is not defined by any node, initializer or graph input"
                    )));
                    inputs.push(None);
                }
            }
            inputs.extend(captures.iter().map(|(_, id)| Some(*id)));
            let capture_types: Vec<(String, ValueType)> = captures
                .iter()
                .map(|(name, id)| (name.clone(), graph.value(*id).ty.clone()))
                .collect();
            // Outputs (created even when the op fails, so later nodes can be checked too).
            let mut outputs = Vec::with_capacity(n.output.len());
            for name in &n.output {
                let vname = if name.is_empty() {
                    self.anon += 1;
                    format!("{node_name}:unused{}", self.anon)
                } else {
                    name.clone()
                };
                if names.contains_key(&vname) {
                    issues.push(issue(format!(
                        "output `{vname}` is already defined elsewhere"
                    )));
                    continue;
                }
                let ty = declared.get(vname.as_str()).cloned().unwrap_or_default();
                let id = graph.add_value(vname.clone(), ty);
                names.insert(vname, id);
                outputs.push(id);
            }
            if !(n.domain.is_empty() || n.domain == "ai.onnx") {
                issues.push(issue(format!(
                    "domain `{}` is not supported (only ai.onnx)",
                    n.domain
                )));
                continue;
            }
            let Some(build) = registry.get(&n.op_type) else {
                issues.push(issue("operator is not supported".into()));
                continue;
            };
            let attrs = match self.convert_attrs(n, &capture_types) {
                Ok(a) => a,
                Err(msg) => {
                    issues.push(issue(msg));
                    continue;
                }
            };
            match build(&attrs, self.opset) {
                Ok(op) => {
                    let unread = attrs.unread();
                    if !unread.is_empty() {
                        issues.push(issue(format!(
                            "unsupported attribute(s): {}",
                            unread.join(", ")
                        )));
                        continue;
                    }
                    graph.add_node(node_name, op, inputs, outputs);
                }
                Err(e) => issues.push(issue(e.to_string())),
            }
        }
        if !issues.is_empty() {
            return Err(ImportError::Nodes { issues });
        }
        for vi in &g.output {
            let id = *names.get(&vi.name).ok_or_else(|| ImportError::Value {
                name: vi.name.clone(),
                msg: "graph output is not produced by any node, initializer or input".into(),
            })?;
            if let Some((kind, _)) = vi
                .r#type
                .as_ref()
                .and_then(|t| kind_and_type(t, &mut self.anon))
            {
                if kind != ValueKind::Tensor {
                    graph.kinds.insert(id, kind);
                }
            }
            graph.outputs.push(id);
        }
        Ok(graph)
    }

    fn convert_attrs(
        &mut self,
        n: &NodeProto,
        captures: &[(String, ValueType)],
    ) -> Result<Attributes, String> {
        let mut items = Vec::with_capacity(n.attribute.len());
        let mut seen = HashSet::new();
        for a in &n.attribute {
            if !seen.insert(a.name.as_str()) {
                return Err(format!("attribute `{}` is repeated", a.name));
            }
            items.push((a.name.clone(), self.convert_attr(a, captures)?));
        }
        Ok(Attributes::new(n.op_type.clone(), items)
            .with_outputs(n.output.len())
            .with_inputs(n.input.len()))
    }

    fn convert_attr(
        &mut self,
        a: &AttributeProto,
        captures: &[(String, ValueType)],
    ) -> Result<Attr, String> {
        let tensor = |t: &proto::TensorProto| {
            tensor_from_proto(t, self.base_dir).map_err(|e| format!("attribute `{}`: {e}", a.name))
        };
        if !a.ref_attr_name.is_empty() {
            return Err(format!(
                "attribute `{}` refers to a function attribute outside a function",
                a.name
            ));
        }
        let kind = if a.r#type != attr_type::UNDEFINED {
            a.r#type
        } else {
            guess_kind(a)
        };
        Ok(match kind {
            attr_type::FLOAT => Attr::Float(a.f),
            attr_type::INT => Attr::Int(a.i),
            attr_type::STRING => Attr::String(a.s.clone()),
            attr_type::TENSOR => Attr::Tensor(tensor(
                a.t.as_ref()
                    .ok_or_else(|| format!("attribute `{}` has no tensor", a.name))?,
            )?),
            attr_type::FLOATS => Attr::Floats(a.floats.clone()),
            attr_type::INTS => Attr::Ints(a.ints.clone()),
            attr_type::STRINGS => Attr::Strings(a.strings.clone()),
            attr_type::TENSORS => {
                Attr::Tensors(a.tensors.iter().map(tensor).collect::<Result<_, _>>()?)
            }
            attr_type::SPARSE_TENSOR => Attr::Tensor(
                sparse_to_dense(
                    a.sparse_tensor
                        .as_ref()
                        .ok_or_else(|| format!("attribute `{}` has no sparse tensor", a.name))?,
                    self.base_dir,
                )
                .map_err(|e| e.to_string())?,
            ),
            attr_type::TYPE_PROTO => {
                let mut anon = 0;
                Attr::Type(
                    a.tp.as_ref()
                        .and_then(|t| value_type(t, &mut anon))
                        .unwrap_or_default(),
                )
            }
            attr_type::GRAPH => {
                let g =
                    a.g.as_ref()
                        .ok_or_else(|| format!("attribute `{}` has no graph", a.name))?;
                Attr::Graph(std::sync::Arc::new(
                    self.import_subgraph(&a.name, g, captures)?,
                ))
            }
            attr_type::GRAPHS => Attr::Graphs(
                a.graphs
                    .iter()
                    .map(|g| {
                        self.import_subgraph(&a.name, g, captures)
                            .map(std::sync::Arc::new)
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => {
                return Err(format!(
                    "attribute `{}` has unsupported kind {other}",
                    a.name
                ))
            }
        })
    }

    /// Imports, verifies and types a subgraph attribute.
    fn import_subgraph(
        &mut self,
        attr: &str,
        g: &GraphProto,
        captures: &[(String, ValueType)],
    ) -> Result<Graph, String> {
        let mut sub = self
            .import_graph(g, captures)
            .map_err(|e| format!("subgraph `{attr}`: {e}"))?;
        verify(&sub).map_err(|e| format!("subgraph `{attr}`: {e}"))?;
        sub.infer_types()
            .map_err(|e| format!("subgraph `{attr}`: shape inference failed at {e}"))?;
        Ok(sub)
    }

    /// Inlines calls to model-local functions (`ModelProto.functions`).
    fn expand_functions(&mut self, nodes: &[NodeProto]) -> Result<Vec<NodeProto>, ImportError> {
        if self.functions.is_empty() {
            return Ok(nodes.to_vec());
        }
        let mut out = Vec::with_capacity(nodes.len());
        for n in nodes {
            self.expand_node(n, &mut out, 0)?;
        }
        Ok(out)
    }

    fn expand_node(
        &mut self,
        n: &NodeProto,
        out: &mut Vec<NodeProto>,
        depth: usize,
    ) -> Result<(), ImportError> {
        let Some(f) = self
            .functions
            .iter()
            .find(|f| f.name == n.op_type && f.domain == n.domain)
        else {
            out.push(n.clone());
            return Ok(());
        };
        if depth > 16 {
            return Err(ImportError::Model(format!(
                "function `{}` nests too deeply (recursive?)",
                f.name
            )));
        }
        self.anon += 1;
        let prefix = format!(
            "{}__{}__",
            if n.name.is_empty() {
                &n.op_type
            } else {
                &n.name
            },
            self.anon
        );
        let mut rename: HashMap<&str, String> = HashMap::new();
        for (i, formal) in f.input.iter().enumerate() {
            rename.insert(formal, n.input.get(i).cloned().unwrap_or_default());
        }
        for (i, formal) in f.output.iter().enumerate() {
            rename.insert(formal, n.output.get(i).cloned().unwrap_or_default());
        }
        let map = |name: &String, rename: &HashMap<&str, String>| -> String {
            if name.is_empty() {
                return String::new();
            }
            rename
                .get(name.as_str())
                .cloned()
                .unwrap_or_else(|| format!("{prefix}{name}"))
        };
        for inner in &f.node {
            let mut m = inner.clone();
            m.name = format!("{prefix}{}", inner.name);
            m.input = inner.input.iter().map(|x| map(x, &rename)).collect();
            m.output = inner.output.iter().map(|x| map(x, &rename)).collect();
            let mut attrs = Vec::with_capacity(m.attribute.len());
            for a in &inner.attribute {
                if a.ref_attr_name.is_empty() {
                    attrs.push(a.clone());
                    continue;
                }
                let given = n.attribute.iter().find(|c| c.name == a.ref_attr_name);
                let default = f.attribute_proto.iter().find(|d| d.name == a.ref_attr_name);
                if let Some(v) = given.or(default) {
                    let mut v = v.clone();
                    v.name = a.name.clone();
                    attrs.push(v);
                }
            }
            m.attribute = attrs;
            self.expand_node(&m, out, depth + 1)?;
        }
        Ok(())
    }
}

/// Names a graph defines itself: inputs, initializers, node outputs.
fn defined_names(g: &GraphProto) -> HashSet<&str> {
    let mut d: HashSet<&str> = g.input.iter().map(|v| v.name.as_str()).collect();
    d.extend(g.initializer.iter().map(|t| t.name.as_str()));
    d.extend(
        g.sparse_initializer
            .iter()
            .filter_map(|s| s.values.as_ref())
            .map(|t| t.name.as_str()),
    );
    d.extend(
        g.node
            .iter()
            .flat_map(|n| n.output.iter().map(|s| s.as_str())),
    );
    d
}

/// Names a graph (or any subgraph nested in it) reads without defining them.
fn free_vars(g: &GraphProto, out: &mut std::collections::BTreeSet<String>) {
    let defined = defined_names(g);
    let mut inner = std::collections::BTreeSet::new();
    for n in &g.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            inner.insert(i.clone());
        }
        for a in &n.attribute {
            for sg in a.g.iter().map(|b| b.as_ref()).chain(&a.graphs) {
                free_vars(sg, &mut inner);
            }
        }
    }
    inner.extend(g.output.iter().map(|o| o.name.clone()));
    out.extend(
        inner
            .into_iter()
            .filter(|n| !n.is_empty() && !defined.contains(n.as_str())),
    );
}

fn guess_kind(a: &AttributeProto) -> i32 {
    if a.t.is_some() {
        attr_type::TENSOR
    } else if a.g.is_some() {
        attr_type::GRAPH
    } else if !a.floats.is_empty() {
        attr_type::FLOATS
    } else if !a.ints.is_empty() {
        attr_type::INTS
    } else if !a.strings.is_empty() {
        attr_type::STRINGS
    } else if !a.s.is_empty() {
        attr_type::STRING
    } else if a.f != 0.0 {
        attr_type::FLOAT
    } else {
        attr_type::INT
    }
}

/// Node indices in an order where every input is defined before use (ONNX requires sorted
/// graphs, but exporters are not always careful). Of the nodes ready at each point the one
/// first in the file goes first, so a sorted graph keeps the exporter's order: PyTorch
/// writes a model in the order its forward pass runs, each branch whole, which is also the
/// sequential schedule's order. Breadth-first order (the sort before) moved ResNet-50's
/// projection shortcuts ahead of their blocks' main branch, where their 0.4-3.2 MB
/// outputs waited in the caches through three layers and the next stage's first 1x1 layer
/// read a block output written before the shortcut ran: `bench_builds.py` (5 x 20, 2 threads) put
/// ResNet-50 at 0.988x the time (4 of 5 rounds faster), the other models 1.0x. Inputs no
/// one defines are left for the per-node checks to report.
fn topo_order(
    nodes: &[NodeProto],
    known: &HashMap<String, ValueId>,
) -> Result<Vec<usize>, ImportError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            producer.entry(o.as_str()).or_insert(i);
        }
    }
    let mut indegree = vec![0usize; nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![vec![]; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let mut deps: Vec<usize> = n
            .input
            .iter()
            .filter(|x| !x.is_empty() && !known.contains_key(*x))
            .filter_map(|x| producer.get(x.as_str()).copied())
            .filter(|&p| p != i)
            .collect();
        deps.sort_unstable();
        deps.dedup();
        indegree[i] = deps.len();
        for p in deps {
            users[p].push(i);
        }
    }
    // Of the ready nodes, the one first in the file: a sorted graph keeps its order.
    let mut ready: BinaryHeap<Reverse<usize>> = (0..nodes.len())
        .filter(|&i| indegree[i] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &u in &users[i] {
            indegree[u] -= 1;
            if indegree[u] == 0 {
                ready.push(Reverse(u));
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck = (0..nodes.len())
            .find(|&i| indegree[i] > 0)
            .map(|i| nodes[i].name.clone())
            .unwrap_or_default();
        return Err(ImportError::Model(format!(
            "the graph has a cycle (through node `{stuck}`)"
        )));
    }
    Ok(order)
}

#[cfg(test)]
mod load_tests {
    use super::*;

    fn node(name: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: name.to_string(),
            op_type: "Relu".to_string(),
            ..Default::default()
        }
    }

    /// A sorted graph keeps the file's order, branches included (a residual block's
    /// shortcut stays after the main branch, as exported); an unsorted one is sorted with
    /// the earliest ready node in the file first; a cycle is an error.
    #[test]
    fn topological_order_keeps_the_files_order_where_it_can() {
        let known: HashMap<String, ValueId> = HashMap::from([("x".to_string(), ValueId(0))]);
        // x -> a -> b -> c ; x -> s ; add(c, s)
        let sorted = [
            node("a", &["x"], "ya"),
            node("b", &["ya"], "yb"),
            node("c", &["yb"], "yc"),
            node("s", &["x"], "ys"),
            node("add", &["yc", "ys"], "y"),
        ];
        assert_eq!(topo_order(&sorted, &known).unwrap(), [0, 1, 2, 3, 4]);
        let unsorted = [
            node("add", &["yc", "ys"], "y"),
            node("c", &["yb"], "yc"),
            node("s", &["x"], "ys"),
            node("b", &["ya"], "yb"),
            node("a", &["x"], "ya"),
        ];
        assert_eq!(topo_order(&unsorted, &known).unwrap(), [2, 4, 3, 1, 0]);
        let cycle = [node("p", &["yq"], "yp"), node("q", &["yp"], "yq")];
        assert!(topo_order(&cycle, &known).is_err());
    }

    /// A missing file, a directory and an empty file are errors, not panics (the map is
    /// taken only for a regular file with contents; the others go through `read`).
    #[test]
    fn unreadable_or_empty_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("millrace-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(
            load_model(&dir.join("missing.onnx")),
            Err(ImportError::Io { .. })
        ));
        assert!(matches!(load_model(&dir), Err(ImportError::Io { .. })));
        let empty = dir.join("empty.onnx");
        std::fs::write(&empty, b"").unwrap();
        assert!(load_model(&empty).is_err());
        let junk = dir.join("junk.onnx");
        std::fs::write(&junk, [0xffu8; 64]).unwrap();
        assert!(load_model(&junk).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
