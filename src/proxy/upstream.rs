//! The upstream side of a request: which pool and target each attempt goes to, how long a
//! retry waits, and what each attempt's outcome tells passive health and the circuit.

use super::{GatewayError, RequestCtx};
use crate::config::model::{Balance, HashKey};
use crate::request::Attempt;
use crate::upstream::PickError;
use http::header::COOKIE;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use std::time::Duration;

/// Longest wait before one retry, however the backoff doubles.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Picks the target of the next attempt (first try or retry) and returns its peer.
pub async fn next_peer(req: &RequestHeader, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let Some(route_index) = ctx.route else {
        return Error::e_explain(ErrorType::InternalError, "upstream_peer without a route");
    };
    let snapshot = ctx.snapshot.clone();
    let route = &snapshot.routes[route_index];
    let pool_index = *ctx.pool.get_or_insert_with(|| route.upstreams.choose());
    let pool = route.upstreams.get(pool_index);

    if let Some(previous) = ctx.attempt.take() {
        ctx.failed_targets.push(previous.target.target().backend.addr.clone());
        let wait = backoff(pool.config.retry_backoff, ctx.attempts);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    ctx.attempts += 1;
    let key = hash_key(&pool.config.balance, req, ctx);
    match pool.pick(&key, &ctx.failed_targets) {
        Ok(pick) => {
            // An upgraded connection (WebSocket) idles far longer than a request waits.
            let upgrade = req.headers.contains_key(http::header::UPGRADE);
            let timeout = if upgrade {
                Some(route.websocket_idle_timeout)
            } else if let Some(deadline) = ctx.grpc.then(|| crate::request::grpc::timeout(req)).flatten() {
                // The gRPC call's own deadline (its upstream gets `grpc-timeout` too); a
                // read that waits longer is DEADLINE_EXCEEDED.
                Some(route.timeout.map_or(deadline, |t| t.min(deadline)))
            } else {
                route.timeout
            };
            let peer = pool.peer(pick.target.target(), timeout);
            ctx.attempt = Some(Attempt {
                target: pick.target,
                permit: pick.permit,
                recorded: false,
            });
            Ok(peer)
        }
        Err(PickError::CircuitOpen) => {
            ctx.error = Some(GatewayError::CircuitOpen {
                upstream: pool.name.clone(),
            });
            Error::e_explain(ErrorType::HTTPStatus(503), "circuit open")
        }
        Err(PickError::NoHealthyTarget) => {
            ctx.error = Some(GatewayError::NoHealthyTarget {
                upstream: pool.name.clone(),
            });
            Error::e_explain(ErrorType::HTTPStatus(503), "no healthy target")
        }
    }
}

/// `base` before the first retry, doubled for each further one.
fn backoff(base: Duration, attempts_so_far: u32) -> Duration {
    let doublings = attempts_so_far.saturating_sub(1).min(16);
    base.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

/// The bytes consistent hashing maps to a target.
fn hash_key(balance: &Balance, req: &RequestHeader, ctx: &RequestCtx) -> Vec<u8> {
    let Balance::ConsistentHash(key) = balance else {
        return Vec::new();
    };
    let value = match key {
        HashKey::ClientIp => None,
        HashKey::Header(name) => req.headers.get(name).map(|v| v.as_bytes().to_vec()),
        HashKey::Cookie(name) => cookie(req, name).map(|v| v.as_bytes().to_vec()),
    };
    // Without the header or cookie, the client address keeps the request sticky anyway.
    value.unwrap_or_else(|| match ctx.client_ip {
        Some(std::net::IpAddr::V4(ip)) => ip.octets().to_vec(),
        Some(std::net::IpAddr::V6(ip)) => ip.octets().to_vec(),
        None => Vec::new(),
    })
}

fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// Records the current attempt's outcome once: passive health and the circuit breaker.
pub fn record(ctx: &mut RequestCtx, success: bool) {
    let Some(pool) = ctx.pool().cloned() else {
        return;
    };
    if let Some(attempt) = ctx.attempt.as_mut().filter(|a| !a.recorded) {
        attempt.recorded = true;
        pool.record(attempt.target.target(), attempt.permit.take(), success);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_and_is_capped() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff(base, 1), Duration::from_millis(100));
        assert_eq!(backoff(base, 2), Duration::from_millis(200));
        assert_eq!(backoff(base, 3), Duration::from_millis(400));
        assert_eq!(backoff(base, 30), MAX_BACKOFF);
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
    }
}
