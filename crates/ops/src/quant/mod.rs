//! quant ops.
use crate::registry::Registry;

pub mod common;
pub mod dequantize_linear;
pub mod quantize_linear;

pub fn register(r: &mut Registry) {
    r.add("QuantizeLinear", quantize_linear::QuantizeLinear::from_onnx);
    r.add(
        "DequantizeLinear",
        dequantize_linear::DequantizeLinear::from_onnx,
    );
}
