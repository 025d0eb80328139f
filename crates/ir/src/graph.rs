//! The graph: values, nodes in topological order, graph inputs/outputs and constants.
use crate::op::{InferCtx, Op, OpError};
use crate::types::ValueType;
use millrace_core::{Dim, Tensor};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Index of a value in [`Graph::values`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// Index of a node in [`Graph::nodes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A tensor-valued edge of the graph.
#[derive(Clone, Debug)]
pub struct ValueInfo {
    pub name: String,
    pub ty: ValueType,
}

/// One operator application.
#[derive(Clone)]
pub struct Node {
    pub name: String,
    pub op: Arc<dyn Op>,
    /// `None` marks an absent optional input.
    pub inputs: Vec<Option<ValueId>>,
    pub outputs: Vec<ValueId>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("op", &self.op.name())
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

/// A dataflow graph. Nodes are kept in topological order ([`crate::verify`] checks it).
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    pub values: Vec<ValueInfo>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Values known before running: initializers, folded constants.
    pub constants: HashMap<ValueId, Arc<Tensor>>,
    /// For a subgraph (If/Loop/Scan bodies): values taken from the enclosing scope, named
    /// as there. The node that owns the subgraph passes them as its trailing inputs.
    pub captures: Vec<ValueId>,
    /// Graph inputs and outputs that are sequences or optionals (all others are tensors);
    /// their [`ValueInfo::ty`] describes the element tensor.
    pub kinds: HashMap<ValueId, crate::ValueKind>,
}

/// A node failed shape inference.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("node `{node}`: {source}")]
pub struct InferError {
    pub node: String,
    #[source]
    pub source: OpError,
}

/// Why two types for one value cannot both hold, if they cannot.
fn contradiction(a: &ValueType, b: &ValueType) -> Option<&'static str> {
    if let (Some(x), Some(y)) = (a.dtype, b.dtype) {
        if x != y {
            return Some("dtype");
        }
    }
    if let (Some(x), Some(y)) = (&a.shape, &b.shape) {
        if x.len() != y.len() {
            return Some("rank");
        }
        if x.iter()
            .zip(y)
            .any(|(p, q)| matches!((p, q), (Dim::Known(m), Dim::Known(n)) if m != n))
        {
            return Some("dimension");
        }
    }
    None
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    pub fn add_value(&mut self, name: impl Into<String>, ty: ValueType) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(ValueInfo {
            name: name.into(),
            ty,
        });
        id
    }

    pub fn add_constant(&mut self, name: impl Into<String>, t: Tensor) -> ValueId {
        let ty = ValueType::concrete(t.dtype(), t.shape());
        let id = self.add_value(name, ty);
        self.constants.insert(id, Arc::new(t));
        id
    }

    /// Appends a node; the caller keeps topological order.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: Arc<dyn Op>,
        inputs: Vec<Option<ValueId>>,
        outputs: Vec<ValueId>,
    ) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(Node {
            name: name.into(),
            op,
            inputs,
            outputs,
        });
        id
    }

    pub fn value(&self, id: ValueId) -> &ValueInfo {
        &self.values[id.index()]
    }

    /// The types of a node's inputs (an absent optional input as unknown) and outputs.
    pub fn node_types(&self, node: &Node) -> (Vec<ValueType>, Vec<ValueType>) {
        let ins = node
            .inputs
            .iter()
            .map(|v| v.map(|v| self.value(v).ty.clone()).unwrap_or_default())
            .collect();
        let outs = node
            .outputs
            .iter()
            .map(|v| self.value(*v).ty.clone())
            .collect();
        (ins, outs)
    }

    /// A node's FLOPs and bytes at the graph's current types.
    pub fn node_cost(&self, node: &Node) -> crate::Cost {
        let (ins, outs) = self.node_types(node);
        node.op.cost(&ins, &outs)
    }

    pub fn constant(&self, id: ValueId) -> Option<&Arc<Tensor>> {
        self.constants.get(&id)
    }

    /// Graph inputs that are not constants: what the user must feed.
    pub fn runtime_inputs(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.inputs
            .iter()
            .copied()
            .filter(|v| !self.constants.contains_key(v))
    }

    /// For each value, the node and output slot that produces it.
    pub fn producers(&self) -> HashMap<ValueId, (NodeId, usize)> {
        let mut m = HashMap::new();
        for (ni, n) in self.nodes.iter().enumerate() {
            for (slot, &v) in n.outputs.iter().enumerate() {
                m.insert(v, (NodeId(ni as u32), slot));
            }
        }
        m
    }

    /// For each value, the nodes that read it (a node appears once per input slot).
    pub fn consumers(&self) -> HashMap<ValueId, Vec<NodeId>> {
        let mut m: HashMap<ValueId, Vec<NodeId>> = HashMap::new();
        for (ni, n) in self.nodes.iter().enumerate() {
            for v in n.inputs.iter().flatten() {
                m.entry(*v).or_default().push(NodeId(ni as u32));
            }
        }
        m
    }

    /// Finds a value by name.
    pub fn find_value(&self, name: &str) -> Option<ValueId> {
        self.values
            .iter()
            .position(|v| v.name == name)
            .map(|i| ValueId(i as u32))
    }

    /// Runs every node's shape inference in order, merging results into the value types
    /// (what the model declared is kept where inference knows less).
    pub fn infer_types(&mut self) -> Result<(), InferError> {
        for ni in 0..self.nodes.len() {
            let node = &self.nodes[ni];
            let types: Vec<Option<ValueType>> = node
                .inputs
                .iter()
                .map(|i| i.map(|v| self.values[v.index()].ty.clone()))
                .collect();
            let consts: Vec<Option<&Tensor>> = node
                .inputs
                .iter()
                .map(|i| i.and_then(|v| self.constants.get(&v).map(|t| t.as_ref())))
                .collect();
            let ctx = InferCtx::new(node.op.name(), &types, &consts);
            let out = node.op.infer(&ctx).map_err(|source| InferError {
                node: node.name.clone(),
                source,
            })?;
            let outputs = node.outputs.clone();
            for (v, t) in outputs.iter().zip(out) {
                let value = &mut self.values[v.index()];
                let cur = &mut value.ty;
                if let Some(why) = contradiction(&t, cur) {
                    let msg = format!(
                        "output `{}`: inferred {t} contradicts the known {cur} ({why})",
                        value.name
                    );
                    let node = &self.nodes[ni];
                    return Err(InferError {
                        node: node.name.clone(),
                        source: OpError::invalid(node.op.name(), msg),
                    });
                }
                *cur = t.merge(cur);
            }
        }
        Ok(())
    }

    /// Replaces symbolic dims by name wherever they occur (`batch` -> 1).
    pub fn bind_symbols(&mut self, bindings: &HashMap<String, usize>) {
        for v in &mut self.values {
            if let Some(shape) = &mut v.ty.shape {
                for d in shape.iter_mut() {
                    if let Dim::Sym(s) = d {
                        if let Some(&n) = bindings.get(s.as_str()) {
                            *d = Dim::Known(n);
                        }
                    }
                }
            }
        }
    }

    /// Removes nodes whose outputs nobody needs, and constants nobody reads.
    /// Returns how many nodes were removed.
    pub fn remove_dead(&mut self) -> usize {
        let mut live = vec![false; self.values.len()];
        for v in &self.outputs {
            live[v.index()] = true;
        }
        let mut keep = vec![false; self.nodes.len()];
        for (ni, n) in self.nodes.iter().enumerate().rev() {
            if n.outputs.iter().any(|v| live[v.index()]) {
                keep[ni] = true;
                for v in n.inputs.iter().flatten() {
                    live[v.index()] = true;
                }
            }
        }
        let before = self.nodes.len();
        let mut k = keep.into_iter();
        self.nodes.retain(|_| k.next().unwrap_or(false));
        for v in &self.inputs {
            live[v.index()] = true;
        }
        self.constants.retain(|v, _| live[v.index()]);
        before - self.nodes.len()
    }

    /// Total bytes of constant tensors.
    pub fn constant_bytes(&self) -> usize {
        self.constants.values().map(|t| t.size_bytes()).sum()
    }
}
