//! Cosh (ONNX opsets 9, 22): hyperbolic cosine, elementwise for float dtypes.
crate::simple_float_op!(Cosh, 4, |x| x.cosh());

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[3], vec![0.0, 1.0, -2.0]);
        close(
            &vals::<f32>(&Cosh, &[&x]),
            &[1.0, 1.5430806348152437, 3.7621956910836314],
            2e-6,
        );
        let x64 = t::<f64>(&[3], vec![0.0, 1.0, -2.0]);
        let y64 = vals::<f64>(&Cosh, &[&x64]);
        let want: [f64; 3] = [1.0, 1.5430806348152437, 3.7621956910836314];
        for (g, w) in y64.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-12 * w.abs().max(1.0)
            );
        }
        let h = t(&[1, 1], vec![half::f16::from_f64(-2.0)]);
        let out = run(&Cosh, &[&h]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].dtype(), millrace_core::DType::F16);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i32]);
        assert!(run(&Cosh, &[&x]).unwrap_err().is_unsupported());
        assert_eq!(
            run(&Cosh, &[&t(&[0], Vec::<f32>::new())]).unwrap()[0].len(),
            0
        );
    }
}
