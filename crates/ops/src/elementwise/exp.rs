//! Exp (ONNX opsets 6, 13): `e^x`, elementwise for float dtypes.
crate::simple_float_op!(Exp, 1, vmath = Exp, |x| x.exp());

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[4], vec![-1.0, 0.0, 1.0, 10.0]);
        close(
            &vals::<f32>(&Exp, &[&x]),
            &[
                0.36787944117144233,
                1.0,
                2.718281828459045,
                22026.465794806718,
            ],
            2e-6,
        );
        let x64 = t::<f64>(&[4], vec![-1.0, 0.0, 1.0, 10.0]);
        let y64 = vals::<f64>(&Exp, &[&x64]);
        let want: [f64; 4] = [
            0.36787944117144233,
            1.0,
            2.718281828459045,
            22026.465794806718,
        ];
        for (g, w) in y64.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-12 * w.abs().max(1.0)
            );
        }
        let h = t(&[1, 1], vec![half::f16::from_f64(10.0)]);
        let out = run(&Exp, &[&h]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].dtype(), millrace_core::DType::F16);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i32]);
        assert!(run(&Exp, &[&x]).unwrap_err().is_unsupported());
        assert_eq!(
            run(&Exp, &[&t(&[0], Vec::<f32>::new())]).unwrap()[0].len(),
            0
        );
    }
}
