//! Erf (ONNX opsets 9, 13): the Gauss error function, elementwise for float dtypes.
crate::simple_float_op!(Erf, 10, vmath = Erf, |x| x.erf());

#[cfg(test)]
mod tests {
    use super::super::testutil::{close, run, t, vals};
    use super::*;

    #[test]
    fn matches_reference_values() {
        let x = t::<f32>(&[7], vec![-3.0, -0.5, 0.0, 0.1, 1.0, 2.5, 5.0]);
        close(
            &vals::<f32>(&Erf, &[&x]),
            &[
                -0.9999779095030014,
                -0.5204998778130465,
                0.0,
                0.1124629160182849,
                0.8427007929497149,
                0.999593047982555,
                0.9999999999984626,
            ],
            2e-6,
        );
        let x64 = t::<f64>(&[7], vec![-3.0, -0.5, 0.0, 0.1, 1.0, 2.5, 5.0]);
        let y64 = vals::<f64>(&Erf, &[&x64]);
        let want: [f64; 7] = [
            -0.9999779095030014,
            -0.5204998778130465,
            0.0,
            0.1124629160182849,
            0.8427007929497149,
            0.999593047982555,
            0.9999999999984626,
        ];
        for (g, w) in y64.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= 1e-12 * w.abs().max(1.0)
            );
        }
        let h = t(&[1, 1], vec![half::f16::from_f64(5.0)]);
        let out = run(&Erf, &[&h]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].dtype(), millrace_core::DType::F16);
    }

    #[test]
    fn integers_are_unsupported() {
        let x = t(&[1], vec![1i32]);
        assert!(run(&Erf, &[&x]).unwrap_err().is_unsupported());
        assert_eq!(
            run(&Erf, &[&t(&[0], Vec::<f32>::new())]).unwrap()[0].len(),
            0
        );
    }
}
