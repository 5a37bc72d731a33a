//! `Cache-Status` (RFC 9211) on every answer of a caching route, beside `X-Cache`: what
//! this cache did, in the standard's vocabulary.
//!
//! - served from the store: `gatehouse; hit; ttl=<seconds of freshness left>` (negative
//!   when a stale copy was served);
//! - forwarded: `gatehouse; fwd=<why>; fwd-status=<the upstream's status>`, `why` being
//!   `uri-miss` (nothing stored), `stale` (a stored copy was revalidated), `method` (an
//!   unsafe method) or `request` (the request's credentials may not see the stored copy);
//!   `; stored` when the answer was kept;
//! - `; collapsed` when the request waited on another one filling the same entry;
//! - `; detail=disk` when a stored copy came from the disk tier.

use super::CacheOutcome;
use crate::request::RequestCtx;
use pingora::proxy::Session;
use std::fmt::Write;
use std::time::SystemTime;

/// The cache's name in the header.
const NAME: &str = "gatehouse";

pub fn value(session: &Session, outcome: CacheOutcome, status: u16, ctx: &RequestCtx) -> String {
    let stored = ctx.cache_stored;
    let mut out = String::with_capacity(48);
    out.push_str(NAME);
    let ttl = || {
        let fresh_until = session.cache.cache_meta().fresh_until();
        match fresh_until.duration_since(SystemTime::now()) {
            Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            Err(past) => -i64::try_from(past.duration().as_secs()).unwrap_or(i64::MAX),
        }
    };
    match outcome {
        CacheOutcome::Hit | CacheOutcome::Stale => {
            let _ = write!(out, "; hit; ttl={}", ttl());
        }
        CacheOutcome::Miss => {
            let _ = write!(out, "; fwd=uri-miss; fwd-status={status}");
        }
        CacheOutcome::Revalidated => {
            let _ = write!(out, "; fwd=stale; fwd-status=304; ttl={}", ttl());
        }
        CacheOutcome::Bypass => {
            let safe = matches!(session.req_header().method, http::Method::GET | http::Method::HEAD);
            let why = if safe { "request" } else { "method" };
            let _ = write!(out, "; fwd={why}; fwd-status={status}");
        }
    }
    if stored && outcome == CacheOutcome::Miss {
        out.push_str("; stored");
    }
    if session.cache.lock_duration().is_some() && outcome != CacheOutcome::Miss {
        out.push_str("; collapsed");
    }
    if ctx.cache_from_disk && outcome != CacheOutcome::Miss {
        out.push_str("; detail=disk");
    }
    out
}
