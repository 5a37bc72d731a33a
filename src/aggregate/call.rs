//! One part's call, through the part's upstream pool (upstream/client.rs). The answer
//! must be a 2xx JSON body no larger than the route's `max_part_size`.

use super::Part;
use crate::filters::identity_headers::IdentityHeaders;
use crate::filters::request_id::PropagateRequestId;
use crate::request::trace::TRACEPARENT;
use crate::request::RequestCtx;
use crate::template::Escape;
use crate::upstream::client::{self, CallError};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use pingora::http::RequestHeader;
use serde_json::Value;
use std::time::Duration;

/// Why a part failed, as the answer's `errors` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartError {
    CircuitOpen,
    NoHealthyTarget,
    Connect(String),
    Status(u16),
    NotJson,
    TooLarge,
    Timeout,
    Io(String),
}

impl PartError {
    pub fn message(&self) -> String {
        match self {
            PartError::CircuitOpen => "circuit open".into(),
            PartError::NoHealthyTarget => "no healthy target".into(),
            PartError::Connect(e) => format!("connection failed: {e}"),
            PartError::Status(s) => format!("upstream answered {s}"),
            PartError::NotJson => "answer is not JSON".into(),
            PartError::TooLarge => "answer larger than max_part_size".into(),
            PartError::Timeout => "timed out".into(),
            PartError::Io(e) => format!("upstream failed: {e}"),
        }
    }

    /// The metric's `result` label.
    pub fn label(&self) -> &'static str {
        match self {
            PartError::CircuitOpen => "circuit_open",
            PartError::NoHealthyTarget => "unavailable",
            PartError::Connect(_) | PartError::Io(_) => "error",
            PartError::Status(_) => "status",
            PartError::NotJson => "not_json",
            PartError::TooLarge => "too_large",
            PartError::Timeout => "timeout",
        }
    }
}

/// What came back: the upstream's status and the parsed answer.
pub struct PartAnswer {
    pub status: u16,
    pub value: Value,
    /// The raw body, for the part cache.
    pub body: Bytes,
}

/// The request a part sends: its rendered path and query, the client headers it names,
/// the request id, identity headers and a traceparent of its own.
pub fn request(part: &Part, original: &RequestHeader, ctx: &RequestCtx) -> Result<RequestHeader, PartError> {
    let config = &part.config;
    let vars = ctx.vars();
    let mut uri = String::with_capacity(64);
    config.path.render_into(original, &vars, Escape::Url, &mut uri);
    for (name, value) in &config.query {
        uri.push(if uri.contains('?') { '&' } else { '?' });
        uri.push_str(name);
        uri.push('=');
        value.render_into(original, &vars, Escape::Url, &mut uri);
    }
    let mut req = RequestHeader::build(config.method.clone(), uri.as_bytes(), Some(8))
        .map_err(|e| PartError::Io(format!("invalid part request {uri}: {e}")))?;
    for name in &config.headers {
        for value in original.headers.get_all(name) {
            let _ = req.append_header(name.clone(), value.clone());
        }
    }
    let _ = PropagateRequestId.apply(&mut req, ctx);
    let _ = IdentityHeaders.apply(&mut req, ctx);
    if let Some(trace) = &ctx.trace {
        if let Ok(v) = http::HeaderValue::from_bytes(&trace.child_traceparent()) {
            let _ = req.insert_header(TRACEPARENT, v);
        }
    }
    if let Some(ip) = ctx.client_ip {
        let _ = req.insert_header("x-forwarded-for", ip.to_string());
    }
    Ok(req)
}

/// Calls the part's pool and checks the answer.
pub async fn call(
    part: &Part,
    req: &RequestHeader,
    timeout: Duration,
    max_size: usize,
) -> Result<PartAnswer, PartError> {
    let answer = client::call(&part.pool, req, timeout, max_size)
        .await
        .map_err(|e| match e {
            CallError::CircuitOpen => PartError::CircuitOpen,
            CallError::NoHealthyTarget => PartError::NoHealthyTarget,
            CallError::Connect(e) => PartError::Connect(e),
            CallError::TooLarge => PartError::TooLarge,
            CallError::Io(e) => PartError::Io(e),
        })?;
    let status = answer.head.status.as_u16();
    if !(200..300).contains(&status) {
        return Err(PartError::Status(status));
    }
    let json = answer
        .head
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let mime = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        });
    if !json {
        return Err(PartError::NotJson);
    }
    let value = serde_json::from_slice(&answer.body).map_err(|_| PartError::NotJson)?;
    Ok(PartAnswer {
        status,
        value,
        body: answer.body,
    })
}
