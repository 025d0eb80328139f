//! quant ops.
use crate::registry::Registry;

pub mod bitcast;
pub mod common;
pub mod conv_integer;
pub mod dequantize_linear;
pub mod dynamic_quantize_linear;
pub mod matmul_integer;
pub mod qlinear_conv;
pub mod qlinear_matmul;
pub mod quantize_linear;

pub fn register(r: &mut Registry) {
    r.add("QuantizeLinear", quantize_linear::QuantizeLinear::from_onnx);
    r.add(
        "DequantizeLinear",
        dequantize_linear::DequantizeLinear::from_onnx,
    );
    r.add(
        "DynamicQuantizeLinear",
        dynamic_quantize_linear::DynamicQuantizeLinear::from_onnx,
    );
    r.add("MatMulInteger", matmul_integer::MatMulInteger::from_onnx);
    r.add("QLinearMatMul", qlinear_matmul::QLinearMatMul::from_onnx);
    r.add("ConvInteger", conv_integer::ConvInteger::from_onnx);
    r.add("QLinearConv", qlinear_conv::QLinearConv::from_onnx);
    r.add("BitCast", bitcast::BitCast::from_onnx);
}
