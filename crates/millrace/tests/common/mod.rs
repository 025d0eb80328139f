//! Shared test helpers: locating reference data, comparing outputs.
#![allow(dead_code)]
use millrace::Tensor;
use std::path::PathBuf;

/// `../shared/models` beside the repository (CI and developers have it there).
pub fn shared_models() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models");
    assert!(
        dir.is_dir(),
        "reference models not found at {} (the test suite needs ../shared beside the repo)",
        dir.display()
    );
    dir
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Relative L2 error ||a - b|| / ||b|| over all elements (as f64).
pub fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_f64_vec().expect("numeric output");
    let b = b.to_f64_vec().expect("numeric reference");
    let num: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// Argmax along the last axis, per row.
pub fn argmax_rows(t: &Tensor) -> Vec<usize> {
    let v = t.to_f64_vec().expect("numeric");
    let last = t.shape().last().copied().unwrap_or(1).max(1);
    v.chunks(last)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &x)| {
                    if x > bv {
                        (i, x)
                    } else {
                        (bi, bv)
                    }
                })
                .0
        })
        .collect()
}

/// Asserts every output matches its reference: same dtype and shape, relative L2 error at
/// most `tol`, and (for float outputs) the same argmax along the last axis.
pub fn assert_matches(model: &str, got: &[(String, Tensor)], want: &[(String, Tensor)], tol: f64) {
    assert_eq!(got.len(), want.len(), "{model}: output count");
    for (name, w) in want {
        let (_, g) = got
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{model}: no output `{name}`"));
        assert_eq!(g.dtype(), w.dtype(), "{model}/{name}: dtype");
        assert_eq!(g.shape(), w.shape(), "{model}/{name}: shape");
        let err = rel_l2(g, w);
        eprintln!("{model}/{name}: relative L2 error {err:.3e}");
        assert!(
            err <= tol,
            "{model}/{name}: relative L2 error {err:.3e} > {tol:.0e}"
        );
        if w.dtype().is_float() {
            assert_eq!(
                argmax_rows(g),
                argmax_rows(w),
                "{model}/{name}: argmax differs"
            );
        }
    }
}
