//! millrace-runtime: load -> optimize -> plan -> run.
//!
//! [`Model`] is an imported ONNX model. [`Model::compile`] fixes input shapes, runs the
//! pass pipeline and builds an execution plan: a [`CompiledModel`], which is `Send + Sync`
//! and whose [`CompiledModel::run`] may be called from many threads at once, sharing one
//! copy of the weights.

mod error;
mod idle;
mod inputs;
mod memplan;
mod multi;
pub mod npz;
mod plan;
mod session;
mod stream;

pub use error::Error;
pub use idle::IdleWorkers;
pub use inputs::{input_specs, random_inputs, InputSpec};
pub use memplan::MemoryReport;
pub use millrace_ir::{Value, ValueKind};
pub use millrace_schedule::Prediction;
pub use multi::{DataParallel, DataParallelOptions, GroupInfo, PipelineOptions, PipelineParallel};
pub use npz::{read_npy_file, read_npz, write_npz, NpzError};
pub use plan::{Profiled, StepTiming};
pub use session::{default_threads, CompileOptions, CompiledModel, IoInfo, Model, Schedule};
pub use stream::{StageInfo, Stream, StreamOptions, StreamOutput};
