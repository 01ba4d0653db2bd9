//! Trino's (airlift's) succinct units: `12.31s`, `3.00m`, `1.21GB`.

use std::time::Duration;

/// Parse an airlift `Duration` string (`12.31s`, `250.00ms`, `1.50h`; units `ns`, `us`, `ms`, `s`,
/// `m`, `h`, `d`). The error says what was wrong.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| format!("{s:?} has no unit (ns, us, ms, s, m, h, d)"))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: {num:?} is not a number"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{s:?}: not a finite, non-negative amount"));
    }
    let nanos_per = match unit {
        "ns" => 1.0,
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3_600e9,
        "d" => 86_400e9,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (ns, us, ms, s, m, h, d)"
            ))
        }
    };
    let nanos = value * nanos_per;
    if nanos > u64::MAX as f64 {
        return Err(format!("{s:?}: too long"));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// Parse an airlift `DataSize` string (`0B`, `512kB`, `1.21GB`; units `B`, `kB`, `MB`, `GB`, `TB`,
/// `PB`, powers of 1024) into bytes.
pub fn parse_data_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| format!("{s:?} has no unit (B, kB, MB, GB, TB, PB)"))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: {num:?} is not a number"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{s:?}: not a finite, non-negative amount"));
    }
    let exp = match unit {
        "B" => 0,
        "kB" => 1,
        "MB" => 2,
        "GB" => 3,
        "TB" => 4,
        "PB" => 5,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (B, kB, MB, GB, TB, PB)"
            ))
        }
    };
    let bytes = value * 1024f64.powi(exp);
    if bytes > u64::MAX as f64 {
        return Err(format!("{s:?}: too large"));
    }
    Ok(bytes.round() as u64)
}

/// `1.21GB`-style, for plans.
pub(crate) fn human_bytes(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.2}{}", units[i])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn airlift_forms() {
        assert_eq!(
            parse_duration("12.31s").unwrap(),
            Duration::from_millis(12_310)
        );
        assert_eq!(parse_duration("0.00ns").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1.50h").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("250.00ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_data_size("0B").unwrap(), 0);
        assert_eq!(parse_data_size("12MB").unwrap(), 12 * 1024 * 1024);
        assert_eq!(parse_data_size("1.50GB").unwrap(), 1_610_612_736);
        assert_eq!(human_bytes(1_610_612_736), "1.50GB");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(parse_duration("12").unwrap_err().contains("no unit"));
        assert!(parse_duration("1.2fortnights")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(
            parse_duration("x1s").unwrap_err().contains("no unit")
                || parse_duration("abc").is_err()
        );
        assert!(parse_data_size("-1MB")
            .unwrap_err()
            .contains("non-negative"));
        assert!(parse_data_size("1.2.3GB")
            .unwrap_err()
            .contains("not a number"));
    }

    proptest! {
        #[test]
        fn never_panic(s in ".{0,40}") {
            let _ = parse_duration(&s);
            let _ = parse_data_size(&s);
        }

        #[test]
        fn round_trips_within_a_rounding(ms in 0u64..10_000_000_000) {
            let text = format!("{:.2}s", ms as f64 / 1000.0);
            let d = parse_duration(&text).unwrap();
            prop_assert!((d.as_millis() as i128 - ms as i128).abs() <= 10);
        }
    }
}
