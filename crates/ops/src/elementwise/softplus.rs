//! Softplus (ONNX opsets 1, 22): `ln(1 + e^x)`, computed without overflow, elementwise for float dtypes.
crate::simple_float_op!(Softplus, 4, |x| {
    if x > F::c(0.0) {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
});

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[5], vec![-100.0, -1.0, 0.0, 1.0, 100.0]);
        close(
            &vals::<f32>(&Softplus, &[&x]),
            &[
                3.720075976020836e-44,
                0.31326168751822286,
                0.6931471805599453,
                1.3132616875182228,
                100.0,
            ],
            2e-6,
        );
        let x64 = t::<f64>(&[5], vec![-100.0, -1.0, 0.0, 1.0, 100.0]);
        let y64 = vals::<f64>(&Softplus, &[&x64]);
        let want: [f64; 5] = [
            3.720075976020836e-44,
            0.31326168751822286,
            0.6931471805599453,
            1.3132616875182228,
            100.0,
        ];
        for (g, w) in y64.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-12 * w.abs().max(1.0)
            );
        }
        let h = t(&[1, 1], vec![half::f16::from_f64(100.0)]);
        let out = run(&Softplus, &[&h]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].dtype(), millrace_core::DType::F16);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i32]);
        assert!(run(&Softplus, &[&x]).unwrap_err().is_unsupported());
        assert_eq!(
            run(&Softplus, &[&t(&[0], Vec::<f32>::new())]).unwrap()[0].len(),
            0
        );
    }
}
