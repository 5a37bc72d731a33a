//! W3C trace context upstream: the upstream gets a `traceparent` continuing the client's
//! trace (or starting one when there is none or it is malformed) with a new span id for
//! this hop; `tracestate` passes through.

use crate::request::trace::TRACEPARENT;
use crate::request::RequestCtx;
use http::HeaderValue;
use pingora::http::{KnownHeaderName, RequestHeader};

const NAME: KnownHeaderName = KnownHeaderName::from_static(TRACEPARENT);

/// Upstream step: this hop's `traceparent`.
pub struct PropagateTrace;

impl PropagateTrace {
    pub fn apply(&self, req: &mut RequestHeader, ctx: &RequestCtx) -> pingora::Result<()> {
        let Some(trace) = &ctx.trace else {
            return Ok(());
        };
        if let Ok(value) = HeaderValue::from_bytes(&trace.traceparent) {
            // A new span id on every request: out of an h2 upstream's compression table.
            req.insert_known_header(&NAME, super::never_indexed(value));
        }
        Ok(())
    }
}
