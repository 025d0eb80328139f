//! Sqrt (ONNX opsets 6, 13): square root (NaN below 0), elementwise for float dtypes.
crate::simple_float_op!(Sqrt, 1, vmath = Sqrt, |x| x.sqrt());

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[4], vec![0.0, 2.0, 9.0, -1.0]);
        close(
            &vals::<f32>(&Sqrt, &[&x]),
            &[0.0, 1.4142135623730951, 3.0, f32::NAN],
            2e-6,
        );
        let x64 = t::<f64>(&[4], vec![0.0, 2.0, 9.0, -1.0]);
        let y64 = vals::<f64>(&Sqrt, &[&x64]);
        let want: [f64; 4] = [0.0, 1.4142135623730951, 3.0, f64::NAN];
        for (g, w) in y64.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-12 * w.abs().max(1.0)
            );
        }
        let h = t(&[1, 1], vec![half::f16::from_f64(-1.0)]);
        let out = run(&Sqrt, &[&h]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].dtype(), millrace_core::DType::F16);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i32]);
        assert!(run(&Sqrt, &[&x]).unwrap_err().is_unsupported());
        assert_eq!(
            run(&Sqrt, &[&t(&[0], Vec::<f32>::new())]).unwrap()[0].len(),
            0
        );
    }
}
