//! Shared machinery of the comparison, logical and bitwise ops.
use super::binary::{dispatch_any, dispatch_int, same_dtype, Legacy};
use super::broadcast::map2;
use crate::util::{output, typed};
use millrace_core::{DType, Tensor};
use millrace_ir::{Inputs, OpError};

/// A comparison producing a bool per element pair.
pub trait CmpKernel {
    /// Whether bool and string inputs are allowed (Equal), or only numeric ones.
    const ANY_DTYPE: bool;
    fn cmp<T: PartialOrd>(&self, a: &T, b: &T) -> bool;
}

/// Evaluates a broadcasting comparison; the output is bool.
pub fn eval_compare<K: CmpKernel>(
    op: &'static str,
    k: &K,
    legacy: &Legacy,
    inputs: &Inputs<'_>,
) -> Result<Vec<Tensor>, OpError> {
    let a = inputs.req(0)?;
    let b = inputs.req(1)?;
    same_dtype(op, a, b)?;
    legacy.check(op, a.shape(), b.shape())?;
    if !K::ANY_DTYPE && matches!(a.dtype(), DType::Bool | DType::String) {
        return Err(OpError::unsupported(op, format!("dtype {}", a.dtype())));
    }
    let (shape, v) = dispatch_any!(op, a, |x: T| {
        let y = typed::<T>(op, b)?;
        map2(op, x, a.shape(), y, b.shape(), |p, q| k.cmp(p, q))?
    });
    Ok(vec![output(op, shape, v)?])
}

/// Evaluates a broadcasting bool x bool -> bool op.
pub fn eval_bool2(
    op: &'static str,
    legacy: &Legacy,
    inputs: &Inputs<'_>,
    f: impl Fn(bool, bool) -> bool,
) -> Result<Vec<Tensor>, OpError> {
    let a = inputs.req(0)?;
    let b = inputs.req(1)?;
    legacy.check(op, a.shape(), b.shape())?;
    let x = typed::<bool>(op, a)?;
    let y = typed::<bool>(op, b)?;
    let (shape, v) = map2(op, x, a.shape(), y, b.shape(), |&p, &q| f(p, q))?;
    Ok(vec![output(op, shape, v)?])
}

/// Integer operations for the bitwise ops.
pub trait Bits:
    Copy
    + std::ops::BitAnd<Output = Self>
    + std::ops::BitOr<Output = Self>
    + std::ops::BitXor<Output = Self>
    + std::ops::Not<Output = Self>
{
}
impl<T> Bits for T where
    T: Copy
        + std::ops::BitAnd<Output = T>
        + std::ops::BitOr<Output = T>
        + std::ops::BitXor<Output = T>
        + std::ops::Not<Output = T>
{
}

/// A same-dtype integer binary kernel.
pub trait BitKernel {
    fn apply<T: Bits>(&self, a: T, b: T) -> T;
}

/// Evaluates a broadcasting integer bitwise op.
pub fn eval_bits<K: BitKernel>(
    op: &'static str,
    k: &K,
    inputs: &Inputs<'_>,
) -> Result<Vec<Tensor>, OpError> {
    let a = inputs.req(0)?;
    let b = inputs.req(1)?;
    same_dtype(op, a, b)?;
    let y = dispatch_int!(op, a, |x: T| {
        let y = typed::<T>(op, b)?;
        let (shape, v) = map2(op, x, a.shape(), y, b.shape(), |&p, &q| k.apply(p, q))?;
        output(op, shape, v)?
    });
    Ok(vec![y])
}

/// Declares an ordering comparison op (`Greater`, `Less`, ...): struct with its legacy
/// broadcast attributes, constructor, and an `Op` impl over [`eval_compare`].
macro_rules! comparison_op {
    ($name:ident, $onnx:literal, |$a:ident, $b:ident| $cmp:expr) => {
        #[derive(Clone, Debug, PartialEq, Default)]
        pub struct $name {
            pub legacy: super::binary::Legacy,
        }

        impl $name {
            pub fn from_onnx(
                attrs: &millrace_ir::Attributes,
                opset: i64,
            ) -> Result<std::sync::Arc<dyn millrace_ir::Op>, millrace_ir::OpError> {
                Ok(std::sync::Arc::new($name {
                    legacy: super::binary::Legacy::read(attrs, opset)?,
                }))
            }
        }

        impl super::logic::CmpKernel for $name {
            const ANY_DTYPE: bool = false;
            fn cmp<T: PartialOrd>(&self, $a: &T, $b: &T) -> bool {
                $cmp
            }
        }

        impl millrace_ir::Op for $name {
            fn name(&self) -> &'static str {
                $onnx
            }

            fn infer(
                &self,
                ctx: &millrace_ir::InferCtx<'_>,
            ) -> Result<Vec<millrace_ir::ValueType>, millrace_ir::OpError> {
                Ok(vec![super::binary::infer_broadcast(
                    self.name(),
                    ctx,
                    Some(millrace_core::DType::Bool),
                )?])
            }

            fn cost(
                &self,
                inputs: &[millrace_ir::ValueType],
                outputs: &[millrace_ir::ValueType],
            ) -> millrace_ir::Cost {
                millrace_ir::Cost::elementwise(inputs, outputs, 1)
            }

            fn eval(
                &self,
                inputs: &millrace_ir::Inputs<'_>,
            ) -> Result<Vec<millrace_core::Tensor>, millrace_ir::OpError> {
                super::logic::eval_compare(self.name(), self, &self.legacy, inputs)
            }

            fn describe(&self) -> String {
                self.legacy.describe()
            }

            fn as_any(&self) -> &dyn std::any::Any {
                self
            }
        }
    };
}
pub(crate) use comparison_op;
