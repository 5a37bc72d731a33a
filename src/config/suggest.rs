//! "did you mean `methods`?" for an unknown key: the nearest key gatehouse knows, from the
//! field names of the raw config structs themselves (serialized defaults), so the list can
//! never fall behind the structs.

use super::raw::*;
use serde::Serialize;
use std::sync::OnceLock;

/// The message for the unknown key at `path` (`routes[2].methds`): the nearest key known
/// at that place, else the keys that are.
pub fn unknown_key(path: &str) -> String {
    let (parent, key) = match path.rfind('.') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    };
    let Some(known) = keys_at(parent) else {
        return match nearest(key, all_keys()) {
            Some(k) => format!("unknown key (did you mean `{k}`?)"),
            None => "unknown key".into(),
        };
    };
    match nearest(key, &known) {
        Some(k) => format!("unknown key (did you mean `{k}`?)"),
        None => format!("unknown key (known here: {})", known.join(", ")),
    }
}

/// The keys of the struct found at `parent` (`upstreams.api`, `routes[0]`, `auth.jwt`).
fn keys_at(parent: &str) -> Option<Vec<String>> {
    let segments: Vec<&str> = parent
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|s| s.split('[').next().unwrap_or(s))
        .collect();
    let last = segments.last().copied().unwrap_or("");
    let second_last = segments.len().checked_sub(2).map(|i| segments[i]);
    let value = match (second_last, last) {
        (_, "") => json::<RawConfig>(),
        (Some("upstreams"), _) => json::<RawUpstream>(),
        (_, "routes") => json::<RawRoute>(),
        (_, "health_check") => json::<RawHealthCheck>(),
        (_, "circuit_breaker") => json::<RawCircuitBreaker>(),
        (_, "passive_health") => json::<RawPassiveHealth>(),
        (_, "redis") => json::<RawRedis>(),
        (_, "rate_limit") => json::<RawRateLimit>(),
        (_, "split") => json::<RawSplit>(),
        (_, "auth") => json::<RawAuth>(),
        (_, "jwt") => json::<RawJwt>(),
        (_, "api_keys") => json::<RawApiKeys>(),
        (Some("api_keys"), "keys") => json::<RawApiKey>(),
        (_, "introspection") => json::<RawIntrospection>(),
        (_, "cors") => json::<RawCors>(),
        (_, "security_headers") => json::<RawSecurityHeaders>(),
        (_, "tls") if segments.len() == 1 => json::<RawTls>(),
        (Some("etcd"), "tls") => json::<RawEtcdTls>(),
        (_, "certs") => json::<RawCert>(),
        (_, "tracing") => json::<RawTracing>(),
        (_, "admin") => json::<RawAdmin>(),
        (None, "cache") => json::<RawCache>(),
        (_, "targets_from") => json::<RawTargetsFrom>(),
        (_, "config_source") => json::<RawConfigSource>(),
        (Some("config_source"), "etcd") => json::<RawEtcd>(),
        _ => return None,
    };
    let serde_json::Value::Object(map) = value else {
        return None;
    };
    Some(map.keys().cloned().collect())
}

fn json<T: Serialize + Default>() -> serde_json::Value {
    serde_json::to_value(T::default()).unwrap_or_default()
}

/// The known key closest to `key`, if it is close enough to be a typo: at most one edit in
/// short keys, two in longer ones, or the same letters without `_`/`-` (`healthCheck`).
pub fn nearest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    let folded = fold(key);
    let limit = if key.len() <= 4 { 1 } else { 2 };
    known
        .iter()
        .map(|k| (if fold(k) == folded { 0 } else { distance(key, k) }, k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Levenshtein distance (keys are short).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Every field name of the config file's structs.
fn all_keys() -> &'static [String] {
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = Vec::new();
        let mut add = |v: serde_json::Value| {
            if let serde_json::Value::Object(m) = v {
                keys.extend(m.keys().cloned());
            }
        };
        add(json::<RawConfig>());
        add(json::<RawCache>());
        add(json::<RawTls>());
        add(json::<RawCert>());
        add(json::<RawTracing>());
        add(json::<RawAdmin>());
        add(json::<RawUpstream>());
        add(json::<RawCircuitBreaker>());
        add(json::<RawPassiveHealth>());
        add(json::<RawRedis>());
        add(json::<RawRateLimit>());
        add(json::<RawSplit>());
        add(json::<RawHealthCheck>());
        add(json::<RawRoute>());
        add(json::<RawAuth>());
        add(json::<RawJwt>());
        add(json::<RawApiKeys>());
        add(json::<RawApiKey>());
        add(json::<RawIntrospection>());
        add(json::<RawCors>());
        add(json::<RawSecurityHeaders>());
        add(json::<RawTargetsFrom>());
        add(json::<RawConfigSource>());
        add(json::<RawEtcd>());
        add(json::<RawEtcdTls>());
        keys.sort();
        keys.dedup();
        keys
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_the_key_they_meant() {
        assert_eq!(unknown_key("routes[2].methds"), "unknown key (did you mean `methods`?)");
        assert_eq!(
            unknown_key("upstreams.api.helth_check"),
            "unknown key (did you mean `health_check`?)"
        );
        assert_eq!(
            unknown_key("routes[0].stripPrefix"),
            "unknown key (did you mean `strip_prefix`?)"
        );
        assert_eq!(unknown_key("auth.jwt.isuer"), "unknown key (did you mean `issuer`?)");
        let far = unknown_key("upstreams.api.helth");
        assert!(
            far.starts_with("unknown key (known here: ") && far.contains("health_check"),
            "{far}"
        );
    }

    /// A key added to a raw struct (and so to `all_keys`) must be documented too: the
    /// reference names each key in backquotes, in a table row or in the text.
    #[test]
    fn every_known_key_is_in_the_configuration_reference() {
        let reference = include_str!("../../docs/configuration.md");
        let missing: Vec<&str> = all_keys()
            .iter()
            .map(String::as_str)
            .filter(|key| !reference.contains(&format!("`{key}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/configuration.md does not mention these config keys as `key`: {}",
            missing.join(", ")
        );
    }
}
