//! A simulated NPU: a matrix unit (systolic array), a vector unit, on-chip SRAM used as
//! ping-pong buffers, DMA to the card's DRAM and a host link, described by a TOML file.

pub mod systolic;
