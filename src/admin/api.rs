//! The JSON documents of the admin API, read from the current snapshot.

use super::Reply;
use crate::cache::storage::MemoryStore;
use crate::config::model::{RateKey, RateScope, MAX_WEIGHT};
use crate::observe::metrics::Metrics;
use crate::routing::PathPattern;
use crate::snapshot::Snapshot;
use http::StatusCode;
use serde_json::{json, Value};

/// 200 once the node's dependencies are there: every upstream with an active health check
/// has completed its first check, Redis (global limits) is connected, the JWKS has been
/// fetched. 503 while one is missing, for at most `ready_timeout` after start; then 200
/// with the missing ones under `degraded` (an IdP down at start must not keep a whole
/// fleet out of its load balancer).
pub fn ready(snapshot: &Snapshot, uptime: std::time::Duration) -> Reply {
    let health: Vec<&str> = snapshot
        .upstreams
        .iter()
        .filter(|(_, pool)| pool.health_schedule().is_some_and(|s| !s.checked_once()))
        .map(|(name, _)| name.as_str())
        .collect();
    let mut missing: Vec<String> = health.iter().map(|u| format!("health check of upstream {u}")).collect();
    if snapshot.redis.as_ref().is_some_and(|r| !r.is_connected()) {
        missing.push("redis connection (global rate limits)".into());
    }
    if snapshot.edge.jwks.as_ref().is_some_and(|j| !j.is_loaded()) {
        missing.push("JWKS (auth.jwt.jwks_url)".into());
    }
    let generation = snapshot.generation;
    if missing.is_empty() {
        Reply::Json(
            StatusCode::OK,
            json!({ "status": "ready", "config_generation": generation }),
        )
    } else if uptime >= snapshot.server.ready_timeout {
        Reply::Json(
            StatusCode::OK,
            json!({ "status": "ready", "config_generation": generation, "degraded": missing }),
        )
    } else {
        Reply::Json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "starting", "waiting_for": missing, "waiting_for_health_checks": health }),
        )
    }
}

/// The config serving now and, when the last one read was refused, what was wrong with it
/// (fleet mode: the refused etcd revision is in its `source`).
pub fn config(snapshot: &Snapshot, refused: Option<crate::reload::Refusal>) -> Reply {
    let refused = refused.map(|r| json!({ "source": r.source, "problems": r.problems, "at": r.at.to_string() }));
    Reply::Json(
        StatusCode::OK,
        json!({
            "source": snapshot.source,
            "generation": snapshot.generation,
            "hash": snapshot.config_hash,
            "config": snapshot.document.value(),
            "refused": refused,
        }),
    )
}

pub fn routes(snapshot: &Snapshot) -> Reply {
    let routes: Vec<Value> = snapshot
        .router
        .order()
        .iter()
        .map(|&i| {
            let route = &snapshot.routes[i];
            let m = snapshot.router.matcher(i);
            let (kind, pattern) = match &m.path {
                PathPattern::Exact(s) => ("exact", s.as_str()),
                PathPattern::Segments { source, .. } => ("pattern", source.as_str()),
                PathPattern::Prefix(s) => ("prefix", s.as_str()),
                PathPattern::Regex(r) => ("regex", r.as_str()),
            };
            let limit = route.rate_limit.as_ref().map(|l| {
                json!({
                    "requests": l.config.requests,
                    "per_seconds": l.config.per.as_secs_f64(),
                    "key": rate_key(&l.config.key),
                    "scope": if l.config.scope == RateScope::Global { "global" } else { "local" },
                })
            });
            json!({
                "name": route.name,
                "path": { "kind": kind, "pattern": pattern },
                "host": m.host.as_ref().map(|h| format!("{h:?}")),
                "methods": m.methods.as_ref().map(|ms| ms.iter().map(|x| x.as_str()).collect::<Vec<_>>()),
                "headers": m.headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<std::collections::BTreeMap<_, _>>(),
                "query": m.query.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                "upstreams": route.upstreams.pools().iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
                "auth": route.auth.name(),
                "rate_limit": limit,
            })
        })
        .collect();
    Reply::Json(
        StatusCode::OK,
        json!({ "routes": routes, "generation": snapshot.generation }),
    )
}

fn rate_key(key: &RateKey) -> String {
    match key {
        RateKey::ClientIp => "ip".into(),
        RateKey::ApiKey => "api_key".into(),
        RateKey::Subject => "sub".into(),
        RateKey::Route => "route".into(),
        RateKey::Header(h) => format!("header:{h}"),
        RateKey::ClientCert(field) => format!("client_cert.{}", field.name()),
    }
}

pub fn upstreams(snapshot: &Snapshot) -> Reply {
    let upstreams: serde_json::Map<String, Value> = snapshot
        .upstreams
        .iter()
        .map(|(name, pool)| {
            let targets: Vec<Value> = pool
                .targets()
                .map(|t| {
                    json!({
                        "addr": t.target.config.spec,
                        "weight": t.target.config.weight,
                        "healthy": t.healthy,
                        "ejected": t.ejected,
                        "in_flight": t.target.in_flight(),
                    })
                })
                .collect();
            let balance = match &pool.config.balance {
                crate::config::model::Balance::RoundRobin => "round_robin",
                crate::config::model::Balance::LeastConn => "least_conn",
                crate::config::model::Balance::ConsistentHash(_) => "consistent_hash",
            };
            let doc = json!({
                "balance": balance,
                "retries": pool.config.retries,
                "circuit": pool.circuit_state(),
                "health_check": pool.config.health_check.as_ref().map(|h| h.path.clone()),
                "targets": targets,
            });
            (name.clone(), doc)
        })
        .collect();
    Reply::Json(
        StatusCode::OK,
        json!({ "upstreams": upstreams, "generation": snapshot.generation }),
    )
}

/// Per route: requests so far and the p99 latency estimated from the histogram, for the
/// status page (which turns successive counts into a rate).
pub fn stats(metrics: &Metrics) -> Reply {
    let routes: Vec<Value> = metrics
        .route_stats()
        .into_iter()
        .map(|s| json!({ "route": s.route, "requests": s.requests, "p99_seconds": s.p99_seconds }))
        .collect();
    Reply::Json(StatusCode::OK, json!({ "routes": routes }))
}

/// `{"addr": "host:port", "weight": N}` of a target registration.
pub fn target_request(body: &[u8]) -> Result<(String, u16), String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("body must be JSON {{\"addr\", \"weight\"}}: {e}"))?;
    let addr = v["addr"]
        .as_str()
        .ok_or("addr (\"host:port\") is required")?
        .to_string();
    let weight = match &v["weight"] {
        Value::Null => 1,
        w => w
            .as_u64()
            .filter(|w| (1..=MAX_WEIGHT as u64).contains(w))
            .ok_or(format!("weight must be between 1 and {MAX_WEIGHT}"))? as u16,
    };
    Ok((addr, weight))
}

/// What the response cache holds.
pub fn cache_stats(store: &MemoryStore) -> Reply {
    let s = store.stats();
    let disk = s
        .disk
        .map(|d| json!({ "entries": d.entries, "bytes": d.bytes, "max_size": d.limit, "writes_dropped": d.dropped }));
    Reply::Json(
        StatusCode::OK,
        json!({ "entries": s.entries, "bytes": s.bytes, "max_size": s.limit, "disk": disk }),
    )
}

/// What a purge drops (or, `soft`, marks stale).
#[derive(Debug, PartialEq, Eq)]
pub enum Purge {
    /// One URL, as the store's `host/path?query`.
    Url(String, bool),
    /// Every URL starting so.
    Prefix(String, bool),
    /// Every entry carrying any of these cache tags.
    Tags(Vec<String>, bool),
}

/// `{"url": ...}`, `{"prefix": ...}` or `{"tags": [...]}`, with `"soft": true` to mark
/// stale instead of dropping. A URL's scheme is ignored, the host is matched without
/// its port and case; a value starting with `/` matches any host.
pub fn purge_request(body: &[u8]) -> Result<Purge, String> {
    const USAGE: &str = "body must be JSON {\"url\": \"host/path?query\"}, {\"prefix\": \"host/path\"} or {\"tags\": [\"tag\"]}, with \"soft\": true to mark stale instead of dropping";
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("{USAGE}: {e}"))?;
    let soft = match v.get("soft") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("\"soft\" must be true or false".into()),
    };
    let (value, prefix) = match (v["url"].as_str(), v["prefix"].as_str(), v.get("tags")) {
        (Some(url), None, None) => (url, false),
        (None, Some(prefix), None) => (prefix, true),
        (None, None, Some(Value::Array(tags))) => {
            let tags: Vec<String> = tags
                .iter()
                .map(|t| t.as_str().filter(|t| !t.is_empty()).map(str::to_string))
                .collect::<Option<_>>()
                .ok_or("\"tags\" must be a list of non-empty strings")?;
            if tags.is_empty() {
                return Err("\"tags\" must name at least one tag".into());
            }
            return Ok(Purge::Tags(tags, soft));
        }
        _ => return Err(USAGE.into()),
    };
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .unwrap_or(value);
    if rest.is_empty() {
        return Err("url/prefix must not be empty".into());
    }
    let target = if rest.starts_with('/') {
        rest.to_string()
    } else {
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => &host[..i],
            _ => host,
        };
        // A bare host purges its root exactly, or everything under it as a prefix.
        let path = if path.is_empty() && !prefix { "/" } else { path };
        format!("{}{path}", host.to_ascii_lowercase())
    };
    Ok(if prefix {
        Purge::Prefix(target, soft)
    } else {
        Purge::Url(target, soft)
    })
}

/// `{"method": "GET", "url": "http://host/path", "headers": {"Name": "value"}, "client_ip": "..."}`.
pub fn explain_request(body: &[u8]) -> Result<crate::explain::Question, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("expected a JSON object: {e}"))?;
    let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let url = text("url").ok_or("\"url\" is required (http://host/path?query)")?;
    let headers = match v.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|v| (k.clone(), v.to_string()))
                    .ok_or(format!("header {k}: not a string"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("\"headers\" must be an object of strings".into()),
    };
    let client_ip = match text("client_ip") {
        Some(ip) => Some(
            ip.parse()
                .map_err(|_| format!("client_ip \"{ip}\" is not an IP address"))?,
        ),
        None => None,
    };
    Ok(crate::explain::Question {
        method: text("method").unwrap_or_else(|| "GET".into()),
        url,
        headers,
        client_ip,
    })
}
