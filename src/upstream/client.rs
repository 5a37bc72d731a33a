//! The gateway's own calls to an upstream pool (aggregate parts, forward auth): one
//! request, a whole (bounded) answer. The pool's balancing, health, circuit breaker and
//! retries apply (a retry only after a failed connection, which never reached a target);
//! connections come from one process-wide Pingora connector, kept alive between calls.

use super::{PickError, UpstreamPool};
use bytes::{Bytes, BytesMut};
use http::header::HOST;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use std::sync::OnceLock;
use std::time::Duration;

/// Why a call got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    CircuitOpen,
    NoHealthyTarget,
    Connect(String),
    TooLarge,
    Io(String),
}

/// A whole answer.
pub struct Answer {
    pub head: ResponseHeader,
    pub body: Bytes,
}

fn connector() -> &'static Connector {
    static CONNECTOR: OnceLock<Connector> = OnceLock::new();
    CONNECTOR.get_or_init(|| Connector::new(None))
}

/// Sends `req` (no body) to a target of `pool` and reads the answer, at most `max_size`
/// body bytes. `Host` is the target's address as written. Each try's outcome goes to
/// the pool's passive health and circuit breaker. The caller bounds the whole call.
pub async fn call(
    pool: &UpstreamPool,
    req: &RequestHeader,
    timeout: Duration,
    max_size: usize,
) -> Result<Answer, CallError> {
    let mut failed = Vec::new();
    let mut last = CallError::NoHealthyTarget;
    for _ in 0..=pool.config.retries {
        let pick = match pool.pick(&[], &failed) {
            Ok(pick) => pick,
            Err(PickError::CircuitOpen) => return Err(CallError::CircuitOpen),
            Err(PickError::NoHealthyTarget) => return Err(last),
        };
        // In flight (least_conn counts it) until this try ends.
        let in_flight = pick.target;
        let target = in_flight.target().clone();
        let peer = pool.peer(&target, Some(timeout));
        let (mut session, _reused) = match connector().get_http_session(peer.as_ref()).await {
            Ok(s) => s,
            Err(e) => {
                pool.record(&target, pick.permit, false);
                failed.push(target.backend.addr.clone());
                last = CallError::Connect(e.etype().as_str().to_string());
                continue;
            }
        };
        let mut req = req.clone();
        let _ = req.insert_header(HOST, target.config.spec.as_str());
        let outcome = exchange(&mut session, req, max_size).await;
        let success = match &outcome {
            Ok(answer) => !pool.is_failure_status(answer.head.status.as_u16()),
            Err(CallError::TooLarge) => true,
            Err(_) => false,
        };
        pool.record(&target, pick.permit, success);
        drop(in_flight);
        if outcome.is_ok() {
            // The whole body was read: the connection is at a message boundary.
            connector()
                .release_http_session(session, peer.as_ref(), Some(pool.config.keepalive_timeout))
                .await;
        }
        return outcome;
    }
    Err(last)
}

async fn exchange(
    session: &mut pingora::protocols::http::client::HttpSession,
    req: RequestHeader,
    max_size: usize,
) -> Result<Answer, CallError> {
    let io = |e: Box<pingora::Error>| CallError::Io(e.etype().as_str().to_string());
    session.write_request_header(Box::new(req)).await.map_err(io)?;
    session.finish_request_body().await.map_err(io)?;
    session.read_response_header().await.map_err(io)?;
    let Some(head) = session.response_header().cloned() else {
        return Err(CallError::Io("no response header".into()));
    };
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_response_body().await.map_err(io)? {
        if body.len() + chunk.len() > max_size {
            return Err(CallError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        head,
        body: body.freeze(),
    })
}
