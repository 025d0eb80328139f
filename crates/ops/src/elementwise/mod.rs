//! Elementwise ops: unary math, activations, binary arithmetic and comparison, Cast.
use crate::registry::Registry;

pub mod binary;
pub mod broadcast;
#[cfg(test)]
mod testutil;

pub mod add;
pub mod div;
pub mod max;
pub mod mean;
pub mod min;
pub mod mod_op;
pub mod mul;
pub mod pow;
pub mod relu;
pub mod sub;
pub mod sum;

pub fn register(r: &mut Registry) {
    r.add("Add", add::Add::from_onnx);
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
