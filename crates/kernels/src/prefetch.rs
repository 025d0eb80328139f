//! Weights that come from memory, asked for ahead of the block that reads them: the
//! region a block prefetches (the next block's weights) split into equal parts, one per
//! tile, so that no tile issues more than a few dozen prefetches at once.

/// Part `i` of `v` cut into `parts` parts of `ceil(len / parts)` values (the last ones
/// shorter or empty).
pub(crate) fn part(v: &[f32], parts: usize, i: usize) -> &[f32] {
    let size = v.len().div_ceil(parts.max(1));
    let rest = v.get(i.saturating_mul(size)..).unwrap_or(&[]);
    &rest[..rest.len().min(size)]
}

/// Asks for every cache line of `v` to be brought into L2 (a hint: nothing is read).
#[inline]
pub(crate) fn l2(v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in v.chunks(16) {
        // SAFETY: a prefetch reads nothing and cannot fault; SSE is part of x86-64.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                line.as_ptr() as *const i8
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

#[cfg(test)]
mod tests {
    use super::part;

    #[test]
    fn parts_cover_the_slice_once() {
        let v: Vec<f32> = (0..10).map(|i| i as f32).collect();
        for parts in 1..=12 {
            let joined: Vec<f32> = (0..parts + 2)
                .flat_map(|i| part(&v, parts, i).to_vec())
                .collect();
            assert_eq!(joined, v, "{parts} parts");
        }
        assert!(part(&[], 3, 0).is_empty());
        assert_eq!(part(&v, 0, 0), &v[..]);
    }
}
