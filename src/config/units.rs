//! The units config values are written in: sizes (`64KiB`) and durations (`250ms`). The
//! bottom of the config module: every per-domain part uses it, it uses none of them.

use std::time::Duration;

/// `1MiB`, `64KiB`, `1000` (bytes), `0`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("\"{s}\" is not a size (use 64KiB, 1MiB, 10MB)"))
}

/// `250ms`, `5s`, `1m`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("\"{s}\" is not a duration (use 250ms, 5s, 1m, 12h, 30d)");
    // Whole days (certificate lifetimes): jiff's durations stop at hours.
    if let Some(days) = s.trim().strip_suffix('d').and_then(|d| d.trim().parse::<u64>().ok()) {
        return days.checked_mul(86_400).map(Duration::from_secs).ok_or_else(bad);
    }
    let signed: jiff::SignedDuration = s.trim().parse().map_err(|_| bad())?;
    Duration::try_from(signed).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_whole_days_too() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("1.5d").is_err());
        assert!(parse_duration("d").is_err());
    }
}
