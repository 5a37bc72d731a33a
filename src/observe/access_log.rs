//! One JSON line per request (ts, request_id, client_ip, method, path, route, upstream,
//! status, bytes_sent, duration_ms, plus error when the gateway failed it, and the client
//! certificate's subject and fingerprint on mTLS connections).

use super::json_line::{key, JsonLine};
use super::logging::ACCESS_TARGET;
use crate::config::model::ServerSettings;
use crate::request::{GatewayError, RequestCtx};
use crate::text::{AddrText, TimestampText};
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::Error;

struct AccessLine<'a> {
    ts: jiff::Timestamp,
    request_id: &'a str,
    trace_id: Option<&'a str>,
    client_ip: Option<&'a AddrText>,
    method: &'a str,
    /// `method` is a parsed method (a token: nothing in it to escape), not the bytes of a
    /// refused request line.
    method_is_token: bool,
    path: &'a str,
    /// Only with `access_log_query: true`, credentials redacted.
    query: Option<String>,
    route: Option<&'a str>,
    /// The address of the target the last attempt went to (an IP and a port: nothing in
    /// it to escape).
    upstream: Option<&'a str>,
    status: u16,
    bytes_sent: usize,
    duration_micros: u64,
    attempts: u32,
    error: Option<String>,
    /// Class of a refusal (auth, forbidden, ip, cors, body_limit), for counting.
    rejected: Option<&'static str>,
    /// `allow`/`deny`: a global rate limit decided by `on_redis_error` (Redis unreachable).
    rate_limit_policy: Option<&'static str>,
    /// An aggregate answer's parts: name, result, upstream status, milliseconds.
    parts: &'a [crate::request::PartReport],
    /// The verified client certificate's subject and SHA-256 fingerprint (mTLS).
    client_cert_subject: Option<&'a str>,
    client_cert_fingerprint: Option<&'a str>,
}

impl AccessLine<'_> {
    /// The line as JSON, fields in this order; optional ones only when set. The text
    /// forms of crate::text are the same strings as `Display`, a tenth of the cost.
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut line = JsonLine::start(out);
        line.own_text(key!("ts"), TimestampText::new(self.ts).as_bytes());
        line.str(key!("request_id"), self.request_id);
        line.opt_str(key!("trace_id"), self.trace_id);
        match self.client_ip {
            Some(ip) => line.own_text(key!("client_ip"), ip.as_bytes()),
            None => line.opt_str(key!("client_ip"), None),
        }
        if self.method_is_token {
            line.own_text(key!("method"), self.method.as_bytes());
        } else {
            line.str(key!("method"), self.method);
        }
        line.str(key!("path"), self.path);
        if let Some(query) = &self.query {
            line.str(key!("query"), query);
        }
        line.opt_str(key!("route"), self.route);
        match self.upstream {
            Some(addr) => line.own_text(key!("upstream"), addr.as_bytes()),
            None => line.opt_str(key!("upstream"), None),
        }
        line.uint(key!("status"), u64::from(self.status));
        line.uint(key!("bytes_sent"), self.bytes_sent as u64);
        line.millis(key!("duration_ms"), self.duration_micros);
        line.uint(key!("attempts"), u64::from(self.attempts));
        let optional = [
            (key!("error"), self.error.as_deref()),
            (key!("rejected"), self.rejected),
            (key!("rate_limit_policy"), self.rate_limit_policy),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                line.str(key, value);
            }
        }
        if !self.parts.is_empty() {
            line.raw(key!("parts"), |out| {
                // Aggregate answers only: serde's generic path is fine here.
                if serde_json::to_writer(&mut *out, self.parts).is_err() {
                    out.extend_from_slice(b"null");
                }
            });
        }
        if let Some(subject) = self.client_cert_subject {
            line.str(key!("client_cert_subject"), subject);
        }
        if let Some(fingerprint) = self.client_cert_fingerprint {
            line.str(key!("client_cert_fingerprint"), fingerprint);
        }
        line.finish();
    }
}

/// Whether `RUST_LOG` lets access lines through, asked of the logger once: its filter is
/// set at start and never changes, and asking costs a walk over its directives.
fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| log::log_enabled!(target: ACCESS_TARGET, log::Level::Info))
}

/// `elapsed` in whole microseconds (the log shows milliseconds with three decimals).
fn micros(elapsed: std::time::Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// `elapsed`: since the request started (read once for the log and the metrics).
pub fn record(session: &Session, e: Option<&Error>, ctx: &RequestCtx, elapsed: std::time::Duration) {
    if !enabled() {
        return;
    }
    let req = session.req_header();
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let line = AccessLine {
        ts: jiff::Timestamp::now(),
        request_id: crate::filters::request_id::as_str(&ctx.request_id),
        trace_id: ctx.trace.as_ref().map(|t| t.trace_id()),
        client_ip: ctx.client_ip_text(),
        method: req.method.as_str(),
        method_is_token: true,
        path: req.uri.path(),
        query: logged_query(req.uri.query(), &ctx.snapshot.server),
        route: ctx.route().map(|r| r.name.as_str()),
        upstream: ctx.attempt.as_ref().map(|a| &*a.target.target().addr_text),
        status,
        bytes_sent: session.body_bytes_sent(),
        duration_micros: micros(elapsed),
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
    super::log_writer::write(|out| line.write_json(out));
}

/// What is known of a request head the gateway refused before Pingora parsed it.
pub struct Refused<'a> {
    pub request_id: &'a str,
    pub client_ip: Option<std::net::IpAddr>,
    /// As much of the request line as could be read (lossy, at most 256 bytes).
    pub method: &'a str,
    pub path: &'a str,
    /// The target's query, as [`logged_query`] gives it.
    pub query: Option<String>,
    pub status: u16,
    pub error: &'a str,
    pub bytes_sent: usize,
    pub duration: std::time::Duration,
}

pub fn refused(r: Refused) {
    if !enabled() {
        return;
    }
    let client_ip = r.client_ip.map(AddrText::ip);
    let line = AccessLine {
        ts: jiff::Timestamp::now(),
        request_id: r.request_id,
        trace_id: None,
        client_ip: client_ip.as_ref(),
        method: r.method,
        method_is_token: false,
        path: r.path,
        query: r.query,
        route: None,
        upstream: None,
        status: r.status,
        bytes_sent: r.bytes_sent,
        duration_micros: micros(r.duration),
        attempts: 0,
        error: Some(r.error.to_string()),
        rejected: Some("malformed"),
        rate_limit_policy: None,
        parts: &[],
        client_cert_subject: None,
        client_cert_fingerprint: None,
    };
    super::log_writer::write(|out| line.write_json(out));
}

/// The request as Pingora's own log records name it (`Fail to proxy: …, <summary>`): method,
/// path, host and request id, to find its access line. The query only as the access log
/// writes it (with `access_log_query`, credentials redacted): Pingora's default wrote the
/// raw target, so a failed request's `access_token=…` reached the log.
pub fn request_summary(req: &RequestHeader, ctx: &RequestCtx) -> String {
    let query = logged_query(req.uri.query(), &ctx.snapshot.server);
    format!(
        "{} {}{}{}, Host: {}, request_id: {}",
        req.method,
        req.uri.path(),
        if query.is_some() { "?" } else { "" },
        query.as_deref().unwrap_or(""),
        crate::routing::request_host(req).unwrap_or("-"),
        crate::filters::request_id::as_str(&ctx.request_id),
    )
}

/// A query as logs show it: only with `access_log_query`, its `redact_params` redacted.
pub fn logged_query(query: Option<&str>, server: &ServerSettings) -> Option<String> {
    server
        .access_log_query
        .then_some(query)
        .flatten()
        .map(|q| redact_query(q, &server.redact_params))
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
