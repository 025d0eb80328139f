//! Less (ONNX opsets 1, 7, 9, 13): `a < b` elementwise with numpy broadcasting, to bool.
super::logic::comparison_op!(Less, "Less", |a, b| a < b);

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, t, vals};
    use super::*;

    #[test]
    fn compares_with_broadcast() {
        let a = t(&[2, 2], vec![1.0f32, 2.0, 3.0, f32::NAN]);
        let b = t(&[2], vec![2.0f32, 2.0]);
        assert_eq!(
            vals::<bool>(&Less::default(), &[&a, &b]),
            [true, false, false, false]
        );
        let x = t(&[3], vec![-1i64, 5, 7]);
        let y = t(&[], vec![5i64]);
        assert_eq!(
            vals::<bool>(&Less::default(), &[&x, &y]),
            [true, false, false]
        );
    }

    #[test]
    fn other_dtypes() {
        let s = t(&[2], vec!["a".to_string(), "b".to_string()]);
        let r = run(&Less::default(), &[&s, &s]);
        assert!(r.unwrap_err().is_unsupported());
        let x = t(&[1], vec![1i32]);
        let y = t(&[1], vec![1i64]);
        assert!(run(&Less::default(), &[&x, &y]).is_err());
    }
}
