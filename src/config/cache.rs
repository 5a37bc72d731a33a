//! Validation of response caching: the top-level `cache:` block (the one shared store) and
//! each route's opt-in `cache:` (`true`, or `{ ttl: 60s, authorized: true }`).

use super::error::Problems;
use super::model::{CacheSettings, DiskCache, RouteCache};
use super::raw::{RawCache, RawDiskCache};
use super::units::{parse_duration, parse_size};
use std::time::Duration;

pub const DEFAULT_MAX_SIZE: u64 = 128 << 20;
pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 8 << 20;
/// The store weighs entries in KiB with 16 bits: no single entry can weigh more.
pub const MAX_OBJECT_SIZE_LIMIT: u64 = 64 << 20;
/// The seeds' CACHE_TTL default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_HEURISTIC_MAX: Duration = Duration::from_secs(86_400);
pub const DEFAULT_TARGETED_HEADER: &str = "gatehouse-cache-control";

pub fn settings(raw: Option<&RawCache>, p: &mut Problems) -> CacheSettings {
    let default = RawCache::default();
    let raw = raw.unwrap_or(&default);
    let size = |value: &Option<String>, path: &str, default: u64, p: &mut Problems| match value {
        None => default,
        Some(s) => match parse_size(s) {
            Ok(n) if n > 0 => n,
            _ => {
                p.push(path, format!("\"{s}\" is not a size above zero (use 64KiB, 128MiB)"));
                default
            }
        },
    };
    let duration = |value: &Option<String>, path: &str, default: Duration, p: &mut Problems| match value {
        None => default,
        Some(s) => ttl(s).unwrap_or_else(|e| {
            p.push(path, e);
            default
        }),
    };
    let max_size = size(&raw.max_size, "cache.max_size", DEFAULT_MAX_SIZE, p);
    let max_object_size = size(
        &raw.max_object_size,
        "cache.max_object_size",
        DEFAULT_MAX_OBJECT_SIZE,
        p,
    );
    if max_object_size > MAX_OBJECT_SIZE_LIMIT {
        p.push("cache.max_object_size", "must be at most 64MiB");
    } else if max_object_size > max_size {
        p.push("cache.max_object_size", "must not exceed cache.max_size");
    }
    let lock_timeout = duration(&raw.lock_timeout, "cache.lock_timeout", DEFAULT_LOCK_TIMEOUT, p);
    if lock_timeout.is_zero() {
        p.push("cache.lock_timeout", "must be greater than zero");
    }
    CacheSettings {
        enabled: raw.enabled.unwrap_or(true),
        max_size,
        max_object_size: max_object_size.min(MAX_OBJECT_SIZE_LIMIT),
        default_ttl: duration(&raw.default_ttl, "cache.default_ttl", DEFAULT_TTL, p),
        lock_timeout,
        heuristic: raw.heuristic.unwrap_or(false),
        heuristic_max: duration(&raw.heuristic_max, "cache.heuristic_max", DEFAULT_HEURISTIC_MAX, p),
        targeted: targeted(raw, p),
        strip_targeted: raw.strip_targeted.unwrap_or(true),
        tag_headers: tag_headers(raw, p),
        strip_tags: raw.strip_tags.unwrap_or(true),
        disk: raw.disk.as_ref().and_then(|d| disk(d, p)),
        range_pass: match raw.range_miss.as_deref().map(str::trim) {
            None | Some("whole") => false,
            Some("pass") => true,
            Some(other) => {
                p.push("cache.range_miss", format!("\"{other}\" is not whole or pass"));
                false
            }
        },
    }
}

pub const DEFAULT_DISK_MAX_SIZE: u64 = 1 << 30;
pub const DEFAULT_DISK_MAX_OBJECT_SIZE: u64 = 64 << 20;

fn disk(raw: &RawDiskCache, p: &mut Problems) -> Option<DiskCache> {
    let Some(path) = raw.path.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
        p.push(
            "cache.disk.path",
            "is required: the directory for the cache's files (e.g. /var/cache/gatehouse)",
        );
        return None;
    };
    let size = |value: &Option<String>, field: &str, default: u64, p: &mut Problems| match value {
        None => Some(default),
        Some(s) => match parse_size(s) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                p.push(
                    format!("cache.disk.{field}"),
                    format!("\"{s}\" is not a size above zero (use 512MiB, 10GiB)"),
                );
                None
            }
        },
    };
    let max_size = size(&raw.max_size, "max_size", DEFAULT_DISK_MAX_SIZE, p)?;
    let max_object_size = size(&raw.max_object_size, "max_object_size", DEFAULT_DISK_MAX_OBJECT_SIZE, p)?;
    if max_object_size > crate::cache::disk::MAX_OBJECT_SIZE_LIMIT {
        p.push("cache.disk.max_object_size", "must be at most 256MiB");
        return None;
    }
    if max_object_size > max_size {
        p.push("cache.disk.max_object_size", "must not exceed cache.disk.max_size");
        return None;
    }
    // Refused now rather than failing on the first write.
    let path = std::path::PathBuf::from(path);
    if let Err(e) = writable(&path) {
        p.push(
            "cache.disk.path",
            format!(
                "{}: cannot create or write there ({e}); use a directory the gateway's user owns",
                path.display()
            ),
        );
        return None;
    }
    Some(DiskCache {
        path,
        max_size,
        max_object_size,
    })
}

fn writable(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".probe.{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(probe)
}

fn tag_headers(raw: &RawCache, p: &mut Problems) -> Vec<http::HeaderName> {
    let Some(names) = &raw.tag_headers else {
        return vec![
            http::HeaderName::from_static("cache-tag"),
            http::HeaderName::from_static("surrogate-key"),
        ];
    };
    let mut headers = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        match http::HeaderName::from_bytes(name.trim().as_bytes()) {
            Ok(header) if is_reserved(&header) || header == http::header::VARY => p.push(
                format!("cache.tag_headers[{i}]"),
                format!("\"{name}\" is a standard field with a meaning of its own; use Cache-Tag or Surrogate-Key"),
            ),
            Ok(header) => headers.push(header),
            Err(_) => p.push(
                format!("cache.tag_headers[{i}]"),
                format!("\"{name}\" is not a header name (use Cache-Tag, Surrogate-Key)"),
            ),
        }
    }
    headers
}

/// The settings of a config without a `cache:` block.
pub fn defaults() -> CacheSettings {
    settings(None, &mut Problems::default())
}

/// The targeted cache-control fields obeyed, most specific first (RFC 9213 §2.2).
fn targeted(raw: &RawCache, p: &mut Problems) -> Vec<http::HeaderName> {
    let mut names = Vec::with_capacity(2);
    let own = raw.targeted_header.as_deref().unwrap_or(DEFAULT_TARGETED_HEADER).trim();
    if !own.eq_ignore_ascii_case("none") {
        match http::HeaderName::from_bytes(own.as_bytes()) {
            Ok(name) if is_reserved(&name) => p.push(
                "cache.targeted_header",
                format!("\"{own}\" is a standard field; use a name of its own, like Gatehouse-Cache-Control"),
            ),
            Ok(name) => names.push(name),
            Err(_) => p.push(
                "cache.targeted_header",
                format!("\"{own}\" is not a header name (use Gatehouse-Cache-Control, or none)"),
            ),
        }
    }
    if raw.cdn_cache_control.unwrap_or(true) {
        names.push(http::HeaderName::from_static("cdn-cache-control"));
    }
    names
}

fn is_reserved(name: &http::HeaderName) -> bool {
    [http::header::CACHE_CONTROL, http::header::EXPIRES, http::header::PRAGMA].contains(name)
        || name.as_str() == "cdn-cache-control"
}

/// A duration, or `none` (= 0): no freshness of the gateway's own, so an answer without
/// the origin's is stored only when it can be revalidated, and never served unchecked.
fn ttl(s: &str) -> Result<Duration, String> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

/// A route's `cache:`; `None` when the route does not cache (or caching is off).
pub fn route(
    value: Option<&serde_yaml::Value>,
    path: &str,
    settings: &CacheSettings,
    p: &mut Problems,
) -> Option<RouteCache> {
    use serde_yaml::Value;
    let path = format!("{path}.cache");
    let mut policy = RouteCache {
        ttl: settings.default_ttl,
        authorized: false,
    };
    match value? {
        Value::Bool(false) => return None,
        Value::Bool(true) => {}
        Value::Mapping(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    (Some("ttl"), Value::String(s)) => match ttl(s) {
                        Ok(d) => policy.ttl = d,
                        Err(e) => p.push(format!("{path}.ttl"), e),
                    },
                    (Some("ttl"), _) => p.push(format!("{path}.ttl"), "must be a duration (60s, 5m)"),
                    (Some("authorized"), Value::Bool(b)) => policy.authorized = *b,
                    (Some("authorized"), _) => p.push(format!("{path}.authorized"), "must be true or false"),
                    (Some(other), _) => p.push(format!("{path}.{other}"), "unknown key (expected ttl, authorized)"),
                    (None, _) => p.push(&path, "keys must be strings"),
                }
            }
        }
        _ => {
            p.push(&path, "expected true, false or { ttl: 60s, authorized: false }");
            return None;
        }
    }
    settings.enabled.then_some(policy)
}
