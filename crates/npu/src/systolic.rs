//! Cycle model of a systolic matrix unit, agreeing with SCALE-Sim for the same array and
//! dataflow (checked by `tests/scalesim.rs`).
