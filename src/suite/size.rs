//! Byte sizes on the command line and in case names: `1MiB`, `4GiB`, `1.5GB`, `4000012`.

use anyhow::{anyhow, bail, Context, Result};

pub fn parse_bytes(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let not_a_size = || format!("`{text}` is not a size (e.g. 64MiB, 1GiB, 4096)");
    if number.is_empty() {
        bail!(not_a_size());
    }
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            bail!("unknown size unit `{other}` in `{text}` (use B, KiB, MiB, GiB, KB, MB, GB)")
        }
    };
    let too_large = || anyhow!("`{text}` is more than 2^64 bytes");
    // Whole numbers exactly (an f64 would round above 2^53 and saturate past 2^64); a fraction
    // only where the unit makes it whole, e.g. 1.5GB.
    let bytes = match number.split_once('.') {
        None => number
            .parse::<u64>()
            .map_err(|e| match e.kind() {
                std::num::IntErrorKind::PosOverflow => too_large(),
                _ => anyhow!(not_a_size()),
            })?
            .checked_mul(scale)
            .ok_or_else(too_large)?,
        Some(_) => {
            let value: f64 = number.parse().with_context(not_a_size)?;
            let bytes = value * scale as f64;
            if bytes >= EXACT_LIMIT || bytes.fract() != 0.0 {
                bail!("`{text}` is not a whole number of bytes below 2^53 (give it as an integer)");
            }
            bytes as u64
        }
    };
    Ok(bytes)
}

/// Below 2^53 an f64 holds every whole number exactly.
const EXACT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// `1 MiB` -> "1MiB"; sizes that are not a whole number of KiB/MiB/GiB print as bytes.
pub fn format_bytes(bytes: u64) -> String {
    for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= scale && bytes % scale == 0 {
            return format!("{}{unit}", bytes / scale);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip() {
        assert_eq!(parse_bytes("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_bytes("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_bytes("4000012").unwrap(), 4_000_012);
        assert_eq!(format_bytes(1 << 20), "1MiB");
        assert_eq!(format_bytes(4_000_012), "4000012B");
        assert_eq!(parse_bytes(&format_bytes(3 << 30)).unwrap(), 3 << 30);
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
        assert!(parse_bytes("0.3B").is_err());
        // Past 2^64 (or 2^53 through a fraction): an error, never a wrapped or saturated size.
        assert!(parse_bytes("18446744073709551616").is_err());
        assert!(parse_bytes("17179869184GiB").is_err());
        assert!(parse_bytes("99999999999999999999.0").is_err());
        assert_eq!(
            parse_bytes("9223372036854775808").unwrap(),
            1 << 63,
            "exact, not rounded through an f64"
        );
    }
}
