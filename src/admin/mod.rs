//! The admin listener (default 127.0.0.1:9901): metrics, liveness and readiness, the active
//! config, reload, routes, upstreams and runtime target registration, and a status page.
//! JSON everywhere but `/metrics` (Prometheus text) and `/` (the page).
//!
//! With `admin.token` set, every call but `/health` and `/ready` needs
//! `Authorization: Bearer <token>`; the config refuses a non-loopback listener without one.
//! Changes made here (reload, target registration, cache purges) are written to the audit log.

mod api;

use crate::cache::storage::MemoryStore;
use crate::observe::metrics::Metrics;
use crate::reload::{ChangeError, Reloader, ResourceKind};
use crate::snapshot::SharedSnapshot;
use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Largest admin request body read.
const MAX_BODY: usize = 64 * 1024;

const STATUS_PAGE: &str = include_str!("status.html");

pub struct AdminApi {
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
    reloader: Arc<Reloader>,
    cache: &'static MemoryStore,
    /// When the admin service was built (process start), for `ready_timeout`.
    started: std::time::Instant,
}

impl AdminApi {
    pub fn new(
        snapshot: SharedSnapshot,
        metrics: Arc<Metrics>,
        reloader: Arc<Reloader>,
        cache: &'static MemoryStore,
    ) -> Self {
        AdminApi {
            snapshot,
            metrics,
            reloader,
            cache,
            started: std::time::Instant::now(),
        }
    }
}

/// An admin answer before it becomes an HTTP response.
pub(crate) enum Reply {
    Json(StatusCode, Value),
    Text(&'static str, Vec<u8>),
}

fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    Reply::Json(status, json!({ "error": message.into(), "status": status.as_u16() }))
}

#[async_trait]
impl ServeHttp for AdminApi {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let body = read_body(session).await;
        let req = session.req_header();
        let (method, path) = (req.method.clone(), req.uri.path().to_string());
        // `If-Match: 42` or `If-Match: "42"`: the revision the writer last read.
        let if_match = req
            .headers
            .get(http::header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().trim_matches('"').parse::<i64>().ok());
        let caller = match self.authorize(req) {
            Ok(caller) => caller,
            Err(reply) => return into_response(reply),
        };
        let reply = match body {
            Some(body) => self.dispatch(&method, &path, &body, &caller, if_match).await,
            None => error(StatusCode::PAYLOAD_TOO_LARGE, "admin request body too large"),
        };
        into_response(reply)
    }
}

impl AdminApi {
    /// `Ok(caller)` (a token fingerprint, for the audit log) or the refusal.
    fn authorize(&self, req: &pingora::http::RequestHeader) -> Result<String, Reply> {
        let path = req.uri.path();
        if path == "/health" || path == "/ready" {
            return Ok("probe".into());
        }
        let snapshot = self.snapshot.load();
        let Some(expected) = snapshot.server.admin.as_ref().and_then(|a| a.token.as_deref()) else {
            return Ok("local".into());
        };
        let presented = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let expected_hash = Sha256::digest(expected.as_bytes());
        let presented_hash = Sha256::digest(presented.as_bytes());
        if bool::from(expected_hash.ct_eq(&presented_hash)) {
            Ok(format!("token:{}", &hex::encode(expected_hash)[..8]))
        } else {
            Err(error(StatusCode::UNAUTHORIZED, "admin token required"))
        }
    }

    /// `PUT` (body: the resource as JSON or YAML) or `DELETE` one route, upstream or
    /// consumer; see [`Reloader::change_resource`].
    async fn change_resource(
        &self,
        caller: &str,
        method: &Method,
        kind: ResourceKind,
        name: &str,
        body: &[u8],
        if_match: Option<i64>,
    ) -> Reply {
        let value = if method == Method::PUT {
            match serde_yaml::from_slice::<serde_json::Value>(body) {
                Ok(v) if v.is_object() => Some(v),
                Ok(_) => return error(StatusCode::BAD_REQUEST, "the body must be a JSON (or YAML) object"),
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("the body is neither JSON nor YAML: {e}"),
                    )
                }
            }
        } else {
            None
        };
        let key = format!("{}/{name}", kind.plural());
        let (reloader, name_owned) = (self.reloader.clone(), name.to_string());
        let outcome =
            tokio::task::spawn_blocking(move || reloader.change_resource(kind, &name_owned, value, if_match)).await;
        let action = if method == Method::PUT {
            "put_resource"
        } else {
            "delete_resource"
        };
        let result = match &outcome {
            Ok(Ok(_)) => "ok",
            _ => "refused",
        };
        audit(caller, action, &key, result);
        match outcome {
            Ok(Ok(revision)) => Reply::Json(StatusCode::OK, json!({ "key": key, "revision": revision })),
            Ok(Err(ChangeError::Invalid(e))) => Reply::Json(
                StatusCode::BAD_REQUEST,
                json!({
                    "error": "the change would make an invalid config; nothing was written",
                    "status": 400,
                    "problems": e.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                }),
            ),
            Ok(Err(ChangeError::Conflict { current })) => Reply::Json(
                StatusCode::CONFLICT,
                json!({
                    "error": format!("{key} changed since the revision given (If-Match) or read: read it again and retry"),
                    "status": 409,
                    "current_revision": current,
                }),
            ),
            Ok(Err(ChangeError::NotFound)) => error(StatusCode::NOT_FOUND, format!("no {key}")),
            Ok(Err(ChangeError::Unavailable(e))) => error(StatusCode::SERVICE_UNAVAILABLE, e),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("change failed: {e}")),
        }
    }

    async fn dispatch(&self, method: &Method, path: &str, body: &[u8], caller: &str, if_match: Option<i64>) -> Reply {
        let snapshot = self.snapshot.load_full();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method.as_str(), segments.as_slice()) {
            ("GET", [""]) => Reply::Text("text/html; charset=utf-8", STATUS_PAGE.as_bytes().to_vec()),
            ("GET", ["health"]) => Reply::Json(StatusCode::OK, json!({ "status": "ok" })),
            ("GET", ["ready"]) => api::ready(&snapshot, self.started.elapsed()),
            ("GET", ["metrics"]) if !snapshot.server.metrics => error(
                StatusCode::NOT_FOUND,
                "metrics are disabled (metrics: false, or ENABLE_METRICS=false)",
            ),
            ("GET", ["metrics"]) => Reply::Text(
                "text/plain; version=0.0.4",
                self.metrics
                    .render(&snapshot, &snapshot.config_hash, self.cache.stats()),
            ),
            ("GET", ["admin", "config"]) => api::config(&snapshot, self.reloader.last_refused()),
            ("GET", ["admin", "routes"]) => api::routes(&snapshot),
            ("GET", ["admin", "upstreams"]) => api::upstreams(&snapshot),
            ("GET", ["admin", "stats"]) => api::stats(&self.metrics),
            ("GET", ["admin", "cache"]) => api::cache_stats(self.cache),
            ("POST", ["admin", "cache", "purge"]) => match api::purge_request(body) {
                Ok(purge) => {
                    let (purged, what, target, soft) = match &purge {
                        api::Purge::Url(url, soft) => {
                            (self.cache.purge_urls(url, false, *soft), "url", json!(url), *soft)
                        }
                        api::Purge::Prefix(p, soft) => {
                            (self.cache.purge_urls(p, true, *soft), "prefix", json!(p), *soft)
                        }
                        api::Purge::Tags(tags, soft) => {
                            (self.cache.purge_tags(tags, *soft), "tags", json!(tags), *soft)
                        }
                    };
                    let kind = if soft { "soft" } else { "hard" };
                    audit(
                        caller,
                        "cache_purge",
                        &format!("{kind} {what} {target}: {purged} purged"),
                        "ok",
                    );
                    Reply::Json(StatusCode::OK, json!({ "purged": purged, what: target, "soft": soft }))
                }
                Err(e) => error(StatusCode::BAD_REQUEST, e),
            },
            ("POST", ["admin", "explain"]) => match api::explain_request(body) {
                Ok(question) => match crate::explain::explain(snapshot.clone(), &question) {
                    Ok(answer) => Reply::Json(StatusCode::OK, answer),
                    Err(e) => error(StatusCode::BAD_REQUEST, e),
                },
                Err(e) => error(StatusCode::BAD_REQUEST, e),
            },
            ("PUT" | "DELETE", ["admin", kind, name]) if ResourceKind::from_segment(kind).is_some() => {
                let kind = ResourceKind::from_segment(kind).unwrap_or(ResourceKind::Route);
                self.change_resource(caller, method, kind, name, body, if_match).await
            }
            ("POST", ["admin", "reload"]) => self.blocking(caller, "reload", String::new(), |r| r.reload()).await,
            ("POST", ["admin", "upstreams", name, "targets"]) => match api::target_request(body) {
                Ok((addr, weight)) => {
                    let (name, detail) = (name.to_string(), format!("{name} {addr} weight {weight}"));
                    self.blocking(caller, "register_target", detail, move |r| {
                        r.register_target(&name, &addr, weight)
                    })
                    .await
                }
                Err(e) => error(StatusCode::BAD_REQUEST, e),
            },
            ("DELETE", ["admin", "upstreams", name, "targets", addr]) => {
                let (name, addr) = (name.to_string(), addr.to_string());
                let detail = format!("{name} {addr}");
                self.blocking(caller, "deregister_target", detail, move |r| {
                    r.deregister_target(&name, &addr)
                })
                .await
            }
            _ => error(StatusCode::NOT_FOUND, format!("no admin endpoint {method} {path}")),
        }
    }

    /// Runs a config change off the async runtime (it reads files and resolves names),
    /// writes the audit line, and answers with the new generation or the problems.
    async fn blocking(
        &self,
        caller: &str,
        action: &'static str,
        detail: String,
        change: impl FnOnce(&Reloader) -> Result<Arc<crate::snapshot::Snapshot>, crate::config::ConfigError>
            + Send
            + 'static,
    ) -> Reply {
        let reloader = self.reloader.clone();
        let outcome = tokio::task::spawn_blocking(move || change(&reloader)).await;
        let result = match &outcome {
            Ok(Ok(_)) => "ok",
            _ => "refused",
        };
        audit(caller, action, &detail, result);
        match outcome {
            Ok(Ok(s)) => Reply::Json(
                StatusCode::OK,
                json!({ "generation": s.generation, "config_hash": s.config_hash, "warnings": s.warnings }),
            ),
            Ok(Err(e)) => Reply::Json(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({
                    "error": "change refused; the running config is unchanged",
                    "status": 422,
                    "problems": e.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                }),
            ),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("change failed: {e}")),
        }
    }
}

/// One JSON line per admin change: who (a token fingerprint), what, and how it went.
fn audit(caller: &str, action: &str, detail: &str, result: &str) {
    let line = json!({
        "ts": jiff::Timestamp::now().to_string(),
        "audit": action,
        "who": caller,
        "detail": detail,
        "result": result,
    });
    log::info!(target: crate::observe::logging::AUDIT_TARGET, "{line}");
}

async fn read_body(session: &mut ServerSession) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = session.read_request_body().await {
        if body.len() + chunk.len() > MAX_BODY {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

fn into_response(reply: Reply) -> Response<Vec<u8>> {
    let (status, content_type, body) = match reply {
        Reply::Json(status, value) => (
            status,
            "application/json",
            serde_json::to_vec(&value).unwrap_or_default(),
        ),
        Reply::Text(content_type, body) => (StatusCode::OK, content_type, body),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}
