//! W3C trace context: the upstream gets a `traceparent` continuing the client's trace (or
//! starting one when there is none or it is malformed) with a new span id for this hop;
//! `tracestate` passes through. The trace id is written in the access log.

use crate::proxy::RequestCtx;
use pingora::http::RequestHeader;

const TRACEPARENT: &str = "traceparent";

/// The trace this request belongs to, read from the client's `traceparent` when valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The client's span (16 hex digits), when it sent a valid `traceparent`.
    pub parent_id: Option<String>,
    /// This hop's span: the parent of the upstream's.
    pub span_id: String,
    /// Two hex digits (`01` = sampled).
    pub flags: String,
}

impl TraceContext {
    /// The client's context, or a new sampled trace.
    pub fn for_request(req: &RequestHeader) -> Self {
        req.headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse)
            .unwrap_or_else(|| TraceContext {
                trace_id: hex::encode(uuid::Uuid::new_v4().as_bytes()),
                parent_id: None,
                span_id: new_span_id(),
                flags: "01".to_string(),
            })
    }
}

/// `00-<trace-id>-<parent-id>-<flags>` (version 00; ids not all zero).
fn parse(value: &str) -> Option<TraceContext> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let valid = version == "00"
        && parts.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then(|| TraceContext {
        trace_id: trace.to_string(),
        parent_id: Some(parent.to_string()),
        span_id: new_span_id(),
        flags: flags.to_string(),
    })
}

fn new_span_id() -> String {
    hex::encode(&uuid::Uuid::new_v4().as_bytes()[..8])
}

/// Upstream step: this hop's `traceparent`.
pub struct PropagateTrace;

impl PropagateTrace {
    pub fn apply(&self, req: &mut RequestHeader, ctx: &RequestCtx) -> pingora::Result<()> {
        let Some(trace) = &ctx.trace else {
            return Ok(());
        };
        req.insert_header(
            TRACEPARENT,
            format!("00-{}-{}-{}", trace.trace_id, trace.span_id, trace.flags),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_traceparents_are_continued_others_replaced() {
        let good = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(good.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(good.flags, "01");
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
