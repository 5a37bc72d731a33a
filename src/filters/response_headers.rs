//! Response headers on the way back. Upstream responses first lose their hop-by-hop headers
//! (Pingora writes its own `Connection`) and the headers `security_headers.remove` lists;
//! then every response, the gateway's own included, gets the security headers it lacks,
//! the route's CORS headers and X-Request-ID.

use super::request_id;
use crate::config::model::SecurityHeadersConfig;
use crate::request::RequestCtx;
use crate::snapshot::{Route, Snapshot};
use http::header::{CONNECTION, TE, UPGRADE};
use http::{HeaderName, HeaderValue};
use pingora::http::{KnownHeaderName, ResponseHeader};

/// Hop-by-hop response headers that are never forwarded (RFC 9110 §7.6.1), besides
/// `Connection` itself, which Pingora replaces with its own on HTTP/1 and drops on h2.
const HOP_BY_HOP: [HeaderName; 4] = [
    UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TE,
];
const SERVER_TIMING: KnownHeaderName = KnownHeaderName::from_static("server-timing");

/// For responses relayed from an upstream.
pub fn upstream_response(resp: &mut ResponseHeader, ctx: &RequestCtx) -> pingora::Result<()> {
    // A 101 keeps Connection/Upgrade: they are the handshake.
    let hop_by_hop = if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
        &HOP_BY_HOP[1..]
    } else {
        drop_connection_nominated(resp);
        &HOP_BY_HOP[..]
    };
    resp.reserve_headers(fields_added(ctx));
    let configured = &ctx.snapshot.edge.config.headers.remove;
    let unwanted = |name: &HeaderName| hop_by_hop.contains(name) || configured.contains(name);
    // One pass over the handful of names the upstream sent: most responses carry none of
    // these, and each removal looks in two maps (Pingora keeps the original case apart).
    if resp.headers.keys().any(unwanted) {
        for name in hop_by_hop.iter().chain(configured) {
            if resp.headers.contains_key(name) {
                resp.remove_header(name);
            }
        }
    }
    finish(resp, ctx)
}

/// At most how many fields [`finish`] and the steps after it add to an upstream's response
/// (cache status, CORS, the route's own edits), so that its maps grow once.
fn fields_added(ctx: &RequestCtx) -> usize {
    static_fields_added(&ctx.snapshot.edge.config.headers, ctx.route())
        + if ctx.rate_limit.is_some() { RATE_LIMIT_FIELDS } else { 0 }
        + if ctx.cache.is_some() { CACHE_FIELDS } else { 0 }
}

/// RateLimit-Limit, -Remaining, -Reset.
const RATE_LIMIT_FIELDS: usize = 3;
/// X-Cache, Cache-Status.
const CACHE_FIELDS: usize = 2;

/// The fields a route's responses get whatever the request.
fn static_fields_added(headers: &SecurityHeadersConfig, route: Option<&Route>) -> usize {
    headers.add.len()
        + usize::from(headers.hsts.is_some())
        + 2 // Server-Timing, X-Request-ID
        + route.and_then(|r| r.cors.as_ref()).map_or(0, |_| 4)
        + route.and_then(|r| r.response_edits.as_ref()).map_or(0, |e| e.fields_added())
}

/// At most how many fields the gateway adds to an upstream response on any route of
/// `snapshot`. Pingora makes each upstream response's header maps with this much room
/// (vendor/README.md), so that adding them allocates nothing more: growing a map of 5
/// fields to take 8 more cost ≈ 1,500 instructions a response.
pub fn most_fields_added(snapshot: &Snapshot) -> usize {
    let headers = &snapshot.edge.config.headers;
    snapshot
        .routes
        .iter()
        .map(|route| {
            static_fields_added(headers, Some(route))
                + if route.rate_limit.is_some() || snapshot.rate_limit.is_some() {
                    RATE_LIMIT_FIELDS
                } else {
                    0
                }
                + if route.cache.is_some() { CACHE_FIELDS } else { 0 }
        })
        .max()
        .unwrap_or(0)
}

/// For every response.
pub fn finish(resp: &mut ResponseHeader, ctx: &RequestCtx) -> pingora::Result<()> {
    let headers = &ctx.snapshot.edge.config.headers;
    for (name, value) in &headers.add {
        if !resp.headers.contains_key(name.name()) {
            resp.insert_known_header(name, value.clone());
        }
    }
    if let Some(hsts) = headers.hsts.as_ref().filter(|_| ctx.scheme == "https") {
        if !resp.headers.contains_key(http::header::STRICT_TRANSPORT_SECURITY) {
            resp.insert_header(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone())?;
        }
    }
    if let Some(policy) = ctx.route().and_then(|r| r.cors.as_ref()) {
        policy.decorate(resp, ctx.origin.as_ref())?;
    }
    resp.insert_known_header(&SERVER_TIMING, server_timing(ctx));
    if let Some(decision) = &ctx.rate_limit {
        for (name, value) in super::rate_limit::headers(decision) {
            resp.insert_known_header(name, value);
        }
    }
    resp.insert_known_header(&request_id::NAME, ctx.request_id.clone());
    Ok(())
}

/// `gateway;dur=…, upstream;dur=…` in milliseconds: the gateway's own time so far, and the
/// upstream's time to its response header. Written with `itoa` into a stack buffer: float
/// formatting cost ≈ 2,000 instructions per request, `write!` with integers ≈ 900.
fn server_timing(ctx: &RequestCtx) -> HeaderValue {
    let total = ctx.started.elapsed();
    let mut text = TimingText::new();
    match ctx.upstream_ttfb {
        Some(up) => {
            text.entry(b"gateway;dur=", total.saturating_sub(up));
            text.entry(b", upstream;dur=", up);
        }
        None => text.entry(b"gateway;dur=", total),
    }
    let value = HeaderValue::from_bytes(text.as_bytes()).unwrap_or(HeaderValue::from_static("gateway"));
    super::never_indexed(value)
}

/// The Server-Timing value being written: two entries of at most 15 + 20 + 4 bytes.
struct TimingText {
    buf: [u8; 96],
    len: usize,
}

impl TimingText {
    fn new() -> Self {
        TimingText { buf: [0; 96], len: 0 }
    }

    /// `<label><ms>.<µs, 3 digits>`.
    fn entry(&mut self, label: &[u8], d: std::time::Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let mut whole = itoa::Buffer::new();
        let fraction = us % 1000;
        self.push(label);
        self.push(whole.format(us / 1000).as_bytes());
        self.push(&[
            b'.',
            b'0' + (fraction / 100) as u8,
            b'0' + (fraction / 10 % 10) as u8,
            b'0' + (fraction % 10) as u8,
        ]);
    }

    fn push(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(self.buf.len());
        self.buf[self.len..end].copy_from_slice(&bytes[..end - self.len]);
        self.len = end;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Removes the headers the upstream's `Connection` names (`Connection: close, X-Internal`).
fn drop_connection_nominated(resp: &mut ResponseHeader) {
    let Some(value) = resp.headers.get(CONNECTION) else {
        return;
    };
    let Ok(tokens) = value.to_str() else {
        return;
    };
    let nominated: Vec<String> = tokens
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
        .map(str::to_ascii_lowercase)
        .collect();
    for name in nominated {
        resp.remove_header(name.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::{most_fields_added, TimingText};
    use crate::snapshot::Snapshot;
    use std::time::Duration;

    fn snapshot(routes: &str) -> Snapshot {
        let yaml = format!(
            "listen: [\"127.0.0.1:1\"]\nupstreams: {{ u: {{ targets: [\"127.0.0.1:1\"] }} }}\nroutes: {routes}\n"
        );
        let config = crate::config::parse_yaml(&yaml, "test", &|_| None).expect("test config");
        Snapshot::build(config, None).expect("test snapshot")
    }

    #[test]
    fn upstream_responses_are_sized_for_the_route_that_adds_most() {
        // Three security headers, HSTS, Server-Timing and X-Request-ID on every route.
        let plain = snapshot("[{ name: a, prefix: /, upstream: u }]");
        assert_eq!(most_fields_added(&plain), 6);
        // Plus the three RateLimit fields where a route limits.
        let limited = snapshot(
            "[{ name: a, prefix: /a, upstream: u }, { name: b, prefix: /b, upstream: u, rate_limit: { requests: 10, per: 1s } }]",
        );
        assert_eq!(most_fields_added(&limited), 9);
    }

    #[test]
    fn server_timing_is_left_out_of_header_compression_tables() {
        let snapshot = std::sync::Arc::new(snapshot("[{ name: a, prefix: /, upstream: u }]"));
        let ctx = crate::request::RequestCtx::new(snapshot);
        assert!(super::server_timing(&ctx).is_sensitive());
    }

    #[test]
    fn server_timing_entries_are_milliseconds_with_three_decimals() {
        let mut text = TimingText::new();
        text.entry(b"gateway;dur=", Duration::from_micros(12_345));
        text.entry(b", upstream;dur=", Duration::from_micros(7));
        assert_eq!(text.as_bytes(), b"gateway;dur=12.345, upstream;dur=0.007");
    }

    #[test]
    fn a_huge_duration_is_cut_at_the_buffer_not_a_panic() {
        let mut text = TimingText::new();
        for _ in 0..4 {
            text.entry(b"gateway;dur=", Duration::MAX);
        }
        assert_eq!(text.as_bytes().len(), 96);
        assert!(text.as_bytes().starts_with(b"gateway;dur=18446744073709551.615"));
    }
}
