//! The NPU description file (TOML): clock, matrix unit(s), vector unit, on-chip SRAM, DMA to
//! the card's DRAM, host link, per-command overhead and the weight storage dtype.
//!
//! Parsing is two-step: serde reads a raw file (unknown keys refused by
//! `deny_unknown_fields`), then [`NpuConfig::from_raw`] validates every field and returns an
//! error naming the key (`sram.size: ...`). See `examples/npu.toml` for a commented example.
use crate::systolic::{Array, Dataflow};
pub use millrace_memory::residency::WeightDtype;
use serde::Deserialize;

/// A configuration problem: the key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid TOML or does not match the schema (unknown or missing keys,
    /// wrong types); the message comes from the TOML parser and names the key.
    #[error("NPU config: {0}")]
    Parse(String),
    /// A field has a value outside its valid range.
    #[error("NPU config: `{key}`: {msg}")]
    Invalid { key: String, msg: String },
    /// The file could not be read.
    #[error("NPU config: reading {path}: {msg}")]
    Io { path: String, msg: String },
}

fn invalid(key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        msg: msg.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: Option<String>,
    clock_ghz: f64,
    weight_dtype: Option<String>,
    activation_dtype: Option<String>,
    command_overhead_cycles: Option<u64>,
    matrix: RawMatrix,
    vector: RawVector,
    sram: RawSram,
    dram: RawDram,
    host_link: RawLink,
    host: Option<RawHost>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    rows: u64,
    cols: u64,
    dataflow: Dataflow,
    units: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVector {
    lanes: u64,
    ops_per_lane: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSram {
    size: String,
    banks: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDram {
    size: String,
    bandwidth_gbps: f64,
    latency_ns: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    bandwidth_gbps: f64,
    latency_us: f64,
    shared: Option<bool>,
    peer_to_peer: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    gflops: f64,
}

/// A validated NPU description. All rates are per second, sizes in bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct NpuConfig {
    /// A label for reports.
    pub name: String,
    /// Clock frequency in Hz.
    pub clock_hz: f64,
    /// Each matrix unit's systolic array.
    pub array: Array,
    /// Number of matrix units (independent branches may use several at once).
    pub matrix_units: usize,
    /// Vector unit lanes.
    pub vector_lanes: u64,
    /// Operations per lane per cycle.
    pub vector_ops_per_lane: u64,
    /// On-chip SRAM bytes.
    pub sram_bytes: u64,
    /// SRAM banks (at least 2: one ping and one pong).
    pub sram_banks: u64,
    /// Card DRAM bytes.
    pub dram_bytes: u64,
    /// DMA bandwidth between DRAM and SRAM, bytes per second (each direction).
    pub dma_bandwidth: f64,
    /// Fixed latency of one DMA transfer, seconds.
    pub dma_latency: f64,
    /// Host link bandwidth, bytes per second (each direction).
    pub link_bandwidth: f64,
    /// Fixed latency of one host-link transfer, seconds.
    pub link_latency: f64,
    /// Several cards (`millrace simulate --cards K`): `true` when they share one link to the
    /// host (one transfer at a time each direction, as cards behind one switch uplink);
    /// `false` (the default) when each card has its own link.
    pub link_shared: bool,
    /// Several cards: activations move card to card directly (one transfer over the
    /// sender's and the receiver's ports) instead of through host memory (two transfers).
    /// Default `false`.
    pub peer_to_peer: bool,
    /// Cycles every command costs on top of its work (issue, descriptor fetch).
    pub command_overhead: u64,
    /// What weights occupy in SRAM/DRAM and traffic (compute stays fp32 functionally).
    pub weight_dtype: WeightDtype,
    /// What activations occupy in SRAM/DRAM and traffic (default: the weight dtype).
    pub activation_dtype: WeightDtype,
    /// Host CPU rate for ops that fall back to the host, FLOP/s.
    pub host_flops: f64,
}

fn dtype(key: &str, s: &str) -> Result<WeightDtype, ConfigError> {
    match s.to_ascii_lowercase().as_str() {
        "fp32" | "f32" | "float32" => Ok(WeightDtype::F32),
        "fp16" | "f16" | "float16" => Ok(WeightDtype::F16),
        "int8" | "i8" => Ok(WeightDtype::Int8),
        _ => Err(invalid(key, format!("`{s}`: expected fp32, fp16 or int8"))),
    }
}

fn positive(key: &str, v: f64) -> Result<f64, ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(invalid(key, format!("{v}: must be a positive number")))
    }
}

fn non_negative(key: &str, v: f64) -> Result<f64, ConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(invalid(key, format!("{v}: must be zero or positive")))
    }
}

fn count(key: &str, v: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(key, format!("{v}: must be in {min}..={max}")))
    }
}

fn size(key: &str, s: &str) -> Result<u64, ConfigError> {
    let b = millrace_memory::parse_size(s).map_err(|e| invalid(key, e.to_string()))?;
    if b == 0 {
        return Err(invalid(key, "must be larger than zero"));
    }
    Ok(b)
}

impl NpuConfig {
    /// Parses and validates a TOML description.
    pub fn from_toml(text: &str) -> Result<NpuConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        NpuConfig::from_raw(raw)
    }

    /// Reads, parses and validates a TOML file.
    pub fn from_file(path: &std::path::Path) -> Result<NpuConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        NpuConfig::from_toml(&text)
    }

    fn from_raw(r: RawConfig) -> Result<NpuConfig, ConfigError> {
        let clock_ghz = positive("clock_ghz", r.clock_ghz)?;
        if clock_ghz > 100.0 {
            return Err(invalid("clock_ghz", "above 100 GHz: is the unit GHz?"));
        }
        let weight_dtype = dtype("weight_dtype", r.weight_dtype.as_deref().unwrap_or("fp32"))?;
        let activation_dtype = match r.activation_dtype.as_deref() {
            Some(s) => dtype("activation_dtype", s)?,
            None => weight_dtype,
        };
        let rows = count("matrix.rows", r.matrix.rows, 1, 1 << 16)?;
        let cols = count("matrix.cols", r.matrix.cols, 1, 1 << 16)?;
        let units = count("matrix.units", r.matrix.units.unwrap_or(1), 1, 64)? as usize;
        let lanes = count("vector.lanes", r.vector.lanes, 1, 1 << 20)?;
        let ops = count(
            "vector.ops_per_lane",
            r.vector.ops_per_lane.unwrap_or(1),
            1,
            1024,
        )?;
        let sram_bytes = size("sram.size", &r.sram.size)?;
        let banks = count("sram.banks", r.sram.banks, 2, 4096)?;
        if sram_bytes < banks {
            return Err(invalid("sram.banks", "more banks than bytes of SRAM"));
        }
        let dram_bytes = size("dram.size", &r.dram.size)?;
        let dma_bw = positive("dram.bandwidth_gbps", r.dram.bandwidth_gbps)? * 1e9;
        let dma_lat = non_negative("dram.latency_ns", r.dram.latency_ns)? * 1e-9;
        let link_bw = positive("host_link.bandwidth_gbps", r.host_link.bandwidth_gbps)? * 1e9;
        let link_lat = non_negative("host_link.latency_us", r.host_link.latency_us)? * 1e-6;
        let overhead = count(
            "command_overhead_cycles",
            r.command_overhead_cycles.unwrap_or(0),
            0,
            1 << 32,
        )?;
        let host_flops = match r.host {
            Some(h) => positive("host.gflops", h.gflops)? * 1e9,
            None => 100e9,
        };
        let name = r.name.unwrap_or_else(|| "npu".to_string());
        Ok(NpuConfig {
            name,
            clock_hz: clock_ghz * 1e9,
            array: Array {
                rows,
                cols,
                dataflow: r.matrix.dataflow,
            },
            matrix_units: units,
            vector_lanes: lanes,
            vector_ops_per_lane: ops,
            sram_bytes,
            sram_banks: banks,
            dram_bytes,
            dma_bandwidth: dma_bw,
            dma_latency: dma_lat,
            link_bandwidth: link_bw,
            link_latency: link_lat,
            link_shared: r.host_link.shared.unwrap_or(false),
            peer_to_peer: r.host_link.peer_to_peer.unwrap_or(false),
            command_overhead: overhead,
            weight_dtype,
            activation_dtype,
            host_flops,
        })
    }

    /// Cycles for `seconds` at this clock, rounded up.
    pub fn cycles(&self, seconds: f64) -> u64 {
        (seconds * self.clock_hz).ceil().max(0.0) as u64
    }

    /// Seconds for `cycles`.
    pub fn seconds(&self, cycles: u64) -> f64 {
        cycles as f64 / self.clock_hz
    }

    /// Cycles of one DMA transfer of `bytes` between DRAM and SRAM (latency + bytes / rate).
    pub fn dma_cycles(&self, bytes: u64) -> u64 {
        if bytes == 0 {
            return 0;
        }
        self.cycles(self.dma_latency + bytes as f64 / self.dma_bandwidth)
    }

    /// Cycles of one host-link transfer of `bytes`.
    pub fn link_cycles(&self, bytes: u64) -> u64 {
        if bytes == 0 {
            return 0;
        }
        self.cycles(self.link_latency + bytes as f64 / self.link_bandwidth)
    }

    /// Cycles for the vector unit to do `ops` element operations.
    pub fn vector_cycles(&self, ops: u64) -> u64 {
        ops.div_ceil(self.vector_lanes * self.vector_ops_per_lane)
    }

    /// The host link as the device planner sees it.
    pub fn host_link(&self) -> millrace_devices::HostLink {
        millrace_devices::HostLink {
            bandwidth: self.link_bandwidth,
            latency: self.link_latency,
        }
    }

    /// One-line summary.
    pub fn summary(&self) -> String {
        format!(
            "{}: {:.2} GHz, {} x {}x{} {:?} matrix unit(s), {}-lane vector unit, {} SRAM ({} banks), \
             DMA {:.1} GB/s, host link {:.1} GB/s, weights {}",
            self.name,
            self.clock_hz / 1e9,
            self.matrix_units,
            self.array.rows,
            self.array.cols,
            self.array.dataflow,
            self.vector_lanes,
            millrace_memory::format_bytes(self.sram_bytes),
            self.sram_banks,
            self.dma_bandwidth / 1e9,
            self.link_bandwidth / 1e9,
            self.weight_dtype.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = include_str!("../../../examples/npu.toml");

    #[test]
    fn example_parses() {
        let c = NpuConfig::from_toml(EXAMPLE).unwrap();
        assert_eq!(c.array.rows, 32);
        assert_eq!(c.sram_bytes, 8_000_000);
        assert_eq!(c.matrix_units, 1);
    }

    #[test]
    fn unknown_key_refused() {
        let bad = EXAMPLE.replace("[vector]", "[vector]\nwidth = 3");
        let e = NpuConfig::from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("width"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let bad = EXAMPLE.replace("size = \"8MB\"", "size = \"8XB\"");
        let e = NpuConfig::from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("sram.size"), "{e}");
        let bad = EXAMPLE.replace("clock_ghz = 1.0", "clock_ghz = -1.0");
        let e = NpuConfig::from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("clock_ghz"), "{e}");
        let bad = EXAMPLE.replace("dataflow = \"os\"", "dataflow = \"xx\"");
        assert!(NpuConfig::from_toml(&bad).is_err());
        let bad = EXAMPLE.replace("weight_dtype = \"int8\"", "weight_dtype = \"int4\"");
        let e = NpuConfig::from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("weight_dtype"), "{e}");
    }
}
