//! Which failed upstream attempts are tried again, on another target.
//!
//! - A connection that could not be established is always retried (nothing was sent).
//! - A connection lost before any response byte is retried only for idempotent methods
//!   whose body Pingora still holds, and never once the client got a response header.
//! - Timeouts are not retried: the upstream may still be working on the request.
//!
//! Each retry counts against the upstream's `retries`; `upstream_peer` avoids the targets
//! that already failed.

use super::RequestCtx;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

fn retries_left(ctx: &RequestCtx) -> bool {
    ctx.route().is_some_and(|r| ctx.attempts <= r.upstream.config.retries)
}

pub fn on_connect_failure(ctx: &RequestCtx, mut e: Box<Error>) -> Box<Error> {
    e.set_retry(retries_left(ctx));
    e
}

pub fn on_proxy_error(peer: &HttpPeer, session: &Session, ctx: &RequestCtx, e: Box<Error>) -> Box<Error> {
    let mut e = e.more_context(format!("peer {peer}"));
    let safe = session.req_header().method.is_idempotent()
        && !session.as_ref().retry_buffer_truncated()
        && session.response_written().is_none();
    // Only the upstream side: a client that went away is not a reason to try again.
    let lost_before_response = *e.esource() == ErrorSource::Upstream
        && matches!(
            e.etype(),
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
        );
    e.set_retry(safe && lost_before_response && retries_left(ctx));
    e
}
