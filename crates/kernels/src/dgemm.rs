//! Double-precision matrix multiply (wraps `matrixmultiply::dgemm`).

/// `C = alpha * A * B + beta * C` with explicit row and column strides (in elements).
///
/// `A` is `m x k`, `B` is `k x n`, `C` is `m x n`. When `beta == 0`, C is not read.
#[allow(clippy::too_many_arguments)]
pub fn dgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f64,
    a: &[f64],
    rsa: isize,
    csa: isize,
    b: &[f64],
    rsb: isize,
    csb: isize,
    beta: f64,
    c: &mut [f64],
    rsc: isize,
    csc: isize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                let idx = (i as isize * rsc + j as isize * csc) as usize;
                c[idx] = if beta == 0.0 { 0.0 } else { c[idx] * beta };
            }
        }
        return;
    }
    let span = |rows: usize, cols: usize, rs: isize, cs: isize| {
        (rows as isize - 1) * rs.max(0) + (cols as isize - 1) * cs.max(0) + 1
    };
    assert!(
        span(m, k, rsa, csa) as usize <= a.len(),
        "dgemm: A too small"
    );
    assert!(
        span(k, n, rsb, csb) as usize <= b.len(),
        "dgemm: B too small"
    );
    assert!(
        span(m, n, rsc, csc) as usize <= c.len(),
        "dgemm: C too small"
    );
    assert!(
        rsa >= 0 && csa >= 0 && rsb >= 0 && csb >= 0 && rsc >= 0 && csc >= 0,
        "dgemm: negative stride"
    );
    // SAFETY: the asserts above bound every element the kernel touches inside the slices.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            rsc,
            csc,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposed_a_matches_naive() {
        let (m, k, n) = (2, 3, 2);
        // A stored as k x m (transposed).
        let at: Vec<f64> = (0..k * m).map(|x| x as f64).collect();
        let b: Vec<f64> = (0..k * n).map(|x| x as f64 - 2.0).collect();
        let mut c = vec![0.0; m * n];
        dgemm(
            m, k, n, 1.0, &at, 1, m as isize, &b, n as isize, 1, 0.0, &mut c, n as isize, 1,
        );
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k).map(|p| at[p * m + i] * b[p * n + j]).sum();
                assert_eq!(c[i * n + j], want);
            }
        }
    }
}
