//! Round (ONNX opsets 11, 22): round to the nearest integer, halves to even, elementwise for float dtypes.
crate::simple_float_op!(Round, 1, |x| x.round_even());

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[8], vec![0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6, -2.6]);
        close(
            &vals::<f32>(&Round, &[&x]),
            &[0.0, 2.0, 2.0, 0.0, -2.0, 2.0, 3.0, -3.0],
            2e-6,
        );
        let x64 = t::<f64>(&[8], vec![0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6, -2.6]);
        let y64 = vals::<f64>(&Round, &[&x64]);
        let want: [f64; 8] = [0.0, 2.0, 2.0, 0.0, -2.0, 2.0, 3.0, -3.0];
        for (g, w) in y64.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-12 * w.abs().max(1.0)
            );
        }
        let h = t(&[1, 1], vec![half::f16::from_f64(-2.6)]);
        let out = run(&Round, &[&h]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].dtype(), millrace_core::DType::F16);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i32]);
        assert!(run(&Round, &[&x]).unwrap_err().is_unsupported());
        assert_eq!(
            run(&Round, &[&t(&[0], Vec::<f32>::new())]).unwrap()[0].len(),
            0
        );
    }
}
