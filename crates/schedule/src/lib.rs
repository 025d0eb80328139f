//! millrace-schedule: what depends on what, and what may run at the same time.
//!
//! [`Dag`] is the node-level dependency graph of an optimized [`millrace_ir::Graph`]
//! (an edge for every value a node reads from another node), with reachability sets so the
//! executor and the memory planner can ask "does `a` always finish before `b` starts?".
//! [`Dag::critical_path`] and [`Dag::bottom_levels`] weigh nodes by estimated time;
//! [`predict`] simulates a sequential and a branch-parallel run of the DAG on `T` threads
//! with a simple machine model, which is how `--schedule auto` decides.

mod dag;
mod predict;
pub mod stages;

pub use dag::Dag;
pub use predict::{predict, Machine, Prediction};
pub use stages::{allowed_cuts, balanced_ranges, CutError};
