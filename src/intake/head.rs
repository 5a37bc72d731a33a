//! Reading one request head off a client connection: the first byte within the keep-alive
//! timeout, the whole head within `client_header_timeout` of it, the bytes checked by
//! [`framing`] as they arrive (so an oversized or malformed head is refused without
//! waiting for the rest).

use super::framing::{self, Body, Head, Parsed, Refusal};
use crate::config::model::ClientLimits;
use bytes::BytesMut;
use futures::FutureExt;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

/// Read size: one allocation holds a typical head (as Pingora's own header buffer does).
const READ_CHUNK: usize = 4096;
/// Room below which a read gets a new [`READ_CHUNK`].
const MIN_READ: usize = 256;
/// What a connection holds while it waits, idle, for its next request (nginx's
/// `client_header_buffer_size`): most heads fit, and a held connection costs 1 KiB here
/// instead of the rest of a [`READ_CHUNK`] (the buffer's unused tail keeps its whole
/// allocation alive).
const IDLE_BUFFER: usize = 1024;
/// How soon an idle keep-alive connection notices that the server is shutting down.
const SHUTDOWN_CHECK: Duration = Duration::from_secs(1);

/// What waiting for the next request head gave.
pub enum Outcome {
    /// A head that passed: the bytes to hand to Pingora, the head plus what follows of
    /// its body (for a `Content-Length` body, no more than the body).
    Head(BytesMut),
    /// Nothing to answer: the client closed or stayed idle between requests, or the
    /// server is shutting down.
    Idle,
    /// The client closed or failed part way through a head.
    Broken,
    /// A head the gateway will not read, and how long its bytes took to come.
    Refused(Refusal, Duration),
}

/// Reads the next head from `stream`, starting with the bytes already in `pending`
/// (read past the end of the previous request); what is left after the returned bytes
/// stays in `pending`. Before its first byte a connection may idle for the keep-alive
/// timeout (a browser's preconnected socket, as nginx allows); from it, the whole head is
/// due within the header timeout.
pub async fn read(
    stream: &mut Stream,
    pending: &mut BytesMut,
    limits: &ClientLimits,
    shutdown: &ShutdownWatch,
) -> Outcome {
    let mut deadline = None;
    loop {
        if !pending.is_empty() {
            match framing::parse(pending, limits) {
                Ok(Parsed::Complete(head)) => {
                    let take = handover_len(&head, pending.len());
                    return Outcome::Head(pending.split_to(take));
                }
                Ok(Parsed::Partial) => {}
                Err(refusal) => return Outcome::Refused(refusal, waited(deadline, limits)),
            }
            deadline.get_or_insert_with(|| Instant::now() + limits.header_timeout);
        }
        if pending.capacity() - pending.len() < MIN_READ {
            pending.reserve(READ_CHUNK);
        }
        let read = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, stream.read_buf(pending)).await {
                Ok(read) => read,
                Err(_) => return Outcome::Refused(Refusal::TIMEOUT, limits.header_timeout),
            },
            None => match idle_read(stream, pending, limits.keepalive_timeout, shutdown).await {
                Some(read) => read,
                None => return Outcome::Idle,
            },
        };
        match read {
            Ok(0) | Err(_) if pending.is_empty() => return Outcome::Idle,
            Ok(0) | Err(_) => return Outcome::Broken,
            Ok(_) => {}
        }
    }
}

/// Time since the head's clock started (none: its bytes all came in one read).
fn waited(deadline: Option<Instant>, limits: &ClientLimits) -> Duration {
    deadline.map_or(Duration::ZERO, |d| {
        limits
            .header_timeout
            .saturating_sub(d.saturating_duration_since(Instant::now()))
    })
}

/// A read between two requests: `None` when the keep-alive timeout passes first or the
/// server starts shutting down (an idle connection is closed then, as Pingora does).
///
/// The shutdown flag is looked at every [`SHUTDOWN_CHECK`] rather than watched: a watch
/// registration per request cost ≈ 660 instructions, a lazy Pingora timer almost nothing
/// (most waits end long before it fires).
async fn idle_read(
    stream: &mut Stream,
    buf: &mut BytesMut,
    keepalive: Duration,
    shutdown: &ShutdownWatch,
) -> Option<std::io::Result<usize>> {
    // Whole checks, so that no clock is read per request (the keep-alive timeout is
    // rounded up to the next second beyond one).
    // Under load the next request is often there already: read it without arming a timer
    // (registering one costs ≈ 700 instructions). Dropping the unfinished read loses
    // nothing: it completes only by filling `buf`.
    if let Some(read) = stream.read_buf(buf).now_or_never() {
        return Some(read);
    }
    // The last request's bytes are gone: take the whole allocation back when it is ours
    // alone and small, else start a small one.
    if buf.is_empty() && !(buf.try_reclaim(IDLE_BUFFER) && buf.capacity() <= IDLE_BUFFER) {
        *buf = BytesMut::with_capacity(IDLE_BUFFER);
    }
    let slice = keepalive.min(SHUTDOWN_CHECK);
    let slices = keepalive.as_millis().div_ceil(slice.as_millis().max(1));
    for _ in 0..slices {
        if *shutdown.borrow() {
            return None;
        }
        if let Ok(read) = pingora::time::timeout(slice, stream.read_buf(buf)).await {
            return Some(read);
        }
    }
    None
}

/// How many of the `buffered` bytes go to Pingora with `head`. Bytes past the request
/// stay with us, so that a pipelined request is checked like any other; after a chunked
/// body or an upgrade, where the end is not known here, everything goes.
fn handover_len(head: &Head, buffered: usize) -> usize {
    match head.body {
        _ if head.upgrade => buffered,
        Body::None => head.len,
        Body::Length(n) => usize::try_from(n).map_or(buffered, |n| head.len.saturating_add(n).min(buffered)),
        Body::Chunked => buffered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(len: usize, body: Body, upgrade: bool) -> Head {
        Head { len, body, upgrade }
    }

    #[test]
    fn only_this_request_is_handed_over_when_its_end_is_known() {
        assert_eq!(handover_len(&head(30, Body::None, false), 90), 30);
        assert_eq!(handover_len(&head(30, Body::Length(5), false), 90), 35);
        assert_eq!(handover_len(&head(30, Body::Length(500), false), 90), 90);
        assert_eq!(handover_len(&head(30, Body::Chunked, false), 90), 90);
        assert_eq!(handover_len(&head(30, Body::None, true), 90), 90);
    }
}
