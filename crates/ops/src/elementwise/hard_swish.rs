//! HardSwish (ONNX opsets 14, 22): `x * max(0, min(1, x / 6 + 0.5))`, elementwise for
//! float dtypes.
crate::simple_float_op!(HardSwish, 4, |x| {
    let v = x * F::c(1.0 / 6.0) + F::c(0.5);
    if v < F::c(0.0) {
        F::c(0.0) * x
    } else if v > F::c(1.0) {
        x
    } else {
        x * v
    }
});

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[5], vec![-4.0, -3.0, 0.0, 1.0, 4.0]);
        close(
            &vals::<f32>(&HardSwish, &[&x]),
            &[0.0, 0.0, 0.0, 0.6666667, 4.0],
            1e-6,
        );
        assert!(run(&HardSwish, &[&t(&[1], vec![1i32])]).is_err());
    }
}
