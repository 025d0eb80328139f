//! Offsets in one arena for buffers with known conflicts.
//!
//! Two buffers *conflict* when they may be alive at the same time: for a sequential run,
//! when their live intervals (first write .. last read) overlap; for a branch-parallel run,
//! unless every access of one is ordered before the first write of the other by the
//! dependency DAG. The caller says which pairs conflict; this module only packs.
//!
//! Algorithm: greedy by size (the heuristic TensorFlow Lite's arena planner uses): take the
//! buffers largest first; put each at the lowest aligned offset where it overlaps no
//! already-placed buffer it conflicts with. Non-conflicting buffers may share bytes. The
//! result is checked by [`ArenaPlan::validate`] in tests.
//!
//! ```text
//! lifetimes           a: [0, 2]  b: [1, 3]  c: [3, 4]     sizes a 4, b 2, c 4
//! offsets             a @ 0      b @ 4      c @ 0         arena 6 (naive sum 10)
//! ```

/// Where each buffer lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaPlan {
    /// Offset of buffer `i`, in the caller's units, a multiple of the alignment.
    pub offsets: Vec<usize>,
    /// Arena size: the largest `offset + size`.
    pub size: usize,
    /// What one allocation per buffer would take: the sum of the sizes.
    pub naive: usize,
}

impl ArenaPlan {
    /// Checks that conflicting buffers do not overlap; returns the first offending pair.
    pub fn validate(
        &self,
        sizes: &[usize],
        conflicts: impl Fn(usize, usize) -> bool,
    ) -> Result<(), (usize, usize)> {
        for i in 0..sizes.len() {
            for j in i + 1..sizes.len() {
                if sizes[i] == 0 || sizes[j] == 0 || !conflicts(i, j) {
                    continue;
                }
                let (a, b) = (self.offsets[i], self.offsets[j]);
                if a < b + sizes[j] && b < a + sizes[i] {
                    return Err((i, j));
                }
            }
        }
        Ok(())
    }
}

/// Packs buffers of `sizes` (any unit) so that conflicting ones never overlap. `align` is
/// the offset granularity (at least 1). `conflicts` must be symmetric.
pub fn plan(sizes: &[usize], align: usize, conflicts: impl Fn(usize, usize) -> bool) -> ArenaPlan {
    let align = align.max(1);
    let n = sizes.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
    let mut offsets = vec![0usize; n];
    let mut placed: Vec<usize> = Vec::with_capacity(n);
    let mut size = 0;
    let mut busy: Vec<(usize, usize)> = Vec::new();
    for &i in &order {
        let want = sizes[i];
        if want == 0 {
            continue;
        }
        busy.clear();
        busy.extend(
            placed
                .iter()
                .filter(|&&j| conflicts(i, j))
                .map(|&j| (offsets[j], offsets[j] + sizes[j])),
        );
        busy.sort_unstable();
        let mut at = 0;
        for &(lo, hi) in &busy {
            if at + want <= lo {
                break;
            }
            at = at.max(hi.div_ceil(align) * align);
        }
        offsets[i] = at;
        size = size.max(at + want);
        placed.push(i);
    }
    ArenaPlan {
        offsets,
        size,
        naive: sizes.iter().sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlap(a: (usize, usize), b: (usize, usize)) -> bool {
        a.0 <= b.1 && b.0 <= a.1
    }

    #[test]
    fn the_doc_example() {
        let life = [(0, 2), (1, 3), (3, 4)];
        let sizes = [4, 2, 4];
        let p = plan(&sizes, 1, |i, j| overlap(life[i], life[j]));
        assert_eq!(p.offsets, vec![0, 4, 0]);
        assert_eq!((p.size, p.naive), (6, 10));
    }

    #[test]
    fn alignment_is_kept() {
        let p = plan(&[5, 3, 7], 16, |_, _| true);
        assert!(p.offsets.iter().all(|o| o % 16 == 0));
        p.validate(&[5, 3, 7], |_, _| true).unwrap();
        assert_eq!(p.size, 16 + 16 + 3);
    }

    #[test]
    fn random_lifetimes_never_overlap_when_live_together() {
        // A small LCG: deterministic, no dependency.
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: usize| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as usize) % m
        };
        for _ in 0..200 {
            let n = 1 + next(40);
            let life: Vec<(usize, usize)> = (0..n)
                .map(|_| {
                    let a = next(50);
                    (a, a + next(10))
                })
                .collect();
            let sizes: Vec<usize> = (0..n).map(|_| next(1000)).collect();
            let c = |i: usize, j: usize| overlap(life[i], life[j]);
            let p = plan(&sizes, 8, c);
            p.validate(&sizes, c).unwrap();
            assert!(p.size <= p.naive.div_ceil(8) * 8 + 8 * n);
            // Never smaller than what is live at the busiest moment.
            let peak = (0..60)
                .map(|t| {
                    (0..n)
                        .filter(|&i| life[i].0 <= t && t <= life[i].1)
                        .map(|i| sizes[i])
                        .sum::<usize>()
                })
                .max()
                .unwrap_or(0);
            assert!(p.size >= peak);
        }
    }
}
