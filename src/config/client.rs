//! Validation of what a client connection may send in a request head and how long it may
//! take: `client_header_timeout`, `client_keepalive_timeout`, `max_request_line`,
//! `max_header_size`, `max_headers` (top-level keys; nginx's defaults where it has one).

use super::error::Problems;
use super::model::ClientLimits;
use super::raw::RawConfig;
use super::units::{parse_duration, parse_size};
use std::time::Duration;

/// nginx's `client_header_timeout` is 60 s; 10 s is ample for any real client and cuts
/// slowloris connections six times sooner.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Pingora's and nginx's (75 s) order of magnitude.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// nginx's `large_client_header_buffers 4 8k`: a request line over 8 KiB is a 414.
pub const DEFAULT_MAX_REQUEST_LINE: usize = 8 << 10;
/// nginx's four 8 KiB buffers.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 32 << 10;
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// The most header fields any config may allow (intake parses at most this many).
pub const MAX_HEADERS: usize = 256;
/// Above this the head would not fit the limits Pingora itself applies (1 MiB).
const MAX_SIZE_LIMIT: u64 = 512 << 10;

pub fn limits(raw: &RawConfig, p: &mut Problems) -> ClientLimits {
    let duration = |value: &Option<String>, path: &str, default: Duration, p: &mut Problems| match value {
        None => default,
        Some(s) => match parse_duration(s) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                p.push(path, "must be above zero (use 10s, 1m)");
                default
            }
            Err(e) => {
                p.push(path, e);
                default
            }
        },
    };
    let size = |value: &Option<String>, path: &str, default: usize, p: &mut Problems| match value {
        None => default,
        Some(s) => match parse_size(s) {
            Ok(n) if (1024..=MAX_SIZE_LIMIT).contains(&n) => n as usize,
            Ok(_) => {
                p.push(path, "must be between 1KiB and 512KiB");
                default
            }
            Err(e) => {
                p.push(path, e);
                default
            }
        },
    };
    let max_headers = raw.max_headers.unwrap_or(DEFAULT_MAX_HEADERS);
    if !(1..=MAX_HEADERS).contains(&max_headers) {
        p.push("max_headers", format!("must be between 1 and {MAX_HEADERS}"));
    }
    ClientLimits {
        header_timeout: duration(
            &raw.client_header_timeout,
            "client_header_timeout",
            DEFAULT_HEADER_TIMEOUT,
            p,
        ),
        keepalive_timeout: duration(
            &raw.client_keepalive_timeout,
            "client_keepalive_timeout",
            DEFAULT_KEEPALIVE_TIMEOUT,
            p,
        ),
        max_request_line: size(&raw.max_request_line, "max_request_line", DEFAULT_MAX_REQUEST_LINE, p),
        max_header_size: size(&raw.max_header_size, "max_header_size", DEFAULT_MAX_HEADER_SIZE, p),
        max_headers: max_headers.clamp(1, MAX_HEADERS),
    }
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            max_request_line: DEFAULT_MAX_REQUEST_LINE,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}
