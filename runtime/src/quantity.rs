//! Kubernetes quantities ("256Mi", "1Gi", "500M"), read from definitions and flags and
//! written into manifests. A leaf: it imports nothing of the crate.

/// Kubernetes quantities as OSCAR uses them: "256Mi", "1Gi", "500M", "1e9", plain bytes.
pub fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use Ki, Mi, Gi, k, M, G)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a quantity such as \"256Mi\""))?;
    let bytes = value * multiplier;
    if !bytes.is_finite() || bytes <= 0.0 {
        return Err(format!("{text:?} must be a positive quantity"));
    }
    if bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes.ceil() as u64)
}

/// `bytes` as a Kubernetes quantity, in the largest binary unit that divides it (`256Mi`).
pub fn format(bytes: u64) -> String {
    for (unit, size) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse("1Gi"), Ok(1 << 30));
        assert_eq!(parse("500M"), Ok(500_000_000));
        assert_eq!(parse("1e6"), Ok(1_000_000));
        assert_eq!(parse("0.5Gi"), Ok(1 << 29));
        assert!(parse("12Xi").is_err());
        assert!(parse("0").is_err());
    }

    #[test]
    fn formats_in_the_largest_binary_unit() {
        assert_eq!(format(256 << 20), "256Mi");
        assert_eq!(format(1 << 30), "1Gi");
        assert_eq!(format(1000), "1000");
    }
}
