//! attention ops.
use crate::registry::Registry;

pub mod sdpa;
pub mod common;

pub fn register(r: &mut Registry) {
    r.add("Attention", sdpa::Attention::from_onnx);
}
