//! W3C trace context upstream: the upstream gets a `traceparent` continuing the client's
//! trace (or starting one when there is none or it is malformed) with a new span id for
//! this hop; `tracestate` passes through.

use crate::request::trace::TRACEPARENT;
use crate::request::RequestCtx;
use http::HeaderValue;
use pingora::http::RequestHeader;

/// Upstream step: this hop's `traceparent`.
pub struct PropagateTrace;

impl PropagateTrace {
    pub fn apply(&self, req: &mut RequestHeader, ctx: &RequestCtx) -> pingora::Result<()> {
        let Some(trace) = &ctx.trace else {
            return Ok(());
        };
        match HeaderValue::from_bytes(&trace.traceparent) {
            Ok(value) => req.insert_header(TRACEPARENT, value),
            Err(_) => Ok(()),
        }
    }
}
