//! Answering a request head the gateway refused: its JSON error with the security headers
//! and `Connection: close`, logged and counted like any other answer, then a lingering
//! close (the client's unread bytes are drained for a moment, so that the kernel does not
//! reset the connection before the client has read the answer).

use super::framing::Refusal;
use crate::filters::request_id;
use crate::observe::access_log;
use crate::observe::metrics::{self, Metrics, RequestRecord};
use crate::proxy::error_wire;
use crate::request::{GatewayError, RequestCtx};
use crate::snapshot::Snapshot;
use pingora::protocols::Stream;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long, and how much, is read and dropped after the answer before closing.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 << 10;
/// A client that does not read its answer in this time is not waited for.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of a refused request line that go to the access log.
const LOGGED_LINE: usize = 256;

/// What the connection knows when a head is refused.
pub struct Refused<'a> {
    pub refusal: Refusal,
    /// The bytes of the head received so far.
    pub received: &'a [u8],
    /// How long the head's bytes took to come.
    pub waited: Duration,
    pub client_ip: Option<IpAddr>,
}

pub async fn answer(stream: &mut Stream, refused: Refused<'_>, snapshot: Arc<Snapshot>, metrics: &Metrics) {
    let Refused {
        refusal,
        received,
        waited,
        client_ip,
    } = refused;
    let now = Instant::now();
    let started = now.checked_sub(waited).unwrap_or(now);
    let (method, target) = request_line(received);
    let mut ctx = RequestCtx::new(snapshot);
    ctx.request_id = request_id::fresh();
    ctx.client_ip = client_ip;
    let err = GatewayError::BadHead {
        status: refusal.status,
        reason: refusal.reason,
    };
    log::debug!("refused a request head from {client_ip:?}: {}", refusal.reason);
    let mut bytes_sent = 0;
    if let Ok((wire, body_len)) = error_wire(&ctx, &err, method == "HEAD") {
        let sent = tokio::time::timeout(WRITE_TIMEOUT, async {
            stream.write_all(&wire).await?;
            stream.flush().await
        })
        .await;
        match sent {
            Ok(Ok(())) => bytes_sent = body_len,
            _ => log::debug!("the {} answer was not delivered", refusal.status),
        }
    }
    let logged = Logged {
        method: &method,
        target: &target,
        bytes_sent,
        started,
    };
    record(&ctx, &refusal, &logged, metrics);
    linger(stream).await;
}

/// What the access log says of a refused head besides the refusal.
struct Logged<'a> {
    method: &'a str,
    target: &'a str,
    bytes_sent: usize,
    started: Instant,
}

fn record(ctx: &RequestCtx, refusal: &Refusal, logged: &Logged, metrics: &Metrics) {
    let server = &ctx.snapshot.server;
    let Logged {
        method,
        target,
        bytes_sent,
        started,
    } = *logged;
    if server.metrics {
        metrics.downstream_error(refusal.kind);
        let method = http::Method::from_bytes(method.as_bytes()).map_or("OTHER", |m| metrics::method_label(&m));
        metrics.record(&RequestRecord {
            route: metrics::NO_ROUTE,
            meters: None,
            method,
            status: refusal.status,
            seconds: started.elapsed().as_secs_f64(),
            upstream: None,
            rejected: Some("malformed"),
            cache: None,
            json: None,
            parts: &[],
            grpc_status: None,
        });
    }
    if server.access_log {
        // The query only as the access log writes a served request's: it may hold a token.
        let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
        access_log::refused(access_log::Refused {
            request_id: request_id::as_str(&ctx.request_id),
            client_ip: ctx.client_ip,
            method,
            path,
            query: access_log::logged_query(query, server),
            status: refusal.status,
            error: refusal.reason,
            bytes_sent,
            duration: started.elapsed(),
        });
    }
}

/// Method and target of what was received, for the log: lossy, control bytes escaped.
fn request_line(received: &[u8]) -> (String, String) {
    let line = received
        .iter()
        .skip_while(|&&b| b == b'\r' || b == b'\n')
        .take_while(|&&b| b != b'\n')
        .take(LOGGED_LINE)
        .copied()
        .collect::<Vec<u8>>();
    let line = line.strip_suffix(b"\r").unwrap_or(&line);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let printable = |part: Option<&[u8]>| {
        String::from_utf8_lossy(&part.unwrap_or_default().escape_ascii().collect::<Vec<u8>>()).into_owned()
    };
    (printable(parts.next()), printable(parts.next()))
}

/// Half-closes, then reads and drops what the client still sends, briefly.
async fn linger(stream: &mut Stream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::request_line;

    #[test]
    fn the_logged_request_line_is_printable() {
        let (m, t) = request_line(b"\r\nGET /a\x00b\x1b[31m HTTP/1.1\r\nHost: x\r\n");
        assert_eq!((m.as_str(), t.as_str()), ("GET", "/a\\x00b\\x1b[31m"));
        let (m, t) = request_line(b"GARBAGE\r\n\r\n");
        assert_eq!((m.as_str(), t.as_str()), ("GARBAGE", ""));
    }
}
