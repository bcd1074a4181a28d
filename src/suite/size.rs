//! Byte sizes on the command line and in case names: `1MiB`, `4GiB`, `1.5GB`, `4000012`.

use anyhow::{bail, Context, Result};

pub fn parse_bytes(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .with_context(|| format!("`{text}` is not a size (e.g. 64MiB, 1GiB, 4096)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        other => {
            bail!("unknown size unit `{other}` in `{text}` (use B, KiB, MiB, GiB, KB, MB, GB)")
        }
    };
    let bytes = value * scale;
    if bytes.fract() != 0.0 || bytes < 0.0 {
        bail!("`{text}` is not a whole number of bytes");
    }
    Ok(bytes as u64)
}

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
    }
}
