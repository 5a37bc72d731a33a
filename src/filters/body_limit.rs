//! `max_body`: a declared Content-Length over the limit is refused up front (413, the
//! upstream never sees the request); a chunked body is counted while it streams and the
//! request is cut with 413 as soon as it passes the limit.

use crate::request::{GatewayError, RequestCtx};
use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use pingora::http::RequestHeader;
use pingora::{Error, ErrorType};

pub struct BodyLimit {
    max: u64,
}

impl BodyLimit {
    pub fn new(max: u64) -> Self {
        BodyLimit { max }
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn check_declared(&self, req: &RequestHeader, ctx: &mut RequestCtx) -> Result<(), GatewayError> {
        let declared = req
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max) {
            return Err(GatewayError::PayloadTooLarge);
        }
        ctx.body_limit = Some(self.max);
        Ok(())
    }
}

/// Counts a streamed body chunk; `Err` (413) once the total passes the route's limit.
pub fn count(chunk: &Option<Bytes>, ctx: &mut RequestCtx) -> pingora::Result<()> {
    let (Some(max), Some(chunk)) = (ctx.body_limit, chunk) else {
        return Ok(());
    };
    ctx.body_received += chunk.len() as u64;
    if ctx.body_received > max {
        ctx.error = Some(GatewayError::PayloadTooLarge);
        return Error::e_explain(ErrorType::HTTPStatus(413), "request body over max_body");
    }
    Ok(())
}
