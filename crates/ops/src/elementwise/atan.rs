//! Atan (ONNX opsets 7, 22): arctangent, elementwise for float dtypes.
crate::simple_float_op!(Atan, 4, |x| x.atan());

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[3], vec![0.0, 1.0, -10.0]);
        close(
            &vals::<f32>(&Atan, &[&x]),
            &[0.0, 0.7853981633974483, -1.4711276743037347],
            2e-6,
        );
        let x64 = t::<f64>(&[3], vec![0.0, 1.0, -10.0]);
        let y64 = vals::<f64>(&Atan, &[&x64]);
        let want: [f64; 3] = [0.0, 0.7853981633974483, -1.4711276743037347];
        for (g, w) in y64.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-12 * w.abs().max(1.0)
            );
        }
        let h = t(&[1, 1], vec![half::f16::from_f64(-10.0)]);
        let out = run(&Atan, &[&h]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].dtype(), millrace_core::DType::F16);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i32]);
        assert!(run(&Atan, &[&x]).unwrap_err().is_unsupported());
        assert_eq!(
            run(&Atan, &[&t(&[0], Vec::<f32>::new())]).unwrap()[0].len(),
            0
        );
    }
}
