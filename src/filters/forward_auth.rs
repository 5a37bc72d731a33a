//! `auth: forward` (Envoy's ext_authz, Traefik's ForwardAuth): an auth service decides.
//! It gets the client's credentials (`headers_to_auth`) and what was asked
//! (`X-Forwarded-Method`, `-Uri`, `-Host`, `-Proto`, `-For`, `X-Request-ID`). A 2xx lets the
//! request go on, carrying the `headers_from_auth` of that answer (client-sent copies of
//! those headers are dropped either way); any other answer goes back to the client as
//! the auth service sent it (a 401 with its challenge, a 302 to a login page). An auth
//! service that cannot be asked is a 503. With `cache_ttl`, decisions are kept per
//! credential (the `headers_to_auth` values) and asked path.

use super::Flow;
use crate::config::model::ForwardAuthConfig;
use crate::request::{GatewayError, RequestCtx};
use crate::template::Escape;
use crate::upstream::client;
use crate::upstream::UpstreamPool;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora_memory_cache::MemoryCache;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Largest answer of the auth service relayed to a client.
const MAX_ANSWER: usize = 64 * 1024;
const CACHED_DECISIONS: usize = 10_000;
/// Response headers of a refusal that are not relayed (the gateway frames its own answer).
const NOT_RELAYED: [&str; 6] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "proxy-connection",
    "upgrade",
];

pub struct ForwardAuth {
    config: ForwardAuthConfig,
    pool: Arc<UpstreamPool>,
    decisions: Option<MemoryCache<u64, Arc<Decision>>>,
}

/// What the auth service said.
pub enum Decision {
    /// Go on, with these headers for the upstream.
    Allow(Vec<(HeaderName, HeaderValue)>),
    /// This answer goes to the client.
    Deny(Box<ResponseHeader>, Bytes),
}

impl ForwardAuth {
    pub fn new(config: &ForwardAuthConfig, pool: Arc<UpstreamPool>) -> Self {
        ForwardAuth {
            decisions: config.cache_ttl.map(|_| MemoryCache::new(CACHED_DECISIONS)),
            config: config.clone(),
            pool,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "auth service on upstream {} decides (2xx goes on, anything else is the answer; unreachable → 503)",
            self.pool.name
        )
    }

    /// The headers the auth service's answer may set on the upstream request.
    pub fn headers_from_auth(&self) -> &[HeaderName] {
        &self.config.headers_from_auth
    }

    pub async fn run(&self, req: &RequestHeader, ctx: &mut RequestCtx) -> Result<Flow, GatewayError> {
        let ask = self.request(req, ctx)?;
        let key = self.decisions.as_ref().map(|_| self.key(&ask));
        let cached = match (&self.decisions, key) {
            (Some(cache), Some(key)) => cache.get(&key).0,
            _ => None,
        };
        let decision = match cached {
            Some(d) => d,
            None => {
                let d = Arc::new(self.ask(&ask).await?);
                if let (Some(cache), Some(key), Some(ttl)) = (&self.decisions, key, self.config.cache_ttl) {
                    cache.put(&key, d.clone(), Some(ttl));
                }
                d
            }
        };
        match decision.as_ref() {
            Decision::Allow(headers) => {
                ctx.auth_headers = headers.clone();
                Ok(Flow::Continue)
            }
            Decision::Deny(head, body) => {
                ctx.error = Some(GatewayError::ForwardAuthDenied {
                    status: head.status.as_u16(),
                });
                Ok(Flow::Answer(head.clone(), body.clone()))
            }
        }
    }

    fn request(&self, req: &RequestHeader, ctx: &RequestCtx) -> Result<RequestHeader, GatewayError> {
        let path = self.config.path.render(req, &ctx.vars(), Escape::Url);
        let mut ask = RequestHeader::build("GET", path.as_bytes(), Some(12)).map_err(|_| GatewayError::Internal)?;
        for name in &self.config.headers_to_auth {
            for value in req.headers.get_all(name) {
                let _ = ask.append_header(name.clone(), value.clone());
            }
        }
        let _ = ask.insert_header("x-forwarded-method", req.method.as_str());
        let uri = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let _ = ask.insert_header("x-forwarded-uri", uri);
        if let Some(host) = crate::routing::request_host(req) {
            let _ = ask.insert_header("x-forwarded-host", host);
        }
        let _ = ask.insert_header("x-forwarded-proto", ctx.scheme);
        if let Some(ip) = ctx.client_ip {
            let _ = ask.insert_header("x-forwarded-for", ip.to_string());
        }
        let _ = ask.insert_header("x-request-id", ctx.request_id.clone());
        Ok(ask)
    }

    /// Per credential and asked path: the headers sent to the auth service, except the
    /// ones that differ on every request.
    fn key(&self, ask: &RequestHeader) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ask.uri.path_and_query().map(|pq| pq.as_str()).hash(&mut h);
        for name in &self.config.headers_to_auth {
            for value in ask.headers.get_all(name) {
                (name.as_str(), value.as_bytes()).hash(&mut h);
            }
        }
        h.finish()
    }

    async fn ask(&self, ask: &RequestHeader) -> Result<Decision, GatewayError> {
        let unavailable = GatewayError::Unavailable("the authorization service could not be reached");
        let call = client::call(&self.pool, ask, self.config.timeout, MAX_ANSWER);
        let answer = match tokio::time::timeout(self.config.timeout, call).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                log::warn!("forward auth on {}: {e:?}", self.pool.name);
                return Err(unavailable);
            }
            Err(_) => {
                log::warn!(
                    "forward auth on {}: no answer within {:?}",
                    self.pool.name,
                    self.config.timeout
                );
                return Err(unavailable);
            }
        };
        if answer.head.status.is_success() {
            let headers = self
                .config
                .headers_from_auth
                .iter()
                .flat_map(|name| {
                    answer
                        .head
                        .headers
                        .get_all(name)
                        .iter()
                        .map(move |v| (name.clone(), v.clone()))
                })
                .collect();
            return Ok(Decision::Allow(headers));
        }
        let mut head = ResponseHeader::build(answer.head.status, Some(answer.head.headers.len()))
            .map_err(|_| GatewayError::Internal)?;
        for (name, value) in answer.head.headers.iter() {
            if !NOT_RELAYED.contains(&name.as_str()) {
                let _ = head.append_header(name.clone(), value.clone());
            }
        }
        Ok(Decision::Deny(Box::new(head), answer.body))
    }
}

/// Upstream step: the auth service's headers, replacing any the client sent.
pub struct AuthHeaders(Vec<HeaderName>);

impl AuthHeaders {
    pub fn new(names: &[HeaderName]) -> Self {
        AuthHeaders(names.to_vec())
    }

    pub fn apply(&self, req: &mut RequestHeader, ctx: &RequestCtx) -> pingora::Result<()> {
        for name in &self.0 {
            req.remove_header(name);
        }
        for (name, value) in &ctx.auth_headers {
            req.append_header(name.clone(), value.clone())?;
        }
        Ok(())
    }
}
