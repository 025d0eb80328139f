//! Log (ONNX opsets 6, 13): natural logarithm (NaN below 0, -inf at 0), elementwise for float dtypes.
crate::simple_float_op!(Log, 1, |x| x.ln());

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[4], vec![0.5, 1.0, 10.0, 0.0]);
        close(
            &vals::<f32>(&Log, &[&x]),
            &[
                -0.6931471805599453,
                0.0,
                2.302585092994046,
                f32::NEG_INFINITY,
            ],
            2e-6,
        );
        let x64 = t::<f64>(&[4], vec![0.5, 1.0, 10.0, 0.0]);
        let y64 = vals::<f64>(&Log, &[&x64]);
        let want: [f64; 4] = [
            -0.6931471805599453,
            0.0,
            2.302585092994046,
            f64::NEG_INFINITY,
        ];
        for (g, w) in y64.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-12 * w.abs().max(1.0)
            );
        }
        let h = t(&[1, 1], vec![half::f16::from_f64(0.0)]);
        let out = run(&Log, &[&h]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].dtype(), millrace_core::DType::F16);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i32]);
        assert!(run(&Log, &[&x]).unwrap_err().is_unsupported());
        assert_eq!(
            run(&Log, &[&t(&[0], Vec::<f32>::new())]).unwrap()[0].len(),
            0
        );
    }
}
