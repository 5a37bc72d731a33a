//! The first decision about a request: answer it here (health, 4xx) or proxy it, and if
//! so on which route.

use super::error::GatewayError;
use super::RequestCtx;
use crate::routing::RouteMatch;
use http::Method;
use pingora::http::RequestHeader;

pub enum Admission {
    /// A route was found (`ctx.route` is set): go upstream.
    Proxy,
    /// The built-in health endpoint.
    Health,
    Reject(GatewayError),
}

pub fn admit(req: &RequestHeader, ctx: &mut RequestCtx) -> Admission {
    let path = req.uri.path();
    let server = &ctx.snapshot.server;
    if server.health_path.as_deref() == Some(path) && (req.method == Method::GET || req.method == Method::HEAD) {
        return Admission::Health;
    }
    if has_dot_segments(path) {
        // `/public/../admin` must not slip past a route that guards `/admin`.
        return Admission::Reject(GatewayError::BadRequest("path contains . or .. segments"));
    }
    match ctx.snapshot.router.find(req) {
        RouteMatch::Found(index) => {
            ctx.route = Some(index);
            Admission::Proxy
        }
        RouteMatch::MethodNotAllowed(allow) => Admission::Reject(GatewayError::MethodNotAllowed { allow }),
        RouteMatch::NotFound => Admission::Reject(GatewayError::NotFound),
    }
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
