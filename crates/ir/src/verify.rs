//! The verifier: invariants every graph must satisfy after import and after every pass.
use crate::graph::Graph;
use std::collections::HashSet;

/// A broken graph invariant; names the node or value at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("node `{node}` reads value #{value}, which does not exist")]
    DanglingInput { node: String, value: u32 },
    #[error("node `{node}` reads `{value}` before anything defines it (not a graph input, constant, or earlier output)")]
    UseBeforeDef { node: String, value: String },
    #[error("value `{value}` is defined more than once")]
    Redefined { value: String },
    #[error("graph output `{value}` is never defined")]
    UndefinedOutput { value: String },
    #[error("value id #{0} is out of range")]
    OutOfRange(u32),
    #[error("two values are named `{0}`")]
    DuplicateName(String),
}

/// Checks ids, single definition, definition before use, outputs defined, unique names.
pub fn verify(g: &Graph) -> Result<(), VerifyError> {
    let n = g.values.len();
    let mut defined = vec![false; n];
    let check = |v: u32| {
        if (v as usize) < n {
            Ok(())
        } else {
            Err(VerifyError::OutOfRange(v))
        }
    };
    let mut names = HashSet::new();
    for v in &g.values {
        if !v.name.is_empty() && !names.insert(v.name.as_str()) {
            return Err(VerifyError::DuplicateName(v.name.clone()));
        }
    }
    for &v in g.inputs.iter().chain(g.constants.keys()).chain(&g.captures) {
        check(v.0)?;
        if defined[v.index()] && !g.inputs.contains(&v) {
            return Err(VerifyError::Redefined {
                value: g.values[v.index()].name.clone(),
            });
        }
        defined[v.index()] = true;
    }
    for node in &g.nodes {
        for v in node.inputs.iter().flatten() {
            if v.index() >= n {
                return Err(VerifyError::DanglingInput {
                    node: node.name.clone(),
                    value: v.0,
                });
            }
            if !defined[v.index()] {
                return Err(VerifyError::UseBeforeDef {
                    node: node.name.clone(),
                    value: g.values[v.index()].name.clone(),
                });
            }
        }
        for v in &node.outputs {
            check(v.0)?;
            if defined[v.index()] {
                return Err(VerifyError::Redefined {
                    value: g.values[v.index()].name.clone(),
                });
            }
            defined[v.index()] = true;
        }
    }
    for v in &g.outputs {
        check(v.0)?;
        if !defined[v.index()] {
            return Err(VerifyError::UndefinedOutput {
                value: g.values[v.index()].name.clone(),
            });
        }
    }
    Ok(())
}
