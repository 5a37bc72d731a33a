//! Validation of a route's transformations (`rewrite`, `request_headers`, `request_query`,
//! `upstream_host`, `response_headers`, `json`) and of aggregate routes' parts. Templates
//! and JSONPaths are compiled here, once: the request path only renders them.

use super::error::Problems;
use super::model::*;
use super::raw::{RawHeaderEdits, RawJsonEdits, RawPart, RawQueryEdits, RawRoute};
use super::units::{parse_duration, parse_size};
use crate::routing::PathPattern;
use crate::template::Template;
use http::{HeaderName, HeaderValue, Method};
use std::collections::BTreeMap;
use std::time::Duration;

/// Request headers gatehouse writes itself: changing them needs `override: true`.
const GATEWAY_REQUEST_HEADERS: [&str; 10] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-user-id",
    "x-user-roles",
    "x-user-scopes",
    "x-consumer",
];
/// Response headers gatehouse writes itself.
const GATEWAY_RESPONSE_HEADERS: [&str; 8] = [
    "x-request-id",
    "x-cache",
    "server-timing",
    "x-aggregated",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "retry-after",
];
/// Framing and connection headers: never edited (the proxy owns them).
const FRAMING: [&str; 7] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
];

const DEFAULT_MASK: &str = "****";
const DEFAULT_JSON_MAX: usize = 1024 * 1024;
pub const DEFAULT_MAX_PART_SIZE: usize = 1024 * 1024;

pub fn route_transform(r: &RawRoute, path: &str, pattern: &PathPattern, p: &mut Problems) -> RouteTransform {
    let rewrite = r.rewrite.as_ref().and_then(|rw| {
        let field = format!("{path}.rewrite");
        if r.strip_prefix.is_some() {
            p.push(
                &field,
                "rewrite and strip_prefix are exclusive (a rewrite regex can strip a prefix too)",
            );
        }
        let (Some(regex), Some(to)) = (&rw.regex, &rw.to) else {
            p.push(
                &field,
                "needs both regex and to: { regex: \"^/v1/(.*)$\", to: \"/api/$1\" }",
            );
            return None;
        };
        if !to.starts_with('/') {
            p.push(format!("{field}.to"), format!("\"{to}\" must start with /"));
        }
        match regex::Regex::new(regex) {
            Ok(regex) => Some(PathRewrite { regex, to: to.clone() }),
            Err(e) => {
                p.push(format!("{field}.regex"), format!("invalid regular expression: {e}"));
                None
            }
        }
    });
    let upstream_host = match r.upstream_host.as_deref() {
        None | Some("preserve") => UpstreamHost::Preserve,
        Some("target") => UpstreamHost::Target,
        Some(literal) => match HeaderValue::from_str(literal) {
            Ok(v) if !literal.is_empty() && !literal.contains(['/', ' ']) => UpstreamHost::Literal(v),
            _ => {
                p.push(
                    format!("{path}.upstream_host"),
                    format!("\"{literal}\" is not preserve, target or a host name (host or host:port)"),
                );
                UpstreamHost::Preserve
            }
        },
    };
    RouteTransform {
        rewrite,
        request_headers: header_edits(
            r.request_headers.as_ref(),
            &format!("{path}.request_headers"),
            pattern,
            Side::Request,
            p,
        ),
        request_query: query_edits(r.request_query.as_ref(), &format!("{path}.request_query"), pattern, p),
        upstream_host,
        response_headers: header_edits(
            r.response_headers.as_ref(),
            &format!("{path}.response_headers"),
            pattern,
            Side::Response,
            p,
        ),
        json: r.json.as_ref().map(|j| json_edits(j, &format!("{path}.json"), p)),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Request,
    Response,
}

fn header_edits(
    raw: Option<&RawHeaderEdits>,
    path: &str,
    pattern: &PathPattern,
    side: Side,
    p: &mut Problems,
) -> HeaderEdits {
    let Some(raw) = raw else {
        return HeaderEdits::default();
    };
    let may_override = raw.override_gateway.unwrap_or(false);
    let name = |field: String, name: &str, p: &mut Problems| -> Option<HeaderName> {
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            p.push(field, format!("\"{name}\" is not a valid header name"));
            return None;
        };
        let lower = header.as_str();
        let own: &[&str] = match side {
            Side::Request => &GATEWAY_REQUEST_HEADERS,
            Side::Response => &GATEWAY_RESPONSE_HEADERS,
        };
        if FRAMING.contains(&lower) {
            p.push(field, format!("{name} belongs to the connection and is never edited"));
            None
        } else if side == Side::Request && lower == "host" {
            p.push(
                field,
                "the Host sent upstream is set with upstream_host: preserve | target | \"host\"",
            );
            None
        } else if own.contains(&lower) && !may_override {
            p.push(
                field,
                format!("gatehouse sets {name} itself; add `override: true` to this block to change it anyway"),
            );
            None
        } else {
            Some(header)
        }
    };
    let templates = |key: &str, map: &Option<BTreeMap<String, String>>, p: &mut Problems| {
        let mut out = Vec::new();
        for (header, value) in map.iter().flatten() {
            let field = format!("{path}.{key}.{header}");
            let Some(header) = name(field.clone(), header, p) else {
                continue;
            };
            match Template::compile(value, pattern) {
                Ok(t) if t.is_literal() && HeaderValue::from_str(t.source()).is_err() => {
                    p.push(field, "not a valid header value")
                }
                Ok(t) => out.push((header, t)),
                Err(e) => p.push(field, e),
            }
        }
        out
    };
    let set = templates("set", &raw.set, p);
    let add = templates("add", &raw.add, p);
    let remove = raw
        .remove
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, h)| name(format!("{path}.remove[{i}]"), h, p))
        .collect();
    let mut rename = Vec::new();
    if side == Side::Response && raw.rename.is_some() {
        p.push(format!("{path}.rename"), "rename applies to request headers only");
    } else {
        for (from, to) in raw.rename.iter().flatten() {
            let field = format!("{path}.rename.{from}");
            if let (Some(f), Some(t)) = (name(field.clone(), from, p), name(field, to, p)) {
                rename.push((f, t));
            }
        }
    }
    HeaderEdits {
        remove,
        rename,
        set,
        add,
    }
}

fn query_edits(raw: Option<&RawQueryEdits>, path: &str, pattern: &PathPattern, p: &mut Problems) -> QueryEdits {
    let Some(raw) = raw else {
        return QueryEdits::default();
    };
    let mut templates = |key: &str, map: &Option<BTreeMap<String, String>>| {
        let mut out = Vec::new();
        for (name, value) in map.iter().flatten() {
            let field = format!("{path}.{key}.{name}");
            if !is_query_name(name) {
                p.push(
                    field,
                    format!("\"{name}\" needs percent-encoding to be a query parameter name"),
                );
                continue;
            }
            match Template::compile(value, pattern) {
                Ok(t) => out.push((name.clone(), t)),
                Err(e) => p.push(field, e),
            }
        }
        out
    };
    QueryEdits {
        set: templates("set", &raw.set),
        add: templates("add", &raw.add),
        remove: raw.remove.clone().unwrap_or_default(),
    }
}

/// A parameter name that can be written into a query string as it is.
fn is_query_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~[]".contains(&b))
}

fn json_edits(raw: &RawJsonEdits, path: &str, p: &mut Problems) -> JsonEdits {
    let mut paths = |key: &str, list: &Option<Vec<String>>| {
        let mut out = Vec::new();
        for (i, expr) in list.iter().flatten().enumerate() {
            match serde_json_path::JsonPath::parse(expr) {
                Ok(jp) => out.push(jp),
                Err(e) => p.push(
                    format!("{path}.{key}[{i}]"),
                    format!(
                        "\"{expr}\" is not a JSONPath (RFC 9535) expression: {e}; e.g. $.password or $.items[*].ssn"
                    ),
                ),
            }
        }
        out
    };
    let remove = paths("remove", &raw.remove);
    let mask = paths("mask", &raw.mask);
    let listed = |l: &Option<Vec<String>>| l.as_ref().is_some_and(|l| !l.is_empty());
    if !listed(&raw.remove) && !listed(&raw.mask) {
        p.push(path, "lists nothing to remove or mask");
    }
    JsonEdits {
        remove,
        mask,
        mask_with: raw.mask_with.clone().unwrap_or_else(|| DEFAULT_MASK.into()),
        max_size: size(&raw.max_size, &format!("{path}.max_size"), DEFAULT_JSON_MAX, p),
    }
}

fn size(value: &Option<String>, path: &str, default: usize, p: &mut Problems) -> usize {
    match value.as_deref().map(parse_size) {
        None => default,
        Some(Ok(n)) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
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

/// An aggregate route's parts; `None` (with problems) when unusable.
pub fn aggregate<T>(
    r: &RawRoute,
    path: &str,
    pattern: &PathPattern,
    upstreams: &BTreeMap<String, T>,
    p: &mut Problems,
) -> Option<AggregateConfig> {
    let parts = r.aggregate.as_ref()?;
    if r.upstream.is_some() || r.split.is_some() {
        p.push(path, "aggregate replaces upstream and split: a route has one of them");
    }
    if parts.is_empty() {
        p.push(format!("{path}.aggregate"), "lists no parts");
    }
    let mut names: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for (i, raw) in parts.iter().enumerate() {
        let field = format!("{path}.aggregate[{i}]");
        let Some(name) = raw.name.as_deref() else {
            p.push(
                format!("{field}.name"),
                "required (the key of this part's answer under data)",
            );
            continue;
        };
        if names.contains(&name) {
            p.push(format!("{field}.name"), format!("two parts are named \"{name}\""));
        }
        names.push(name);
        if let Some(part) = part(raw, name, &field, pattern, upstreams, p) {
            out.push(part);
        }
    }
    Some(AggregateConfig {
        parts: out,
        max_part_size: size(
            &r.max_part_size,
            &format!("{path}.max_part_size"),
            DEFAULT_MAX_PART_SIZE,
            p,
        ),
    })
}

fn part<T>(
    raw: &RawPart,
    name: &str,
    field: &str,
    pattern: &PathPattern,
    upstreams: &BTreeMap<String, T>,
    p: &mut Problems,
) -> Option<PartConfig> {
    let upstream = known_upstream(raw.upstream.as_deref(), upstreams, field, "required", p)?;
    let path = path_template(raw.path.as_deref(), pattern, field, &format!("part {name}: "), p)?;
    let mut query = Vec::new();
    for (k, v) in raw.query.iter().flatten() {
        if !is_query_name(k) {
            p.push(
                format!("{field}.query.{k}"),
                "needs percent-encoding to be a query parameter name",
            );
            continue;
        }
        match Template::compile(v, pattern) {
            Ok(t) => query.push((k.clone(), t)),
            Err(e) => p.push(format!("{field}.query.{k}"), format!("part {name}: {e}")),
        }
    }
    let method = match raw.method.as_deref().map(str::to_ascii_uppercase) {
        None => Method::GET,
        Some(m) if ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"].contains(&m.as_str()) => {
            m.parse().unwrap_or(Method::GET)
        }
        Some(m) => {
            p.push(
                format!("{field}.method"),
                format!("\"{m}\" is not GET, HEAD, POST, PUT, DELETE or PATCH"),
            );
            Method::GET
        }
    };
    let headers = raw
        .headers
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, h)| {
            HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| p.push(format!("{field}.headers[{i}]"), format!("\"{h}\" is not a header name")))
                .ok()
        })
        .collect();
    Some(PartConfig {
        name: name.to_string(),
        upstream,
        method,
        path,
        query,
        headers,
        timeout: positive_duration(&raw.timeout, &format!("{field}.timeout"), p),
        required: raw.required.unwrap_or(false),
        cache: positive_duration(&raw.cache, &format!("{field}.cache"), p),
    })
}

const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// `forward_auth:` of a route (checked only with `auth: forward`).
pub fn forward_auth<T>(
    r: &RawRoute,
    path: &str,
    pattern: &PathPattern,
    upstreams: &BTreeMap<String, T>,
    p: &mut Problems,
) -> Option<ForwardAuthConfig> {
    let raw = r.forward_auth.as_ref()?;
    let field = format!("{path}.forward_auth");
    let upstream = known_upstream(
        raw.upstream.as_deref(),
        upstreams,
        &field,
        "required: the pool of the auth service",
        p,
    )?;
    let path_template = path_template(raw.path.as_deref(), pattern, &field, "", p)?;
    let names = |key: &str, list: &Option<Vec<String>>, default: &[&str], p: &mut Problems| -> Vec<HeaderName> {
        let given: Vec<String> = match list {
            Some(l) => l.clone(),
            None => default.iter().map(|s| s.to_string()).collect(),
        };
        given
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| p.push(format!("{field}.{key}[{i}]"), format!("\"{h}\" is not a header name")))
                    .ok()
            })
            .collect()
    };
    let headers_to_auth = names("headers_to_auth", &raw.headers_to_auth, &["authorization", "cookie"], p);
    let headers_from_auth = names("headers_from_auth", &raw.headers_from_auth, &[], p);
    for (i, h) in headers_from_auth.iter().enumerate() {
        if FRAMING.contains(&h.as_str()) || h == "host" {
            p.push(
                format!("{field}.headers_from_auth[{i}]"),
                format!("{h} cannot be copied onto a request"),
            );
        }
    }
    Some(ForwardAuthConfig {
        upstream,
        path: path_template,
        headers_to_auth,
        headers_from_auth,
        timeout: positive_duration(&raw.timeout, &format!("{field}.timeout"), p).unwrap_or(DEFAULT_FORWARD_TIMEOUT),
        cache_ttl: positive_duration(&raw.cache_ttl, &format!("{field}.cache_ttl"), p),
    })
}

/// `upstream:` of a part or of `forward_auth`: a pool the config defines.
fn known_upstream<T>(
    name: Option<&str>,
    upstreams: &BTreeMap<String, T>,
    field: &str,
    when_missing: &str,
    p: &mut Problems,
) -> Option<String> {
    match name {
        Some(u) if upstreams.contains_key(u) => Some(u.to_string()),
        Some(u) => {
            p.push(format!("{field}.upstream"), format!("unknown upstream \"{u}\""));
            None
        }
        None => {
            p.push(format!("{field}.upstream"), when_missing);
            None
        }
    }
}

/// `path:` of a part or of `forward_auth`: a template of an absolute path (default `/`);
/// `context` prefixes a compile error (`part profile: `).
fn path_template(
    value: Option<&str>,
    pattern: &PathPattern,
    field: &str,
    context: &str,
    p: &mut Problems,
) -> Option<Template> {
    let template = value.unwrap_or("/");
    if !template.starts_with('/') {
        p.push(format!("{field}.path"), format!("\"{template}\" must start with /"));
    }
    Template::compile(template, pattern)
        .map_err(|e| p.push(format!("{field}.path"), format!("{context}{e}")))
        .ok()
}

/// An optional duration that must be above zero.
fn positive_duration(value: &Option<String>, field: &str, p: &mut Problems) -> Option<Duration> {
    match value.as_deref().map(parse_duration) {
        None => None,
        Some(Ok(d)) if !d.is_zero() => Some(d),
        Some(Ok(_)) => {
            p.push(field, "must be greater than zero");
            None
        }
        Some(Err(e)) => {
            p.push(field, e);
            None
        }
    }
}
