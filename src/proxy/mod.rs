//! `Gateway`: the `ProxyHttp` implementation. It only dispatches: each phase hands the
//! request to the module that owns that step (routing, filters, upstream, observe).

pub mod admit;
mod respond;
mod retry;
mod upstream;

pub use crate::request::{GatewayError, RequestCtx};
pub use respond::error_wire;

use crate::acme::challenges::HTTP_PATH as ACME_CHALLENGE_PATH;
use crate::acme::storage::Storage;
use crate::acme::AcmeState;
use crate::aggregate::Caller;
use crate::cache::{self, ResponseCache};
use crate::drain::Drain;
use crate::filters::edge_module::EdgeModule;
use crate::filters::{body_limit, json_body, response_headers};
use crate::observe::metrics::{self, Metrics};
use crate::observe::otel::{self, SpanExport};
use crate::observe::{access_log, health};
use crate::snapshot::SharedSnapshot;
use admit::Decision;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, ForcedFreshness, HitHandler, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, Result};
use std::sync::Arc;
use std::time::Instant;

pub struct Gateway {
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
    spans: Option<Arc<SpanExport>>,
    drain: Arc<Drain>,
    cache: Arc<ResponseCache>,
    /// Aggregate routes' connections and answer caches.
    parts: Arc<Caller>,
    /// ACME HTTP-01 answers, served before any route.
    acme: Arc<AcmeState>,
}

impl Gateway {
    pub fn new(
        snapshot: SharedSnapshot,
        metrics: Arc<Metrics>,
        spans: Option<Arc<SpanExport>>,
        drain: Arc<Drain>,
        cache: Arc<ResponseCache>,
        acme: Arc<AcmeState>,
    ) -> Self {
        Gateway {
            snapshot,
            metrics,
            spans,
            drain,
            cache,
            parts: Arc::new(Caller::default()),
            acme,
        }
    }
}

impl Gateway {
    /// With `tls.acme`, a request for an HTTP-01 challenge this node or another sharing
    /// its storage waits on is answered before any route (and before the redirect to
    /// HTTPS: the CA asks over HTTP).
    async fn acme_answer(&self, session: &Session, ctx: &RequestCtx) -> Option<String> {
        let settings = ctx.snapshot.acme.as_ref()?;
        let token = session.req_header().uri.path().strip_prefix(ACME_CHALLENGE_PATH)?;
        match self.acme.challenges.http_answer(token) {
            Some(answer) => Some(answer),
            None => Storage::new(&settings.storage).http_answer(token).await,
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Box<RequestCtx>;

    fn new_ctx(&self) -> Box<RequestCtx> {
        Box::new(RequestCtx::new(self.snapshot.load_full()))
    }

    /// One module of gatehouse's own (gRPC-Web bridge, compression with brotli streams
    /// properly ended), off unless a request turns it on.
    fn init_downstream_modules(&self, modules: &mut pingora::modules::http::HttpModules) {
        modules.add_module(EdgeModule::builder());
    }

    /// Before the modules see the request: a gRPC-Web request is bridged to gRPC (the route,
    /// not known yet, must allow it: checked in `request_filter`).
    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<()> {
        let content_type = session.req_header().headers.get(http::header::CONTENT_TYPE);
        ctx.grpc = content_type.is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        ctx.grpc_web = ctx.grpc && content_type.is_some_and(|v| v.as_bytes().starts_with(b"application/grpc-web"));
        if ctx.grpc_web {
            if let Some(edge) = session.downstream_modules_ctx.get_mut::<EdgeModule>() {
                edge.bridge_grpc_web();
            }
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        if self.drain.is_draining() {
            // `Connection: close` on this response: the client reconnects elsewhere.
            session.set_keepalive(None);
        }
        admit::identify(session, ctx);
        if let Some(answer) = self.acme_answer(session, ctx).await {
            return respond::acme_challenge(session, ctx, answer).await.map(|_| true);
        }
        if let (Some(spans), Some(trace)) = (&self.spans, &ctx.trace) {
            ctx.span = Some(Box::new(spans.start(trace, ctx.started)));
        }
        let mut decision = admit::decide(session, ctx).await;
        if ctx.grpc_web && matches!(decision, Decision::Proxy) && !ctx.route().is_some_and(|r| r.grpc_web) {
            decision = Decision::Reject(GatewayError::BadRequest(
                "gRPC-Web is not enabled on this route (grpc_web: true)",
            ));
        }
        if let Some(compression) = ctx.route().and_then(|r| r.compression.as_ref()) {
            let (modules, req) = (
                &mut session.downstream_modules_ctx,
                session.downstream_session.req_header(),
            );
            compression.on_request(modules, req);
        }
        match decision {
            Decision::Proxy => Ok(false),
            Decision::Health => respond::json(session, ctx, health::report(&ctx.snapshot))
                .await
                .map(|_| true),
            Decision::Respond(resp) => respond::headers_only(session, ctx, *resp).await.map(|_| true),
            Decision::Answer(resp, body) => respond::relay(session, ctx, *resp, body).await.map(|_| true),
            Decision::Aggregate => respond::aggregate(session, ctx, &self.parts).await.map(|_| true),
            Decision::Redirect(location) => respond::redirect(session, ctx, &location).await.map(|_| true),
            Decision::Reject(err) => {
                let sent = respond::error(session, ctx, &err).await;
                ctx.error = Some(err);
                sent.map(|_| true)
            }
        }
    }

    /// Runs after `request_filter`: authentication and rate limits apply to hits too.
    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<()> {
        self.cache.enable(session, ctx);
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut Self::CTX) -> Result<CacheKey> {
        cache::key(session, ctx)
    }

    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        meta: &CacheMeta,
        hit_handler: &mut HitHandler,
        _is_fresh: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<ForcedFreshness>> {
        ctx.cache_from_disk = hit_handler.as_any().is::<cache::disk::DiskReader>();
        Ok(cache::hit_filter(session, meta, ctx))
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<RespCacheable> {
        let decision = cache::admit(session, resp, ctx);
        ctx.cache_stored = matches!(decision, RespCacheable::Cacheable(_));
        Ok(decision)
    }

    fn range_header_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        _ctx: &mut Self::CTX,
    ) -> pingora::proxy::RangeType {
        cache::range_filter(session, resp)
    }

    fn cache_vary_filter(&self, meta: &CacheMeta, _ctx: &mut Self::CTX, req: &RequestHeader) -> Option<HashBinary> {
        cache::policy::variance(meta, req)
    }

    /// Stale copies are served while revalidating (`stale-while-revalidate`, error `None`)
    /// and when the upstream fails (`stale-if-error`); Pingora checks the windows.
    fn should_serve_stale(&self, _session: &mut Session, _ctx: &mut Self::CTX, error: Option<&Error>) -> bool {
        error.is_none_or(|e| *e.esource() == ErrorSource::Upstream)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        body_limit::count(body, ctx)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        upstream::next_peer(session.req_header(), ctx).await
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        ctx.upstream_started.get_or_insert_with(Instant::now);
        cache::pass_range(session, req, ctx)?;
        if let Some(route) = ctx.route() {
            let original = session.req_header();
            req.reserve_headers(route.upstream_chain.iter().map(|step| step.headers_added(ctx)).sum());
            for step in &route.upstream_chain {
                step.apply(req, original, ctx)?;
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if is_interim(resp) {
            // The attempt's outcome is decided by the final response (or its failure).
            return Ok(());
        }
        ctx.upstream_ttfb = ctx.upstream_started.map(|t| t.elapsed());
        cache::keep_not_modified(session, resp, ctx);
        if ctx.grpc {
            if let Some(status) = grpc_status(&resp.headers) {
                // A trailers-only answer.
                ctx.grpc_status = Some(status);
            }
        }
        let failed = ctx.pool().is_some_and(|p| p.is_failure_status(resp.status.as_u16()));
        upstream::record(ctx, !failed);
        if let Some(edits) = ctx.route().and_then(|r| r.json.as_ref()) {
            let has_body =
                session.req_header().method != http::Method::HEAD && !matches!(resp.status.as_u16(), 204 | 304);
            match json_body::start(resp, edits, has_body) {
                Ok(body) => ctx.json_body = Some(Box::new(body)),
                Err(outcome) => ctx.json_outcome = Some(outcome),
            }
        }
        Ok(())
    }

    fn upstream_response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if ctx.grpc {
            if let Some(status) = grpc_status(trailers) {
                ctx.grpc_status = Some(status);
            }
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(collecting) = ctx.json_body.as_mut() {
            let snapshot = Arc::clone(&ctx.snapshot);
            if let Some(edits) = ctx.route.and_then(|i| snapshot.routes[i].json.as_ref()) {
                if let Some(outcome) = collecting.feed(body, end_of_stream, edits) {
                    ctx.json_outcome = Some(outcome);
                }
            }
        }
        Ok(None)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if is_interim(resp) {
            // `100 Continue` and friends pass as they are; the final response is decorated.
            return Ok(());
        }
        ctx.cache = cache::outcome(session, ctx);
        if let Some(outcome) = ctx.cache {
            resp.insert_header("x-cache", outcome.header_value())?;
            let status = cache::status::value(session, outcome, resp.status.as_u16(), ctx);
            resp.insert_header("cache-status", status)?;
            self.cache.invalidate_after(session, resp, ctx);
            cache::strip_cache_only_fields(resp, ctx);
        }
        response_headers::upstream_response(resp, ctx)?;
        if let Some(compression) = ctx.route().and_then(|r| r.compression.as_ref()) {
            compression.on_response(&mut session.downstream_modules_ctx, resp);
        }
        if let Some(edits) = ctx.route().and_then(|r| r.response_edits.as_ref()) {
            edits.apply_response(resp, session.req_header(), ctx)?;
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        e: Box<Error>,
    ) -> Box<Error> {
        retry::on_connect_failure(ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        _client_reused: bool,
    ) -> Box<Error> {
        retry::on_proxy_error(peer, session, ctx, e)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Self::CTX) -> FailToProxy {
        // Owned: answering writes into the context (a gRPC status) while reading the error.
        let err = ctx.error.clone().unwrap_or_else(|| GatewayError::from_pingora(e));
        let code = err.status();
        // Once a final response header went out, all that can be done is to cut the
        // connection. An interim one (the upstream's `100 Continue`) does not count: the
        // client still waits for the answer.
        let answered = session.response_written().is_some_and(|r| !is_interim(r));
        let mut keep = false;
        if code != 0 && !answered {
            keep = keeps_client_connection(code, e, session);
            // The answer says whether the connection stays: a client that reuses one the
            // gateway closes gets a reset instead of its next response.
            if !keep {
                session.set_keepalive(None);
            }
            if let Err(write_error) = respond::error(session, ctx, &err).await {
                log::debug!("could not send the {code} error response: {write_error}");
                keep = false;
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: keep,
        }
    }

    /// How Pingora's error records name the request: without the query's credentials.
    fn request_summary(&self, session: &Session, ctx: &Self::CTX) -> String {
        access_log::request_summary(session.req_header(), ctx)
    }

    /// What clients do wrong (hanging up, resetting an h2 stream, sending a malformed
    /// frame) is routine at the edge: counted and logged at debug in `logging`, not here.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, e: &Error) -> bool {
        crate::request::downstream_kind(e).is_some()
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        if let Some((e, kind)) = e.and_then(|e| Some((e, crate::request::downstream_kind(e)?))) {
            log::debug!("client-side failure ({kind}): {e}");
            if ctx.snapshot.server.metrics {
                self.metrics.downstream_error(kind);
            }
        }
        let server = &ctx.snapshot.server;
        if server.access_log || server.metrics {
            let elapsed = ctx.started.elapsed();
            if server.access_log {
                access_log::record(session, e, ctx, elapsed);
            }
            if server.metrics {
                self.metrics.record(&metrics::RequestRecord::of(session, ctx, elapsed));
            }
        }
        if let Some(span) = ctx.span.take() {
            otel::finish(*span, otel::SpanEnd::of(session, ctx));
        }
    }
}

/// The `grpc-status` of a gRPC answer's trailers (or trailers-only headers).
fn grpc_status(headers: &http::HeaderMap) -> Option<u8> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// A 1xx response other than `101 Switching Protocols`: more responses follow.
/// Whether the client connection stays open after the gateway answers a failed request
/// with `code`: for an upstream that failed or could not be reached (502, 503, 504), as
/// nginx keeps it, so that an outage does not make every client reconnect (and redo its
/// TLS handshake) per request. Only when the whole request body has been read: its unread
/// rest would be taken for the next request. Anything else (a client error, a body too
/// large) closes it, as before.
fn keeps_client_connection(code: u16, e: &Error, session: &mut Session) -> bool {
    matches!(code, 502..=504) && *e.esource() != ErrorSource::Downstream && session.is_body_done()
}

fn is_interim(resp: &ResponseHeader) -> bool {
    resp.status.is_informational() && resp.status != http::StatusCode::SWITCHING_PROTOCOLS
}
