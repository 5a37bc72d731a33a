//! What may be stored and for how long (RFC 9111, shared-cache rules). Pingora's cache
//! state machine calls this on every origin response of a caching route; its directive
//! parser (`CacheControl`) reads the header, the decisions are ours.

use crate::config::model::RouteCache;
use http::header::{AGE, SET_COOKIE, VARY};
use pingora::cache::cache_control::{CacheControl, Cacheable, InterpretCacheControl};
use pingora::cache::filters::calculate_expires_header_time;
use pingora::cache::{CacheMeta, NoCacheReason, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use std::time::{Duration, SystemTime};

/// Statuses a cache may store with a freshness it picks itself (RFC 9110 §15.1,
/// "heuristically cacheable"); here that freshness is the route's `ttl`.
fn heuristically_cacheable(status: u16) -> bool {
    matches!(status, 200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501)
}

/// Statuses stored only when the origin gives them an explicit freshness.
fn cacheable_when_explicit(status: u16) -> bool {
    heuristically_cacheable(status) || matches!(status, 302 | 307)
}

/// Decides whether `resp` is stored, and builds its freshness if so. `authorized`: the
/// request carried credentials (an Authorization header, or the gateway identified the
/// caller), so its answer may be personal.
pub fn admit(resp: &ResponseHeader, route: &RouteCache, authorized: bool) -> RespCacheable {
    use RespCacheable::Uncacheable;
    let status = resp.status.as_u16();
    if varies_on_everything(resp) {
        return Uncacheable(NoCacheReason::Custom("vary *"));
    }
    // A cookie set for one client must not be replayed to the next (what nginx does too).
    if resp.headers.contains_key(SET_COOKIE) {
        return Uncacheable(NoCacheReason::Custom("set-cookie"));
    }
    let cc = CacheControl::from_resp_headers(resp);
    if cc.as_ref().is_some_and(|cc| cc.is_cacheable() == Cacheable::No) {
        return Uncacheable(NoCacheReason::OriginNotCache);
    }
    if authorized && !route.authorized && !cc.as_ref().is_some_and(|cc| cc.allow_caching_authorized_req()) {
        return Uncacheable(NoCacheReason::Custom("authorized"));
    }

    let now = SystemTime::now();
    // The response's age on arrival (RFC 9111 §4.2.3): freshness counts from when the
    // origin made it, and the Age we send later includes it.
    let age_on_arrival = age_header(resp);
    let born = now.checked_sub(age_on_arrival).unwrap_or(now);
    let fresh_until = match cc.as_ref().and_then(|cc| cc.fresh_duration()) {
        Some(ttl) if cacheable_when_explicit(status) => freshness_end(born, ttl),
        Some(_) => return Uncacheable(NoCacheReason::OriginNotCache),
        None => match calculate_expires_header_time(resp) {
            Some(expires) if cacheable_when_explicit(status) => expires,
            Some(_) => return Uncacheable(NoCacheReason::OriginNotCache),
            // No freshness of the gateway's own (`ttl: none` / `0s`): kept only if it can be
            // revalidated, and then stale from the start (every use asks the origin).
            None if heuristically_cacheable(status) && route.ttl.is_zero() && !has_validator(resp) => {
                return Uncacheable(NoCacheReason::Custom("no freshness, no validator"))
            }
            None if heuristically_cacheable(status) => freshness_end(born, route.ttl),
            None => return Uncacheable(NoCacheReason::OriginNotCache),
        },
    };
    let (swr, sie) = stale_windows(cc.as_ref());
    let mut header = resp.clone();
    if let Some(cc) = &cc {
        cc.strip_private_headers(&mut header);
    }
    // The stored copy's age is computed from `born`; an origin Age would be stale.
    header.remove_header(&AGE);
    let mut meta = CacheMeta::new(fresh_until, now, swr, sie, header);
    if born != now {
        meta.set_epoch_override(born);
    }
    RespCacheable::Cacheable(meta)
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

fn age_header(resp: &ResponseHeader) -> Duration {
    resp.headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs)
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
/// of the headers the response's `Vary` names (`None` when it names none).
pub fn variance(meta: &CacheMeta, req: &RequestHeader) -> Option<pingora::cache::key::HashBinary> {
    let mut builder = pingora::cache::VarianceBuilder::new();
    let mut any = false;
    for name in vary_names(meta.response_header()) {
        any = true;
        let name = name.to_ascii_lowercase();
        // Repeated header lines count as one comma-joined value.
        let value: Vec<u8> = req
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| v.as_bytes())
            .collect::<Vec<_>>()
            .join(&b","[..]);
        builder.add_owned_name_value(name, value);
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
