//! One JSON line per request (ts, request_id, client_ip, method, path, route, upstream,
//! status, bytes_sent, duration_ms, plus error when the gateway failed it, and the client
//! certificate's subject and fingerprint on mTLS connections).

use super::logging::ACCESS_TARGET;
use crate::request::{GatewayError, RequestCtx};
use crate::text::{AddrText, TimestampText};
use pingora::proxy::Session;
use pingora::Error;
use serde::{Serialize, Serializer};

#[derive(Serialize)]
struct AccessLine<'a> {
    #[serde(serialize_with = "timestamp")]
    ts: jiff::Timestamp,
    request_id: &'a str,
    trace_id: Option<&'a str>,
    #[serde(serialize_with = "ip")]
    client_ip: Option<std::net::IpAddr>,
    method: &'a str,
    path: &'a str,
    /// Only with `access_log_query: true`, credentials redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    route: Option<&'a str>,
    #[serde(serialize_with = "upstream")]
    upstream: Option<&'a pingora::protocols::l4::socket::SocketAddr>,
    status: u16,
    bytes_sent: usize,
    duration_ms: f64,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Class of a refusal (auth, forbidden, ip, cors, body_limit), for counting.
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<&'static str>,
    /// `allow`/`deny`: a global rate limit decided by `on_redis_error` (Redis unreachable).
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit_policy: Option<&'static str>,
    /// An aggregate answer's parts: name, result, upstream status, milliseconds.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    parts: &'a [crate::request::PartReport],
    /// The verified client certificate's subject and SHA-256 fingerprint (mTLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    client_cert_subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_cert_fingerprint: Option<&'a str>,
}

/// Whether `RUST_LOG` lets access lines through, asked of the logger once: its filter is
/// set at start and never changes, and asking costs a walk over its directives.
fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| log::log_enabled!(target: ACCESS_TARGET, log::Level::Info))
}

// The text forms of crate::text: the same strings as `Display`, a tenth of the cost.
fn timestamp<S: Serializer>(ts: &jiff::Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(TimestampText::new(*ts).as_str())
}

fn ip<S: Serializer>(ip: &Option<std::net::IpAddr>, s: S) -> Result<S::Ok, S::Error> {
    match ip {
        Some(ip) => s.serialize_str(AddrText::ip(*ip).as_str()),
        None => s.serialize_none(),
    }
}

fn upstream<S: Serializer>(
    addr: &Option<&pingora::protocols::l4::socket::SocketAddr>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match addr {
        Some(addr) => match addr.as_inet() {
            Some(inet) => s.serialize_str(AddrText::socket(*inet).as_str()),
            None => s.collect_str(addr),
        },
        None => s.serialize_none(),
    }
}

pub fn record(session: &Session, e: Option<&Error>, ctx: &RequestCtx) {
    if !enabled() {
        return;
    }
    let req = session.req_header();
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let line = AccessLine {
        ts: jiff::Timestamp::now(),
        request_id: crate::filters::request_id::as_str(&ctx.request_id),
        trace_id: ctx.trace.as_ref().map(|t| t.trace_id()),
        client_ip: ctx.client_ip,
        method: req.method.as_str(),
        path: req.uri.path(),
        query: ctx
            .snapshot
            .server
            .access_log_query
            .then(|| {
                req.uri
                    .query()
                    .map(|q| redact_query(q, &ctx.snapshot.server.redact_params))
            })
            .flatten(),
        route: ctx.route().map(|r| r.name.as_str()),
        upstream: ctx.attempt.as_ref().map(|a| &a.target.target().backend.addr),
        status,
        bytes_sent: session.body_bytes_sent(),
        duration_ms: (ctx.started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
        attempts: ctx.attempts,
        error: match (&ctx.error, e) {
            (Some(decided), _) => Some(decided.message().into_owned()),
            (None, Some(e)) => Some(describe(e)),
            (None, None) => None,
        },
        rejected: ctx.error.as_ref().and_then(GatewayError::rejection),
        rate_limit_policy: ctx.rate_limit_policy,
        parts: &ctx.parts,
        client_cert_subject: ctx.verified_cert().map(|c| c.subject.as_str()),
        client_cert_fingerprint: ctx.verified_cert().map(|c| c.fingerprint.as_str()),
    };
    super::access_writer::write(&line);
}

/// What is known of a request head the gateway refused before Pingora parsed it.
pub struct Refused<'a> {
    pub request_id: &'a str,
    pub client_ip: Option<std::net::IpAddr>,
    /// As much of the request line as could be read (lossy, at most 256 bytes).
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub error: &'a str,
    pub bytes_sent: usize,
    pub duration: std::time::Duration,
}

pub fn refused(r: &Refused) {
    if !enabled() {
        return;
    }
    let line = AccessLine {
        ts: jiff::Timestamp::now(),
        request_id: r.request_id,
        trace_id: None,
        client_ip: r.client_ip,
        method: r.method,
        path: r.path,
        query: None,
        route: None,
        upstream: None,
        status: r.status,
        bytes_sent: r.bytes_sent,
        duration_ms: (r.duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
        attempts: 0,
        error: Some(r.error.to_string()),
        rejected: Some("malformed"),
        rate_limit_policy: None,
        parts: &[],
        client_cert_subject: None,
        client_cert_fingerprint: None,
    };
    super::access_writer::write(&line);
}

/// `a=1&token=abc` → `a=1&token=[redacted]` for every parameter named in `redact`.
fn redact_query(query: &str, redact: &[String]) -> String {
    query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(k, _)| k);
            if redact.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                format!("{name}=[redacted]")
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn describe(e: &Error) -> String {
    let kind = GatewayError::from_pingora(e);
    format!("{}: {}", kind.message(), e)
}

#[cfg(test)]
mod tests {
    use super::redact_query;

    #[test]
    fn credentials_in_the_query_are_redacted_by_name() {
        let redact = vec!["token".to_string(), "api_key".to_string()];
        assert_eq!(
            redact_query("a=1&TOKEN=abc&api_key=k&b", &redact),
            "a=1&TOKEN=[redacted]&api_key=[redacted]&b"
        );
    }
}
