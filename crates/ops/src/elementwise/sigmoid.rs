//! Sigmoid (ONNX opsets 6, 13): `1 / (1 + e^-x)`, computed without overflow, elementwise for float dtypes.
crate::simple_float_op!(Sigmoid, 4, vmath = Sigmoid, |x| {
    if x >= F::c(0.0) {
        F::c(1.0) / (F::c(1.0) + (-x).exp())
    } else {
        let e = x.exp();
        e / (F::c(1.0) + e)
    }
});

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[6], vec![-100.0, -2.0, 0.0, 0.5, 3.0, 100.0]);
        close(
            &vals::<f32>(&Sigmoid, &[&x]),
            &[
                3.7200759760208356e-44,
                0.11920292202211755,
                0.5,
                0.6224593312018546,
                0.9525741268224334,
                1.0,
            ],
            2e-6,
        );
        let x64 = t::<f64>(&[6], vec![-100.0, -2.0, 0.0, 0.5, 3.0, 100.0]);
        let y64 = vals::<f64>(&Sigmoid, &[&x64]);
        let want: [f64; 6] = [
            3.7200759760208356e-44,
            0.11920292202211755,
            0.5,
            0.6224593312018546,
            0.9525741268224334,
            1.0,
        ];
        for (g, w) in y64.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-12 * w.abs().max(1.0)
            );
        }
        let h = t(&[1, 1], vec![half::f16::from_f64(100.0)]);
        let out = run(&Sigmoid, &[&h]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].dtype(), millrace_core::DType::F16);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i32]);
        assert!(run(&Sigmoid, &[&x]).unwrap_err().is_unsupported());
        assert_eq!(
            run(&Sigmoid, &[&t(&[0], Vec::<f32>::new())]).unwrap()[0].len(),
            0
        );
    }
}
