//! millrace-memory: where every byte lives.
//!
//! [`arena`] packs buffers whose lifetimes may overlap into one arena at fixed offsets,
//! so a run needs one allocation (reused across runs) instead of one per activation.

pub mod arena;
