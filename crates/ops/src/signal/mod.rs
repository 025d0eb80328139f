//! signal ops: sampling grids (GridSample, AffineGrid), Fourier transforms (DFT, STFT),
//! windows and mel filterbanks, detection helpers (NonMaxSuppression, RoiAlign),
//! DeformConv, Col2Im, CenterCropPad, MaxUnpool.
use crate::registry::Registry;

pub mod affine_grid;
pub mod center_crop_pad;
pub mod col2im;
pub mod common;
pub mod deform_conv;
pub mod dft;
pub mod grid_sample;
pub mod max_unpool;
pub mod mel_weight_matrix;
pub mod nms;
pub mod roi_align;
pub mod stft;
pub mod window;

pub fn register(r: &mut Registry) {
    r.add("GridSample", grid_sample::GridSample::from_onnx);
    r.add("AffineGrid", affine_grid::AffineGrid::from_onnx);
    r.add("DFT", dft::Dft::from_onnx);
    r.add("STFT", stft::Stft::from_onnx);
    r.add("HannWindow", window::Window::hann);
    r.add("HammingWindow", window::Window::hamming);
    r.add("BlackmanWindow", window::Window::blackman);
    r.add(
        "MelWeightMatrix",
        mel_weight_matrix::MelWeightMatrix::from_onnx,
    );
    r.add("NonMaxSuppression", nms::NonMaxSuppression::from_onnx);
    r.add("RoiAlign", roi_align::RoiAlign::from_onnx);
    r.add("DeformConv", deform_conv::DeformConv::from_onnx);
    r.add("Col2Im", col2im::Col2Im::from_onnx);
    r.add("CenterCropPad", center_crop_pad::CenterCropPad::from_onnx);
    r.add("MaxUnpool", max_unpool::MaxUnpool::from_onnx);
}
