//! Test helper for the planned-buffer hooks: for an op and concrete inputs, checks that
//! `eval_into` (and `eval_inplace`, where the op offers it) give bit-identical results to
//! `eval`, writing into a NaN-filled buffer so that an element left unwritten shows.
use millrace_core::{DType, Tensor};
use millrace_ir::{F32View, Inputs, Op, ValueType};

fn vt(t: &Tensor) -> ValueType {
    ValueType::concrete(t.dtype(), t.shape())
}

fn same_bits(op: &dyn Op, what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{}: {what} length", op.name());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{} {}: {what} element {i}: {g} vs eval's {w}",
            op.name(),
            op.describe()
        );
    }
}

/// Runs `eval`, then `eval_into` and (where offered) `eval_inplace`; panics on any
/// difference. Returns whether the in-place path was exercised.
pub fn check(op: &dyn Op, inputs: &[Option<&Tensor>]) -> bool {
    let want = op
        .eval(&Inputs::new(op.name(), inputs))
        .unwrap_or_else(|e| panic!("eval: {e}"));
    let want = &want[0];
    let ref_vals = want.as_slice::<f32>().expect("f32 output");
    let in_types: Vec<ValueType> = inputs
        .iter()
        .map(|t| t.map_or_else(ValueType::unknown, vt))
        .collect();
    let out_types = vec![vt(want)];
    assert_eq!(want.dtype(), DType::F32);
    assert!(
        op.writes_into(&in_types, &out_types),
        "{} {} should write into a planned buffer",
        op.name(),
        op.describe()
    );
    let views: Vec<Option<F32View<'_>>> = inputs
        .iter()
        .map(|t| t.map(|t| F32View::of(t).expect("f32 input")))
        .collect();
    let mut out = vec![f32::NAN; ref_vals.len()];
    op.eval_into(&views, &mut out, want.shape())
        .unwrap_or_else(|e| panic!("eval_into: {e}"));
    same_bits(op, "eval_into", &out, ref_vals);
    // A second run into the same (now dirty) buffer must overwrite, not accumulate.
    out.iter_mut().for_each(|v| *v = 1e30);
    op.eval_into(&views, &mut out, want.shape()).unwrap();
    same_bits(op, "eval_into (reused buffer)", &out, ref_vals);

    let Some(i) = op.inplace_input(&in_types, &out_types) else {
        return false;
    };
    let src = views[i].expect("the in-place input is present");
    assert_eq!(src.data.len(), ref_vals.len(), "in-place input size");
    let mut io = src.data.to_vec();
    let mut rest = views.clone();
    rest[i] = None;
    op.eval_inplace(i, &rest, &mut io, want.shape())
        .unwrap_or_else(|e| panic!("eval_inplace: {e}"));
    same_bits(op, "eval_inplace", &io, ref_vals);
    true
}

/// Asserts the op declines the planned path for these types.
pub fn refuses(op: &dyn Op, inputs: &[ValueType], outputs: &[ValueType]) {
    assert!(
        !op.writes_into(inputs, outputs),
        "{} should not write into a planned buffer for {inputs:?} -> {outputs:?}",
        op.name()
    );
}

/// A deterministic pseudo-random f32 tensor in [-1, 1).
pub fn rand(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(shape.to_vec(), v).unwrap()
}
