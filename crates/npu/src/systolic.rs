//! Cycle model of a systolic matrix unit, matching SCALE-Sim (v3.0.0) for the same array and
//! dataflow; `tests/scalesim.rs` checks it against SCALE-Sim on ResNet-50's convolutions, and
//! `docs/scalesim.md` holds the comparison.
//!
//! # The model
//!
//! A GEMM `C[m, n] = A[m, k] · B[k, n]` (a convolution is one, see [`ConvShape`]) is mapped onto
//! an `R x C` array the way SCALE-Sim maps it: two of the three dimensions are spread over the
//! rows and columns of the array (`Sr` and `Sc`), the third (`T`) is streamed through it in time.
//!
//! | dataflow | `Sr` (rows) | `Sc` (cols) | `T` (time) | cycles per fold    |
//! |----------|-------------|-------------|------------|--------------------|
//! | `os`     | `m`         | `n`         | `k`        | `T + R + C - 2`    |
//! | `ws`     | `k`         | `n`         | `m`        | `2R + C + T - 2`   |
//! | `is`     | `k`         | `m`         | `n`        | `2R + C + T - 2`   |
//!
//! The problem takes `ceil(Sr / R) · ceil(Sc / C)` folds, run one after another, each paying
//! the full fill and drain whether or not it uses the whole array (SCALE-Sim lets a fold's
//! outputs drain before the next fold starts). For `os` the operands are skewed into the array
//! (`R - 1` and `C - 1` cycles of fill) while `T` products accumulate in place; for `ws` and
//! `is` the stationary operand is first loaded row by row (`R` cycles), then `T` vectors stream
//! through with skew (`R - 1 + C - 1`) and the partial sums leave down the columns (`R` more).
//!
//! SCALE-Sim's "Total Cycles" column is the index of the last cycle (it counts from 0), so it
//! reads one less than [`gemm_cycles`]; with no memory stalls the two agree exactly otherwise.
//! Memory stalls (SRAM refills from DRAM) are not part of this model: the NPU simulator accounts
//! DMA separately, and the SCALE-Sim comparison runs in its `CALC` bandwidth mode, where the
//! interface bandwidth is sized so that no stall occurs (its report shows 0 stall cycles).

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

impl Dataflow {
    /// SCALE-Sim's name for the dataflow (`os`, `ws`, `is`).
    pub fn short_name(self) -> &'static str {
        match self {
            Dataflow::OutputStationary => "os",
            Dataflow::WeightStationary => "ws",
            Dataflow::InputStationary => "is",
        }
    }
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

/// How a GEMM lands on an array: the dimensions spread over rows and columns, the one streamed
/// in time, and the resulting folds (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Dimension spread over the array's rows (`Sr`).
    pub spatial_rows: u64,
    /// Dimension spread over the array's columns (`Sc`).
    pub spatial_cols: u64,
    /// Dimension streamed through the array (`T`).
    pub temporal: u64,
    /// Folds along the rows: `ceil(Sr / rows)`.
    pub row_folds: u64,
    /// Folds along the columns: `ceil(Sc / cols)`.
    pub col_folds: u64,
    /// Cycles one fold takes, fill and drain included.
    pub cycles_per_fold: u64,
}

impl Mapping {
    /// Number of folds, run one after another.
    pub fn folds(&self) -> u64 {
        self.row_folds.saturating_mul(self.col_folds)
    }

    /// Total cycles: folds times cycles per fold.
    pub fn cycles(&self) -> u64 {
        self.folds().saturating_mul(self.cycles_per_fold)
    }
}

impl Array {
    /// Maps `C[m, n] = A[m, k] · B[k, n]` onto this array. `None` for an empty problem or an
    /// array with no processing elements (nothing to run, or nothing to run it on).
    pub fn map_gemm(&self, m: u64, k: u64, n: u64) -> Option<Mapping> {
        if m == 0 || k == 0 || n == 0 || self.rows == 0 || self.cols == 0 {
            return None;
        }
        let (r, c) = (self.rows, self.cols);
        let (sr, sc, t) = match self.dataflow {
            Dataflow::OutputStationary => (m, n, k),
            Dataflow::WeightStationary => (k, n, m),
            Dataflow::InputStationary => (k, m, n),
        };
        // All terms are >= 1, so the subtraction of 2 cannot underflow.
        let cycles_per_fold = match self.dataflow {
            // Operands skewed in from two edges while `T` products accumulate in place.
            Dataflow::OutputStationary => t.saturating_add(r).saturating_add(c) - 2,
            // Load the stationary operand (R), stream T vectors with skew (R - 1 + C - 1),
            // drain the partial sums (R).
            Dataflow::WeightStationary | Dataflow::InputStationary => r
                .saturating_mul(2)
                .saturating_add(c)
                .saturating_add(t)
                .saturating_sub(2),
        };
        Some(Mapping {
            spatial_rows: sr,
            spatial_cols: sc,
            temporal: t,
            row_folds: sr.div_ceil(r),
            col_folds: sc.div_ceil(c),
            cycles_per_fold,
        })
    }

    /// Processing elements in the array.
    pub fn pes(&self) -> u64 {
        self.rows.saturating_mul(self.cols)
    }
}

/// Cycles to compute `C[m, n] = A[m, k] · B[k, n]` on `array`, operands assumed ready in SRAM
/// (no memory stalls), as SCALE-Sim counts them (its report shows this minus one, see the
/// module documentation). Zero-sized problems take zero cycles; results saturate at
/// `u64::MAX` rather than overflow.
pub fn gemm_cycles(array: &Array, m: u64, k: u64, n: u64) -> u64 {
    array.map_gemm(m, k, n).map_or(0, |map| map.cycles())
}

/// Fraction of the array's multiply-accumulate slots doing useful work over the GEMM's run:
/// `m·k·n / (rows·cols·cycles)` (SCALE-Sim's "Overall Util %", divided by 100). Zero for an
/// empty problem.
pub fn gemm_utilization(array: &Array, m: u64, k: u64, n: u64) -> f64 {
    let cycles = gemm_cycles(array, m, k, n);
    if cycles == 0 {
        return 0.0;
    }
    (m as f64 * k as f64 * n as f64) / (array.pes() as f64 * cycles as f64)
}

/// One 2-D convolution, described as SCALE-Sim describes a layer: output size, window, channels
/// per group, filters per group, stride and number of groups. Padding is folded in: the output
/// size is the real one (padding included), and SCALE-Sim, which has no padding field, is given
/// the input extent the windows actually read, [`ConvShape::scalesim_ifmap_extent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Output height.
    pub out_h: u64,
    /// Output width.
    pub out_w: u64,
    /// Window height.
    pub kernel_h: u64,
    /// Window width.
    pub kernel_w: u64,
    /// Input channels of one group.
    pub channels: u64,
    /// Filters (output channels) of one group.
    pub filters: u64,
    /// Vertical stride.
    pub stride_h: u64,
    /// Horizontal stride.
    pub stride_w: u64,
    /// Groups (1 for a plain convolution; the channel count for a depthwise one).
    pub groups: u64,
}

impl ConvShape {
    /// The GEMM one group of the convolution is: `M` = output pixels, `K` = window · channels,
    /// `N` = filters (SCALE-Sim's im2col mapping).
    pub fn gemm_dims(&self) -> (u64, u64, u64) {
        (
            self.out_h.saturating_mul(self.out_w),
            self.kernel_h
                .saturating_mul(self.kernel_w)
                .saturating_mul(self.channels),
            self.filters,
        )
    }

    /// Input height and width to give SCALE-Sim so that its output size,
    /// `ceil((H - R + s) / s)`, is the real one: `(out - 1)·stride + kernel`, the part of the
    /// padded input the windows read. The same layer is then described identically on both
    /// sides, whatever the padding was. Zero when the output is empty.
    pub fn scalesim_ifmap_extent(&self) -> (u64, u64) {
        let ext = |out: u64, stride: u64, k: u64| {
            if out == 0 {
                0
            } else {
                (out - 1).saturating_mul(stride).saturating_add(k)
            }
        };
        (
            ext(self.out_h, self.stride_h, self.kernel_h),
            ext(self.out_w, self.stride_w, self.kernel_w),
        )
    }

    /// Multiply-accumulates of the whole convolution (all groups).
    pub fn macs(&self) -> u64 {
        let (m, k, n) = self.gemm_dims();
        m.saturating_mul(k)
            .saturating_mul(n)
            .saturating_mul(self.groups)
    }
}

/// Cycles of a convolution on `array`: one GEMM per group (see [`ConvShape::gemm_dims`]), run
/// one after another, as SCALE-Sim runs a depthwise layer channel by channel.
pub fn conv_cycles(array: &Array, conv: &ConvShape) -> u64 {
    let (m, k, n) = conv.gemm_dims();
    gemm_cycles(array, m, k, n).saturating_mul(conv.groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(rows: u64, cols: u64, dataflow: Dataflow) -> Array {
        Array {
            rows,
            cols,
            dataflow,
        }
    }

    #[test]
    fn one_pe_output_stationary_is_k_cycles() {
        // 1x1 array, os: one fold per output, each K cycles (T + 1 + 1 - 2).
        let a = arr(1, 1, Dataflow::OutputStationary);
        assert_eq!(gemm_cycles(&a, 1, 5, 1), 5);
        assert_eq!(gemm_cycles(&a, 2, 5, 3), 6 * 5);
    }

    #[test]
    fn output_stationary_by_hand() {
        // 4x4 array, m=6, k=10, n=3: Sr=6 -> 2 row folds, Sc=3 -> 1 col fold,
        // each fold 10 + 4 + 4 - 2 = 16 cycles: 32.
        let a = arr(4, 4, Dataflow::OutputStationary);
        let map = a.map_gemm(6, 10, 3).unwrap();
        assert_eq!(
            (map.row_folds, map.col_folds, map.cycles_per_fold),
            (2, 1, 16)
        );
        assert_eq!(gemm_cycles(&a, 6, 10, 3), 32);
    }

    #[test]
    fn weight_stationary_by_hand() {
        // 8 rows x 4 cols, ws, m=49, k=36, n=8 (a 3x3x4 conv with 8 filters on a 7x7 output):
        // Sr=k=36 -> 5 folds, Sc=n=8 -> 2 folds, each 2*8 + 4 + 49 - 2 = 67: 670.
        // SCALE-Sim 3.0.0 reports 669 (its last cycle index) for this layer.
        let a = arr(8, 4, Dataflow::WeightStationary);
        assert_eq!(gemm_cycles(&a, 49, 36, 8), 670);
    }

    #[test]
    fn input_stationary_by_hand() {
        // Same problem, is: Sr=k=36 -> 5 folds, Sc=m=49 -> 13 folds, each 16 + 4 + 8 - 2 = 26:
        // 65 * 26 = 1690 (SCALE-Sim reports 1689).
        let a = arr(8, 4, Dataflow::InputStationary);
        assert_eq!(gemm_cycles(&a, 49, 36, 8), 1690);
    }

    #[test]
    fn output_stationary_matches_scalesim_small_layers() {
        // Hand-run SCALE-Sim 3.0.0 values (8x4 array, os), plus one for its 0-based count.
        let a = arr(8, 4, Dataflow::OutputStationary);
        assert_eq!(gemm_cycles(&a, 49, 36, 8), 643 + 1);
        assert_eq!(gemm_cycles(&a, 196, 64, 40), 18499 + 1);
        assert_eq!(gemm_cycles(&a, 49, 144, 70), 19403 + 1);
    }

    #[test]
    fn empty_problems_and_arrays_take_no_cycles() {
        let a = arr(32, 32, Dataflow::OutputStationary);
        assert_eq!(gemm_cycles(&a, 0, 3, 3), 0);
        assert_eq!(gemm_cycles(&a, 3, 0, 3), 0);
        assert_eq!(gemm_cycles(&a, 3, 3, 0), 0);
        assert_eq!(
            gemm_cycles(&arr(0, 32, Dataflow::WeightStationary), 3, 3, 3),
            0
        );
        assert_eq!(gemm_utilization(&a, 0, 3, 3), 0.0);
    }

    #[test]
    fn huge_problems_saturate_instead_of_overflowing() {
        let a = arr(1, 1, Dataflow::InputStationary);
        assert_eq!(gemm_cycles(&a, u64::MAX, u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn utilization_is_one_for_a_single_pe() {
        let a = arr(1, 1, Dataflow::OutputStationary);
        assert!((gemm_utilization(&a, 3, 7, 2) - 1.0).abs() < 1e-12);
        let b = arr(32, 32, Dataflow::OutputStationary);
        let u = gemm_utilization(&b, 1024, 1024, 1024);
        assert!(u > 0.9 && u < 1.0, "{u}");
    }

    #[test]
    fn conv_maps_to_im2col_gemm() {
        // ResNet-50's first layer: 224x224x3, 7x7/2, pad 3 -> 112x112x64.
        let c = ConvShape {
            out_h: 112,
            out_w: 112,
            kernel_h: 7,
            kernel_w: 7,
            channels: 3,
            filters: 64,
            stride_h: 2,
            stride_w: 2,
            groups: 1,
        };
        assert_eq!(c.gemm_dims(), (12544, 147, 64));
        // (112 - 1) * 2 + 7 = 229, and SCALE-Sim's ceil((229 - 7 + 2) / 2) = 112.
        assert_eq!(c.scalesim_ifmap_extent(), (229, 229));
        assert_eq!(c.macs(), 12544 * 147 * 64);
        let a = arr(32, 32, Dataflow::OutputStationary);
        // 392 row folds * 2 col folds * (147 + 62).
        assert_eq!(conv_cycles(&a, &c), 392 * 2 * 209);
    }

    #[test]
    fn depthwise_runs_one_gemm_per_group() {
        let c = ConvShape {
            out_h: 7,
            out_w: 7,
            kernel_h: 3,
            kernel_w: 3,
            channels: 1,
            filters: 1,
            stride_h: 1,
            stride_w: 1,
            groups: 32,
        };
        let a = arr(8, 8, Dataflow::OutputStationary);
        assert_eq!(conv_cycles(&a, &c), 32 * gemm_cycles(&a, 49, 9, 1));
    }

    #[test]
    fn dataflow_names_round_trip() {
        for d in [
            Dataflow::OutputStationary,
            Dataflow::WeightStationary,
            Dataflow::InputStationary,
        ] {
            let s = serde_json::to_string(&d).unwrap();
            assert_eq!(s, format!("\"{}\"", d.short_name()));
            assert_eq!(serde_json::from_str::<Dataflow>(&s).unwrap(), d);
        }
    }
}
