//! The first decisions about a request: who asks, whether the gateway answers it itself
//! (health, preflight, 4xx), and if not, on which route it goes upstream.

use super::RequestCtx;
use crate::auth::client_cert::PeerCert;
use crate::filters::{client_ip, cors, request_id, Flow};
use crate::request::trace::TraceContext;
use crate::request::GatewayError;
use crate::routing::RouteMatch;
use http::Method;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use std::sync::Arc;

pub enum Decision {
    /// Go upstream on `ctx.route`.
    Proxy,
    /// The built-in health endpoint.
    Health,
    /// A response without body (CORS preflight).
    Respond(Box<ResponseHeader>),
    /// A response with its body, relayed (a forward-auth refusal).
    Answer(Box<ResponseHeader>, bytes::Bytes),
    /// An aggregate route: the gateway calls the parts and answers.
    Aggregate,
    /// 308 to this https URL (`tls.redirect_http`).
    Redirect(String),
    Reject(GatewayError),
}

/// Runs after [`identify`].
pub async fn decide(session: &mut Session, ctx: &mut RequestCtx) -> Decision {
    if matches!(ctx.client_cert.as_deref(), Some(PeerCert::Missing)) {
        return Decision::Reject(GatewayError::ClientCertRequired);
    }
    if let Some(early) = route(session.req_header(), ctx) {
        return early;
    }
    if session.req_header().method == Method::GET
        && !ctx.route().is_some_and(|r| r.allow_get_body)
        && !session.is_body_empty()
    {
        // A body on GET means nothing to most servers (RFC 9110 §9.3.1): some read it,
        // some ignore it and read it as the next request.
        return Decision::Reject(GatewayError::BadRequest("GET request with a body"));
    }
    // The chain lives in the snapshot the context holds; a second handle lets the steps
    // borrow the context mutably.
    let snapshot = Arc::clone(&ctx.snapshot);
    let Some(route) = ctx.route.map(|i| &snapshot.routes[i]) else {
        return Decision::Reject(GatewayError::Internal);
    };
    for step in &route.request_chain {
        match step.run(session.req_header_mut(), ctx).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Respond(resp)) => return Decision::Respond(resp),
            Ok(Flow::Answer(resp, body)) => return Decision::Answer(resp, body),
            Err(e) => return Decision::Reject(e),
        }
    }
    if route.aggregate.is_some() {
        return Decision::Aggregate;
    }
    Decision::Proxy
}

/// Request id, trace context, client address: what every later step and log line uses.
pub fn identify(session: &Session, ctx: &mut RequestCtx) {
    let req = session.req_header();
    ctx.request_id = request_id::for_request(req);
    ctx.trace = Some(TraceContext::for_request(req));
    ctx.peer_ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
    let tls = session.digest().and_then(|d| d.ssl_digest.as_deref());
    ctx.scheme = if tls.is_some() { "https" } else { "http" };
    ctx.client_cert = tls.and_then(|t| t.extension.get::<Arc<PeerCert>>()).cloned();
    ctx.client_ip = client_ip::resolve(ctx.peer_ip, req, &ctx.snapshot.edge.config.trusted_proxies);
}

/// The health endpoint, and `/healthz` (the seeds' and Kubernetes' spelling) beside the
/// default `/health`.
fn is_health_path(configured: Option<&str>, path: &str) -> bool {
    match configured {
        Some(health) => path == health || (health == "/health" && path == "/healthz"),
        None => false,
    }
}

/// Sets `ctx.route` (and the CORS context), or answers early.
pub fn route(req: &RequestHeader, ctx: &mut RequestCtx) -> Option<Decision> {
    let path = req.uri.path();
    let server = &ctx.snapshot.server;
    if is_health_path(server.health_path.as_deref(), path) && (req.method == Method::GET || req.method == Method::HEAD)
    {
        return Some(Decision::Health);
    }
    if server.redirect_http && ctx.scheme == "http" {
        let Some(host) = crate::routing::request_host(req) else {
            return Some(Decision::Reject(GatewayError::BadRequest("no Host to redirect to")));
        };
        let port = server.tls_listen.first().map_or(443, |a| a.port());
        let authority = if port == 443 {
            host.to_string()
        } else {
            format!("{host}:{port}")
        };
        let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        return Some(Decision::Redirect(format!("https://{authority}{target}")));
    }
    if has_dot_segments(path) {
        // `/public/../admin` must not slip past a route that guards `/admin`.
        return Some(Decision::Reject(GatewayError::BadRequest(
            "path contains . or .. segments",
        )));
    }
    let preflight = cors::preflight_method(req);
    // A preflight is routed by the method it asks about, where that route has a policy;
    // asking for a method no route takes is a refused preflight.
    let by_preflight = match preflight.as_ref().map(|m| ctx.snapshot.router.find_for_method(req, m)) {
        Some(RouteMatch::Found(i)) if ctx.snapshot.routes[i].cors.is_some() => Some(i),
        Some(RouteMatch::MethodNotAllowed(_)) => return Some(Decision::Reject(GatewayError::CorsRefused)),
        _ => None,
    };
    let found = match by_preflight {
        Some(i) => {
            ctx.preflight = preflight;
            i
        }
        None => match ctx.snapshot.router.find(req) {
            RouteMatch::Found(i) => i,
            RouteMatch::MethodNotAllowed(allow) => {
                return Some(Decision::Reject(GatewayError::MethodNotAllowed { allow }))
            }
            RouteMatch::NotFound => return Some(Decision::Reject(GatewayError::NotFound)),
        },
    };
    ctx.route = Some(found);
    ctx.origin = ctx.snapshot.routes[found]
        .cors
        .as_ref()
        .and_then(|p| p.allowed_origin(req));
    None
}

/// `.` and `..` segments, also percent-encoded (`%2e%2e`), which many upstreams decode.
fn has_dot_segments(path: &str) -> bool {
    const DOTS: [&str; 6] = [".", "..", "%2e", "%2e%2e", ".%2e", "%2e."];
    (path.contains("/.") || path.contains("%2"))
        && path.split('/').any(|s| DOTS.iter().any(|d| s.eq_ignore_ascii_case(d)))
}

#[cfg(test)]
mod tests {
    use super::has_dot_segments;

    #[test]
    fn dot_segments_are_found() {
        assert!(has_dot_segments("/a/../b"));
        assert!(has_dot_segments("/a/./b"));
        assert!(has_dot_segments("/a/.."));
        assert!(has_dot_segments("/a/%2E%2E/b"));
        assert!(!has_dot_segments("/a/.well-known/b"));
        assert!(!has_dot_segments("/a/b.c"));
    }
}
