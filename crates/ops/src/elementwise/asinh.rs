//! Asinh (ONNX opsets 9, 22): inverse hyperbolic sine, elementwise for float dtypes.
crate::simple_float_op!(Asinh, 4, |x| x.asinh());

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[3], vec![0.0, 1.0, -2.0]);
        close(
            &vals::<f32>(&Asinh, &[&x]),
            &[0.0, 0.881373587019543, -1.4436354751788103],
            2e-6,
        );
        let x64 = t::<f64>(&[3], vec![0.0, 1.0, -2.0]);
        let y64 = vals::<f64>(&Asinh, &[&x64]);
        let want: [f64; 3] = [0.0, 0.881373587019543, -1.4436354751788103];
        for (g, w) in y64.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-12 * w.abs().max(1.0)
            );
        }
        let h = t(&[1, 1], vec![half::f16::from_f64(-2.0)]);
        let out = run(&Asinh, &[&h]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].dtype(), millrace_core::DType::F16);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i32]);
        assert!(run(&Asinh, &[&x]).unwrap_err().is_unsupported());
        assert_eq!(
            run(&Asinh, &[&t(&[0], Vec::<f32>::new())]).unwrap()[0].len(),
            0
        );
    }
}
