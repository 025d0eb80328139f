//! Cutting a graph into contiguous stages, each a graph of its own (pipelining across CPU
//! thread groups in `runtime::stream`, across simulated cards in `npu::multi`).

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use crate::graph::{Graph, ValueId};

/// One stage: its sub-graph and how it connects to the whole graph.
#[derive(Clone, Debug)]
pub struct StageGraph {
    /// The stage's nodes as a graph of their own. Values keep their names where the name is
    /// unique in the whole graph, else the name gets `#index`; constants are copied in.
    pub graph: Graph,
    /// Values of the whole graph this stage reads from the graph inputs or earlier stages,
    /// in the order of `graph.inputs`.
    pub inputs: Vec<ValueId>,
    /// Values of the whole graph this stage produces that later stages or the caller need,
    /// in the order of `graph.outputs`.
    pub outputs: Vec<ValueId>,
}

/// A graph cut into stages.
#[derive(Clone, Debug)]
pub struct Stages {
    /// One per range, in order.
    pub stages: Vec<StageGraph>,
    /// The last stage reading each value read by some node (`stages.len()` for graph
    /// outputs, which the caller reads at the end).
    pub last_reader: HashMap<ValueId, usize>,
}

/// Why a cut is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    /// The ranges do not cover the nodes contiguously from 0.
    #[error("stage bounds {0:?} do not cover nodes 0..{1} contiguously")]
    Bounds(Vec<Range<usize>>, usize),
    /// A stage reads a value nothing before it produces.
    #[error("stage {stage} reads `{value}`, which no earlier node produces")]
    Unproduced { stage: usize, value: String },
}

impl Graph {
    /// Cuts the nodes into the contiguous `bounds` (in order, covering every node) and builds
    /// one [`StageGraph`] per range.
    pub fn stage_graphs(&self, bounds: &[Range<usize>]) -> Result<Stages, StageError> {
        let k = bounds.len();
        let contiguous = bounds.first().is_some_and(|r| r.start == 0)
            && bounds.windows(2).all(|w| w[0].end == w[1].start)
            && bounds.iter().all(|r| r.start <= r.end)
            && bounds.last().is_some_and(|r| r.end == self.nodes.len());
        if !contiguous {
            return Err(StageError::Bounds(bounds.to_vec(), self.nodes.len()));
        }
        let mut stage_of_node = vec![0usize; self.nodes.len()];
        for (s, r) in bounds.iter().enumerate() {
            for i in r.clone() {
                stage_of_node[i] = s;
            }
        }
        let is_output: HashSet<ValueId> = self.outputs.iter().copied().collect();
        let mut last_reader: HashMap<ValueId, usize> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for v in node.inputs.iter().flatten() {
                let e = last_reader.entry(*v).or_insert(0);
                *e = (*e).max(stage_of_node[i]);
            }
        }
        for v in &self.outputs {
            last_reader.insert(*v, k);
        }
        let producer_stage: HashMap<ValueId, usize> = self
            .producers()
            .into_iter()
            .map(|(v, (n, _))| (v, stage_of_node[n.index()]))
            .collect();
        let runtime_inputs: HashSet<ValueId> = self.runtime_inputs().collect();
        let mut name_count: HashMap<&str, usize> = HashMap::new();
        for v in &self.values {
            *name_count.entry(v.name.as_str()).or_default() += 1;
        }
        let unique_name = |v: ValueId| -> String {
            let name = &self.value(v).name;
            if !name.is_empty() && name_count.get(name.as_str()) == Some(&1) {
                name.clone()
            } else {
                format!("{name}#{}", v.index())
            }
        };
        let mut out = Vec::with_capacity(k);
        for (s, range) in bounds.iter().enumerate() {
            let mut sub = Graph::new(format!("{}#stage{s}", self.name));
            let mut map: HashMap<ValueId, ValueId> = HashMap::new();
            let mut inputs: Vec<ValueId> = Vec::new();
            let mut map_value = |sub: &mut Graph, v: ValueId, reading: bool| {
                if let Some(&id) = map.get(&v) {
                    return Ok(id);
                }
                let info = self.value(v);
                let id = sub.add_value(unique_name(v), info.ty.clone());
                map.insert(v, id);
                if let Some(c) = self.constant(v) {
                    sub.constants.insert(id, c.clone());
                } else if reading {
                    // Read before produced here: an input of this stage.
                    let from_earlier = producer_stage.get(&v).is_some_and(|&p| p < s);
                    if !from_earlier && !runtime_inputs.contains(&v) {
                        return Err(StageError::Unproduced {
                            stage: s,
                            value: info.name.clone(),
                        });
                    }
                    sub.inputs.push(id);
                    if let Some(kind) = self.kinds.get(&v) {
                        sub.kinds.insert(id, kind.clone());
                    }
                    inputs.push(v);
                }
                Ok(id)
            };
            for node in &self.nodes[range.clone()] {
                let ins = node
                    .inputs
                    .iter()
                    .map(|i| i.map(|v| map_value(&mut sub, v, true)).transpose())
                    .collect::<Result<Vec<_>, _>>()?;
                let outs = node
                    .outputs
                    .iter()
                    .map(|&v| map_value(&mut sub, v, false))
                    .collect::<Result<Vec<_>, _>>()?;
                sub.add_node(node.name.clone(), node.op.clone(), ins, outs);
            }
            // Outputs: values produced here that later stages or the caller need.
            let mut outputs = Vec::new();
            for node in &self.nodes[range.clone()] {
                for &v in &node.outputs {
                    let needed =
                        is_output.contains(&v) || last_reader.get(&v).is_some_and(|&l| l > s);
                    if needed && !outputs.contains(&v) {
                        if let Some(&id) = map.get(&v) {
                            outputs.push(v);
                            sub.outputs.push(id);
                            if let Some(kind) = self.kinds.get(&v) {
                                sub.kinds.insert(id, kind.clone());
                            }
                        }
                    }
                }
            }
            out.push(StageGraph {
                graph: sub,
                inputs,
                outputs,
            });
        }
        Ok(Stages {
            stages: out,
            last_reader,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InferCtx, Inputs, Op, OpError, ValueType};
    use millrace_core::{DType, Tensor};
    use std::any::Any;
    use std::sync::Arc;

    /// Passes its first input through (enough to wire graphs).
    #[derive(Debug)]
    struct Pass;
    impl Op for Pass {
        fn name(&self) -> &'static str {
            "Pass"
        }
        fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
            Ok(vec![ctx.input(0)?.clone()])
        }
        fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
            Ok(vec![inputs.req(0)?.clone()])
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    /// x -> a -> b -> c, with c also reading x (a skip across the cut) and a constant.
    fn chain() -> (Graph, [ValueId; 4]) {
        let mut g = Graph::new("t");
        let x = g.add_value("x", ValueType::concrete(DType::F32, &[2]));
        g.inputs.push(x);
        let w = g.add_constant("w", Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap());
        let a = g.add_value("a", ValueType::unknown());
        let b = g.add_value("b", ValueType::unknown());
        let c = g.add_value("c", ValueType::unknown());
        g.add_node("n0", Arc::new(Pass), vec![Some(x), Some(w)], vec![a]);
        g.add_node("n1", Arc::new(Pass), vec![Some(a)], vec![b]);
        g.add_node(
            "n2",
            Arc::new(Pass),
            vec![Some(b), Some(x), Some(w)],
            vec![c],
        );
        g.outputs.push(c);
        (g, [x, a, b, c])
    }

    #[test]
    fn stages_read_what_earlier_stages_and_the_inputs_give() {
        let (g, [x, _a, b, c]) = chain();
        let cut = g.stage_graphs(&[0..2, 2..3]).unwrap();
        assert_eq!(cut.stages.len(), 2);
        assert_eq!(cut.stages[0].inputs, vec![x]);
        assert_eq!(cut.stages[0].outputs, vec![b]);
        assert_eq!(cut.stages[1].inputs, vec![b, x]);
        assert_eq!(cut.stages[1].outputs, vec![c]);
        // The constant is copied into both stages that read it.
        assert_eq!(cut.stages[0].graph.constants.len(), 1);
        assert_eq!(cut.stages[1].graph.constants.len(), 1);
        assert_eq!(cut.last_reader.get(&x), Some(&1));
        assert_eq!(cut.last_reader.get(&c), Some(&2));
    }

    #[test]
    fn bounds_must_cover_the_nodes_in_order() {
        let (g, _) = chain();
        let (gap, short, late) = (
            vec![0..1, 2..3],
            vec![Range { start: 0, end: 2 }],
            vec![Range { start: 1, end: 3 }],
        );
        let bad: [&[Range<usize>]; 4] = [&gap, &short, &late, &[]];
        for bad in bad {
            assert!(matches!(g.stage_graphs(bad), Err(StageError::Bounds(_, 3))));
        }
    }
}
