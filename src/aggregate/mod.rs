//! Aggregate routes: one request answered by calling several upstreams in parallel and
//! merging their JSON in the seeds' shape:
//!
//! ```json
//! {"status": "success" | "partial", "data": {"<part>": <its JSON or null>},
//!  "errors": {"<part>": "<why>"},
//!  "meta": {"aggregated_at": "<RFC 3339>", "services_called": N, "services_succeeded": N}}
//! ```
//!
//! A failed optional part is `null` with an `errors` entry; a failed required part, or
//! every part failing, is a 502 naming them; the route's `timeout` bounds the whole answer
//! and a required part cut off by it is a 504. Parts go through the same pools as proxied
//! routes (call.rs). Answers may be kept: a part's for its `cache` TTL, the merged one for
//! the route's `cache` TTL when every part succeeded.

mod call;
mod merge;

pub use call::PartError;

use crate::config::model::{AggregateConfig, PartConfig, RouteCache};
use crate::request::{PartReport, RequestCtx};
use crate::upstream::UpstreamPool;
use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora_memory_cache::MemoryCache;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest an aggregate answer takes when neither the route nor the part sets a timeout
/// (each part still has its pool's read timeout).
const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// Entries kept by each of the two answer caches.
const CACHE_ENTRIES: usize = 10_000;

/// An aggregate route, ready to answer.
pub struct Aggregate {
    parts: Vec<Part>,
    max_part_size: usize,
    /// The route's `timeout`: the whole answer's deadline.
    deadline: Duration,
}

pub struct Part {
    pub config: PartConfig,
    pub pool: Arc<UpstreamPool>,
}

/// Process-wide: the answer caches. Lives across reloads.
pub struct Caller {
    parts: MemoryCache<u64, Bytes>,
    answers: MemoryCache<u64, Bytes>,
}

impl Default for Caller {
    fn default() -> Self {
        Caller {
            parts: MemoryCache::new(CACHE_ENTRIES),
            answers: MemoryCache::new(CACHE_ENTRIES),
        }
    }
}

/// The merged answer.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    /// `Some(true)` served from the answer cache, `Some(false)` not (a caching route).
    pub cache_hit: Option<bool>,
}

impl Aggregate {
    pub fn build(
        config: &AggregateConfig,
        deadline: Option<Duration>,
        pools: &BTreeMap<String, Arc<UpstreamPool>>,
    ) -> Result<Self, String> {
        let parts = config
            .parts
            .iter()
            .map(|p| {
                let pool = pools
                    .get(&p.upstream)
                    .cloned()
                    .ok_or_else(|| format!("upstream {} was not built", p.upstream))?;
                Ok(Part {
                    config: p.clone(),
                    pool,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Aggregate {
            parts,
            max_part_size: config.max_part_size,
            deadline: deadline.unwrap_or(DEFAULT_DEADLINE),
        })
    }

    pub fn parts(&self) -> impl Iterator<Item = &PartConfig> {
        self.parts.iter().map(|p| &p.config)
    }

    /// Each part's request as it would be sent (explain: nothing is sent).
    pub fn describe(&self, original: &RequestHeader, ctx: &RequestCtx) -> serde_json::Value {
        let parts: Vec<serde_json::Value> = self
            .parts
            .iter()
            .map(|p| {
                let uri = call::request(p, original, ctx).map_or_else(|e| e.message(), |r| r.uri.to_string());
                serde_json::json!({
                    "name": p.config.name,
                    "upstream": p.pool.name,
                    "method": p.config.method.as_str(),
                    "uri": uri,
                    "required": p.config.required,
                    "timeout": p.config.timeout.map(|t| format!("{t:?}")),
                })
            })
            .collect();
        serde_json::Value::from(parts)
    }

    /// Calls every part at once and merges what came back by the deadline. Each part's
    /// outcome is left in `ctx.parts`.
    pub async fn answer(
        &self,
        route: &str,
        cache: Option<&RouteCache>,
        original: &RequestHeader,
        ctx: &mut RequestCtx,
        caller: &Caller,
    ) -> Answer {
        let answer_key = cache.map(|_| answer_key(route, original, ctx));
        if let Some(key) = answer_key {
            if let (Some(body), _) = caller.answers.get(&key) {
                ctx.parts = self
                    .parts
                    .iter()
                    .map(|p| report(&p.config.name, "cached", None, Duration::ZERO))
                    .collect();
                return Answer {
                    status: 200,
                    body,
                    cache_hit: Some(true),
                };
            }
        }
        let started = Instant::now();
        let calls = self
            .parts
            .iter()
            .map(|part| self.run_part(part, route, original, ctx, caller));
        let results = futures::future::join_all(calls).await;
        let deadline_passed = started.elapsed() >= self.deadline;
        let merged = merge::merge(&self.parts, &results, deadline_passed, &ctx.request_id);
        ctx.parts = self
            .parts
            .iter()
            .zip(&results)
            .map(|(p, r)| match &r.outcome {
                Ok(_) if r.cached => report(&p.config.name, "cached", Some(r.status), r.took),
                Ok(_) => report(&p.config.name, "ok", Some(r.status), r.took),
                Err(e) => {
                    let status = if let PartError::Status(s) = e { Some(*s) } else { None };
                    report(&p.config.name, e.label(), status, r.took)
                }
            })
            .collect();
        if let (Some(key), Some(cache), true) = (answer_key, cache, merged.complete) {
            caller.answers.put(&key, merged.body.clone(), Some(cache.ttl));
        }
        Answer {
            status: merged.status,
            body: merged.body,
            cache_hit: cache.map(|_| false),
        }
    }

    async fn run_part(
        &self,
        part: &Part,
        route: &str,
        original: &RequestHeader,
        ctx: &RequestCtx,
        caller: &Caller,
    ) -> merge::PartResult {
        let started = Instant::now();
        let req = match call::request(part, original, ctx) {
            Ok(req) => req,
            Err(e) => return merge::PartResult::failed(e, started.elapsed()),
        };
        let key = part.config.cache.map(|_| part_key(route, &part.config.name, &req));
        if let Some(key) = key {
            if let (Some(body), _) = caller.parts.get(&key) {
                if let Ok(value) = serde_json::from_slice(&body) {
                    return merge::PartResult {
                        outcome: Ok(value),
                        status: 200,
                        cached: true,
                        took: started.elapsed(),
                    };
                }
            }
        }
        let timeout = part
            .config
            .timeout
            .unwrap_or(part.pool.config.timeout)
            .min(self.deadline);
        let called = call::call(part, &req, timeout, self.max_part_size);
        let outcome = match tokio::time::timeout(timeout, called).await {
            Ok(outcome) => outcome,
            Err(_) => Err(PartError::Timeout),
        };
        match outcome {
            Ok(answer) => {
                if let (Some(key), Some(ttl)) = (key, part.config.cache) {
                    caller.parts.put(&key, answer.body, Some(ttl));
                }
                merge::PartResult {
                    outcome: Ok(answer.value),
                    status: answer.status,
                    cached: false,
                    took: started.elapsed(),
                }
            }
            Err(e) => merge::PartResult::failed(e, started.elapsed()),
        }
    }
}

fn report(name: &str, result: &'static str, status: Option<u16>, took: Duration) -> PartReport {
    PartReport {
        name: name.to_string(),
        result,
        status,
        millis: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
    }
}

/// A part's cached answer is shared by requests sending it the same request: same path
/// and query, same forwarded headers, same identity headers.
fn part_key(route: &str, part: &str, req: &RequestHeader) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (route, part, req.uri.to_string()).hash(&mut h);
    for (name, value) in req.headers.iter() {
        if name != "traceparent" && name != "x-request-id" && name != "x-forwarded-for" {
            (name.as_str(), value.as_bytes()).hash(&mut h);
        }
    }
    h.finish()
}

/// The merged answer is keyed like any cached response (host and URL, per route), plus
/// the caller's identity when there is one: parts may answer per user.
fn answer_key(route: &str, req: &RequestHeader, ctx: &RequestCtx) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let host = crate::routing::request_host(req).unwrap_or("");
    (route, host, req.uri.to_string()).hash(&mut h);
    if let Some(id) = &ctx.identity {
        (&id.subject, &id.consumer).hash(&mut h);
    }
    h.finish()
}
