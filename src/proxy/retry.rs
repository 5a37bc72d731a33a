//! Which failed upstream attempts are tried again, on another target, and what each
//! failure tells passive health and the circuit breaker.
//!
//! - A connection that could not be established is always retried (nothing was sent).
//! - A connection lost before any response byte is retried only for idempotent methods
//!   (all methods with the upstream's `retry_non_idempotent`) whose body Pingora still
//!   holds, and never once the client got a response header.
//! - Timeouts are not retried: the upstream may still be working on the request.
//!
//! Each retry counts against the upstream's `retries`, waits its `retry_backoff`, and
//! goes to another target that is healthy, not ejected and not behind an open circuit.

use super::{upstream, RequestCtx};
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

fn retries_left(ctx: &RequestCtx) -> bool {
    ctx.pool().is_some_and(|p| ctx.attempts <= p.config.retries)
}

pub fn on_connect_failure(ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
    upstream::record(ctx, false);
    e.set_retry(retries_left(ctx));
    e
}

pub fn on_proxy_error(peer: &HttpPeer, session: &Session, ctx: &mut RequestCtx, e: Box<Error>) -> Box<Error> {
    let mut e = e.more_context(format!("peer {peer}"));
    // Only the upstream side: a client that went away says nothing about the target.
    if *e.esource() != ErrorSource::Upstream {
        e.set_retry(false);
        return e;
    }
    upstream::record(ctx, false);
    let any_method = ctx.pool().is_some_and(|p| p.config.retry_non_idempotent);
    let safe = (any_method || session.req_header().method.is_idempotent())
        && !session.as_ref().retry_buffer_truncated()
        && session.response_written().is_none();
    let lost_before_response = matches!(
        e.etype(),
        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
    );
    e.set_retry(safe && lost_before_response && retries_left(ctx));
    e
}
