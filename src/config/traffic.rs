//! Validation of traffic control: rate limits and Redis, balancing algorithms, circuit
//! breakers, passive health, retries, canary splits.

use super::error::Problems;
use super::model::*;
use super::raw::{RawConfig, RawRateLimit, RawRedis, RawRoute, RawUpstream};
use super::units::parse_duration;
use http::HeaderName;
use std::collections::BTreeMap;
use std::time::Duration;

pub fn traffic(raw: &RawConfig, p: &mut Problems) -> TrafficConfig {
    TrafficConfig {
        redis: raw.redis.as_ref().map(|r| redis(r, p)),
        rate_limit: raw
            .rate_limit
            .as_ref()
            .map(|r| rate_limit(r, "rate_limit", raw.redis.is_some(), p)),
    }
}

fn redis(raw: &RawRedis, p: &mut Problems) -> RedisConfig {
    let url = raw.url.clone().unwrap_or_default();
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        p.push("redis.url", format!("\"{url}\" is not a redis:// URL"));
    }
    let prefix = raw.key_prefix.clone().unwrap_or_else(|| DEFAULT_REDIS_PREFIX.into());
    if prefix.is_empty() || prefix.contains(char::is_whitespace) {
        p.push("redis.key_prefix", "must be non-empty, without spaces");
    }
    RedisConfig {
        url,
        timeout: positive(&raw.timeout, "redis.timeout", DEFAULT_REDIS_TIMEOUT, p),
        key_prefix: prefix,
    }
}

pub fn rate_limit(raw: &RawRateLimit, path: &str, has_redis: bool, p: &mut Problems) -> RateLimitConfig {
    let requests = raw.requests.unwrap_or(0);
    if requests == 0 {
        p.push(format!("{path}.requests"), "required, at least 1");
    }
    let per = match raw.per.as_deref().map(parse_duration) {
        Some(Ok(d)) if d >= Duration::from_millis(1) => d,
        Some(Ok(_)) => {
            p.push(format!("{path}.per"), "must be at least 1ms");
            Duration::from_secs(1)
        }
        Some(Err(e)) => {
            p.push(format!("{path}.per"), e);
            Duration::from_secs(1)
        }
        None => {
            p.push(format!("{path}.per"), "required (e.g. 1s, 1m)");
            Duration::from_secs(1)
        }
    };
    // The buckets refill in whole microseconds.
    if requests as u128 > per.as_micros() {
        p.push(
            format!("{path}.requests"),
            format!("at most one request per microsecond ({} per {per:?})", per.as_micros()),
        );
    }
    let key = match raw.key.as_deref().unwrap_or("ip") {
        "ip" => RateKey::ClientIp,
        "api_key" => RateKey::ApiKey,
        "sub" => RateKey::Subject,
        "route" => RateKey::Route,
        "client_cert.subject" => RateKey::ClientCert(ClientCertField::Subject),
        "client_cert.san" => RateKey::ClientCert(ClientCertField::San),
        "client_cert.fingerprint" => RateKey::ClientCert(ClientCertField::Fingerprint),
        other => match other
            .strip_prefix("header:")
            .map(|h| HeaderName::from_bytes(h.as_bytes()))
        {
            Some(Ok(h)) => RateKey::Header(h),
            _ => {
                p.push(
                    format!("{path}.key"),
                    format!("unknown key \"{other}\" (expected ip, api_key, sub, route, header:NAME or client_cert.subject|san|fingerprint)"),
                );
                RateKey::ClientIp
            }
        },
    };
    let scope = match raw.scope.as_deref() {
        None | Some("local") => RateScope::Local,
        Some("global") => {
            if !has_redis {
                p.push(format!("{path}.scope"), "global needs redis configured (redis.url)");
            }
            RateScope::Global
        }
        Some(other) => {
            p.push(
                format!("{path}.scope"),
                format!("unknown scope \"{other}\" (expected local or global)"),
            );
            RateScope::Local
        }
    };
    let deny_on_redis_error = match raw.on_redis_error.as_deref() {
        None | Some("allow") => false,
        Some("deny") => true,
        Some(other) => {
            p.push(
                format!("{path}.on_redis_error"),
                format!("unknown policy \"{other}\" (expected allow or deny)"),
            );
            false
        }
    };
    if raw.on_redis_error.is_some() && scope == RateScope::Local {
        p.push(format!("{path}.on_redis_error"), "only applies to scope: global");
    }
    RateLimitConfig {
        requests,
        per,
        key,
        scope,
        deny_on_redis_error,
    }
}

/// The traffic-control part of one upstream.
pub struct UpstreamTraffic {
    pub balance: Balance,
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    pub passive_health: Option<PassiveHealthConfig>,
    pub retry_backoff: Duration,
    pub retry_non_idempotent: bool,
}

pub fn upstream_traffic(raw: &RawUpstream, path: &str, p: &mut Problems) -> UpstreamTraffic {
    let balance = match raw.balance.as_deref() {
        None | Some("round_robin") => Balance::RoundRobin,
        Some("least_conn") => Balance::LeastConn,
        Some("consistent_hash") => Balance::ConsistentHash(hash_key(raw.hash_key.as_deref(), path, p)),
        Some(other) => {
            p.push(
                format!("{path}.balance"),
                format!("unknown balance \"{other}\" (expected round_robin, least_conn or consistent_hash)"),
            );
            Balance::RoundRobin
        }
    };
    if raw.hash_key.is_some() && !matches!(balance, Balance::ConsistentHash(_)) {
        p.push(format!("{path}.hash_key"), "only applies to balance: consistent_hash");
    }
    let circuit_breaker = raw.circuit_breaker.as_ref().map(|c| CircuitBreakerConfig {
        failures: at_least_one(
            c.failures,
            DEFAULT_CB_FAILURES,
            &format!("{path}.circuit_breaker.failures"),
            p,
        ),
        open_for: positive(
            &c.open_for,
            &format!("{path}.circuit_breaker.open_for"),
            DEFAULT_CB_OPEN_FOR,
            p,
        ),
        half_open_requests: at_least_one(
            c.half_open_requests,
            DEFAULT_CB_HALF_OPEN,
            &format!("{path}.circuit_breaker.half_open_requests"),
            p,
        ),
        count_5xx: c.count_5xx.unwrap_or(true),
    });
    let passive_health = raw.passive_health.as_ref().map(|c| PassiveHealthConfig {
        failures: at_least_one(
            c.failures,
            DEFAULT_PASSIVE_FAILURES,
            &format!("{path}.passive_health.failures"),
            p,
        ),
        eject_for: positive(
            &c.eject_for,
            &format!("{path}.passive_health.eject_for"),
            DEFAULT_PASSIVE_EJECT,
            p,
        ),
    });
    let retry_backoff = match raw.retry_backoff.as_deref().map(parse_duration) {
        None => Duration::ZERO,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            p.push(format!("{path}.retry_backoff"), e);
            Duration::ZERO
        }
    };
    UpstreamTraffic {
        balance,
        circuit_breaker,
        passive_health,
        retry_backoff,
        retry_non_idempotent: raw.retry_non_idempotent.unwrap_or(false),
    }
}

fn hash_key(raw: Option<&str>, path: &str, p: &mut Problems) -> HashKey {
    match raw {
        None | Some("ip") => HashKey::ClientIp,
        Some(s) => {
            if let Some(h) = s.strip_prefix("header:") {
                if let Ok(name) = HeaderName::from_bytes(h.as_bytes()) {
                    return HashKey::Header(name);
                }
            } else if let Some(c) = s.strip_prefix("cookie:").filter(|c| !c.is_empty()) {
                return HashKey::Cookie(c.to_string());
            }
            p.push(
                format!("{path}.hash_key"),
                format!("\"{s}\" is not ip, header:NAME or cookie:NAME"),
            );
            HashKey::ClientIp
        }
    }
}

/// `upstream: name` or `split: [{ upstream, weight }, ...]`, each name defined.
pub fn route_upstream<T>(r: &RawRoute, path: &str, upstreams: &BTreeMap<String, T>, p: &mut Problems) -> RouteUpstream {
    let known = |name: &str, field: String, p: &mut Problems| {
        if !upstreams.contains_key(name) {
            p.push(field, format!("unknown upstream \"{name}\""));
        }
    };
    match (&r.upstream, &r.split) {
        (Some(u), None) => {
            known(u, format!("{path}.upstream"), p);
            RouteUpstream::Single(u.clone())
        }
        (None, Some(parts)) => {
            if parts.len() < 2 {
                p.push(
                    format!("{path}.split"),
                    "needs at least two upstreams (use upstream: for one)",
                );
            }
            let mut out = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                let field = format!("{path}.split[{i}]");
                let Some(name) = &part.upstream else {
                    p.push(format!("{field}.upstream"), "required");
                    continue;
                };
                known(name, format!("{field}.upstream"), p);
                let weight = part.weight.unwrap_or(0);
                if !(1..=1000).contains(&weight) {
                    p.push(format!("{field}.weight"), "must be between 1 and 1000");
                }
                out.push((name.clone(), weight));
            }
            RouteUpstream::Split(out)
        }
        (None, None) => {
            p.push(format!("{path}.upstream"), "required (or split:)");
            RouteUpstream::Single(String::new())
        }
        (Some(_), Some(_)) => {
            p.push(path, "upstream and split are exclusive");
            RouteUpstream::Single(String::new())
        }
    }
}

fn at_least_one(value: Option<u32>, default: u32, path: &str, p: &mut Problems) -> u32 {
    let v = value.unwrap_or(default);
    if v == 0 {
        p.push(path, "must be at least 1");
    }
    v
}

fn positive(value: &Option<String>, path: &str, default: Duration, p: &mut Problems) -> Duration {
    match value.as_deref().map(parse_duration) {
        None => default,
        Some(Ok(d)) if !d.is_zero() => d,
        Some(Ok(_)) => {
            p.push(path, "must be greater than zero");
            default
        }
        Some(Err(e)) => {
            p.push(path, e);
            default
        }
    }
}
