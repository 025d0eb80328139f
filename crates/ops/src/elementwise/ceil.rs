//! Ceil (ONNX opsets 6, 13): round up to an integer value, elementwise for float dtypes.
crate::simple_float_op!(Ceil, 1, |x| x.ceil());

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[3], vec![-1.5, 1.2, 2.0]);
        close(&vals::<f32>(&Ceil, &[&x]), &[-1.0, 2.0, 2.0], 2e-6);
        let x64 = t::<f64>(&[3], vec![-1.5, 1.2, 2.0]);
        let y64 = vals::<f64>(&Ceil, &[&x64]);
        let want: [f64; 3] = [-1.0, 2.0, 2.0];
        for (g, w) in y64.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-12 * w.abs().max(1.0)
            );
        }
        let h = t(&[1, 1], vec![half::f16::from_f64(2.0)]);
        let out = run(&Ceil, &[&h]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].dtype(), millrace_core::DType::F16);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i32]);
        assert!(run(&Ceil, &[&x]).unwrap_err().is_unsupported());
        assert_eq!(
            run(&Ceil, &[&t(&[0], Vec::<f32>::new())]).unwrap()[0].len(),
            0
        );
    }
}
