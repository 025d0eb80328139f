//! millrace: an ONNX inference engine.
//!
//! ```no_run
//! use millrace::{CompileOptions, Model, Tensor};
//! # fn main() -> Result<(), millrace::Error> {
//! let model = Model::load("resnet50.onnx")?;
//! let mut opts = CompileOptions::default();
//! opts.input_shapes.insert("input".into(), vec![1, 3, 224, 224]);
//! let compiled = model.compile(&opts)?;          // Send + Sync: share it across threads
//! let x = Tensor::from_vec(vec![1, 3, 224, 224], vec![0.0f32; 3 * 224 * 224]).unwrap();
//! let outputs = compiled.run(&[("input", &x)])?;
//! println!("{:?}", outputs[0].1.shape());
//! # Ok(()) }
//! ```
//!
//! Built-in models (no download): [`builtin`]`("resnet50")`.

pub use millrace_core::{bf16, f16, DType, Dim, Tensor, TensorData, TensorError};
pub use millrace_ir as ir;
pub use millrace_onnx as onnx;
pub use millrace_runtime::{
    default_threads, input_specs, npz, random_inputs, read_npy_file, read_npz, write_npz,
    CompileOptions, CompiledModel, Error, IdleWorkers, InputSpec, IoInfo, Model, NpzError,
    Profiled, Schedule, StageInfo, StepTiming, Stream, StreamOptions, StreamOutput, Value,
    ValueKind,
};
pub use millrace_runtime::{
    DataParallel, DataParallelOptions, GroupInfo, PipelineOptions, PipelineParallel,
};
pub use millrace_schedule as schedule;
pub use millrace_zoo as zoo;

/// Builds a built-in model (`resnet50`, `mobilenet_v2`, `googlenet`, `vgg16`, `bert`) in memory.
pub fn builtin(name: &str) -> Result<Model, Error> {
    let bytes = millrace_zoo::build_bytes(name).map_err(|e| Error::Invalid(e.to_string()))?;
    Model::from_bytes(&bytes, None)
}

/// Names and one-line summaries of the optimization passes, in pipeline order.
pub fn passes() -> Vec<(&'static str, &'static str)> {
    millrace_passes::default_pipeline().list()
}

pub use millrace_passes::PassOptions;
