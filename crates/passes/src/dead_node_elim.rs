//! dead-node-elim: removes nodes whose outputs reach no graph output, and unused constants.
//!
//! ```text
//! %a = Relu(%x)                      %b = Sigmoid(%x)
//! %b = Sigmoid(%x)          =>       (outputs: %b)
//! (outputs: %b)
//! ```
use crate::pipeline::{Pass, PassError, PassStats};
use millrace_ir::Graph;

pub struct DeadNodeElim;

impl Pass for DeadNodeElim {
    fn name(&self) -> &'static str {
        "dead-node-elim"
    }

    fn summary(&self) -> &'static str {
        "remove nodes and constants no graph output depends on"
    }

    fn run(&self, g: &mut Graph, stats: &mut PassStats) -> Result<bool, PassError> {
        let removed = g.remove_dead();
        for _ in 0..removed {
            stats.bump("removed");
        }
        Ok(removed > 0)
    }
}
