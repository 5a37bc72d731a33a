//! What may be stored and for how long (RFC 9111, shared-cache rules). Pingora's cache
//! state machine calls this on every origin response of a caching route; its directive
//! parser (`CacheControl`) reads the header, the decisions are ours.

use super::{freshness, targeted};
use crate::config::model::{CacheSettings, RouteCache};
use http::header::{AGE, SET_COOKIE, VARY};
use pingora::cache::cache_control::{CacheControl, InterpretCacheControl};
use pingora::cache::{CacheMeta, NoCacheReason, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use std::time::{Duration, SystemTime};

/// Statuses a cache may store with a freshness it picks itself (RFC 9110 §15.1,
/// "heuristically cacheable"); here that freshness is the route's `ttl`.
fn heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 451 | 501
    )
}

/// Statuses whose caching rules this cache implements, for `must-understand`
/// (RFC 9111 §5.2.2.3): those RFC 9110 defines caching semantics for.
fn understood(status: u16) -> bool {
    heuristically_cacheable(status) || matches!(status, 302 | 303 | 307)
}

/// Never stored whatever the origin says: a 304 (it updates a stored response, §4.3.4),
/// interim answers, and a part of a representation unless `range_miss: pass` asked for
/// parts (with a single, complete-length `Content-Range`).
fn never_stored(resp: &ResponseHeader, settings: &CacheSettings) -> bool {
    match resp.status.as_u16() {
        206 => !settings.range_pass || super::ranges::stored_part(resp).is_none(),
        status => status == 304 || status < 200,
    }
}

/// What the cache knows about how the response arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub at: SystemTime,
    /// From sending the request upstream to receiving this response.
    pub response_delay: Duration,
}

impl Arrival {
    pub fn now() -> Self {
        Arrival {
            at: SystemTime::now(),
            response_delay: Duration::ZERO,
        }
    }
}

/// Decides whether `resp` is stored, and builds its freshness if so (RFC 9111 §3, §4.2).
/// `authorized`: the request carried credentials (an Authorization header, or the gateway
/// identified the caller), so its answer may be personal.
pub fn admit(
    resp: &ResponseHeader,
    route: &RouteCache,
    settings: &CacheSettings,
    authorized: bool,
    arrival: Arrival,
) -> RespCacheable {
    use RespCacheable::Uncacheable;
    let status = resp.status.as_u16();
    if never_stored(resp, settings) {
        return Uncacheable(NoCacheReason::OriginNotCache);
    }
    if varies_on_everything(resp) {
        return Uncacheable(NoCacheReason::Custom("vary *"));
    }
    // A cookie set for one client must not be replayed to the next (what nginx does too).
    if resp.headers.contains_key(SET_COOKIE) {
        return Uncacheable(NoCacheReason::Custom("set-cookie"));
    }
    let (cc, targeted) = targeted::governing(&resp.headers, &settings.targeted);
    if let Some(cc) = &cc {
        // must-understand: store only statuses whose rules are implemented, and then
        // no-store (sent for caches that do not know must-understand) does not apply.
        let must_understand = cc.has_key("must-understand");
        if must_understand && !understood(status) {
            return Uncacheable(NoCacheReason::Custom("must-understand"));
        }
        if cc.private() || (cc.no_store() && !must_understand) {
            return Uncacheable(NoCacheReason::OriginNotCache);
        }
    }
    if authorized && !route.authorized && !cc.as_ref().is_some_and(|cc| cc.allow_caching_authorized_req()) {
        return Uncacheable(NoCacheReason::Custom("authorized"));
    }

    let Some(lifetime) = lifetime(resp, cc.as_ref(), targeted, route, settings, arrival.at) else {
        return Uncacheable(NoCacheReason::OriginNotCache);
    };
    if lifetime.is_zero() && route.ttl.is_zero() && !has_validator(resp) && !explicit(cc.as_ref(), targeted, resp) {
        // No freshness of the gateway's own (`ttl: none` / `0s`): kept only if it can be
        // revalidated, and then stale from the start (every use asks the origin).
        return Uncacheable(NoCacheReason::Custom("no freshness, no validator"));
    }
    // When the origin made the response: freshness counts from then, and the Age sent
    // with hits includes the age it arrived with. An invalid Age makes it stale at once.
    let (born, lifetime) = match freshness::initial_age(&resp.headers, arrival.at, arrival.response_delay) {
        Some(age) => (arrival.at.checked_sub(age).unwrap_or(arrival.at), lifetime),
        None => (arrival.at, Duration::ZERO),
    };
    let (swr, sie) = stale_windows(cc.as_ref());
    let mut header = resp.clone();
    if let Some(cc) = &cc {
        cc.strip_private_headers(&mut header);
    }
    // The stored copy's age is computed from `born`; an origin Age would be stale.
    header.remove_header(&AGE);
    let tags = super::tags::read(&header, &settings.tag_headers);
    let mut meta = CacheMeta::new(freshness_end(born, lifetime), arrival.at, swr, sie, header);
    if born != arrival.at {
        meta.set_epoch_override(born);
    }
    super::tags::attach(&mut meta, tags);
    RespCacheable::Cacheable(meta)
}

/// The freshness lifetime (RFC 9111 §4.2.1), in its order: the governing directives'
/// `no-cache` (zero), `s-maxage`, `max-age`; then `Expires − Date` unless a targeted field
/// governs; then, for a heuristically cacheable status or a `public` response, the
/// heuristic (opt-in) or the route's `ttl`. `None`: the response may not be stored.
fn lifetime(
    resp: &ResponseHeader,
    cc: Option<&CacheControl>,
    targeted: bool,
    route: &RouteCache,
    settings: &CacheSettings,
    arrived: SystemTime,
) -> Option<Duration> {
    if let Some(explicit) = cc.and_then(|cc| cc.fresh_duration()) {
        return Some(explicit);
    }
    if !targeted {
        if let Some(expires) = freshness::expires_lifetime(&resp.headers, arrived) {
            return Some(expires);
        }
    }
    if !heuristically_cacheable(resp.status.as_u16()) && !cc.is_some_and(|cc| cc.public()) {
        return None;
    }
    let heuristic = settings
        .heuristic
        .then(|| freshness::heuristic_lifetime(&resp.headers, arrived, settings.heuristic_max))
        .flatten();
    Some(heuristic.unwrap_or(route.ttl))
}

/// Did the origin give the response a freshness of its own?
fn explicit(cc: Option<&CacheControl>, targeted: bool, resp: &ResponseHeader) -> bool {
    cc.is_some_and(|cc| cc.fresh_duration().is_some())
        || (!targeted && resp.headers.contains_key(http::header::EXPIRES))
}

/// An `ETag` or `Last-Modified` to revalidate with.
fn has_validator(resp: &ResponseHeader) -> bool {
    resp.headers.contains_key(http::header::ETAG) || resp.headers.contains_key(http::header::LAST_MODIFIED)
}

/// Whether a stored response may answer a request with credentials: only if the origin
/// allowed it (`public`, `s-maxage`, `must-revalidate`) or the route opted in.
pub fn may_serve_authorized(meta: &CacheMeta, route: &RouteCache) -> bool {
    route.authorized
        || CacheControl::from_resp_headers(meta.response_header()).is_some_and(|cc| cc.allow_caching_authorized_req())
}

fn freshness_end(born: SystemTime, ttl: Duration) -> SystemTime {
    if ttl.is_zero() {
        // Stored but stale from the start: every use revalidates (`no-cache`, max-age=0).
        born.checked_sub(Duration::from_secs(1)).unwrap_or(born)
    } else {
        born.checked_add(ttl).unwrap_or(born)
    }
}

/// `stale-while-revalidate` / `stale-if-error` seconds; zero when `must-revalidate`,
/// `proxy-revalidate` or `s-maxage` forbid serving stale (Pingora's reading).
fn stale_windows(cc: Option<&CacheControl>) -> (u32, u32) {
    let secs = |d: Option<Duration>| d.map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    match cc {
        Some(cc) => (
            secs(cc.serve_stale_while_revalidate_duration()),
            secs(cc.serve_stale_if_error_duration()),
        ),
        None => (0, 0),
    }
}

fn vary_names(resp: &ResponseHeader) -> impl Iterator<Item = &str> {
    resp.headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
}

fn varies_on_everything(resp: &ResponseHeader) -> bool {
    vary_names(resp).any(|n| n == "*")
}

/// The variant of a stored response this request selects: a hash of the request's values
/// of the headers the response's `Vary` names (`None` when it names none), normalised
/// so that requests that mean the same select the same variant.
pub fn variance(meta: &CacheMeta, req: &RequestHeader) -> Option<pingora::cache::key::HashBinary> {
    let mut builder = pingora::cache::VarianceBuilder::new();
    let mut any = false;
    for name in vary_names(meta.response_header()) {
        any = true;
        let name = name.to_ascii_lowercase();
        let value = super::vary::normalised(&name, req.headers.get_all(name.as_str()));
        builder.add_owned_name_value(name, value.into_bytes());
    }
    if any {
        builder.finalize()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: RouteCache = RouteCache {
        ttl: Duration::from_secs(300),
        authorized: false,
    };

    fn settings() -> CacheSettings {
        crate::config::cache_defaults()
    }

    fn admit(resp: &ResponseHeader, route: &RouteCache, authorized: bool) -> RespCacheable {
        super::admit(resp, route, &settings(), authorized, Arrival::now())
    }

    fn resp(status: u16, headers: &[(&'static str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(*k, *v).unwrap();
        }
        r
    }

    fn fresh_secs(c: RespCacheable) -> Option<i64> {
        match c {
            RespCacheable::Cacheable(meta) => Some(match meta.fresh_until().duration_since(SystemTime::now()) {
                Ok(d) => d.as_secs_f64().round() as i64,
                Err(e) => -(e.duration().as_secs_f64().round() as i64),
            }),
            RespCacheable::Uncacheable(_) => None,
        }
    }

    #[test]
    fn freshness_sources_in_order() {
        assert_eq!(
            fresh_secs(admit(&resp(200, &[("cache-control", "max-age=60")]), &ROUTE, false)),
            Some(60)
        );
        assert_eq!(
            fresh_secs(admit(
                &resp(200, &[("cache-control", "max-age=60, s-maxage=10")]),
                &ROUTE,
                false
            )),
            Some(10)
        );
        assert_eq!(fresh_secs(admit(&resp(200, &[]), &ROUTE, false)), Some(300));
        assert_eq!(
            fresh_secs(admit(
                &resp(200, &[("cache-control", "max-age=60"), ("age", "20")]),
                &ROUTE,
                false
            )),
            Some(40)
        );
        assert_eq!(
            fresh_secs(admit(&resp(200, &[("cache-control", "no-cache")]), &ROUTE, false)),
            Some(-1)
        );
        assert_eq!(
            fresh_secs(admit(&resp(200, &[("expires", "0")]), &ROUTE, false)).map(|s| s < 0),
            Some(true)
        );
    }

    #[test]
    fn what_is_never_stored() {
        for headers in [
            &[("cache-control", "no-store")][..],
            &[("cache-control", "private, max-age=60")][..],
            &[("vary", "accept, *")][..],
            &[("set-cookie", "a=b")][..],
        ] {
            assert!(
                fresh_secs(admit(&resp(200, headers), &ROUTE, false)).is_none(),
                "{headers:?}"
            );
        }
        assert!(fresh_secs(admit(&resp(500, &[]), &ROUTE, false)).is_none());
        assert!(fresh_secs(admit(&resp(302, &[]), &ROUTE, false)).is_none());
        assert!(fresh_secs(admit(&resp(302, &[("cache-control", "max-age=5")]), &ROUTE, false)).is_some());
    }

    #[test]
    fn authorized_requests_need_permission() {
        assert!(fresh_secs(admit(&resp(200, &[("cache-control", "max-age=60")]), &ROUTE, true)).is_none());
        assert!(fresh_secs(admit(
            &resp(200, &[("cache-control", "public, max-age=60")]),
            &ROUTE,
            true
        ))
        .is_some());
        assert!(fresh_secs(admit(&resp(200, &[("cache-control", "s-maxage=60")]), &ROUTE, true)).is_some());
        let opted_in = RouteCache {
            authorized: true,
            ..ROUTE
        };
        assert!(fresh_secs(admit(&resp(200, &[]), &opted_in, true)).is_some());
    }
}

#[cfg(test)]
mod status_tests {
    use super::*;

    fn fresh_for(status: u16, headers: &[(&'static str, &str)], settings: &CacheSettings) -> Option<i64> {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(*k, *v).unwrap();
        }
        let route = RouteCache {
            ttl: Duration::from_secs(300),
            authorized: false,
        };
        match super::admit(&r, &route, settings, false, Arrival::now()) {
            RespCacheable::Cacheable(meta) => Some(
                meta.fresh_until()
                    .duration_since(SystemTime::now())
                    .map_or(-1, |d| d.as_secs_f64().round() as i64),
            ),
            RespCacheable::Uncacheable(_) => None,
        }
    }

    fn defaults() -> CacheSettings {
        crate::config::cache_defaults()
    }

    #[test]
    fn any_status_with_explicit_freshness_is_stored() {
        let s = defaults();
        for status in [200, 302, 303, 307, 400, 403, 404, 500, 502, 503] {
            assert_eq!(
                fresh_for(status, &[("cache-control", "max-age=30")], &s),
                Some(30),
                "{status}"
            );
        }
        assert_eq!(
            fresh_for(500, &[], &s),
            None,
            "no freshness, not heuristically cacheable"
        );
        assert_eq!(fresh_for(500, &[("cache-control", "public")], &s), Some(300), "public");
        for never in [206, 304] {
            assert_eq!(
                fresh_for(never, &[("cache-control", "max-age=30")], &s),
                None,
                "{never}"
            );
        }
    }

    #[test]
    fn heuristic_freshness_is_opt_in() {
        let now = SystemTime::now();
        let lm = httpdate::fmt_http_date(now - Duration::from_secs(1000));
        let date = httpdate::fmt_http_date(now);
        let headers = [("last-modified", lm.as_str()), ("date", date.as_str())];
        let mut s = defaults();
        assert_eq!(fresh_for(200, &headers, &s), Some(300), "route ttl");
        s.heuristic = true;
        assert_eq!(fresh_for(200, &headers, &s), Some(100), "10 %");
        s.heuristic_max = Duration::from_secs(20);
        assert_eq!(fresh_for(200, &headers, &s), Some(20), "capped");
        assert_eq!(fresh_for(200, &[], &s), Some(300), "no Last-Modified: route ttl");
    }

    #[test]
    fn must_understand_overrides_no_store_for_understood_statuses() {
        let s = defaults();
        let cc = [("cache-control", "must-understand, no-store, max-age=60")];
        assert_eq!(fresh_for(200, &cc, &s), Some(60));
        assert_eq!(fresh_for(299, &cc, &s), None, "a status whose rules are unknown");
        assert_eq!(fresh_for(200, &[("cache-control", "no-store, max-age=60")], &s), None);
    }

    #[test]
    fn targeted_fields_replace_cache_control_and_expires() {
        let s = defaults();
        let h = [("cache-control", "no-store"), ("cdn-cache-control", "max-age=40")];
        assert_eq!(fresh_for(200, &h, &s), Some(40));
        let h = [
            ("cdn-cache-control", "max-age=40"),
            ("gatehouse-cache-control", "max-age=50"),
        ];
        assert_eq!(fresh_for(200, &h, &s), Some(50));
        let h = [("expires", "0"), ("cdn-cache-control", "stale-if-error=10")];
        assert_eq!(fresh_for(200, &h, &s), Some(300), "Expires ignored: route ttl");
        let h = [("cache-control", "max-age=10"), ("cdn-cache-control", "no-store")];
        assert_eq!(fresh_for(200, &h, &s), None);
    }
}
