//! A readable text dump of a graph.
//!
//! ```text
//! graph resnet50(%input: f32[batch,3,224,224]) -> (%output: f32[batch,1000])
//!   const %conv1.weight: f32[64,3,7,7]
//!   %x = Conv{strides=[2,2]}(%input, %conv1.weight, %conv1.bias) : f32[batch,64,112,112]
//! ```
use crate::graph::Graph;
use std::fmt::Write;

impl Graph {
    /// The graph as text; constants are listed by type only.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let sig = |ids: &[crate::ValueId]| {
            ids.iter()
                .map(|v| format!("%{}: {}", self.value(*v).name, self.value(*v).ty))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ins: Vec<_> = self.runtime_inputs().collect();
        let _ = writeln!(
            s,
            "graph {}({}) -> ({})",
            self.name,
            sig(&ins),
            sig(&self.outputs)
        );
        for v in &self.captures {
            let _ = writeln!(
                s,
                "  capture %{}: {}",
                self.value(*v).name,
                self.value(*v).ty
            );
        }
        let mut consts: Vec<_> = self.constants.keys().copied().collect();
        consts.sort();
        for v in consts {
            let _ = writeln!(s, "  const %{}: {}", self.value(v).name, self.value(v).ty);
        }
        for n in &self.nodes {
            let outs: Vec<_> = n
                .outputs
                .iter()
                .map(|v| format!("%{}", self.value(*v).name))
                .collect();
            let ins: Vec<_> = n
                .inputs
                .iter()
                .map(|v| match v {
                    Some(v) => format!("%{}", self.value(*v).name),
                    None => "_".to_string(),
                })
                .collect();
            let tys: Vec<_> = n
                .outputs
                .iter()
                .map(|v| self.value(*v).ty.to_string())
                .collect();
            let attrs = n.op.describe();
            let attrs = if attrs.is_empty() {
                String::new()
            } else {
                format!("{{{attrs}}}")
            };
            let _ = writeln!(
                s,
                "  {} = {}{}({}) : {}",
                outs.join(", "),
                n.op.name(),
                attrs,
                ins.join(", "),
                tys.join(", ")
            );
        }
        s
    }
}
