//! Softsign (ONNX opsets 1, 22): `x / (1 + |x|)`, elementwise for float dtypes.
crate::simple_float_op!(Softsign, 3, |x| x / (F::c(1.0) + x.abs()));

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[4], vec![-3.0, 0.0, 1.0, 0.5]);
        close(
            &vals::<f32>(&Softsign, &[&x]),
            &[-0.75, 0.0, 0.5, 0.3333333333333333],
            2e-6,
        );
        let x64 = t::<f64>(&[4], vec![-3.0, 0.0, 1.0, 0.5]);
        let y64 = vals::<f64>(&Softsign, &[&x64]);
        let want: [f64; 4] = [-0.75, 0.0, 0.5, 0.3333333333333333];
        for (g, w) in y64.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-12 * w.abs().max(1.0)
            );
        }
        let h = t(&[1, 1], vec![half::f16::from_f64(0.5)]);
        let out = run(&Softsign, &[&h]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].dtype(), millrace_core::DType::F16);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i32]);
        assert!(run(&Softsign, &[&x]).unwrap_err().is_unsupported());
        assert_eq!(
            run(&Softsign, &[&t(&[0], Vec::<f32>::new())]).unwrap()[0].len(),
            0
        );
    }
}
