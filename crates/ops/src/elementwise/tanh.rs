//! Tanh (ONNX opsets 6, 13): hyperbolic tangent, elementwise for float dtypes.
crate::simple_float_op!(Tanh, 4, vmath = Tanh, |x| x.tanh());

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[5], vec![-20.0, -1.0, 0.0, 0.3, 2.0]);
        close(
            &vals::<f32>(&Tanh, &[&x]),
            &[
                -1.0,
                -0.7615941559557649,
                0.0,
                0.2913126124515909,
                0.9640275800758169,
            ],
            2e-6,
        );
        let x64 = t::<f64>(&[5], vec![-20.0, -1.0, 0.0, 0.3, 2.0]);
        let y64 = vals::<f64>(&Tanh, &[&x64]);
        let want: [f64; 5] = [
            -1.0,
            -0.7615941559557649,
            0.0,
            0.2913126124515909,
            0.9640275800758169,
        ];
        for (g, w) in y64.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-12 * w.abs().max(1.0)
            );
        }
        let h = t(&[1, 1], vec![half::f16::from_f64(2.0)]);
        let out = run(&Tanh, &[&h]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].dtype(), millrace_core::DType::F16);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i32]);
        assert!(run(&Tanh, &[&x]).unwrap_err().is_unsupported());
        assert_eq!(
            run(&Tanh, &[&t(&[0], Vec::<f32>::new())]).unwrap()[0].len(),
            0
        );
    }
}
