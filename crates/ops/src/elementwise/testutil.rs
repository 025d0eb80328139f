//! Test helpers for the elementwise ops.
use millrace_core::{Elem, Tensor};
use millrace_ir::{Op, OpError};

/// A tensor from a shape and values (panics on a mismatch: tests only).
pub fn t<T: Elem>(shape: &[usize], v: Vec<T>) -> Tensor {
    Tensor::from_vec(shape.to_vec(), v).unwrap()
}

/// Evaluates `op` on present inputs.
pub fn run(op: &dyn Op, inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
    let items: Vec<Option<&Tensor>> = inputs.iter().map(|t| Some(*t)).collect();
    op.eval(&millrace_ir::Inputs::new(op.name(), &items))
}

/// Evaluates `op` on inputs that may be absent.
pub fn run_opt(op: &dyn Op, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
    op.eval(&millrace_ir::Inputs::new(op.name(), inputs))
}

/// The single output's values of dtype `T`.
pub fn vals<T: Elem>(op: &dyn Op, inputs: &[&Tensor]) -> Vec<T> {
    let out = run(op, inputs).unwrap();
    out[0].as_slice::<T>().unwrap().to_vec()
}

/// Asserts two f32 sequences agree within `tol` (NaN matches NaN).
pub fn close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol * w.abs().max(1.0);
        assert!(ok, "{got:?} vs {want:?}");
    }
}

/// Builds an op through its ONNX constructor.
pub fn build(
    f: crate::registry::Builder,
    name: &str,
    attrs: Vec<(&str, millrace_ir::Attr)>,
    opset: i64,
) -> Result<std::sync::Arc<dyn Op>, OpError> {
    let a = millrace_ir::Attributes::new(
        name,
        attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    );
    f(&a, opset)
}
