//! tensor ops: data movement and shape ops.
use crate::registry::Registry;

mod common;
pub use common::Reduction;
pub mod compress;
pub mod concat;
pub mod constant;
pub mod constant_of_shape;
pub mod cum_sum;
pub mod depth_to_space;
pub mod dropout;
pub mod expand;
pub mod eye_like;
pub mod flatten;
pub mod gather;
pub mod gather_elements;
pub mod gather_nd;
pub mod identity;
pub mod non_zero;
pub mod one_hot;
pub mod pad;
pub mod range;
pub mod reshape;
pub mod reverse_sequence;
pub mod rows;
pub mod scatter_elements;
pub mod scatter_nd;
pub mod shape;
pub mod size;
pub mod slice;
pub mod split;
pub mod squeeze;
pub mod tile;
pub mod transpose;
pub mod trilu;
pub mod unsqueeze;

pub fn register(r: &mut Registry) {
    r.add("Concat", concat::Concat::from_onnx);
    r.add("Flatten", flatten::Flatten::from_onnx);
    r.add("Gather", gather::Gather::from_onnx);
    r.add("GatherElements", gather_elements::GatherElements::from_onnx);
    r.add("Slice", slice::Slice::from_onnx);
    r.add("Split", split::Split::from_onnx);
    r.add("Expand", expand::Expand::from_onnx);
    r.add("Tile", tile::Tile::from_onnx);
    r.add("Pad", pad::Pad::from_onnx);
    r.add("Constant", constant::Constant::from_onnx);
    r.add(
        "ConstantOfShape",
        constant_of_shape::ConstantOfShape::from_onnx,
    );
    r.add("Range", range::Range::from_onnx);
    r.add("Dropout", dropout::Dropout::from_onnx);
    r.add("EyeLike", eye_like::EyeLike::from_onnx);
    r.add("GatherND", gather_nd::GatherND::from_onnx);
    r.add("ScatterND", scatter_nd::ScatterND::from_onnx);
    r.add(
        "ScatterElements",
        scatter_elements::ScatterElements::from_onnx,
    );
    r.add(
        "Scatter",
        scatter_elements::ScatterElements::from_onnx_scatter,
    );
    r.add("DepthToSpace", depth_to_space::DepthToSpace::from_onnx);
    r.add("SpaceToDepth", depth_to_space::SpaceToDepth::from_onnx);
    r.add("Trilu", trilu::Trilu::from_onnx);
    r.add("CumSum", cum_sum::CumSum::from_onnx);
    r.add("OneHot", one_hot::OneHot::from_onnx);
    r.add("NonZero", non_zero::NonZero::from_onnx);
    r.add("Compress", compress::Compress::from_onnx);
    r.add(
        "ReverseSequence",
        reverse_sequence::ReverseSequence::from_onnx,
    );
    r.add("Identity", identity::Identity::from_onnx);
    r.add("Reshape", reshape::Reshape::from_onnx);
    r.add("Shape", shape::Shape::from_onnx);
    r.add("Size", size::Size::from_onnx);
    r.add("Squeeze", squeeze::Squeeze::from_onnx);
    r.add("Transpose", transpose::Transpose::from_onnx);
    r.add("Unsqueeze", unsqueeze::Unsqueeze::from_onnx);
}
