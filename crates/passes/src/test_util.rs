//! What the passes' unit tests share: building registry ops and deterministic data.
use millrace_ir::{Attr, Attributes, Op};
use millrace_ops::registry::Registry;
use std::sync::Arc;

/// The registry's op `name` at `opset` with these attributes.
pub fn op_at(name: &str, attrs: Vec<(&str, Attr)>, opset: i64) -> Arc<dyn Op> {
    let a = Attributes::new(
        name,
        attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    );
    (Registry::global().get(name).unwrap())(&a, opset).unwrap()
}

/// The registry's op `name` at opset 17.
pub fn op(name: &str, attrs: Vec<(&str, Attr)>) -> Arc<dyn Op> {
    op_at(name, attrs, 17)
}

/// `n` deterministic values in [-1, 1).
pub fn rnd(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}
