//! Elementwise ops: unary math, activations, binary arithmetic and comparison, Cast.
use crate::registry::Registry;

pub mod binary;
pub mod broadcast;
pub mod logic;
#[cfg(test)]
mod testutil;

pub mod add;
pub mod and;
pub mod bit_shift;
pub mod bitwise_and;
pub mod bitwise_not;
pub mod bitwise_or;
pub mod bitwise_xor;
pub mod div;
pub mod equal;
pub mod greater;
pub mod greater_or_equal;
pub mod is_inf;
pub mod is_nan;
pub mod less;
pub mod less_or_equal;
pub mod max;
pub mod mean;
pub mod min;
pub mod mod_op;
pub mod mul;
pub mod not;
pub mod or;
pub mod pow;
pub mod relu;
pub mod sub;
pub mod sum;
pub mod where_op;
pub mod xor;

pub fn register(r: &mut Registry) {
    r.add("Add", add::Add::from_onnx);
    r.add("And", and::And::from_onnx);
    r.add("BitShift", bit_shift::BitShift::from_onnx);
    r.add("BitwiseAnd", bitwise_and::BitwiseAnd::from_onnx);
    r.add("BitwiseNot", bitwise_not::BitwiseNot::from_onnx);
    r.add("BitwiseOr", bitwise_or::BitwiseOr::from_onnx);
    r.add("BitwiseXor", bitwise_xor::BitwiseXor::from_onnx);
    r.add("Equal", equal::Equal::from_onnx);
    r.add("Greater", greater::Greater::from_onnx);
    r.add(
        "GreaterOrEqual",
        greater_or_equal::GreaterOrEqual::from_onnx,
    );
    r.add("IsInf", is_inf::IsInf::from_onnx);
    r.add("IsNaN", is_nan::IsNaN::from_onnx);
    r.add("Less", less::Less::from_onnx);
    r.add("LessOrEqual", less_or_equal::LessOrEqual::from_onnx);
    r.add("Not", not::Not::from_onnx);
    r.add("Or", or::Or::from_onnx);
    r.add("Where", where_op::Where::from_onnx);
    r.add("Xor", xor::Xor::from_onnx);
    r.add("Div", div::Div::from_onnx);
    r.add("Max", max::Max::from_onnx);
    r.add("Mean", mean::Mean::from_onnx);
    r.add("Min", min::Min::from_onnx);
    r.add("Mod", mod_op::Mod::from_onnx);
    r.add("Mul", mul::Mul::from_onnx);
    r.add("Pow", pow::Pow::from_onnx);
    r.add("Relu", relu::Relu::from_onnx);
    r.add("Sub", sub::Sub::from_onnx);
    r.add("Sum", sum::Sum::from_onnx);
}
