//! A simulated NPU: a matrix unit (systolic array), a vector unit, on-chip SRAM used as
//! ping-pong buffers, DMA to the card's DRAM and a host link, described by a TOML file.
//!
//! Pipeline: [`config::NpuConfig`] (the TOML description) -> [`lower::lower`] (the optimized
//! graph's nodes into per-unit command queues with dependency tokens and tilings chosen by
//! simulation) -> [`sim::simulate_program`] (event-driven timing: latency, utilization,
//! SRAM peak, traffic, per-node spans) -> [`trace::chrome_trace`] (Perfetto) and
//! [`functional::eval_in_order`] (the real outputs, evaluated in the simulated finish order).
//! [`simulate`] does all of it for one graph; [`multi`] runs several cards at once (data
//! and pipeline parallel).

pub mod config;
pub mod device;
pub mod functional;
pub mod lower;
pub mod multi;
pub mod sim;
pub mod systolic;
pub mod trace;

pub use config::{ConfigError, NpuConfig};
pub use device::NpuDevice;
pub use lower::{Axis, LowerError, LowerOptions, Tiling, Unit, Work};
pub use multi::{
    data_outputs, data_parallel, pipeline, pipeline_outputs, DataOptions, DataReport, GraphCache,
    MultiError, PipelineOptions, PipelineReport,
};
pub use sim::SimReport;

use millrace_core::Tensor;
use millrace_ir::Graph;

/// Any failure of a simulation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NpuError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Lower(#[from] LowerError),
    #[error(transparent)]
    Functional(#[from] functional::FunctionalError),
}

/// What to simulate.
#[derive(Clone, Debug, Default)]
pub struct SimOptions {
    /// Back-to-back inferences (at least 1). With `resident_weights`, the first loads the
    /// resident weights into SRAM and the later ones skip them.
    pub inferences: usize,
    /// Keep weights resident in SRAM across inferences, chosen by the residency knapsack.
    pub resident_weights: bool,
}

/// Lowers and simulates `g` (an optimized graph with concrete shapes) on `cfg`.
pub fn simulate(g: &Graph, cfg: &NpuConfig, opts: &SimOptions) -> Result<SimReport, NpuError> {
    let mut lo = LowerOptions::new(g.nodes.len());
    lo.inferences = opts.inferences.max(1);
    if opts.resident_weights {
        lo.resident = lower::choose_resident(g, cfg);
    }
    simulate_with(g, cfg, &lo)
}

/// Lowers and simulates with explicit lowering options (forced tilings, resident sets).
pub fn simulate_with(g: &Graph, cfg: &NpuConfig, lo: &LowerOptions) -> Result<SimReport, NpuError> {
    let program = lower::lower(g, cfg, lo)?;
    let names: Vec<String> = g.nodes.iter().map(|n| n.name.clone()).collect();
    Ok(sim::simulate_program(cfg, program, &names))
}

/// The model's outputs computed in the simulated finish order.
pub fn outputs(
    g: &Graph,
    report: &SimReport,
    inputs: &[(String, Tensor)],
) -> Result<Vec<(String, Tensor)>, NpuError> {
    let order = report.finish_order(g);
    Ok(functional::eval_in_order(g, inputs, &order)?)
}
