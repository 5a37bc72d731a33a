//! Response headers on the way back. Upstream responses first lose their hop-by-hop headers
//! (Pingora writes its own `Connection`) and the headers `security_headers.remove` lists;
//! then every response, the gateway's own included, gets the security headers it lacks,
//! the route's CORS headers and X-Request-ID.

use super::request_id;
use crate::request::RequestCtx;
use http::header::{CONNECTION, TE, UPGRADE};
use http::{HeaderName, HeaderValue};
use pingora::http::{KnownHeaderName, ResponseHeader};
use std::io::Write;

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
    let headers = &ctx.snapshot.edge.config.headers;
    let route = ctx.route();
    headers.add.len()
        + usize::from(headers.hsts.is_some())
        + 2 // Server-Timing, X-Request-ID
        + if ctx.rate_limit.is_some() { 3 } else { 0 }
        + if ctx.cache.is_some() { 2 } else { 0 }
        + route.and_then(|r| r.cors.as_ref()).map_or(0, |_| 4)
        + route.and_then(|r| r.response_edits.as_ref()).map_or(0, |e| e.fields_added())
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
            resp.insert_known_header(name, HeaderValue::from(value));
        }
    }
    resp.insert_known_header(&request_id::NAME, ctx.request_id.clone());
    Ok(())
}

/// `gateway;dur=…, upstream;dur=…` in milliseconds: the gateway's own time so far, and the
/// upstream's time to its response header. Written as integers into a stack buffer: float
/// formatting cost ≈ 2,000 instructions per request.
fn server_timing(ctx: &RequestCtx) -> HeaderValue {
    let total = ctx.started.elapsed();
    let mut buf = [0u8; 96];
    let mut cursor = &mut buf[..];
    let ms = |d: std::time::Duration| {
        let us = d.as_micros();
        (us / 1000, us % 1000)
    };
    let written = match ctx.upstream_ttfb {
        Some(up) => {
            let ((g, gf), (u, uf)) = (ms(total.saturating_sub(up)), ms(up));
            write!(cursor, "gateway;dur={g}.{gf:03}, upstream;dur={u}.{uf:03}")
        }
        None => {
            let (g, gf) = ms(total);
            write!(cursor, "gateway;dur={g}.{gf:03}")
        }
    };
    let len = 96 - cursor.len();
    match written {
        Ok(()) => HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static("gateway")),
        Err(_) => HeaderValue::from_static("gateway"),
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
