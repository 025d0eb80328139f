//! millrace-kernels: CPU compute kernels.
//!
//! Kernels take slices and dimensions and write into output buffers they are given; they
//! never allocate their outputs and know nothing of graphs or ONNX.

pub mod activation;
pub mod conv;
pub mod depthwise;
pub mod dgemm;
pub mod direct;
pub mod gemm;
pub mod peak;
pub mod pool;
mod prefetch;
pub mod shallow;
pub mod subsample;
#[cfg(test)]
mod testutil;
mod transpose;
pub mod vmath;
pub mod winograd;

/// A buffer's base pointer shared by parallel jobs that each write a disjoint part of it
/// while the caller holds the buffer mutably borrowed (of floats, or of other buffers:
/// Winograd's part buffers).
pub(crate) struct SyncPtr<T = f32>(pub(crate) *mut T);
// Not derived: a derive would ask `T: Copy`, and the pointer is copied whatever `T` is.
impl<T> Clone for SyncPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SyncPtr<T> {}
// SAFETY: only used while the buffer is mutably borrowed by the caller, by jobs writing
// disjoint ranges.
unsafe impl<T> Sync for SyncPtr<T> {}
unsafe impl<T> Send for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// The pointer, through a method so that closures capture the wrapper (which is `Sync`)
    /// and not the bare pointer.
    pub(crate) fn get(&self) -> *mut T {
        self.0
    }
}

/// Sizes the calling thread's kernel scratch (GEMM packing buffers at their bound, the
/// depthwise padded copy at [`depthwise::SCRATCH_RESERVE`], Winograd's transform buffers at
/// [`winograd::BUFS_RESERVE`], max pooling's padded row at [`pool::ROW_RESERVE`], the
/// shallow convolution's band at [`shallow::BAND_RESERVE`]). Call it on every thread of a
/// pool that runs kernels, once, so steady-state runs do not allocate
/// whichever thread a piece of work lands on. (A GEMM that packs an operand once for all
/// its chunks keeps that buffer per thread, sized by the largest such product the thread
/// has started; it grows on first use.)
pub fn reserve_scratch() {
    gemm::reserve_scratch();
    depthwise::reserve_scratch();
    winograd::reserve_scratch();
    pool::reserve_scratch();
    shallow::reserve_scratch();
}
