//! millrace-ir: the typed dataflow graph every stage after import works on.
//!
//! A [`Graph`] holds [`Value`]s (typed, possibly symbolic shapes) and [`Node`]s in
//! topological order; each node carries an [`Op`], the trait every operator implements
//! (shape inference, cost, reference evaluation). [`verify`] checks the invariants every
//! pass must keep, and [`Graph::dump`] prints the graph as text.
//!
//! This crate knows nothing of ONNX protobufs and nothing of kernels.

mod attr;
mod eval;
mod graph;
mod op;
mod print;
mod stages;
mod types;
mod value;
mod verify;

pub use attr::{Attr, Attributes};
pub use graph::{Graph, InferError, Node, NodeId, ValueId, ValueInfo};
pub use op::{Cost, F32View, InferCtx, Inputs, Op, OpError};
pub use stages::{StageError, StageGraph, Stages};
pub use types::ValueType;
pub use value::{invoke, ArgRef, Value, ValueKind};
pub use verify::{verify, VerifyError};
