//! Cycle model of a systolic matrix unit, meant to agree with SCALE-Sim for the same array and
//! dataflow (to be checked by `tests/scalesim.rs`).
//!
//! PROVISIONAL: a first-order model (fill + stream + drain per fold); the SCALE-Sim-validated
//! version replaces the body of [`gemm_cycles`], keeping its signature.

/// Which operand stays in the processing elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataflow {
    /// Output stationary (`os`): each PE accumulates one output.
    #[serde(rename = "os")]
    OutputStationary,
    /// Weight stationary (`ws`): each PE holds one weight.
    #[serde(rename = "ws")]
    WeightStationary,
    /// Input stationary (`is`): each PE holds one input element.
    #[serde(rename = "is")]
    InputStationary,
}

/// A systolic array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Array {
    /// Processing-element rows.
    pub rows: u64,
    /// Processing-element columns.
    pub cols: u64,
    /// Dataflow.
    pub dataflow: Dataflow,
}

/// Cycles to compute `C[m, n] = A[m, k] · B[k, n]` on `array`, operands assumed ready in SRAM
/// (no memory stalls). Zero-sized problems take zero cycles.
pub fn gemm_cycles(array: &Array, m: u64, k: u64, n: u64) -> u64 {
    if m == 0 || k == 0 || n == 0 || array.rows == 0 || array.cols == 0 {
        return 0;
    }
    let (r, c) = (array.rows, array.cols);
    // (spatial dim mapped on rows, on cols, temporal dim streamed through)
    let (sr, sc, t) = match array.dataflow {
        Dataflow::OutputStationary => (m, n, k),
        Dataflow::WeightStationary => (k, n, m),
        Dataflow::InputStationary => (k, m, n),
    };
    let folds = sr.div_ceil(r) * sc.div_ceil(c);
    folds * (2 * r + c + t - 2)
}
