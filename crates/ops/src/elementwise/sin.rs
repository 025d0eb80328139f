//! Sin (ONNX opsets 7, 22): sine, elementwise for float dtypes.
crate::simple_float_op!(Sin, 4, |x| x.sin());

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[4], vec![0.0, 1.0, -2.0, 3.14159]);
        close(
            &vals::<f32>(&Sin, &[&x]),
            &[
                0.0,
                0.8414709848078965,
                -0.9092974268256817,
                2.65358979335273e-06,
            ],
            2e-6,
        );
        let x64 = t::<f64>(&[4], vec![0.0, 1.0, -2.0, 3.14159]);
        let y64 = vals::<f64>(&Sin, &[&x64]);
        let want: [f64; 4] = [
            0.0,
            0.8414709848078965,
            -0.9092974268256817,
            2.65358979335273e-06,
        ];
        for (g, w) in y64.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-12 * w.abs().max(1.0)
            );
        }
        let h = t(&[1, 1], vec![half::f16::from_f64(3.14159)]);
        let out = run(&Sin, &[&h]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].dtype(), millrace_core::DType::F16);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i32]);
        assert!(run(&Sin, &[&x]).unwrap_err().is_unsupported());
        assert_eq!(
            run(&Sin, &[&t(&[0], Vec::<f32>::new())]).unwrap()[0].len(),
            0
        );
    }
}
