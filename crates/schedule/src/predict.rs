//! The cost model behind `--schedule auto`: is running independent branches at the same
//! time predicted to beat running every node on all threads, one after another?
//!
//! A node with `f` FLOPs and `b` bytes on `p` threads (fractional: two branches sharing two
//! threads get one each) is modelled as
//!
//! ```text
//! t(p) = overhead + (p > 1) * fork_join + f / (s(p) * flops_per_thread) + b / min(p * bw_per_thread, bw_total)
//! s(p) = p for p <= 1, 1 + (p - 1) * scaling above
//! ```
//!
//! Splitting small nodes across threads pays a fork/join each time, and every extra thread
//! on one node adds only `scaling` of a thread's work (shared caches, imbalance at the
//! join); branch parallelism avoids both. Compute and memory time add rather than overlap:
//! most nodes here are too small for either to hide the other, and a node with low
//! arithmetic intensity that half-fills the FMA units (SqueezeNet's expand convolutions)
//! is slower than either bound alone.
//!
//! The sequential run is the sum of `t(T)`. The parallel run is a fluid list-schedule
//! simulation: ready nodes are taken by bottom level (critical path first), at most `T`
//! run at once and share the threads and the machine's total bandwidth equally, and a
//! node's successors become ready when it finishes.
use crate::Dag;

/// Machine constants for the model. Only ratios matter for the decision.
#[derive(Clone, Copy, Debug)]
pub struct Machine {
    pub flops_per_thread: f64,
    pub bytes_per_s_per_thread: f64,
    pub bytes_per_s_total: f64,
    /// Fixed cost of dispatching one node.
    pub node_overhead_s: f64,
    /// Extra cost of splitting one node across threads and joining.
    pub fork_join_s: f64,
    /// What each thread beyond the first adds to one node's compute rate, as a share of a
    /// thread's.
    pub scaling: f64,
}

impl Default for Machine {
    /// Roughly one AVX-512 core at half its peak (GEMMs of a CNN) and its share of DRAM.
    fn default() -> Machine {
        Machine {
            flops_per_thread: 80e9,
            bytes_per_s_per_thread: 12e9,
            bytes_per_s_total: 20e9,
            node_overhead_s: 2e-6,
            fork_join_s: 15e-6,
            // GoogLeNet's and ResNet-50's convolutions run 1.6-1.9x faster on 2 threads
            // than on 1 (BENCHMARKS.md, per-node scaling).
            scaling: 0.8,
        }
    }
}

impl Machine {
    /// Modelled seconds for a node of `flops` and `bytes` on `p` threads.
    pub fn time(&self, flops: f64, bytes: f64, p: f64) -> f64 {
        self.time_sharing(flops, bytes, p, 1)
    }

    /// [`Machine::time`] for one of `nodes` nodes running at once, which share the
    /// machine's total bandwidth equally.
    pub fn time_sharing(&self, flops: f64, bytes: f64, p: f64, nodes: usize) -> f64 {
        let p = p.max(1e-3);
        let bw_total = self.bytes_per_s_total / nodes.max(1) as f64;
        let speedup = if p > 1.0 {
            1.0 + (p - 1.0) * self.scaling
        } else {
            p
        };
        let compute = flops / (speedup * self.flops_per_thread);
        let memory = bytes / (p * self.bytes_per_s_per_thread).min(bw_total);
        let fork = if p > 1.0 + 1e-9 {
            self.fork_join_s
        } else {
            0.0
        };
        self.node_overhead_s + fork + compute + memory
    }
}

/// What the model expects of one run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// Every node on all threads, one after another.
    pub sequential_s: f64,
    /// Independent nodes at the same time, sharing the threads.
    pub parallel_s: f64,
    /// The longest chain of dependent nodes, each at its best thread count: no schedule
    /// beats it.
    pub critical_path_s: f64,
    /// The most nodes ready at once (1 for a chain).
    pub max_width: usize,
}

impl Prediction {
    /// Whether the parallel schedule is predicted at least `margin` (e.g. 0.03) faster.
    pub fn parallel_wins(&self, margin: f64) -> bool {
        self.max_width > 1 && self.parallel_s < self.sequential_s * (1.0 - margin)
    }
}

/// Predicts sequential and branch-parallel run times. `cost[i]` is node `i`'s (FLOPs, bytes).
pub fn predict(dag: &Dag, cost: &[(u64, u64)], threads: usize, m: &Machine) -> Prediction {
    let n = dag.len();
    let t = threads.max(1) as f64;
    let fb = |i: usize| {
        let (f, b) = cost.get(i).copied().unwrap_or((0, 0));
        (f as f64, b as f64)
    };
    let on = |i: usize, p: f64| {
        let (f, b) = fb(i);
        m.time(f, b, p)
    };
    let sequential_s: f64 = (0..n).map(|i| on(i, t)).sum();
    // Each node at its best thread count: a lower bound for any schedule under the model.
    let best: Vec<f64> = (0..n).map(|i| on(i, t).min(on(i, 1.0))).collect();
    let (critical_path_s, _) = dag.critical_path(&best);
    let single: Vec<f64> = (0..n).map(|i| on(i, 1.0)).collect();
    let priority = dag.bottom_levels(&single);

    // Fluid simulation.
    let mut pending: Vec<usize> = (0..n).map(|i| dag.preds(i).len()).collect();
    let mut ready: Vec<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
    let mut left = vec![1.0f64; n]; // fraction of each node's work still to do
    let mut now = 0.0;
    let mut done = 0;
    let mut active: Vec<usize> = Vec::new();
    while done < n {
        // Fill the active set by priority.
        ready.sort_by(|&a, &b| priority[b].total_cmp(&priority[a]));
        while active.len() < threads.max(1) && !ready.is_empty() {
            active.push(ready.remove(0));
        }
        if active.is_empty() {
            break; // unreachable for a DAG; guards against a malformed one
        }
        let p = t / active.len() as f64;
        let rates: Vec<f64> = active
            .iter()
            .map(|&i| {
                let (f, b) = fb(i);
                1.0 / m.time_sharing(f, b, p, active.len())
            })
            .collect();
        let dt = active
            .iter()
            .zip(&rates)
            .map(|(&i, r)| left[i] / r)
            .fold(f64::INFINITY, f64::min);
        now += dt;
        let mut still = Vec::with_capacity(active.len());
        for (&i, r) in active.iter().zip(&rates) {
            left[i] -= dt * r;
            if left[i] <= 1e-12 {
                done += 1;
                for &s in dag.succs(i) {
                    pending[s] -= 1;
                    if pending[s] == 0 {
                        ready.push(s);
                    }
                }
            } else {
                still.push(i);
            }
        }
        active = still;
    }
    Prediction {
        sequential_s,
        parallel_s: now,
        critical_path_s,
        max_width: dag.max_width(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Dag {
        Dag::from_preds(
            (0..n)
                .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
                .collect(),
        )
    }

    #[test]
    fn a_chain_gains_nothing() {
        let d = chain(10);
        let cost = vec![(1_000_000u64, 10_000u64); 10];
        let p = predict(&d, &cost, 2, &Machine::default());
        assert!((p.parallel_s - p.sequential_s).abs() < 1e-12);
        assert!(!p.parallel_wins(0.0));
        assert_eq!(p.max_width, 1);
    }

    #[test]
    fn many_small_branches_win() {
        // 0 -> 1..=8 -> 9: eight small independent nodes, fork/join dominates them.
        let mut preds = vec![vec![]];
        preds.extend((1..=8).map(|_| vec![0]));
        preds.push((1..=8).collect());
        let d = Dag::from_preds(preds);
        let cost = vec![(200_000u64, 20_000u64); 10];
        let p = predict(&d, &cost, 2, &Machine::default());
        assert!(p.parallel_wins(0.03), "{p:?}");
        assert!(p.critical_path_s <= p.parallel_s + 1e-12);
    }

    #[test]
    fn one_thread_never_prefers_parallel() {
        let mut preds = vec![vec![]];
        preds.extend((1..=4).map(|_| vec![0]));
        let d = Dag::from_preds(preds);
        let cost = vec![(1_000_000u64, 0u64); 5];
        let p = predict(&d, &cost, 1, &Machine::default());
        assert!((p.parallel_s - p.sequential_s).abs() < 1e-9, "{p:?}");
    }

    fn diamond() -> Dag {
        // 0 -> {1, 2} -> 3
        Dag::from_preds(vec![vec![], vec![0], vec![0], vec![1, 2]])
    }

    #[test]
    fn compute_bound_branches_win_by_what_one_node_loses_to_scaling() {
        let cost = vec![(50_000_000u64, 0u64); 4];
        let mut m = Machine {
            fork_join_s: 0.0,
            node_overhead_s: 0.0,
            ..Machine::default()
        };
        let p = predict(&diamond(), &cost, 2, &m);
        // Sequential: 4 nodes at 1 + scaling threads' rate; parallel: the two middle ones
        // side by side at one thread each.
        let one = 50e6 / m.flops_per_thread;
        let seq = 4.0 * one / (1.0 + m.scaling);
        let par = 2.0 * one / (1.0 + m.scaling) + one;
        assert!((p.sequential_s - seq).abs() < 1e-12, "{p:?}");
        assert!((p.parallel_s - par).abs() < 1e-12, "{p:?}");
        assert!(p.parallel_wins(0.03));
        m.scaling = 1.0;
        assert!(!predict(&diamond(), &cost, 2, &m).parallel_wins(0.0));
    }

    #[test]
    fn memory_bound_branches_share_the_bandwidth() {
        // Branches that only move bytes gain nothing side by side: together they still
        // get the machine's total bandwidth, no more.
        let cost = vec![(0u64, 100_000_000u64); 4];
        let m = Machine {
            fork_join_s: 0.0,
            node_overhead_s: 0.0,
            ..Machine::default()
        };
        let p = predict(&diamond(), &cost, 2, &m);
        assert!(!p.parallel_wins(0.0), "{p:?}");
        assert!((p.parallel_s - p.sequential_s).abs() < 1e-9, "{p:?}");
    }
}
