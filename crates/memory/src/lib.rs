//! millrace-memory: memory plans for a typed, shape-concrete [`millrace_ir::Graph`].
//!
//! [`arena`] packs buffers whose lifetimes may overlap into one arena at fixed offsets,
//! so a run needs one allocation (reused across runs) instead of one per activation (the
//! runtime's memory plan uses it). [`residency`] decides which weight tensors stay resident in an on-chip memory (SRAM) of
//! a given size, after reserving the activations' working set, with a 0/1 knapsack on the
//! off-chip bytes each tensor would otherwise cost per inference; it reports off-chip
//! traffic per inference with and without residency. [`roofline`] classifies each layer as
//! memory- or compute-bound against a machine's balance point (peak FLOP/s / bandwidth).
//! [`size`] parses and prints byte sizes (`40MB`, `512KiB`).
//!
//! The analysis reads only the graph (constants, value types, each op's cost); it neither
//! runs nor changes it.

pub mod arena;
pub mod residency;
pub mod roofline;
pub mod size;

pub use residency::{
    analyze, greedy, knapsack, plan, plan_for, render, working_set, Analysis, KindSummary,
    LayerKind, NodeInfo, Objective, RenderOptions, ResidencyPlan, Traffic, WeightDtype, WeightItem,
};
pub use roofline::{Bound, Machine};
pub use size::{format_bytes, parse_size};

/// Why a memory plan could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MemoryError {
    /// A size argument (`--sram 40MB`) that does not parse.
    #[error("size `{input}`: {msg}")]
    Size { input: String, msg: String },
    /// A dtype name other than fp32, fp16, int8.
    #[error("weight dtype `{0}`: expected fp32, fp16 or int8")]
    Dtype(String),
    /// Machine parameters that are not positive finite numbers.
    #[error("machine: {0}")]
    Machine(String),
}
