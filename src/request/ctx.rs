//! `RequestCtx`: the per-request state every phase reads and writes. Plain data, no locks.

use super::GatewayError;
use crate::auth::Identity;
use crate::limits::Decision;
use crate::request::trace::TraceContext;
use crate::snapshot::{Route, Snapshot};
use crate::text::AddrText;
use crate::upstream::{InFlight, Permit, UpstreamPool};
use http::{HeaderValue, Method};
use pingora::protocols::l4::socket::SocketAddr;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

pub struct RequestCtx {
    /// Pinned once in `new_ctx`: a reload mid-request cannot mix config generations.
    pub snapshot: Arc<Snapshot>,
    pub started: Instant,
    pub request_id: HeaderValue,
    /// The socket peer.
    pub peer_ip: Option<IpAddr>,
    /// The client: the peer, or the X-Forwarded-For entry behind trusted proxies. Set
    /// once, before anything reads [`RequestCtx::client_ip_text`].
    pub client_ip: Option<IpAddr>,
    /// `client_ip` as text, written at the first step that prints it (X-Forwarded-For, the
    /// rate-limit key, the access log) and reused by the others.
    client_ip_text: OnceLock<AddrText>,
    /// `http` or `https`, for X-Forwarded-Proto.
    pub scheme: &'static str,
    /// Index into `snapshot.routes` once routing found one.
    pub route: Option<usize>,
    /// Which of the route's pools serves this request (a split picks one per request).
    pub pool: Option<usize>,
    /// The current (last) upstream attempt.
    pub attempt: Option<Attempt>,
    /// Targets already tried and failed, avoided by retries.
    pub failed_targets: Vec<SocketAddr>,
    /// Upstream attempts so far (first try included).
    pub attempts: u32,
    /// Set when the gateway itself decided the answer (e.g. no healthy target), so that
    /// `fail_to_proxy` reports that rather than a generic classification.
    pub error: Option<GatewayError>,
    /// Set by authentication.
    pub identity: Option<Arc<Identity>>,
    /// The connection's client certificate (mTLS), when `tls.client_auth` asked for one.
    pub client_cert: Option<Arc<crate::auth::client_cert::PeerCert>>,
    /// `Some(requested method)` for a CORS preflight on a route with a CORS policy.
    pub preflight: Option<Method>,
    /// The request's Origin, when the route's CORS policy allows it.
    pub origin: Option<HeaderValue>,
    /// The route's `max_body`, enforced while the body streams.
    pub body_limit: Option<u64>,
    pub body_received: u64,
    /// The tightest rate-limit decision, for the RateLimit-* headers.
    pub rate_limit: Option<Decision>,
    /// `allow` or `deny` when a global limit was decided by `on_redis_error`.
    pub rate_limit_policy: Option<&'static str>,
    /// When the request left for the upstream (first attempt).
    pub upstream_started: Option<Instant>,
    /// Upstream time to the response header, for Server-Timing.
    pub upstream_ttfb: Option<std::time::Duration>,
    /// The W3C trace this request belongs to.
    pub trace: Option<TraceContext>,
    /// The exported server span, when OTLP export is on. Boxed: the SDK's span is 384
    /// bytes, and the context is moved along with Pingora's request future.
    pub span: Option<Box<opentelemetry_sdk::trace::Span>>,
    /// How the response cache took part (caching routes only), once known.
    pub cache: Option<super::CacheOutcome>,
    /// The upstream's answer was admitted into the cache.
    pub cache_stored: bool,
    /// The upstream's 304 to a revalidation, until the cache merges it (`cache::admit`).
    pub not_modified: Option<Box<pingora::http::ResponseHeader>>,
    /// The hit was served from the disk tier.
    pub cache_from_disk: bool,
    /// A JSON response body being collected for the route's `json` edits.
    pub json_body: Option<Box<crate::filters::json_body::JsonBody>>,
    /// What the `json` edits did with the response body.
    pub json_outcome: Option<crate::filters::json_body::JsonOutcome>,
    /// A gRPC call (`Content-Type: application/grpc…`, gRPC-Web included).
    pub grpc: bool,
    /// A gRPC-Web call, bridged to gRPC.
    pub grpc_web: bool,
    /// The call's `grpc-status` (gRPC requests), from the upstream's trailers or headers, or
    /// the gateway's own answer.
    pub grpc_status: Option<u8>,
    /// Headers the forward-auth service's 2xx answer sets on the upstream request.
    pub auth_headers: Vec<(http::HeaderName, HeaderValue)>,
    /// An aggregate answer's parts, in config order.
    pub parts: Vec<super::PartReport>,
}

/// One upstream attempt: the target (in flight while this lives) and the circuit's leave,
/// until its outcome is recorded.
pub struct Attempt {
    pub target: InFlight,
    pub permit: Option<Permit>,
    pub recorded: bool,
}

impl RequestCtx {
    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        RequestCtx {
            snapshot,
            started: Instant::now(),
            request_id: HeaderValue::from_static(""),
            peer_ip: None,
            client_ip: None,
            client_ip_text: OnceLock::new(),
            scheme: "http",
            route: None,
            pool: None,
            attempt: None,
            failed_targets: Vec::new(),
            attempts: 0,
            error: None,
            identity: None,
            client_cert: None,
            preflight: None,
            origin: None,
            body_limit: None,
            body_received: 0,
            rate_limit: None,
            rate_limit_policy: None,
            upstream_started: None,
            upstream_ttfb: None,
            trace: None,
            span: None,
            cache: None,
            cache_stored: false,
            not_modified: None,
            cache_from_disk: false,
            json_body: None,
            json_outcome: None,
            parts: Vec::new(),
            auth_headers: Vec::new(),
            grpc_status: None,
            grpc: false,
            grpc_web: false,
        }
    }

    /// [`RequestCtx::client_ip`] as text, the same every time it is asked for.
    pub fn client_ip_text(&self) -> Option<&AddrText> {
        let ip = self.client_ip?;
        Some(self.client_ip_text.get_or_init(|| AddrText::ip(ip)))
    }

    /// What `{…}` templates read besides the request head.
    pub fn vars(&self) -> crate::template::Vars<'_> {
        let identity = self.identity.as_deref();
        crate::template::Vars {
            claims: identity.map(|i| &i.claims),
            consumer: identity.and_then(|i| i.consumer.as_deref()),
            client_ip: self.client_ip,
            request_id: Some(&self.request_id),
            client_cert: self.verified_cert().map(|c| crate::template::CertVars {
                subject: &c.subject,
                san: &c.san,
                fingerprint: &c.fingerprint,
            }),
        }
    }

    /// The connection's verified client certificate.
    pub fn verified_cert(&self) -> Option<&crate::auth::client_cert::ClientCert> {
        self.client_cert.as_deref().and_then(|c| c.verified())
    }

    pub fn route(&self) -> Option<&Route> {
        self.route.map(|i| &self.snapshot.routes[i])
    }

    /// The pool serving this request, once the first attempt chose it.
    pub fn pool(&self) -> Option<&Arc<UpstreamPool>> {
        Some(self.route()?.upstreams.get(self.pool?))
    }
}
