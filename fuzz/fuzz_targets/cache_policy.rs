//! The cache's reading of an origin's response: Cache-Control, Age, Expires, Date, Vary,
//! Set-Cookie and the status, all arbitrary. Never a panic; never a stored `no-store`,
//! `private` or Set-Cookie answer.
#![no_main]

use gatehouse::cache::policy::{admit, variance};
use gatehouse::config::model::RouteCache;
use libfuzzer_sys::fuzz_target;
use pingora::cache::RespCacheable;
use pingora::http::{RequestHeader, ResponseHeader};
use std::time::Duration;

const NAMES: [&str; 8] = [
    "cache-control",
    "age",
    "expires",
    "date",
    "vary",
    "set-cookie",
    "pragma",
    "last-modified",
];

fuzz_target!(|data: &[u8]| {
    let Some((&status, rest)) = data.split_first() else {
        return;
    };
    let status = [200, 203, 204, 206, 301, 304, 404, 405, 410, 500, 502][usize::from(status) % 11];
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
    for authorized in [false, true] {
        let route = RouteCache {
            ttl: Duration::from_secs(60),
            authorized,
        };
        if let RespCacheable::Cacheable(meta) = admit(&resp, &route, authorized) {
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
            if !cc.contains('"') {
                assert!(!directives().any(|d| d == "no-store"), "stored despite no-store: {cc}");
            }
            assert!(!resp.headers.contains_key("set-cookie"), "stored a Set-Cookie answer");
            let req = RequestHeader::build("GET", b"/", None).expect("request");
            let _ = variance(&meta, &req);
        }
    }
});
