//! Mish (ONNX opsets 18, 22): `x * tanh(softplus(x))`, elementwise for float dtypes.
crate::simple_float_op!(Mish, 8, |x| {
    let sp = if x > F::c(0.0) {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    };
    x * sp.tanh()
});

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[5], vec![-10.0, -1.0, 0.0, 1.0, 5.0]);
        close(
            &vals::<f32>(&Mish, &[&x]),
            &[
                -0.00045398899185674697,
                -0.30340146137410895,
                0.0,
                0.8650983882673103,
                4.999552077529406,
            ],
            2e-6,
        );
        let x64 = t::<f64>(&[5], vec![-10.0, -1.0, 0.0, 1.0, 5.0]);
        let y64 = vals::<f64>(&Mish, &[&x64]);
        let want: [f64; 5] = [
            -0.00045398899185674697,
            -0.30340146137410895,
            0.0,
            0.8650983882673103,
            4.999552077529406,
        ];
        for (g, w) in y64.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-12 * w.abs().max(1.0)
            );
        }
        let h = t(&[1, 1], vec![half::f16::from_f64(5.0)]);
        let out = run(&Mish, &[&h]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].dtype(), millrace_core::DType::F16);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i32]);
        assert!(run(&Mish, &[&x]).unwrap_err().is_unsupported());
        assert_eq!(
            run(&Mish, &[&t(&[0], Vec::<f32>::new())]).unwrap()[0].len(),
            0
        );
    }
}
