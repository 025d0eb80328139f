//! The roofline model: a layer doing `F` FLOPs and moving `B` bytes off chip has
//! arithmetic intensity `I = F / B` FLOP/byte. On a machine with peak rate `P` FLOP/s and
//! off-chip bandwidth `W` bytes/s its time is at least `max(F / P, B / W)`; it is
//! memory-bound when `I` is below the machine balance `P / W` (the bytes take longer than
//! the arithmetic), compute-bound otherwise. A layer that moves no off-chip bytes at all
//! (its weights resident, its activations on chip) is [`Bound::OnChip`].
use crate::MemoryError;

/// The two ceilings of the roofline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Machine {
    /// Peak arithmetic rate, GFLOP/s (1e9 FLOP/s).
    pub peak_gflops: f64,
    /// Off-chip memory bandwidth, GB/s (1e9 bytes/s).
    pub bandwidth_gbs: f64,
}

/// Which ceiling limits a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bound {
    /// Intensity below the machine balance: the off-chip bytes set the time.
    Memory,
    /// Intensity at or above the balance: the arithmetic sets the time.
    Compute,
    /// No off-chip traffic at all.
    OnChip,
}

impl Bound {
    pub fn name(self) -> &'static str {
        match self {
            Bound::Memory => "memory-bound",
            Bound::Compute => "compute-bound",
            Bound::OnChip => "on-chip",
        }
    }
}

impl Machine {
    /// Checks both rates are positive and finite.
    pub fn new(peak_gflops: f64, bandwidth_gbs: f64) -> Result<Machine, MemoryError> {
        for (what, v) in [
            ("peak GFLOP/s", peak_gflops),
            ("bandwidth GB/s", bandwidth_gbs),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(MemoryError::Machine(format!(
                    "{what} must be a positive number, got {v}"
                )));
            }
        }
        Ok(Machine {
            peak_gflops,
            bandwidth_gbs,
        })
    }

    /// Machine balance, FLOP per off-chip byte.
    pub fn balance(&self) -> f64 {
        self.peak_gflops / self.bandwidth_gbs
    }

    /// Classifies a layer by its FLOPs and off-chip bytes.
    pub fn classify(&self, flops: u64, offchip_bytes: u64) -> Bound {
        if offchip_bytes == 0 {
            Bound::OnChip
        } else if (flops as f64) / (offchip_bytes as f64) < self.balance() {
            Bound::Memory
        } else {
            Bound::Compute
        }
    }

    /// Lower bound on the layer's time in seconds: `max(F / P, B / W)`.
    pub fn time_s(&self, flops: u64, offchip_bytes: u64) -> f64 {
        let compute = flops as f64 / (self.peak_gflops * 1e9);
        let memory = offchip_bytes as f64 / (self.bandwidth_gbs * 1e9);
        compute.max(memory)
    }
}

/// Arithmetic intensity `flops / bytes`; infinite when no bytes move.
pub fn intensity(flops: u64, offchip_bytes: u64) -> f64 {
    if offchip_bytes == 0 {
        f64::INFINITY
    } else {
        flops as f64 / offchip_bytes as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_against_the_balance_point() {
        // 1000 GFLOP/s over 50 GB/s: 20 FLOP per byte.
        let m = Machine::new(1000.0, 50.0).unwrap();
        assert_eq!(m.balance(), 20.0);
        // A 1x1 conv on a 7x7 map, 2048 -> 512 channels, fp32 weights: 24.5 FLOP/byte.
        let flops = 2 * 49 * 2048 * 512;
        assert_eq!(m.classify(flops, 2048 * 512 * 4), Bound::Compute);
        // A batch-1 FC layer: 2 FLOPs per 4-byte weight.
        assert_eq!(m.classify(2 * 4096 * 4096, 4096 * 4096 * 4), Bound::Memory);
        // Exactly at the balance counts as compute-bound; no bytes at all is on-chip.
        assert_eq!(m.classify(20, 1), Bound::Compute);
        assert_eq!(m.classify(19, 1), Bound::Memory);
        assert_eq!(m.classify(1 << 30, 0), Bound::OnChip);
        assert_eq!(m.classify(0, 8), Bound::Memory);
        assert_eq!(intensity(10, 0), f64::INFINITY);
    }

    #[test]
    fn time_is_the_larger_of_the_two_ceilings() {
        let m = Machine::new(100.0, 10.0).unwrap();
        assert!((m.time_s(100_000_000_000, 1) - 1.0).abs() < 1e-12);
        assert!((m.time_s(1, 20_000_000_000) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn rejects_nonsense_rates() {
        assert!(Machine::new(0.0, 10.0).is_err());
        assert!(Machine::new(10.0, f64::NAN).is_err());
        assert!(Machine::new(-1.0, 10.0).is_err());
    }
}
