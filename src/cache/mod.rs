//! Response caching. Pingora's cache state machine does the protocol work (lookup, cache
//! lock, conditional revalidation, serving stale, Age, ranges and 304s from the stored
//! copy); this module decides which requests use it ([`ResponseCache::enable`]), what the
//! key is, what may be stored ([`policy`]), and where it lives ([`storage`]).
//!
//! The key is `host` (lower case, no port) + path + query, plus the route: one route's
//! answer never serves another's (routes can differ by header or method on one URL).
//! GET and HEAD share an entry (HEAD is answered from the stored GET). The request headers
//! a stored response `Vary`s on select among its variants.

pub mod disk;
mod entry;
mod fill;
pub mod freshness;
mod index;
pub mod policy;
pub mod ranges;
pub mod status;
pub mod storage;
pub mod tags;
pub mod targeted;
pub mod update;
pub mod vary;

use crate::config::model::{CacheSettings, RouteCache};
use crate::request::{CacheOutcome, RequestCtx};
use http::Method;
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::CachePhase;
use pingora::cache::{CacheKey, CacheMeta, CacheOptionOverrides, ForcedFreshness, NoCacheReason, RespCacheable};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use storage::MemoryStore;

/// The process's one cache: the store and the lock that lets one request per key fill it.
/// Both live as long as the process (Pingora wants `'static`) and survive reloads.
pub struct ResponseCache {
    store: &'static MemoryStore,
    lock: &'static CacheKeyLockImpl,
}

impl ResponseCache {
    /// Built once per process (its size is fixed for the process's life).
    pub fn new(settings: &CacheSettings) -> Self {
        let mut store = MemoryStore::new(settings.max_size, settings.max_object_size);
        if let Some(disk) = &settings.disk {
            match disk::DiskTier::open(&disk.path, disk.max_size, disk.max_object_size) {
                Ok(tier) => {
                    let tier: &'static disk::DiskTier = Box::leak(Box::new(tier));
                    match tier.start_writer() {
                        Ok(()) => store = store.with_disk(tier),
                        Err(e) => log::error!("cache.disk: cannot start its writer thread: {e}"),
                    }
                }
                Err(e) => log::error!(
                    "cache.disk {}: {e}; serving with the memory tier alone",
                    disk.path.display()
                ),
            }
        }
        let store: &'static MemoryStore = Box::leak(Box::new(store));
        // A writer that holds the lock this long is presumed dead and readers take over.
        let lock: &'static CacheLock = Box::leak(CacheLock::new_boxed(settings.lock_timeout));
        ResponseCache { store, lock }
    }

    pub fn store(&self) -> &'static MemoryStore {
        self.store
    }

    /// `request_cache_filter`: turns the cache on for a GET/HEAD on a caching route.
    pub fn enable(&self, session: &mut Session, ctx: &mut RequestCtx) {
        let settings = &ctx.snapshot.server.cache;
        let Some(route) = ctx.route() else { return };
        if route.cache.is_none() || !settings.enabled {
            return;
        }
        // A WebSocket handshake is a GET, but its answer is a connection, not a document.
        if session.is_upgrade_req() {
            return;
        }
        if !matches!(session.req_header().method, Method::GET | Method::HEAD) {
            ctx.cache = Some(CacheOutcome::Bypass);
            return;
        }
        let mut overrides = CacheOptionOverrides::default();
        overrides.wait_timeout = Some(settings.lock_timeout);
        self.store.set_max_object_size(settings.max_object_size);
        session
            .cache
            .enable(self.store, None, None, Some(self.lock), Some(overrides));
        session
            .cache
            .set_max_file_size_bytes(usize::try_from(self.store.max_storable()).unwrap_or(usize::MAX));
    }

    /// After a successful unsafe request (POST, PUT, PATCH, DELETE) the stored answers
    /// for its URL, and for the same-host URLs its answer's `Location` and
    /// `Content-Location` name, are dropped (RFC 9111 §4.4).
    pub fn invalidate_after(&self, session: &Session, resp: &ResponseHeader, ctx: &RequestCtx) {
        let method = &session.req_header().method;
        let unsafe_method = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE);
        let success = (200..400).contains(&resp.status.as_u16());
        if !(unsafe_method && success && ctx.route().is_some_and(|r| r.cache.is_some())) {
            return;
        }
        let Some(url) = request_url(session.req_header()) else {
            return;
        };
        self.store.purge_urls(&url, false, false);
        for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
            let named = resp.headers.get(name).and_then(|v| v.to_str().ok());
            if let Some(target) = named.and_then(|v| same_host_url(&url, v)) {
                self.store.purge_urls(&target, false, false);
            }
        }
    }
}

/// `reference` (absolute or relative) resolved against `base` (`host/path?query`), as a
/// `host/path?query` key URL; `None` when it points at another host.
fn same_host_url(base: &str, reference: &str) -> Option<String> {
    let base = url::Url::parse(&format!("http://{base}")).ok()?;
    let target = base.join(reference.trim()).ok()?;
    if target.host_str() != base.host_str() || !matches!(target.scheme(), "http" | "https") {
        return None;
    }
    let mut key = format!("{}{}", target.host_str()?, target.path());
    if let Some(query) = target.query() {
        key.push('?');
        key.push_str(query);
    }
    Some(key)
}

/// Removes the fields meant for this cache alone (targeted cache control, cache tags)
/// from an answer going downstream.
pub fn strip_cache_only_fields(resp: &mut ResponseHeader, ctx: &RequestCtx) {
    let settings = &ctx.snapshot.server.cache;
    if settings.strip_targeted {
        for name in &settings.targeted {
            resp.remove_header(name);
        }
    }
    if settings.strip_tags {
        for name in &settings.tag_headers {
            resp.remove_header(name);
        }
    }
}

/// `host/path?query` of the request; `None` when the host is not usable in a key.
pub fn request_url(req: &pingora::http::RequestHeader) -> Option<String> {
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.host())
        .unwrap_or("");
    // `[v6]:port` keeps its brackets; `name:port` loses the port.
    let host = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    if host.bytes().any(|b| b.is_ascii_whitespace() || b == b'/') {
        return None;
    }
    let path = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    Some(format!("{}{path}", host.to_ascii_lowercase()))
}

/// `cache_key_callback`. The URL comes first, then a space (never part of a URL) and the
/// route's name: the store indexes entries by the part before the space for purges.
pub fn key(session: &Session, ctx: &RequestCtx) -> Result<CacheKey> {
    let route = ctx.route().map_or("", |r| r.name.as_str());
    match request_url(session.req_header()) {
        Some(url) => Ok(CacheKey::new(format!("{url} {route}"), "")),
        None => Error::e_explain(ErrorType::InternalError, "host unusable in a cache key"),
    }
}

/// The URL part of a key built by [`key`].
pub fn key_url(primary: &str) -> &str {
    primary.split_once(' ').map_or(primary, |(url, _)| url)
}

fn route_policy(ctx: &RequestCtx) -> Option<&RouteCache> {
    ctx.route()?.cache.as_ref()
}

/// Did the request come with credentials? Its answer may be meant for it alone.
fn authorized(session: &Session, ctx: &RequestCtx) -> bool {
    ctx.identity.is_some() || session.req_header().headers.contains_key(http::header::AUTHORIZATION)
}

/// `upstream_request_filter`: with `range_miss: pass`, a range request on a miss asks
/// the origin for its range (Pingora removed it to fetch the whole object).
pub fn pass_range(session: &Session, req: &mut pingora::http::RequestHeader, ctx: &RequestCtx) -> Result<()> {
    if !ctx.snapshot.server.cache.range_pass || session.cache.phase() != CachePhase::Miss || route_policy(ctx).is_none()
    {
        return Ok(());
    }
    let original = &session.req_header().headers;
    for name in [http::header::RANGE, http::header::IF_RANGE] {
        if let Some(value) = original.get(&name) {
            req.insert_header(name, value.clone())?;
        }
    }
    Ok(())
}

/// `range_header_filter`: a hit on a stored part is re-cut to the asked range; anything
/// else gets Pingora's range handling of a whole representation.
pub fn range_filter(session: &Session, resp: &mut ResponseHeader) -> pingora::proxy::RangeType {
    let from_store = matches!(
        session.cache.phase(),
        CachePhase::Hit | CachePhase::Stale | CachePhase::StaleUpdating | CachePhase::Revalidated
    );
    if resp.status == http::StatusCode::PARTIAL_CONTENT {
        return if from_store {
            ranges::serve_from_part(session.req_header(), resp)
        } else {
            pingora::proxy::RangeType::None
        };
    }
    // Pingora's default: at most 200 ranges in a multipart request.
    pingora::proxy::range_header_filter(session.req_header(), resp, Some(200))
}

/// `upstream_response_filter`: a 304 answering a revalidation is kept until
/// [`admit`] merges it into the stored response (Pingora hands `admit` its own merge).
pub fn keep_not_modified(session: &Session, resp: &ResponseHeader, ctx: &mut RequestCtx) {
    if resp.status == http::StatusCode::NOT_MODIFIED && session.cache.phase() == CachePhase::Stale {
        ctx.not_modified = Some(Box::new(resp.clone()));
    }
}

/// `response_cache_filter`: may this upstream response be stored, and until when.
pub fn admit(session: &Session, resp: &ResponseHeader, ctx: &mut RequestCtx) -> RespCacheable {
    let merged = match (ctx.not_modified.take(), session.cache.maybe_cache_meta()) {
        (Some(not_modified), Some(stored)) => Some(update::merge_not_modified(stored.response_header(), &not_modified)),
        _ => None,
    };
    let arrival = policy::Arrival {
        at: std::time::SystemTime::now(),
        response_delay: ctx.upstream_ttfb.unwrap_or_default(),
    };
    match route_policy(ctx) {
        Some(route) => policy::admit(
            merged.as_ref().unwrap_or(resp),
            route,
            &ctx.snapshot.server.cache,
            authorized(session, ctx),
            arrival,
        ),
        None => RespCacheable::Uncacheable(NoCacheReason::NeverEnabled),
    }
}

/// `cache_hit_filter`: a stored answer the request's credentials may not see is not
/// served; the request goes to the upstream as if the cache were not there.
pub fn hit_filter(session: &Session, meta: &CacheMeta, ctx: &mut RequestCtx) -> Option<ForcedFreshness> {
    let route = route_policy(ctx)?;
    // A stored part answers only the ranges it holds; anything else refetches.
    if let Some(part) = ranges::stored_part(meta.response_header()).filter(|_| meta.response_header().status == 206) {
        if !ranges::covers(part, session.req_header()) {
            return Some(ForcedFreshness::ForceMiss);
        }
    }
    if authorized(session, ctx) && !policy::may_serve_authorized(meta, route) {
        ctx.cache = Some(CacheOutcome::Bypass);
        return Some(ForcedFreshness::ForceMiss);
    }
    None
}

/// How the cache took part, read from Pingora's cache phase once the response is known.
pub fn outcome(session: &Session, ctx: &RequestCtx) -> Option<CacheOutcome> {
    if ctx.cache.is_some() {
        return ctx.cache;
    }
    route_policy(ctx)?;
    Some(match session.cache.phase() {
        CachePhase::Hit => CacheOutcome::Hit,
        CachePhase::Stale | CachePhase::StaleUpdating => CacheOutcome::Stale,
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => CacheOutcome::Revalidated,
        CachePhase::Disabled(NoCacheReason::NeverEnabled) | CachePhase::Uninit | CachePhase::Bypass => {
            CacheOutcome::Bypass
        }
        _ => CacheOutcome::Miss,
    })
}
