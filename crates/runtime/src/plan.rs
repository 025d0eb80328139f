//! The execution plan: nodes in order with their inputs resolved to slots, and the step
//! after which each intermediate value is dropped.
//!
//! Each step also carries its node's [`Cost`] (FLOPs, bytes), computed once at plan build
//! from the graph's inferred types, so a profiled run ([`Plan::execute_profiled`]) can
//! report per-node time next to the work done. Unprofiled runs pay one branch per step.
use crate::error::Error;
use millrace_core::Tensor;
use millrace_ir::{invoke, ArgRef, Cost, Graph, Op, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Outputs of a profiled run and the time of each step.
pub type Profiled = (Vec<(String, Tensor)>, Vec<StepTiming>);

/// How long one step (node) of a profiled run took, with what it computes.
#[derive(Clone, Debug)]
pub struct StepTiming {
    /// The node's name.
    pub node: String,
    /// The op type, e.g. `Conv`.
    pub op: &'static str,
    /// The step's index in the plan (its position in the optimized graph's node list).
    pub step: usize,
    /// When the step started, from the start of the profiled run (or stream).
    pub start: Duration,
    /// How long it took.
    pub time: Duration,
    /// The thread lane that ran it: the rayon worker index in the model's pool (0 when
    /// run outside it); in a stream, stage lanes follow each other.
    pub thread: usize,
    /// Which input of a stream it belongs to (0 for a single run).
    pub frame: usize,
    /// FLOPs and bytes of the node at the compiled shapes (zero where unknown).
    pub cost: Cost,
}

pub(crate) struct Step {
    pub name: String,
    pub op: Arc<dyn Op>,
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<usize>,
    /// Values whose last reader is this step.
    pub frees: Vec<usize>,
    /// FLOPs and bytes at the compiled shapes.
    pub cost: Cost,
}

pub(crate) struct Plan {
    pub steps: Vec<Step>,
    pub n_values: usize,
    pub constants: Vec<Option<Arc<Tensor>>>,
    /// (name, value index) of runtime inputs.
    pub inputs: Vec<(String, usize)>,
    pub outputs: Vec<(String, usize)>,
}

impl Plan {
    pub fn build(g: &Graph) -> Plan {
        let n = g.values.len();
        let mut constants = vec![None; n];
        for (v, t) in &g.constants {
            constants[v.index()] = Some(t.clone());
        }
        let mut last_use = vec![usize::MAX; n];
        for (si, node) in g.nodes.iter().enumerate() {
            for v in node.inputs.iter().flatten() {
                last_use[v.index()] = si;
            }
        }
        let is_output: Vec<bool> = (0..n)
            .map(|i| g.outputs.iter().any(|o| o.index() == i))
            .collect();
        let steps = g
            .nodes
            .iter()
            .enumerate()
            .map(|(si, node)| {
                let mut frees: Vec<usize> = node
                    .inputs
                    .iter()
                    .flatten()
                    .map(|v| v.index())
                    .filter(|&i| last_use[i] == si && !is_output[i] && constants[i].is_none())
                    .collect();
                // Outputs nobody reads (unused optional outputs) are dropped at once.
                frees.extend(
                    node.outputs
                        .iter()
                        .map(|v| v.index())
                        .filter(|&i| last_use[i] == usize::MAX && !is_output[i]),
                );
                frees.sort_unstable();
                frees.dedup();
                let ins: Vec<_> = node
                    .inputs
                    .iter()
                    .map(|v| v.map(|v| g.value(v).ty.clone()).unwrap_or_default())
                    .collect();
                let outs: Vec<_> = node
                    .outputs
                    .iter()
                    .map(|v| g.value(*v).ty.clone())
                    .collect();
                Step {
                    cost: node.op.cost(&ins, &outs),
                    name: node.name.clone(),
                    op: node.op.clone(),
                    inputs: node.inputs.iter().map(|i| i.map(|v| v.index())).collect(),
                    outputs: node.outputs.iter().map(|v| v.index()).collect(),
                    frees,
                }
            })
            .collect();
        Plan {
            steps,
            n_values: n,
            constants,
            inputs: g
                .runtime_inputs()
                .map(|v| (g.value(v).name.clone(), v.index()))
                .collect(),
            outputs: g
                .outputs
                .iter()
                .map(|v| (g.value(*v).name.clone(), v.index()))
                .collect(),
        }
    }

    /// Runs every step. `feeds[i]` is the argument for value `i` when it is a runtime input.
    pub fn execute(&self, feeds: &[Option<ArgRef<'_>>]) -> Result<Vec<(String, Value)>, Error> {
        self.execute_profiled(feeds, None)
    }

    /// The total cost of one run.
    pub fn cost(&self) -> Cost {
        self.steps
            .iter()
            .fold(Cost::default(), |acc, s| acc + s.cost)
    }

    /// Like [`Plan::execute`]; with `profile`, appends one [`StepTiming`] per step (the
    /// time of the op itself, including freeing its dead inputs).
    pub fn execute_profiled(
        &self,
        feeds: &[Option<ArgRef<'_>>],
        mut profile: Option<&mut Vec<StepTiming>>,
    ) -> Result<Vec<(String, Value)>, Error> {
        let origin = Instant::now();
        let mut vals: Vec<Option<Value>> = (0..self.n_values).map(|_| None).collect();
        if let Some(p) = profile.as_deref_mut() {
            p.reserve(self.steps.len());
        }
        for (index, step) in self.steps.iter().enumerate() {
            let t0 = profile.is_some().then(Instant::now);
            let mut args: Vec<Option<ArgRef<'_>>> = Vec::with_capacity(step.inputs.len());
            for i in &step.inputs {
                args.push(match i {
                    None => None,
                    Some(i) => Some(self.lookup(*i, feeds, &vals).ok_or_else(|| {
                        Error::Internal(format!(
                            "node `{}` reads value #{i} before it is computed",
                            step.name
                        ))
                    })?),
                });
            }
            let outs = invoke(step.op.as_ref(), &args).map_err(|source| Error::Node {
                node: step.name.clone(),
                op: step.op.name().to_string(),
                source,
            })?;
            drop(args);
            if outs.len() < step.outputs.len() {
                return Err(Error::Internal(format!(
                    "node `{}` ({}) produced {} outputs, the graph expects {}",
                    step.name,
                    step.op.name(),
                    outs.len(),
                    step.outputs.len()
                )));
            }
            for (&slot, t) in step.outputs.iter().zip(outs) {
                vals[slot] = Some(t);
            }
            for &f in &step.frees {
                vals[f] = None;
            }
            if let (Some(p), Some(t0)) = (profile.as_deref_mut(), t0) {
                p.push(StepTiming {
                    node: step.name.clone(),
                    op: step.op.name(),
                    step: index,
                    start: t0.duration_since(origin),
                    time: t0.elapsed(),
                    thread: rayon::current_thread_index().unwrap_or(0),
                    frame: 0,
                    cost: step.cost,
                });
            }
        }
        let mut result = Vec::with_capacity(self.outputs.len());
        for (k, (name, i)) in self.outputs.iter().enumerate() {
            let needed_again = self.outputs[k + 1..].iter().any(|(_, j)| j == i);
            let v = match (&self.constants[*i], feeds.get(*i).copied().flatten()) {
                (Some(c), _) => Some(Value::Tensor(c.as_ref().clone())),
                (None, Some(ArgRef::Tensor(t))) => Some(Value::Tensor(t.clone())),
                (None, Some(ArgRef::Value(v))) => Some(v.clone()),
                _ if needed_again => vals[*i].clone(),
                _ => vals[*i].take(),
            }
            .ok_or_else(|| Error::Internal(format!("output `{name}` was never computed")))?;
            result.push((name.clone(), v));
        }
        Ok(result)
    }

    fn lookup<'a>(
        &'a self,
        i: usize,
        feeds: &[Option<ArgRef<'a>>],
        vals: &'a [Option<Value>],
    ) -> Option<ArgRef<'a>> {
        if let Some(c) = &self.constants[i] {
            return Some(ArgRef::Tensor(c));
        }
        if let Some(f) = feeds.get(i).copied().flatten() {
            return Some(f);
        }
        vals[i].as_ref().map(ArgRef::Value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_core::DType;
    use millrace_ir::{Attributes, ValueType};
    use millrace_ops::registry::Registry;

    /// `z = Relu(x @ w)` with x: [2, 3] fed at run time and w: [3, 4] constant.
    fn graph() -> Graph {
        let mut g = Graph::new("t");
        let op =
            |t: &str| Registry::global().get(t).unwrap()(&Attributes::new(t, vec![]), 17).unwrap();
        let x = g.add_value("x", ValueType::concrete(DType::F32, &[2, 3]));
        let w = g.add_constant("w", Tensor::from_vec(vec![3, 4], vec![1.0f32; 12]).unwrap());
        let y = g.add_value("y", ValueType::unknown());
        let z = g.add_value("z", ValueType::unknown());
        g.add_node("mm", op("MatMul"), vec![Some(x), Some(w)], vec![y]);
        g.add_node("act", op("Relu"), vec![Some(y)], vec![z]);
        g.inputs = vec![x, w];
        g.outputs = vec![z];
        g.infer_types().unwrap();
        g
    }

    #[test]
    fn profiled_runs_time_every_step_with_its_cost() {
        let g = graph();
        let plan = Plan::build(&g);
        let x = Tensor::from_vec(vec![2, 3], vec![1.0f32, -2.0, 3.0, 0.5, 0.5, 0.5]).unwrap();
        let mut feeds: Vec<Option<ArgRef<'_>>> = vec![None; plan.n_values];
        feeds[plan.inputs[0].1] = Some(ArgRef::Tensor(&x));
        let plain = plan.execute(&feeds).unwrap();
        let mut prof = Vec::new();
        let profiled = plan.execute_profiled(&feeds, Some(&mut prof)).unwrap();
        let vals = |o: &[(String, Value)]| match &o[0].1 {
            Value::Tensor(t) => t.to_f64_vec().unwrap(),
            _ => panic!("not a tensor"),
        };
        assert_eq!(vals(&plain), vals(&profiled));
        assert_eq!(vals(&plain), vec![2.0, 2.0, 2.0, 2.0, 1.5, 1.5, 1.5, 1.5]);
        assert_eq!(prof.len(), 2);
        assert_eq!((prof[0].node.as_str(), prof[0].op), ("mm", "MatMul"));
        assert_eq!((prof[1].node.as_str(), prof[1].op), ("act", "Relu"));
        // MatMul [2,3] x [3,4]: 2 * 8 outputs * 3 = 48 FLOPs.
        assert_eq!(prof[0].cost.flops, 48);
        assert_eq!(plan.cost().flops, 48 + prof[1].cost.flops);
    }
}
