//! The dependency DAG of a graph's nodes.
//!
//! Node `b` depends on node `a` when `b` reads a value `a` writes. Nodes are numbered as in
//! [`Graph::nodes`], which is a topological order, so every edge goes from a lower index to
//! a higher one. Reachability is kept as one bitset of ancestors per node (n^2 / 8 bytes:
//! 125 KB for 1,000 nodes).
use millrace_ir::Graph;

/// Dependencies between the nodes of one graph.
#[derive(Clone, Debug)]
pub struct Dag {
    preds: Vec<Vec<usize>>,
    succs: Vec<Vec<usize>>,
    /// `ancestors[b]` has bit `a` set when `a` must finish before `b` starts.
    ancestors: Vec<Vec<u64>>,
}

impl Dag {
    /// The DAG of `g`'s nodes. Edges from graph inputs and constants are not edges.
    pub fn build(g: &Graph) -> Dag {
        let producers = g.producers();
        let n = g.nodes.len();
        let mut preds: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (b, node) in g.nodes.iter().enumerate() {
            for v in node.inputs.iter().flatten() {
                if let Some(&(a, _)) = producers.get(v) {
                    let a = a.index();
                    // Nodes are in topological order: a producer comes first.
                    if a < b && !preds[b].contains(&a) {
                        preds[b].push(a);
                        succs[a].push(b);
                    }
                }
            }
        }
        Dag::from_edges(preds, succs)
    }

    /// A DAG from explicit predecessor lists (`preds[b]` lists nodes before `b`; every
    /// predecessor index must be lower than `b`, else that edge is ignored).
    pub fn from_preds(preds: Vec<Vec<usize>>) -> Dag {
        let n = preds.len();
        let mut clean: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (b, ps) in preds.into_iter().enumerate() {
            for a in ps {
                if a < b && !clean[b].contains(&a) {
                    clean[b].push(a);
                    succs[a].push(b);
                }
            }
        }
        Dag::from_edges(clean, succs)
    }

    fn from_edges(preds: Vec<Vec<usize>>, succs: Vec<Vec<usize>>) -> Dag {
        let n = preds.len();
        let words = n.div_ceil(64);
        let mut ancestors: Vec<Vec<u64>> = Vec::with_capacity(n);
        for ps in &preds {
            let mut set = vec![0u64; words];
            for &a in ps {
                // Every predecessor has a lower index (checked by the constructors), so its
                // set is already final.
                if let Some(anc) = ancestors.get(a) {
                    set[a / 64] |= 1 << (a % 64);
                    for (w, x) in set.iter_mut().zip(anc) {
                        *w |= *x;
                    }
                }
            }
            ancestors.push(set);
        }
        Dag {
            preds,
            succs,
            ancestors,
        }
    }

    pub fn len(&self) -> usize {
        self.preds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.preds.is_empty()
    }

    /// Nodes whose outputs `b` reads.
    pub fn preds(&self, b: usize) -> &[usize] {
        self.preds.get(b).map_or(&[], Vec::as_slice)
    }

    /// Nodes that read `a`'s outputs.
    pub fn succs(&self, a: usize) -> &[usize] {
        self.succs.get(a).map_or(&[], Vec::as_slice)
    }

    /// Whether `a` must finish before `b` starts (a path `a -> ... -> b`; false for `a == b`).
    pub fn before(&self, a: usize, b: usize) -> bool {
        self.ancestors
            .get(b)
            .and_then(|s| s.get(a / 64))
            .is_some_and(|w| w >> (a % 64) & 1 == 1)
    }

    /// Whether `a` and `b` may run at the same time (neither depends on the other).
    pub fn independent(&self, a: usize, b: usize) -> bool {
        a != b && !self.before(a, b) && !self.before(b, a)
    }

    /// For every node, the longest `time`-weighted path from it to the end, itself included:
    /// the priority of a list scheduler (run the node with the most work behind it first).
    pub fn bottom_levels(&self, time: &[f64]) -> Vec<f64> {
        let n = self.len();
        let mut bl = vec![0.0; n];
        for a in (0..n).rev() {
            let tail = self.succs[a].iter().map(|&s| bl[s]).fold(0.0, f64::max);
            bl[a] = time.get(a).copied().unwrap_or(0.0) + tail;
        }
        bl
    }

    /// The `time`-weighted longest path through the DAG: its length and its nodes in order.
    pub fn critical_path(&self, time: &[f64]) -> (f64, Vec<usize>) {
        let bl = self.bottom_levels(time);
        let Some(mut at) = (0..self.len())
            .filter(|&i| self.preds[i].is_empty())
            .max_by(|&a, &b| bl[a].total_cmp(&bl[b]))
        else {
            return (0.0, Vec::new());
        };
        let len = bl[at];
        let mut path = vec![at];
        while let Some(&next) = self.succs[at]
            .iter()
            .max_by(|&&a, &&b| bl[a].total_cmp(&bl[b]))
        {
            at = next;
            path.push(at);
        }
        (len, path)
    }

    /// The most nodes that are ready at once in an as-soon-as-possible levelling: a quick
    /// measure of how much branch parallelism the graph has (1 for a chain).
    pub fn max_width(&self) -> usize {
        let n = self.len();
        let mut level = vec![0usize; n];
        for b in 0..n {
            level[b] = self.preds[b]
                .iter()
                .map(|&a| level[a] + 1)
                .max()
                .unwrap_or(0);
        }
        let mut count = vec![0usize; n + 1];
        for &l in &level {
            count[l] += 1;
        }
        count.into_iter().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0 -> {1, 2}; 1 -> 3; 2 -> 3; 3 -> 4; plus an isolated 5.
    fn diamond() -> Dag {
        Dag::from_preds(vec![vec![], vec![0], vec![0], vec![1, 2], vec![3], vec![]])
    }

    #[test]
    fn reachability_follows_paths_only() {
        let d = diamond();
        assert!(d.before(0, 4) && d.before(1, 3) && d.before(0, 3));
        assert!(!d.before(1, 2) && !d.before(2, 1) && !d.before(3, 3));
        assert!(d.independent(1, 2) && d.independent(5, 4));
        assert!(!d.independent(0, 4));
        assert_eq!(d.succs(0), &[1, 2]);
        assert_eq!(d.preds(3), &[1, 2]);
    }

    #[test]
    fn critical_path_takes_the_heavier_branch() {
        let d = diamond();
        let t = [1.0, 5.0, 2.0, 1.0, 1.0, 3.0];
        let (len, path) = d.critical_path(&t);
        assert_eq!(path, vec![0, 1, 3, 4]);
        assert_eq!(len, 8.0);
        let bl = d.bottom_levels(&t);
        assert_eq!(bl[2], 4.0);
        // Levels: {0, 5}, {1, 2}, {3}, {4}.
        assert_eq!(d.max_width(), 2);
    }

    #[test]
    fn bad_edges_are_ignored() {
        let d = Dag::from_preds(vec![vec![1], vec![0, 0], vec![7]]);
        assert_eq!(d.preds(0), &[] as &[usize]);
        assert_eq!(d.preds(1), &[0]);
        assert!(d.preds(2).is_empty());
        assert!(d.before(0, 1));
    }

    #[test]
    fn wide_graphs_span_several_words() {
        // A chain of 200 nodes: reachability across bitset words.
        let preds: Vec<Vec<usize>> = (0..200)
            .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
            .collect();
        let d = Dag::from_preds(preds);
        assert!(d.before(3, 199) && d.before(70, 130) && !d.before(130, 70));
        assert_eq!(d.max_width(), 1);
    }
}
