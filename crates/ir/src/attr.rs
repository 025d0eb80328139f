//! Node attributes, decoupled from any file format, with typed getters that remember
//! which attributes were read, so an importer can reject ones an op does not understand.
use crate::graph::Graph;
use crate::op::OpError;
use crate::types::ValueType;
use millrace_core::Tensor;
use std::cell::RefCell;
use std::sync::Arc;

/// One attribute value.
#[derive(Clone, Debug)]
pub enum Attr {
    Float(f32),
    Int(i64),
    String(Vec<u8>),
    Tensor(Tensor),
    Graph(Arc<Graph>),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Vec<u8>>),
    Tensors(Vec<Tensor>),
    Graphs(Vec<Arc<Graph>>),
    Type(ValueType),
    Types(Vec<ValueType>),
}

impl Attr {
    pub fn kind(&self) -> &'static str {
        match self {
            Attr::Float(_) => "float",
            Attr::Int(_) => "int",
            Attr::String(_) => "string",
            Attr::Tensor(_) => "tensor",
            Attr::Graph(_) => "graph",
            Attr::Floats(_) => "floats",
            Attr::Ints(_) => "ints",
            Attr::Strings(_) => "strings",
            Attr::Tensors(_) => "tensors",
            Attr::Graphs(_) => "graphs",
            Attr::Type(_) => "type",
            Attr::Types(_) => "types",
        }
    }
}

/// A node's attributes with typed getters.
///
/// Every getter marks the attribute as read; [`Attributes::unread`] lists the ones an op's
/// constructor never looked at, which the importer reports as unsupported.
#[derive(Debug)]
pub struct Attributes {
    op: String,
    items: Vec<(String, Attr)>,
    read: RefCell<Vec<bool>>,
    outputs: usize,
    inputs: usize,
}

impl Attributes {
    pub fn new(op: impl Into<String>, items: Vec<(String, Attr)>) -> Attributes {
        let n = items.len();
        Attributes {
            op: op.into(),
            items,
            read: RefCell::new(vec![false; n]),
            outputs: 0,
            inputs: 0,
        }
    }

    /// Records how many outputs the node declares (for ops such as Split whose output
    /// count is implied by the node rather than an attribute).
    pub fn with_outputs(mut self, n: usize) -> Attributes {
        self.outputs = n;
        self
    }

    /// Records how many inputs the node declares in the model (before any captured
    /// outer-scope values the importer appends for subgraphs).
    pub fn with_inputs(mut self, n: usize) -> Attributes {
        self.inputs = n;
        self
    }

    /// How many inputs the node declares in the model (0 if unknown).
    pub fn node_inputs(&self) -> usize {
        self.inputs
    }

    /// How many outputs the node declares (0 if unknown).
    pub fn node_outputs(&self) -> usize {
        self.outputs
    }

    pub fn op(&self) -> &str {
        &self.op
    }

    /// The raw attribute, marking it read.
    pub fn get(&self, name: &str) -> Option<&Attr> {
        let i = self.items.iter().position(|(n, _)| n == name)?;
        if let Some(flag) = self.read.borrow_mut().get_mut(i) {
            *flag = true;
        }
        self.items.get(i).map(|(_, a)| a)
    }

    /// Names of attributes no getter has read.
    pub fn unread(&self) -> Vec<String> {
        let read = self.read.borrow();
        self.items
            .iter()
            .zip(read.iter())
            .filter(|(_, r)| !**r)
            .map(|((n, _), _)| n.clone())
            .collect()
    }

    fn wrong(&self, name: &str, want: &str, got: &Attr) -> OpError {
        OpError::attribute(
            &self.op,
            name,
            format!("expected {want}, found {}", got.kind()),
        )
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Int(v)) => Ok(Some(*v)),
            Some(a) => Err(self.wrong(name, "int", a)),
        }
    }

    pub fn int_or(&self, name: &str, default: i64) -> Result<i64, OpError> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    pub fn req_int(&self, name: &str) -> Result<i64, OpError> {
        self.int(name)?
            .ok_or_else(|| OpError::attribute(&self.op, name, "required but absent"))
    }

    pub fn float(&self, name: &str) -> Result<Option<f32>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Float(v)) => Ok(Some(*v)),
            Some(Attr::Int(v)) => Ok(Some(*v as f32)),
            Some(a) => Err(self.wrong(name, "float", a)),
        }
    }

    pub fn float_or(&self, name: &str, default: f32) -> Result<f32, OpError> {
        Ok(self.float(name)?.unwrap_or(default))
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v.clone())),
            Some(a) => Err(self.wrong(name, "ints", a)),
        }
    }

    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Floats(v)) => Ok(Some(v.clone())),
            Some(a) => Err(self.wrong(name, "floats", a)),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::String(v)) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
            Some(a) => Err(self.wrong(name, "string", a)),
        }
    }

    pub fn string_or(&self, name: &str, default: &str) -> Result<String, OpError> {
        Ok(self.string(name)?.unwrap_or_else(|| default.to_string()))
    }

    pub fn strings(&self, name: &str) -> Result<Option<Vec<String>>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Strings(v)) => Ok(Some(
                v.iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            )),
            Some(a) => Err(self.wrong(name, "strings", a)),
        }
    }

    pub fn tensor(&self, name: &str) -> Result<Option<Tensor>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Tensor(t)) => Ok(Some(t.clone())),
            Some(a) => Err(self.wrong(name, "tensor", a)),
        }
    }

    pub fn graph(&self, name: &str) -> Result<Option<Arc<Graph>>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Graph(g)) => Ok(Some(g.clone())),
            Some(a) => Err(self.wrong(name, "graph", a)),
        }
    }
}
