//! The pass trait and the ordered pipeline.
use millrace_ir::{verify, Graph, InferError, VerifyError};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// What one pass did: named counters (`folded`, `refused: too large`), free-form notes.
#[derive(Clone, Debug, Default)]
pub struct PassStats {
    pub counters: BTreeMap<String, usize>,
    pub notes: Vec<String>,
}

impl PassStats {
    pub fn bump(&mut self, key: impl Into<String>) {
        *self.counters.entry(key.into()).or_default() += 1;
    }
    pub fn total(&self) -> usize {
        self.counters.values().sum()
    }
}

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("pass `{pass}` left an invalid graph: {source}")]
    Verify {
        pass: &'static str,
        source: VerifyError,
    },
    #[error("pass `{pass}`: node `{node}` ({op}): {msg}")]
    Node {
        pass: &'static str,
        node: String,
        op: String,
        msg: String,
    },
    #[error("after pass `{pass}`: {source}")]
    Infer {
        pass: &'static str,
        source: InferError,
    },
    #[error("unknown pass `{0}` (see `millrace plan --list-passes`)")]
    UnknownPass(String),
}

/// A graph rewrite. `name` is kebab-case and matches the file stem.
pub trait Pass: Send + Sync {
    fn name(&self) -> &'static str;
    /// One line on what the pass does.
    fn summary(&self) -> &'static str;
    /// Rewrites the graph; returns whether anything changed.
    fn run(&self, g: &mut Graph, stats: &mut PassStats) -> Result<bool, PassError>;
}

/// Which passes run and how.
#[derive(Clone, Debug, Default)]
pub struct PassOptions {
    /// Pass names to skip (`--no-pass NAME`).
    pub disabled: HashSet<String>,
    /// Stop after this pass (`--dump-after NAME` prints the graph at that point).
    pub stop_after: Option<String>,
}

/// The outcome of one pass.
#[derive(Clone, Debug)]
pub struct PassReport {
    pub pass: &'static str,
    pub changed: bool,
    pub stats: PassStats,
    pub time: Duration,
    pub nodes_after: usize,
}

/// An ordered list of passes.
pub struct Pipeline {
    passes: Vec<Box<dyn Pass>>,
}

/// The standard pipeline, in order.
pub fn default_pipeline() -> Pipeline {
    Pipeline {
        passes: vec![
            Box::new(crate::ConstFold),
            Box::new(crate::DeadNodeElim),
            Box::new(crate::CancelTranspose),
            Box::new(crate::FuseLayerNorm),
            Box::new(crate::FuseGelu),
            Box::new(crate::MergeSiblingConvs),
            Box::new(crate::FuseConv),
            Box::new(crate::FuseMatMul),
            Box::new(crate::FuseAttention),
            Box::new(crate::FuseElementwise),
        ],
    }
}

impl Pipeline {
    pub fn new(passes: Vec<Box<dyn Pass>>) -> Pipeline {
        Pipeline { passes }
    }

    /// Names and summaries of the passes, in order.
    pub fn list(&self) -> Vec<(&'static str, &'static str)> {
        self.passes
            .iter()
            .map(|p| (p.name(), p.summary()))
            .collect()
    }

    /// Runs every enabled pass, verifying and re-inferring types after each.
    pub fn run(&self, g: &mut Graph, opts: &PassOptions) -> Result<Vec<PassReport>, PassError> {
        for name in opts.disabled.iter().chain(opts.stop_after.iter()) {
            if !self.passes.iter().any(|p| p.name() == name) {
                return Err(PassError::UnknownPass(name.clone()));
            }
        }
        let mut reports = Vec::new();
        for pass in &self.passes {
            if opts.disabled.contains(pass.name()) {
                continue;
            }
            let mut stats = PassStats::default();
            let t0 = Instant::now();
            let changed = pass.run(g, &mut stats)?;
            verify(g).map_err(|source| PassError::Verify {
                pass: pass.name(),
                source,
            })?;
            g.infer_types().map_err(|source| PassError::Infer {
                pass: pass.name(),
                source,
            })?;
            reports.push(PassReport {
                pass: pass.name(),
                changed,
                stats,
                time: t0.elapsed(),
                nodes_after: g.nodes.len(),
            });
            if opts.stop_after.as_deref() == Some(pass.name()) {
                break;
            }
        }
        Ok(reports)
    }
}
