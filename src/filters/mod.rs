//! The per-route filter chains: small steps, one file each, declared in order here.
//!
//! The request path, outermost first (design.md §1):
//! ```text
//! request_filter          request id → route match → (auth, limits: later issues)
//! upstream_request_filter strip_prefix → X-Forwarded-* → X-Request-ID
//! response_filter         hop-by-hop headers dropped → X-Request-ID
//! ```
//! Steps are an enum rather than trait objects: the set is closed, dispatch is a `match`,
//! and nothing is boxed per request.

pub mod forwarded;
pub mod request_id;
pub mod response_headers;
pub mod strip_prefix;

use crate::config::model::RouteConfig;
use crate::proxy::RequestCtx;
use pingora::http::RequestHeader;

/// One change to the request sent upstream.
pub enum UpstreamStep {
    StripPrefix(strip_prefix::StripPrefix),
    Forwarded(forwarded::Forwarded),
    RequestId(request_id::PropagateRequestId),
}

impl UpstreamStep {
    pub fn apply(&self, req: &mut RequestHeader, ctx: &RequestCtx) -> pingora::Result<()> {
        match self {
            UpstreamStep::StripPrefix(step) => step.apply(req),
            UpstreamStep::Forwarded(step) => step.apply(req, ctx),
            UpstreamStep::RequestId(step) => step.apply(req, ctx),
        }
    }
}

/// The upstream chain of `route`, in the order it runs.
pub fn upstream_chain(route: &RouteConfig) -> Vec<UpstreamStep> {
    let mut chain = Vec::with_capacity(3);
    if let Some(prefix) = &route.strip_prefix {
        chain.push(UpstreamStep::StripPrefix(strip_prefix::StripPrefix::new(prefix)));
    }
    chain.push(UpstreamStep::Forwarded(forwarded::Forwarded));
    chain.push(UpstreamStep::RequestId(request_id::PropagateRequestId));
    chain
}
