//! Byte sizes: parsing `40MB`, `40MiB`, `512KiB`, `1.5GB`, `4096` and printing them.
//!
//! Decimal units are powers of ten (`kB`/`KB` = 10^3, `MB` = 10^6, `GB` = 10^9, `TB`),
//! binary units powers of two (`KiB` = 2^10, `MiB` = 2^20, `GiB` = 2^30, `TiB`); the unit
//! is case-insensitive, a bare number (or `B`) is bytes, and fractions round down to whole
//! bytes. Sizes print in decimal MB so they compare directly with `--sram 40MB`.
use crate::MemoryError;

fn err(input: &str, msg: impl Into<String>) -> MemoryError {
    MemoryError::Size {
        input: input.to_string(),
        msg: msg.into(),
    }
}

/// Parses a byte size; see the module doc for the units.
pub fn parse_size(input: &str) -> Result<u64, MemoryError> {
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(err(input, "expected a number, e.g. 40MB, 512KiB, 1.5GB"));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| err(input, format!("`{num}` is not a number")))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        u => {
            return Err(err(
                input,
                format!("unknown unit `{u}` (use B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"),
            ))
        }
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(err(input, "too large"));
    }
    Ok(bytes as u64)
}

/// `102.2 MB` (decimal megabytes, one decimal); sizes under 0.1 MB print in kB or bytes.
pub fn format_bytes(b: u64) -> String {
    if b >= 100_000 {
        format!("{:.1} MB", b as f64 / 1e6)
    } else if b >= 1000 {
        format!("{:.1} kB", b as f64 / 1e3)
    } else {
        format!("{b} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_and_binary_units() {
        assert_eq!(parse_size("40MB").unwrap(), 40_000_000);
        assert_eq!(parse_size("40MiB").unwrap(), 40 << 20);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size(" 64 mb ").unwrap(), 64_000_000);
        assert_eq!(parse_size("2kB").unwrap(), 2000);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("10B").unwrap(), 10);
    }

    #[test]
    fn rejects_bad_sizes_with_a_reason() {
        for bad in ["", "MB", "40XB", "1.2.3MB", "-5MB", "1e99TB", "4 0MB"] {
            let e = parse_size(bad).unwrap_err().to_string();
            assert!(e.contains("size `"), "{bad}: {e}");
        }
        assert!(parse_size("40XB")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
    }

    #[test]
    fn formats_in_decimal_megabytes() {
        assert_eq!(format_bytes(102_230_000), "102.2 MB");
        assert_eq!(format_bytes(40_000_000), "40.0 MB");
        assert_eq!(format_bytes(2_500), "2.5 kB");
        assert_eq!(format_bytes(12), "12 B");
    }
}
