//! millrace-onnx: ONNX protobuf decoding and import into [`millrace_ir::Graph`].
//!
//! [`import_model`] decodes bytes into an [`OnnxModel`]: the IR graph with initializers as
//! constants, declared input/output types (symbolic dims kept), and every node built into
//! an op through [`millrace_ops::Registry`]. All nodes that cannot be imported are reported
//! together in one [`ImportError::Nodes`].
//!
//! `proto` is also used the other way, to build models (the zoo) and write them out.

mod error;
mod import;
pub mod proto;
mod tensor;

pub use error::{ImportError, NodeIssue};
pub use import::{import_model, load_model, OnnxModel, MAX_OPSET};
pub use tensor::{
    sparse_to_dense, tensor_from_pb_bytes, tensor_from_proto, tensor_to_proto, value_from_pb_bytes,
};
