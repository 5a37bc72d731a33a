//! The per-route filter chains: small steps, one file each, declared in order here.
//!
//! The request path, outermost first (design.md §1):
//! ```text
//! request_filter          request id → client ip → route match (admit)
//!                         → IP allow/deny → client certificate → CORS preflight → body size limit
//!                         → cookie → Authorization → authenticate (JWT / API key)
//!                         → authorize (scopes, roles) → rate limits (global, route)
//! request_body_filter     body size limit on streamed bodies
//! upstream_request_filter strip_prefix or rewrite → request_query → X-Forwarded-*
//!                         → X-Request-ID → traceparent → identity headers
//!                         → request_headers → upstream_host
//! upstream_response_filter json body edits begin (before the cache stores the body)
//! response_filter         hop-by-hop and configured headers dropped → security headers
//!                         → CORS headers → X-Request-ID → response_headers
//! ```
//! IP lists come first so that refused clients cost nothing; preflights are answered
//! before authentication because browsers send them without credentials.
//!
//! Steps are enums rather than trait objects: the set is closed, dispatch is a `match`,
//! and nothing is boxed per request.

pub mod authenticate;
pub mod authorize;
pub mod body_limit;
pub mod client_cert;
pub mod client_ip;
pub mod compression;
pub mod cookie_token;
pub mod cors;
pub mod edge_module;
pub mod forward_auth;
pub mod forwarded;
pub mod header_edits;
pub mod identity_headers;
pub mod ip_filter;
pub mod json_body;
pub mod query_edits;
pub mod rate_limit;
pub mod request_id;
pub mod response_headers;
pub mod rewrite;
pub mod strip_prefix;
pub mod tracing;
pub mod upstream_host;

use crate::config::model::{AuthKind, RouteConfig};
use crate::limits::RateLimit;
use crate::request::{GatewayError, RequestCtx};
use crate::snapshot::EdgeSecurity;
use pingora::http::{RequestHeader, ResponseHeader};
use std::sync::Arc;

/// Marks a value no other request or response carries (an id, a timing, a span) as one to
/// leave out of HTTP/2's header compression table ("never indexed", RFC 7541 §6.2.3).
/// Indexed, each one took a table entry that is never used again and pushed out one that
/// would have been, and the encoder compared every new value against all the old ones
/// under that name: ≈ 3,000 instructions a response over h2 for X-Request-ID and
/// Server-Timing. HTTP/1 ignores the mark.
pub fn never_indexed(mut value: http::HeaderValue) -> http::HeaderValue {
    value.set_sensitive(true);
    value
}

/// What a request step decided.
pub enum Flow {
    Continue,
    /// The gateway answers (a CORS preflight): headers only.
    Respond(Box<ResponseHeader>),
    /// This answer, with its body, goes to the client (a forward-auth refusal).
    Answer(Box<ResponseHeader>, bytes::Bytes),
}

/// One step of the request chain.
pub enum RequestStep {
    IpFilter(ip_filter::IpFilter),
    ClientCert(client_cert::RequireClientCert),
    CorsPreflight(Arc<cors::CorsPolicy>),
    BodyLimit(body_limit::BodyLimit),
    CookieToken(cookie_token::CookieToken),
    Authenticate(authenticate::Authenticate),
    ForwardAuth(Box<forward_auth::ForwardAuth>),
    Authorize(authorize::Authorize),
    RateLimit(rate_limit::RateLimitStep),
}

impl RequestStep {
    /// The step's name and what it would do with `req` (explain: nothing is verified,
    /// counted or sent).
    pub fn describe(&self, req: &RequestHeader, ctx: &RequestCtx) -> (&'static str, String) {
        match self {
            RequestStep::IpFilter(f) => ("ip_filter", f.describe(ctx.client_ip)),
            RequestStep::ClientCert(step) => ("client_cert", step.describe(ctx)),
            RequestStep::CorsPreflight(policy) => {
                let what = if ctx.preflight.is_some() {
                    "this preflight is answered by the gateway: "
                } else {
                    ""
                };
                ("cors", format!("{what}{}", policy.describe(req)))
            }
            RequestStep::BodyLimit(limit) => ("max_body", format!("bodies over {} bytes get 413", limit.max())),
            RequestStep::CookieToken(step) => (
                "cookie_token",
                format!(
                    "without Authorization, the cookie {} becomes a bearer token",
                    step.name()
                ),
            ),
            RequestStep::Authenticate(step) => ("authenticate", step.describe(req)),
            RequestStep::ForwardAuth(step) => ("forward_auth", step.describe()),
            RequestStep::Authorize(step) => ("authorize", format!("{} (else 403)", step.describe())),
            RequestStep::RateLimit(step) => ("rate_limit", step.describe(req, ctx).join("; ")),
        }
    }

    pub async fn run(&self, req: &mut RequestHeader, ctx: &mut RequestCtx) -> Result<Flow, GatewayError> {
        match self {
            RequestStep::IpFilter(f) => f.check(ctx.client_ip)?,
            RequestStep::ClientCert(step) => step.check(ctx)?,
            RequestStep::CorsPreflight(policy) => {
                if let Some(method) = &ctx.preflight {
                    return policy.preflight(req, method).map(|r| Flow::Respond(Box::new(r)));
                }
            }
            RequestStep::BodyLimit(limit) => limit.check_declared(req, ctx)?,
            RequestStep::CookieToken(step) => step.apply(req),
            RequestStep::Authenticate(step) => step.run(req, ctx).await?,
            RequestStep::ForwardAuth(step) => return step.run(req, ctx).await,
            RequestStep::Authorize(step) => step.check(ctx)?,
            RequestStep::RateLimit(step) => step.run(req, ctx).await?,
        }
        Ok(Flow::Continue)
    }
}

/// The request chain of `route`, in the order it runs.
pub fn request_chain(
    route: &RouteConfig,
    edge: &EdgeSecurity,
    cors: Option<&Arc<cors::CorsPolicy>>,
    limits: Vec<Arc<RateLimit>>,
    forward: Option<forward_auth::ForwardAuth>,
) -> Vec<RequestStep> {
    let global = &edge.config;
    let route = &route.security;
    let mut chain = Vec::new();
    if let Some(f) = ip_filter::IpFilter::new(&global.ip, &route.ip) {
        chain.push(RequestStep::IpFilter(f));
    }
    if route.client_cert_required {
        chain.push(RequestStep::ClientCert(client_cert::RequireClientCert));
    }
    if let Some(policy) = cors {
        chain.push(RequestStep::CorsPreflight(policy.clone()));
    }
    if let Some(max) = route.max_body.or(global.max_body) {
        chain.push(RequestStep::BodyLimit(body_limit::BodyLimit::new(max)));
    }
    match route.auth {
        AuthKind::None => {}
        AuthKind::Jwt => {
            if let Some(cookie) = global.jwt.as_ref().and_then(|j| j.cookie.as_deref()) {
                chain.push(RequestStep::CookieToken(cookie_token::CookieToken::new(cookie)));
            }
            if let Some(v) = &edge.tokens {
                chain.push(RequestStep::Authenticate(authenticate::Authenticate::Bearer(v.clone())));
            }
        }
        AuthKind::ApiKey => {
            if let Some(store) = &edge.api_keys {
                chain.push(RequestStep::Authenticate(authenticate::Authenticate::ApiKey(
                    store.clone(),
                )));
            }
        }
        AuthKind::Forward => {
            if let Some(step) = forward {
                chain.push(RequestStep::ForwardAuth(Box::new(step)));
            }
        }
    }
    if let Some(step) = authorize::Authorize::new(&route.scopes, &route.roles) {
        chain.push(RequestStep::Authorize(step));
    }
    // After authentication: limits may be keyed by the consumer or the token's subject.
    if let Some(step) = rate_limit::RateLimitStep::new(limits) {
        chain.push(RequestStep::RateLimit(step));
    }
    chain
}

/// One change to the request sent upstream.
pub enum UpstreamStep {
    StripPrefix(strip_prefix::StripPrefix),
    // The larger steps are boxed: the route's chain holds every step at the size of the
    // largest, and most routes have only the small ones.
    Rewrite(Box<rewrite::Rewrite>),
    Query(Box<query_edits::QueryEdits>),
    Forwarded(forwarded::Forwarded),
    RequestId(request_id::PropagateRequestId),
    Identity(identity_headers::IdentityHeaders),
    AuthHeaders(forward_auth::AuthHeaders),
    Trace(tracing::PropagateTrace),
    Headers(Box<header_edits::HeaderEdits>),
    Host(Box<upstream_host::UpstreamHost>),
    /// The gateway compresses: the upstream is asked for identity.
    IdentityEncoding,
}

impl UpstreamStep {
    /// At most how many header fields this step adds (a replaced one counts), so that the
    /// request's maps grow once for the whole chain rather than once per field.
    pub fn headers_added(&self, ctx: &RequestCtx) -> usize {
        match self {
            UpstreamStep::Forwarded(_) => 3,
            UpstreamStep::RequestId(_) | UpstreamStep::Trace(_) => 1,
            // Only what this request carries: reserving room it does not need grows the
            // maps past the size Pingora parsed them with (a second allocation and rehash).
            UpstreamStep::Identity(_) => {
                ctx.identity.as_ref().map_or(0, |_| identity_headers::ADDED)
                    + ctx
                        .verified_cert()
                        .map_or(0, |_| crate::auth::client_cert::HEADERS.len())
            }
            UpstreamStep::Headers(edits) => edits.fields_added(),
            UpstreamStep::AuthHeaders(_)
            | UpstreamStep::StripPrefix(_)
            | UpstreamStep::Rewrite(_)
            | UpstreamStep::Query(_)
            | UpstreamStep::Host(_)
            | UpstreamStep::IdentityEncoding => 0,
        }
    }

    /// Changes `req`, the request going upstream; `original` is the client's request, which
    /// templates read (a rewritten path still names its parameters by the route's pattern).
    pub fn apply(&self, req: &mut RequestHeader, original: &RequestHeader, ctx: &RequestCtx) -> pingora::Result<()> {
        match self {
            UpstreamStep::StripPrefix(step) => step.apply(req),
            UpstreamStep::Rewrite(step) => step.apply(req),
            UpstreamStep::Query(step) => step.apply(req, original, ctx),
            UpstreamStep::Forwarded(step) => step.apply(req, ctx),
            UpstreamStep::RequestId(step) => step.apply(req, ctx),
            UpstreamStep::Identity(step) => step.apply(req, ctx),
            UpstreamStep::AuthHeaders(step) => step.apply(req, ctx),
            UpstreamStep::Trace(step) => step.apply(req, ctx),
            UpstreamStep::Headers(step) => step.apply_request(req, original, ctx),
            UpstreamStep::Host(step) => step.apply(req, ctx),
            UpstreamStep::IdentityEncoding => {
                req.remove_header(&http::header::ACCEPT_ENCODING);
                Ok(())
            }
        }
    }
}

/// The upstream chain of `route`, in the order it runs. The route's own header edits come
/// after the gateway's headers, so that `override: true` can replace them.
pub fn upstream_chain(route: &RouteConfig) -> Vec<UpstreamStep> {
    let transform = &route.transform;
    let mut chain = Vec::with_capacity(6);
    if let Some(prefix) = &route.strip_prefix {
        chain.push(UpstreamStep::StripPrefix(strip_prefix::StripPrefix::new(prefix)));
    }
    if let Some(rule) = &transform.rewrite {
        chain.push(UpstreamStep::Rewrite(Box::new(rewrite::Rewrite::new(rule))));
    }
    if !transform.request_query.is_empty() {
        chain.push(UpstreamStep::Query(Box::new(query_edits::QueryEdits::new(
            &transform.request_query,
        ))));
    }
    chain.push(UpstreamStep::Forwarded(forwarded::Forwarded));
    chain.push(UpstreamStep::RequestId(request_id::PropagateRequestId));
    chain.push(UpstreamStep::Trace(tracing::PropagateTrace));
    // Always: client-sent identity headers are stripped even on open routes.
    chain.push(UpstreamStep::Identity(identity_headers::IdentityHeaders));
    if let Some(forward) = &route.forward_auth {
        chain.push(UpstreamStep::AuthHeaders(forward_auth::AuthHeaders::new(
            &forward.headers_from_auth,
        )));
    }
    if !transform.request_headers.is_empty() {
        chain.push(UpstreamStep::Headers(Box::new(header_edits::HeaderEdits::new(
            &transform.request_headers,
        ))));
    }
    if let Some(step) = upstream_host::UpstreamHost::new(&transform.upstream_host) {
        chain.push(UpstreamStep::Host(Box::new(step)));
    }
    if route.compression.is_some() {
        chain.push(UpstreamStep::IdentityEncoding);
    }
    chain
}
