//! Cos (ONNX opsets 7, 22): cosine, elementwise for float dtypes.
crate::simple_float_op!(Cos, 4, |x| x.cos());

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[4], vec![0.0, 1.0, -2.0, 3.14159]);
        close(
            &vals::<f32>(&Cos, &[&x]),
            &[
                1.0,
                0.5403023058681398,
                -0.4161468365471424,
                -0.9999999999964793,
            ],
            2e-6,
        );
        let x64 = t::<f64>(&[4], vec![0.0, 1.0, -2.0, 3.14159]);
        let y64 = vals::<f64>(&Cos, &[&x64]);
        let want: [f64; 4] = [
            1.0,
            0.5403023058681398,
            -0.4161468365471424,
            -0.9999999999964793,
        ];
        for (g, w) in y64.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-12 * w.abs().max(1.0)
            );
        }
        let h = t(&[1, 1], vec![half::f16::from_f64(3.14159)]);
        let out = run(&Cos, &[&h]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].dtype(), millrace_core::DType::F16);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i32]);
        assert!(run(&Cos, &[&x]).unwrap_err().is_unsupported());
        assert_eq!(
            run(&Cos, &[&t(&[0], Vec::<f32>::new())]).unwrap()[0].len(),
            0
        );
    }
}
