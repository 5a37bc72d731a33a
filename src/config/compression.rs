//! `compression:` (top level, and per route): response compression negotiated by
//! `Accept-Encoding`. `true` takes the defaults, `false` turns it off (a route's `false`
//! overrides the top level's), a map sets `encodings`, `types`, `min_size`, `level`.

use super::error::Problems;
use super::model::{CompressionConfig, Encoding};
use super::units::parse_size;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompression {
    encodings: Option<Vec<String>>,
    types: Option<Vec<String>>,
    min_size: Option<String>,
    level: Option<u32>,
}

/// Compressible unless the config says otherwise: text and the structured formats.
const DEFAULT_TYPES: [&str; 7] = [
    "text/*",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/xml",
    "application/*+xml",
    "image/svg+xml",
];
const DEFAULT_MIN_SIZE: u64 = 1024;
const DEFAULT_LEVEL: u32 = 6;

/// `None`: off. `inherited`: the top level's policy, for a route that says nothing.
pub fn policy(
    value: Option<&serde_yaml::Value>,
    path: &str,
    inherited: Option<&CompressionConfig>,
    p: &mut Problems,
) -> Option<CompressionConfig> {
    use serde_yaml::Value;
    let raw = match value {
        None => return inherited.cloned(),
        Some(Value::Bool(false)) => return None,
        Some(Value::Bool(true)) => RawCompression {
            encodings: None,
            types: None,
            min_size: None,
            level: None,
        },
        Some(v @ Value::Mapping(_)) => match serde_yaml::from_value::<RawCompression>(v.clone()) {
            Ok(raw) => raw,
            Err(e) => {
                p.push(path, format!("{e} (keys: encodings, types, min_size, level)"));
                return None;
            }
        },
        Some(_) => {
            p.push(path, "expected true, false or { encodings, types, min_size, level }");
            return None;
        }
    };
    let encodings = match &raw.encodings {
        None => vec![Encoding::Zstd, Encoding::Brotli, Encoding::Gzip],
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e.to_ascii_lowercase().as_str() {
                "gzip" => Some(Encoding::Gzip),
                "br" | "brotli" => Some(Encoding::Brotli),
                "zstd" => Some(Encoding::Zstd),
                other => {
                    p.push(
                        format!("{path}.encodings[{i}]"),
                        format!("\"{other}\" is not gzip, br or zstd"),
                    );
                    None
                }
            })
            .collect(),
    };
    if encodings.is_empty() {
        p.push(
            format!("{path}.encodings"),
            "lists no encoding (say compression: false to turn it off)",
        );
    }
    let types: Vec<String> = match &raw.types {
        None => DEFAULT_TYPES.iter().map(|t| t.to_string()).collect(),
        Some(list) => list.iter().map(|t| t.trim().to_ascii_lowercase()).collect(),
    };
    for (i, t) in types.iter().enumerate() {
        if t.split_once('/').is_none_or(|(a, b)| a.is_empty() || b.is_empty()) {
            p.push(
                format!("{path}.types[{i}]"),
                format!("\"{t}\" is not a media type (text/html, text/*, application/*+json)"),
            );
        }
    }
    let min_size = match raw.min_size.as_deref().map(parse_size) {
        None => DEFAULT_MIN_SIZE,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            p.push(format!("{path}.min_size"), e);
            DEFAULT_MIN_SIZE
        }
    };
    let level = raw.level.unwrap_or(DEFAULT_LEVEL);
    if !(1..=9).contains(&level) {
        p.push(
            format!("{path}.level"),
            "must be between 1 (fastest) and 9 (smallest), as gzip's",
        );
    }
    Some(CompressionConfig {
        encodings,
        types,
        min_size,
        level,
    })
}
