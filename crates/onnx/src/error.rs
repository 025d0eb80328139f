//! Import errors: each names the file, tensor, or node and op at fault.
use std::fmt;

/// One node millrace cannot import, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIssue {
    pub node: String,
    pub op: String,
    pub msg: String,
}

impl fmt::Display for NodeIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node `{}` ({}): {}", self.node, self.op, self.msg)
    }
}

/// Why a model could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not a valid ONNX model (protobuf decoding failed: {0})")]
    Decode(String),
    #[error("the model has no graph")]
    NoGraph,
    #[error("{0}")]
    Model(String),
    #[error("tensor `{name}`: {msg}")]
    Tensor { name: String, msg: String },
    #[error("value `{name}`: {msg}")]
    Value { name: String, msg: String },
    /// Every node that cannot be imported, listed together.
    #[error("{} node(s) cannot be imported:\n{}{}", .issues.len(), list(.issues), summary(.issues))]
    Nodes { issues: Vec<NodeIssue> },
    #[error("the imported graph is malformed: {0}")]
    Verify(#[from] millrace_ir::VerifyError),
}

fn list(issues: &[NodeIssue]) -> String {
    let mut s = String::new();
    for i in issues.iter().take(50) {
        s.push_str(&format!("  - {i}\n"));
    }
    if issues.len() > 50 {
        s.push_str(&format!("  ... and {} more\n", issues.len() - 50));
    }
    s
}

fn summary(issues: &[NodeIssue]) -> String {
    let mut ops: Vec<&str> = issues.iter().map(|i| i.op.as_str()).collect();
    ops.sort();
    ops.dedup();
    format!("ops involved: {}", ops.join(", "))
}

impl ImportError {
    /// The issues, if this error lists unsupported or invalid nodes.
    pub fn node_issues(&self) -> &[NodeIssue] {
        match self {
            ImportError::Nodes { issues } => issues,
            _ => &[],
        }
    }
}
