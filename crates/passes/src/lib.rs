//! millrace-passes: graph rewrites, one per file, run by [`Pipeline`] in a plain order
//! with the verifier after each.
//!
//! A pass reports what it did through [`PassStats`] counters (how often each rewrite fired,
//! and why a candidate was refused), which `millrace plan` prints.

mod cancel_transpose;
mod const_fold;
mod dead_node_elim;
mod fuse_attention;
mod fuse_conv;
mod fuse_elementwise;
mod fuse_gelu;
mod fuse_layernorm;
mod fuse_matmul;
mod merge_sibling_convs;
mod patterns;
mod pipeline;
#[cfg(test)]
mod test_util;

pub use cancel_transpose::CancelTranspose;
pub use const_fold::ConstFold;
pub use dead_node_elim::DeadNodeElim;
pub use fuse_attention::FuseAttention;
pub use fuse_conv::FuseConv;
pub use fuse_elementwise::FuseElementwise;
pub use fuse_gelu::FuseGelu;
pub use fuse_layernorm::FuseLayerNorm;
pub use fuse_matmul::FuseMatMul;
pub use merge_sibling_convs::MergeSiblingConvs;
pub use pipeline::{
    default_pipeline, Pass, PassError, PassOptions, PassReport, PassStats, Pipeline,
};
