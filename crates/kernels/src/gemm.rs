//! Single-precision matrix multiply.
//!
//! For now this wraps the `matrixmultiply` crate (runtime-dispatched AVX/FMA kernels,
//! cache blocking). It is the seam where millrace's own packed microkernels will go.

/// `C = alpha * A * B + beta * C` with explicit row and column strides (in elements).
///
/// `A` is `m x k`, `B` is `k x n`, `C` is `m x n`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    rsa: isize,
    csa: isize,
    b: &[f32],
    rsb: isize,
    csb: isize,
    beta: f32,
    c: &mut [f32],
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
                c[idx] *= beta;
            }
        }
        return;
    }
    // The extents each operand spans must lie inside its slice.
    let span = |rows: usize, cols: usize, rs: isize, cs: isize| {
        (rows as isize - 1) * rs.max(0) + (cols as isize - 1) * cs.max(0) + 1
    };
    assert!(
        span(m, k, rsa, csa) as usize <= a.len(),
        "sgemm: A too small"
    );
    assert!(
        span(k, n, rsb, csb) as usize <= b.len(),
        "sgemm: B too small"
    );
    assert!(
        span(m, n, rsc, csc) as usize <= c.len(),
        "sgemm: C too small"
    );
    // SAFETY: the asserts above bound every element the kernel touches inside the slices
    // (strides are non-negative for all callers in this crate).
    unsafe {
        matrixmultiply::sgemm(
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

/// Row-major `C[m x n] = A[m x k] * B[k x n]` (overwrites C).
pub fn matmul(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    sgemm(
        m, k, n, 1.0, a, k as isize, 1, b, n as isize, 1, 0.0, c, n as isize, 1,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_matmul_matches_naive() {
        let (m, k, n) = (3, 5, 4);
        let a: Vec<f32> = (0..m * k).map(|x| x as f32 * 0.5 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|x| (x % 7) as f32 - 3.0).collect();
        let mut c = vec![0.0; m * n];
        matmul(m, k, n, &a, &b, &mut c);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                assert!((c[i * n + j] - want).abs() < 1e-4);
            }
        }
    }
}
