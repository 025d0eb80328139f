//! Cutting a graph's node order into contiguous pipeline stages of balanced cost: where a
//! cut may go, and the cut that minimizes the costliest stage. Used by stream pipelining on
//! CPU thread groups (`runtime::stream`) and by pipelines of simulated cards (`npu::multi`).

use std::collections::HashMap;
use std::ops::Range;

use millrace_ir::{Graph, ValueId};

/// Why no cut into `k` stages exists.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CutError {
    #[error("a pipeline needs at least 1 stage")]
    NoStages,
    #[error("the model has no nodes to cut into stages")]
    NoNodes,
    #[error(
        "cannot cut this model into {stages} stages: it has {nodes} nodes and {cuts} places to \
         cut, so at most {} stages", cuts + 1
    )]
    TooManyStages {
        stages: usize,
        nodes: usize,
        cuts: usize,
    },
}

/// `allowed[i]` for `i` in `1..n`: may the graph be cut before node `i`? Not where a value
/// crossing the cut may be a sequence or an optional (only tensors travel between stages).
/// `allowed[0]` and `allowed[n]` are false: they are not cuts.
pub fn allowed_cuts(g: &Graph) -> Vec<bool> {
    let n = g.nodes.len();
    // For each value, the last node that reads it (graph outputs: past the end).
    let mut last_read: HashMap<ValueId, usize> = HashMap::new();
    for (i, node) in g.nodes.iter().enumerate() {
        for v in node.inputs.iter().flatten() {
            last_read.insert(*v, i);
        }
    }
    for v in &g.outputs {
        last_read.insert(*v, n);
    }
    let mut allowed = vec![true; n + 1];
    allowed[0] = false;
    allowed[n] = false;
    for (v, (p, _)) in g.producers() {
        if !g.nodes[p.index()].op.takes_values() {
            continue;
        }
        if let Some(&last) = last_read.get(&v) {
            // Cuts before nodes p+1..=last would carry `v` across.
            for a in allowed.iter_mut().take(last.min(n) + 1).skip(p.index() + 1) {
                *a = false;
            }
        }
    }
    allowed
}

/// Splits `costs` into exactly `k` contiguous non-empty ranges, cutting only where
/// `allowed`, minimizing the largest range's cost (ties: the earliest cuts). Dynamic
/// programming over the allowed cut points, O(k · cuts²).
pub fn balanced_ranges(
    costs: &[f64],
    allowed: &[bool],
    k: usize,
) -> Result<Vec<Range<usize>>, CutError> {
    let n = costs.len();
    if k == 0 {
        return Err(CutError::NoStages);
    }
    if n == 0 {
        return Err(CutError::NoNodes);
    }
    let cut_points: Vec<usize> = (1..n).filter(|&i| allowed.get(i) == Some(&true)).collect();
    if k > cut_points.len() + 1 {
        return Err(CutError::TooManyStages {
            stages: k,
            nodes: n,
            cuts: cut_points.len(),
        });
    }
    // Boundaries: 0, the cut points, n. DP over boundary indices.
    let mut b = vec![0usize];
    b.extend(&cut_points);
    b.push(n);
    let mut prefix = vec![0.0f64; n + 1];
    for i in 0..n {
        prefix[i + 1] = prefix[i] + costs[i];
    }
    let seg = |i: usize, j: usize| prefix[b[j]] - prefix[b[i]];
    let m = b.len();
    // best[s][j]: the smallest max cost splitting nodes 0..b[j] into s ranges.
    let inf = f64::INFINITY;
    let mut best = vec![vec![inf; m]; k + 1];
    let mut from = vec![vec![0usize; m]; k + 1];
    best[0][0] = 0.0;
    for s in 1..=k {
        for j in s..m {
            for i in (s - 1)..j {
                if best[s - 1][i] == inf {
                    continue;
                }
                let c = best[s - 1][i].max(seg(i, j));
                if c < best[s][j] {
                    best[s][j] = c;
                    from[s][j] = i;
                }
            }
        }
    }
    let mut ranges = Vec::with_capacity(k);
    let mut j = m - 1;
    for s in (1..=k).rev() {
        let i = from[s][j];
        ranges.push(b[i]..b[j]);
        j = i;
    }
    ranges.reverse();
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balances_and_respects_forbidden_cuts() {
        let all = vec![true; 7];
        let p = balanced_ranges(&[1.0, 1.0, 1.0, 1.0, 4.0, 1.0], &all, 2).unwrap();
        assert_eq!(p, vec![0..4, 4..6]);
        let p = balanced_ranges(&[5.0, 1.0, 1.0, 1.0, 1.0, 1.0], &all, 3).unwrap();
        assert_eq!(p[0], 0..1);
        // No cut before node 4: the best split moves.
        let mut some = all.clone();
        some[4] = false;
        let p = balanced_ranges(&[1.0, 1.0, 1.0, 1.0, 4.0, 1.0], &some, 2).unwrap();
        assert_eq!(p, vec![0..3, 3..6]);
        let r = balanced_ranges(&[1.0, 1.0, 1.0, 1.0, 4.0], &all, 2).unwrap();
        assert_eq!(r, vec![0..4, 4..5]);
    }

    #[test]
    fn impossible_cuts_are_errors() {
        assert_eq!(
            balanced_ranges(&[1.0; 3], &[false; 4], 2),
            Err(CutError::TooManyStages {
                stages: 2,
                nodes: 3,
                cuts: 0
            })
        );
        assert_eq!(balanced_ranges(&[1.0; 2], &[true; 3], 3).unwrap_err().to_string(),
            "cannot cut this model into 3 stages: it has 2 nodes and 1 places to cut, so at most 2 stages");
        assert_eq!(balanced_ranges(&[], &[], 1), Err(CutError::NoNodes));
        assert_eq!(
            balanced_ranges(&[1.0], &[false, false], 0),
            Err(CutError::NoStages)
        );
    }
}
