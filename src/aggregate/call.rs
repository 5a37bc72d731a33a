//! One part's call: through the part's upstream pool (balancing, health, circuit breaker,
//! retries on another target after a failed connection), over Pingora's connector with
//! its keep-alive pool and upstream TLS. The answer must be a 2xx JSON body no larger
//! than the route's `max_part_size`.

use super::Part;
use crate::filters::identity_headers::IdentityHeaders;
use crate::filters::request_id::PropagateRequestId;
use crate::request::trace::TRACEPARENT;
use crate::request::RequestCtx;
use crate::template::Escape;
use crate::upstream::PickError;
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HOST};
use pingora::connectors::http::Connector;
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

/// Calls the part's pool once per try until one target answers (retries only after a
/// failed connection, which never reached an upstream).
pub async fn call(
    part: &Part,
    req: RequestHeader,
    timeout: Duration,
    max_size: usize,
    connector: &Connector,
) -> Result<PartAnswer, PartError> {
    let pool = &part.pool;
    let mut failed = Vec::new();
    let mut last = PartError::NoHealthyTarget;
    for _ in 0..=pool.config.retries {
        let pick = match pool.pick(&[], &failed) {
            Ok(pick) => pick,
            Err(PickError::CircuitOpen) => return Err(PartError::CircuitOpen),
            Err(PickError::NoHealthyTarget) => return Err(last),
        };
        // In flight (least_conn counts it) until this try ends.
        let in_flight = pick.target;
        let target = in_flight.target().clone();
        let peer = pool.peer(&target, Some(timeout));
        let (mut session, _reused) = match connector.get_http_session(peer.as_ref()).await {
            Ok(s) => s,
            Err(e) => {
                pool.record(&target, pick.permit, false);
                failed.push(target.backend.addr.clone());
                last = PartError::Connect(e.etype().as_str().to_string());
                continue;
            }
        };
        let mut req = req.clone();
        let _ = req.insert_header(HOST, target.config.spec.as_str());
        let outcome = exchange(&mut session, req, max_size).await;
        let success = match &outcome {
            Ok(answer) => !pool.is_failure_status(answer.status),
            Err(Exchange::Io(_)) => false,
            Err(_) => true,
        };
        pool.record(&target, pick.permit, success);
        drop(in_flight);
        return match outcome {
            Ok(answer) => {
                // The whole body was read: the connection is at a message boundary.
                connector
                    .release_http_session(session, peer.as_ref(), Some(pool.config.keepalive_timeout))
                    .await;
                finish(answer)
            }
            Err(Exchange::TooLarge) => Err(PartError::TooLarge),
            Err(Exchange::Io(e)) => Err(PartError::Io(e)),
        };
    }
    Err(last)
}

enum Exchange {
    TooLarge,
    Io(String),
}

struct Raw {
    status: u16,
    json: bool,
    body: Bytes,
}

async fn exchange(
    session: &mut pingora::protocols::http::client::HttpSession,
    req: RequestHeader,
    max_size: usize,
) -> Result<Raw, Exchange> {
    let io = |e: Box<pingora::Error>| Exchange::Io(e.etype().as_str().to_string());
    session.write_request_header(Box::new(req)).await.map_err(io)?;
    session.finish_request_body().await.map_err(io)?;
    session.read_response_header().await.map_err(io)?;
    let Some(head) = session.response_header() else {
        return Err(Exchange::Io("no response header".into()));
    };
    let status = head.status.as_u16();
    let json = head
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let mime = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        });
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_response_body().await.map_err(io)? {
        if body.len() + chunk.len() > max_size {
            return Err(Exchange::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Raw {
        status,
        json,
        body: body.freeze(),
    })
}

fn finish(raw: Raw) -> Result<PartAnswer, PartError> {
    if !(200..300).contains(&raw.status) {
        return Err(PartError::Status(raw.status));
    }
    if !raw.json {
        return Err(PartError::NotJson);
    }
    let value = serde_json::from_slice(&raw.body).map_err(|_| PartError::NotJson)?;
    Ok(PartAnswer {
        status: raw.status,
        value,
        body: raw.body,
    })
}
