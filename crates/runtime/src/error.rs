//! The runtime's error type: everything a user of the API can get wrong, named precisely.
use millrace_core::DType;
use millrace_ir::{InferError, OpError};
use millrace_onnx::ImportError;
use millrace_passes::PassError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Pass(#[from] PassError),
    #[error("shape inference failed at {0}")]
    Infer(#[from] InferError),
    #[error("unknown input `{name}`; the model's inputs are: {expected}")]
    UnknownInput { name: String, expected: String },
    #[error("missing input `{name}` ({ty})")]
    MissingInput { name: String, ty: String },
    #[error("input `{name}` is given twice")]
    DuplicateInput { name: String },
    #[error("input `{name}`: expected dtype {expected}, got {got}")]
    InputDType {
        name: String,
        expected: DType,
        got: DType,
    },
    #[error("input `{name}`: expected shape {expected}, got {got:?}")]
    InputShape {
        name: String,
        expected: String,
        got: Vec<usize>,
    },
    #[error("dimension `{symbol}` is {first} in one input and {second} in another")]
    SymbolConflict {
        symbol: String,
        first: usize,
        second: usize,
    },
    #[error("node `{node}` ({op}) failed: {source}")]
    Node {
        node: String,
        op: String,
        #[source]
        source: OpError,
    },
    #[error("cannot build a thread pool: {0}")]
    ThreadPool(String),
    #[error(transparent)]
    Npz(#[from] crate::npz::NpzError),
    #[error("{0}")]
    Invalid(String),
    #[error("internal error: {0}")]
    Internal(String),
}
