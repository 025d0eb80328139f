//! Shared machinery of the unary math ops and activations: a [`Float`] trait over f32/f64
//! (f16/bf16 compute through f32), an accurate `erf`, and evaluation helpers.
use crate::planned::{check_out, check_shape, f32_io, f32_shape};
use crate::util::output;
use millrace_core::{bf16, f16, Tensor, TensorData};
use millrace_ir::{F32View, Inputs, OpError, ValueType};
use std::ops::{Add, Div, Mul, Neg, Sub};

/// Float math in the element's own precision (f32 math stays in f32).
pub trait Float:
    Copy
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// A constant of this type.
    fn c(v: f64) -> Self;
    fn exp(self) -> Self;
    fn exp_m1(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn tan(self) -> Self;
    fn asin(self) -> Self;
    fn acos(self) -> Self;
    fn atan(self) -> Self;
    fn sinh(self) -> Self;
    fn cosh(self) -> Self;
    fn asinh(self) -> Self;
    fn acosh(self) -> Self;
    fn atanh(self) -> Self;
    fn floor(self) -> Self;
    fn ceil(self) -> Self;
    /// Round half to even.
    fn round_even(self) -> Self;
    fn abs(self) -> Self;
    fn erf(self) -> Self;
    fn is_nan(self) -> bool;
}

macro_rules! float_impl {
    ($t:ty, $erf:expr) => {
        impl Float for $t {
            fn c(v: f64) -> Self {
                v as $t
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn exp_m1(self) -> Self {
                <$t>::exp_m1(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            fn tan(self) -> Self {
                <$t>::tan(self)
            }
            fn asin(self) -> Self {
                <$t>::asin(self)
            }
            fn acos(self) -> Self {
                <$t>::acos(self)
            }
            fn atan(self) -> Self {
                <$t>::atan(self)
            }
            fn sinh(self) -> Self {
                <$t>::sinh(self)
            }
            fn cosh(self) -> Self {
                <$t>::cosh(self)
            }
            fn asinh(self) -> Self {
                <$t>::asinh(self)
            }
            fn acosh(self) -> Self {
                <$t>::acosh(self)
            }
            fn atanh(self) -> Self {
                <$t>::atanh(self)
            }
            fn floor(self) -> Self {
                <$t>::floor(self)
            }
            fn ceil(self) -> Self {
                <$t>::ceil(self)
            }
            fn round_even(self) -> Self {
                <$t>::round_ties_even(self)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn erf(self) -> Self {
                let f: fn($t) -> $t = $erf;
                f(self)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}
float_impl!(f64, erf64);
// erf(4) = 1 - 1.5e-8 rounds to 1 in f32.
float_impl!(f32, |x: f32| if x.abs() >= 4.0 {
    1f32.copysign(x)
} else {
    erf64(x as f64) as f32
});

/// The error function in f64 (shared with the kernels' fused GELU epilogue).
pub use millrace_kernels::activation::erf64;

/// A float-to-float elementwise kernel.
pub trait FloatKernel {
    fn apply<F: Float>(&self, x: F) -> F;
    /// The vectorized f32 function, when the kernel has one with the same semantics.
    fn vfunc(&self) -> Option<millrace_kernels::vmath::Func> {
        None
    }
    /// Attribute summary for `describe`.
    fn attrs(&self) -> String {
        String::new()
    }
}

/// Applies `f` to every element of a float tensor, keeping its dtype.
pub fn map_float<K: FloatKernel>(op: &str, k: &K, x: &Tensor) -> Result<Tensor, OpError> {
    let shape = x.shape().to_vec();
    match x.data() {
        TensorData::F32(v) => {
            let mut y = vec![0f32; v.len()];
            float_fill(k, v, &mut y);
            output(op, shape, y)
        }
        TensorData::F64(v) => output(op, shape, v.iter().map(|&a| k.apply(a)).collect()),
        TensorData::F16(v) => output(
            op,
            shape,
            v.iter()
                .map(|a| f16::from_f32(k.apply(a.to_f32())))
                .collect(),
        ),
        TensorData::BF16(v) => output(
            op,
            shape,
            v.iter()
                .map(|a| bf16::from_f32(k.apply(a.to_f32())))
                .collect(),
        ),
        other => Err(OpError::unsupported(op, format!("dtype {}", other.dtype()))),
    }
}

/// `y = k(x)` elementwise, f32 (`y` of `x`'s length): the one f32 path of `eval`,
/// `eval_into` and (through [`float_fill_inplace`]) `eval_inplace`.
pub fn float_fill<K: FloatKernel>(k: &K, x: &[f32], y: &mut [f32]) {
    match k.vfunc() {
        Some(f) => super::fast::unary_into(f, x, y),
        None => y.iter_mut().zip(x).for_each(|(o, &a)| *o = k.apply(a)),
    }
}

/// `io = k(io)` elementwise, f32.
pub fn float_fill_inplace<K: FloatKernel>(k: &K, io: &mut [f32]) {
    match k.vfunc() {
        Some(f) => super::fast::unary_inplace(f, io),
        None => io.iter_mut().for_each(|v| *v = k.apply(*v)),
    }
}

/// `writes_into` of a one-input elementwise op: f32 in and out, of one concrete shape.
pub fn unary_writes_into(inputs: &[ValueType], outputs: &[ValueType]) -> bool {
    f32_io(inputs, outputs, 1) && f32_shape(&inputs[0]) == f32_shape(&outputs[0])
}

/// The input of a one-input elementwise op's `eval_into`, checked against the output.
pub fn unary_input<'a>(
    op: &str,
    inputs: &[Option<F32View<'a>>],
    out: &[f32],
    out_shape: &[usize],
) -> Result<&'a [f32], OpError> {
    let x = F32View::req(inputs, op, 0)?;
    check_shape(op, "input", x.shape, out_shape)?;
    check_out(op, out, out_shape)?;
    if x.data.len() != out.len() {
        return Err(OpError::invalid(op, "input data does not match its shape"));
    }
    Ok(x.data)
}

/// Checks an `eval_inplace` call of a one-input elementwise op.
pub fn unary_inplace_args(
    op: &str,
    index: usize,
    io: &[f32],
    out_shape: &[usize],
) -> Result<(), OpError> {
    if index != 0 {
        return Err(OpError::invalid(
            op,
            format!("no input {index} to overwrite"),
        ));
    }
    check_out(op, io, out_shape)
}

/// Implements the planned-buffer hooks (into and in place) of a one-input f32 op, inside
/// its `impl Op`, given the f32 fill functions `$fill(&self, x, y)` and
/// `$fill_inplace(&self, io)`.
#[macro_export]
#[doc(hidden)]
macro_rules! unary_into_hooks {
    ($fill:expr, $fill_inplace:expr) => {
        fn writes_into(
            &self,
            inputs: &[millrace_ir::ValueType],
            outputs: &[millrace_ir::ValueType],
        ) -> bool {
            $crate::elementwise::unary::unary_writes_into(inputs, outputs)
        }

        fn eval_into(
            &self,
            inputs: &[Option<millrace_ir::F32View<'_>>],
            out: &mut [f32],
            out_shape: &[usize],
        ) -> Result<(), millrace_ir::OpError> {
            let x = $crate::elementwise::unary::unary_input(self.name(), inputs, out, out_shape)?;
            #[allow(clippy::redundant_closure_call)]
            ($fill)(self, x, out);
            Ok(())
        }

        fn inplace_input(
            &self,
            inputs: &[millrace_ir::ValueType],
            outputs: &[millrace_ir::ValueType],
        ) -> Option<usize> {
            $crate::elementwise::unary::unary_writes_into(inputs, outputs).then_some(0)
        }

        fn eval_inplace(
            &self,
            index: usize,
            _inputs: &[Option<millrace_ir::F32View<'_>>],
            io: &mut [f32],
            out_shape: &[usize],
        ) -> Result<(), millrace_ir::OpError> {
            $crate::elementwise::unary::unary_inplace_args(self.name(), index, io, out_shape)?;
            #[allow(clippy::redundant_closure_call)]
            ($fill_inplace)(self, io);
            Ok(())
        }
    };
}

/// Evaluates a one-input float op.
pub fn eval_float<K: FloatKernel>(
    op: &str,
    k: &K,
    inputs: &Inputs<'_>,
) -> Result<Vec<Tensor>, OpError> {
    Ok(vec![map_float(op, k, inputs.req(0)?)?])
}

/// Implements `Op` for a struct implementing [`FloatKernel`]: same type out as in.
#[macro_export]
#[doc(hidden)]
macro_rules! float_op_impl {
    ($name:ident, $flops:expr) => {
        impl millrace_ir::Op for $name {
            fn name(&self) -> &'static str {
                stringify!($name)
            }

            fn infer(
                &self,
                ctx: &millrace_ir::InferCtx<'_>,
            ) -> Result<Vec<millrace_ir::ValueType>, millrace_ir::OpError> {
                let t = ctx.input(0)?;
                if let Some(d) = t.dtype.filter(|d| !d.is_float()) {
                    return Err(millrace_ir::OpError::unsupported(
                        stringify!($name),
                        format!("dtype {d}"),
                    ));
                }
                Ok(vec![t.clone()])
            }

            fn cost(
                &self,
                inputs: &[millrace_ir::ValueType],
                outputs: &[millrace_ir::ValueType],
            ) -> millrace_ir::Cost {
                millrace_ir::Cost::elementwise(inputs, outputs, $flops)
            }

            fn eval(
                &self,
                inputs: &millrace_ir::Inputs<'_>,
            ) -> Result<Vec<millrace_core::Tensor>, millrace_ir::OpError> {
                $crate::elementwise::unary::eval_float(stringify!($name), self, inputs)
            }

            $crate::unary_into_hooks!(
                |k: &Self, x: &[f32], y: &mut [f32]| $crate::elementwise::unary::float_fill(
                    k, x, y
                ),
                |k: &Self, io: &mut [f32]| $crate::elementwise::unary::float_fill_inplace(k, io)
            );

            fn describe(&self) -> String {
                $crate::elementwise::unary::FloatKernel::attrs(self)
            }

            fn as_any(&self) -> &dyn std::any::Any {
                self
            }
        }
    };
}

/// Declares an attribute-free float op: struct, `from_onnx`, kernel and `Op` impl.
#[macro_export]
#[doc(hidden)]
macro_rules! simple_float_op {
    ($name:ident, $flops:expr, |$x:ident| $body:expr) => {
        $crate::simple_float_op!($name, $flops, None, |$x| $body);
    };
    ($name:ident, $flops:expr, vmath = $f:ident, |$x:ident| $body:expr) => {
        $crate::simple_float_op!(
            $name,
            $flops,
            Some(millrace_kernels::vmath::Func::$f),
            |$x| $body
        );
    };
    ($name:ident, $flops:expr, $vf:expr, |$x:ident| $body:expr) => {
        #[derive(Clone, Debug, PartialEq, Default)]
        pub struct $name;

        impl $name {
            pub fn from_onnx(
                _attrs: &millrace_ir::Attributes,
                _opset: i64,
            ) -> Result<std::sync::Arc<dyn millrace_ir::Op>, millrace_ir::OpError> {
                Ok(std::sync::Arc::new($name))
            }
        }

        impl $crate::elementwise::unary::FloatKernel for $name {
            #[allow(unused_imports)]
            fn apply<F: $crate::elementwise::unary::Float>(&self, $x: F) -> F {
                use $crate::elementwise::unary::Float;
                $body
            }

            fn vfunc(&self) -> Option<millrace_kernels::vmath::Func> {
                $vf
            }
        }

        $crate::float_op_impl!($name, $flops);
    };
}

/// Sign-related operations defined for every numeric dtype.
pub trait SignOps: Copy {
    /// Whether negation is meaningful (false for unsigned integers).
    const SIGNED: bool;
    fn abs_(self) -> Self;
    fn neg_(self) -> Self;
    fn sign_(self) -> Self;
}

macro_rules! sign_signed {
    ($($t:ty),*) => {$(
        impl SignOps for $t {
            const SIGNED: bool = true;
            fn abs_(self) -> Self { self.wrapping_abs() }
            fn neg_(self) -> Self { self.wrapping_neg() }
            fn sign_(self) -> Self { self.signum() }
        }
    )*};
}
sign_signed!(i8, i16, i32, i64);

macro_rules! sign_unsigned {
    ($($t:ty),*) => {$(
        impl SignOps for $t {
            const SIGNED: bool = false;
            fn abs_(self) -> Self { self }
            fn neg_(self) -> Self { self.wrapping_neg() }
            fn sign_(self) -> Self { (self != 0) as $t }
        }
    )*};
}
sign_unsigned!(u8, u16, u32, u64);

fn fsign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x // +-0 and NaN
    }
}

macro_rules! sign_float {
    ($($t:ty),*) => {$(
        impl SignOps for $t {
            const SIGNED: bool = true;
            fn abs_(self) -> Self { self.abs() }
            fn neg_(self) -> Self { -self }
            fn sign_(self) -> Self { fsign(self as f64) as $t }
        }
    )*};
}
sign_float!(f32, f64);

macro_rules! sign_half {
    ($($t:ty),*) => {$(
        impl SignOps for $t {
            const SIGNED: bool = true;
            fn abs_(self) -> Self { <$t>::from_f32(self.to_f32().abs()) }
            fn neg_(self) -> Self { -self }
            fn sign_(self) -> Self { <$t>::from_f64(fsign(self.to_f64())) }
        }
    )*};
}
sign_half!(f16, bf16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_paths_match_eval() {
        use super::super::{
            erf::Erf, exp::Exp, gelu::Gelu, hard_sigmoid::HardSigmoid, hard_swish::HardSwish,
            leaky_relu::LeakyRelu, sigmoid::Sigmoid, sqrt::Sqrt, tanh::Tanh,
        };
        use crate::into_check::{check, rand, refuses};
        use millrace_core::DType;
        let ops: Vec<Box<dyn millrace_ir::Op>> = vec![
            Box::new(Sigmoid),
            Box::new(Tanh),
            Box::new(Erf),
            Box::new(Exp),
            Box::new(Sqrt),
            Box::new(HardSwish),
            Box::new(LeakyRelu { alpha: 0.1 }),
            Box::new(HardSigmoid::default()),
            Box::new(Gelu { tanh: false }),
            Box::new(Gelu { tanh: true }),
        ];
        for op in &ops {
            for shape in [&[2, 3, 5][..], &[3, 70_000], &[0, 4], &[]] {
                let x = rand(shape, 7);
                assert!(check(op.as_ref(), &[Some(&x)]), "{}", op.name());
            }
            let f64t = ValueType::concrete(DType::F64, &[4]);
            refuses(
                op.as_ref(),
                std::slice::from_ref(&f64t),
                std::slice::from_ref(&f64t),
            );
            let unk = ValueType::of_dtype(DType::F32);
            refuses(
                op.as_ref(),
                std::slice::from_ref(&unk),
                std::slice::from_ref(&unk),
            );
        }
    }

    #[test]
    fn erf_matches_reference_values() {
        // Reference values from high-precision tables.
        let cases = [
            (0.0, 0.0),
            (1e-10, 1.1283791670955126e-10),
            (0.1, 0.1124629160182849),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (3.0, 0.9999779095030014),
            (4.5, 0.9999999998033839),
            (-1.5, -0.9661051464753108),
            (7.0, 1.0),
        ];
        for (x, want) in cases {
            let got = erf64(x);
            assert!(
                (got - want).abs() <= 1e-15 * want.abs().max(1e-300),
                "erf({x}) = {got}"
            );
        }
        assert!(erf64(f64::NAN).is_nan());
        assert_eq!(Float::erf(5.0f32), 1.0);
        assert!((Float::erf(-0.5f32) + 0.520_499_9).abs() < 1e-7);
    }

    #[test]
    fn sign_ops() {
        assert_eq!((-128i8).abs_(), -128);
        assert_eq!(7u8.sign_(), 1);
        assert_eq!((-0.0f32).sign_().to_bits(), (-0.0f32).to_bits());
        assert!(f32::NAN.sign_().is_nan());
        assert_eq!(f16::from_f32(-2.0).sign_(), f16::from_f32(-1.0));
    }
}
