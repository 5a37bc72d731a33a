//! The cache's reading of an origin's response: Cache-Control, Age, Expires, Date, Vary,
//! Set-Cookie, the targeted fields (RFC 9213), Content-Range and the status, all arbitrary,
//! under the default settings and under heuristic freshness with `range_miss: pass`. Never
//! a panic; never a stored `no-store` (without must-understand), Set-Cookie, 304 or 1xx
//! answer.
#![no_main]

use gatehouse::cache::policy::{admit, variance, Arrival};
use gatehouse::config::cache_defaults;
use gatehouse::config::model::RouteCache;
use libfuzzer_sys::fuzz_target;
use pingora::cache::RespCacheable;
use pingora::http::{RequestHeader, ResponseHeader};
use std::time::Duration;

const NAMES: [&str; 11] = [
    "cache-control",
    "age",
    "expires",
    "date",
    "vary",
    "set-cookie",
    "pragma",
    "last-modified",
    "cdn-cache-control",
    "gatehouse-cache-control",
    "content-range",
];

fuzz_target!(|data: &[u8]| {
    let Some((&status, rest)) = data.split_first() else {
        return;
    };
    let status = [100, 200, 203, 204, 206, 301, 304, 404, 405, 410, 500, 502][usize::from(status) % 12];
    let Ok(mut resp) = ResponseHeader::build(status, None) else {
        return;
    };
    // Lines of `<name index byte><value>`.
    for line in rest.split(|&b| b == b'\n') {
        let Some((&which, value)) = line.split_first() else {
            continue;
        };
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            let _ = resp.append_header(NAMES[usize::from(which) % NAMES.len()], value);
        }
    }
    let plain = cache_defaults();
    let mut opted_in = cache_defaults();
    opted_in.heuristic = true;
    opted_in.range_pass = true;
    let targeted =
        resp.headers.contains_key("cdn-cache-control") || resp.headers.contains_key("gatehouse-cache-control");
    for (authorized, settings) in [(false, &plain), (true, &plain), (false, &opted_in)] {
        let route = RouteCache {
            ttl: Duration::from_secs(60),
            authorized,
        };
        let arrival = Arrival::now();
        if let RespCacheable::Cacheable(meta) = admit(&resp, &route, settings, authorized, arrival) {
            assert!(status >= 200 && status != 304, "stored a {status}");
            let cc = resp
                .headers
                .get_all("cache-control")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(",")
                .to_ascii_lowercase();
            // Directive names, where no quoted string can hide a comma.
            let directives = || cc.split(',').map(|d| d.split('=').next().unwrap_or_default().trim());
            // A targeted field replaces Cache-Control; must-understand overrides no-store.
            if !cc.contains('"') && !targeted && !directives().any(|d| d == "must-understand") {
                assert!(!directives().any(|d| d == "no-store"), "stored despite no-store: {cc}");
            }
            assert!(!resp.headers.contains_key("set-cookie"), "stored a Set-Cookie answer");
            let req = RequestHeader::build("GET", b"/", None).expect("request");
            let _ = variance(&meta, &req);
        }
    }
});
