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
    let bad = || format!("\"{s}\" is not a duration (use 250ms, 5s, 1m)");
    let signed: jiff::SignedDuration = s.trim().parse().map_err(|_| bad())?;
    Duration::try_from(signed).map_err(|_| bad())
}
