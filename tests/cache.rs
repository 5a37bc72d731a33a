//! Response caching against a real origin that counts its hits: the count proves whether
//! the cache answered. One rule of RFC 9111 (or of the gateway's cache config) per test.

mod common;

use common::origin::{reply, Origin, Reply, Seen};
use common::{client, eventually, Gateway};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Routes: `/short/` caches with a 1 s default TTL, `/opt-in/` shares answers to
/// authenticated requests, `/plain/` does not cache, everything else caches (5 min).
fn config(origin: SocketAddr, extra: &str) -> String {
    format!(
        r#"{extra}
upstreams:
  origin: {{ targets: ["{origin}"] }}
routes:
  - {{ name: short, prefix: /short/, upstream: origin, cache: {{ ttl: 1s }} }}
  - {{ name: opt-in, prefix: /opt-in/, upstream: origin, cache: {{ authorized: true }} }}
  - {{ name: plain, prefix: /plain/, upstream: origin }}
  - {{ name: cached, prefix: /, upstream: origin, cache: true }}
"#
    )
}

/// The origin's standard script: the path chooses the headers, the body says which
/// origin response it is (`<path> #<n>`).
fn standard(req: &Seen, n: usize) -> Reply {
    let path = req.path.split('?').next().unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or("");
    let body = format!("{} #{n}", req.path);
    let etag = format!("\"v{}\"", n / 100);
    match name {
        "max-age" => reply(&[("cache-control", "max-age=60")], body),
        "s-maxage" => reply(&[("cache-control", "max-age=0, s-maxage=60")], body),
        "no-store" => reply(&[("cache-control", "no-store, max-age=60")], body),
        "private" => reply(&[("cache-control", "private, max-age=60")], body),
        "public" => reply(&[("cache-control", "public, max-age=60")], body),
        "silent" => reply(&[], body),
        "cookie" => reply(&[("cache-control", "max-age=60"), ("set-cookie", "session=1")], body),
        "aged" => reply(&[("cache-control", "max-age=60"), ("age", "50")], body),
        "vary" => {
            let lang = req
                .headers
                .get("accept-language")
                .map_or("none", |v| v.to_str().unwrap());
            reply(
                &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
                format!("{lang} #{n}"),
            )
        }
        "vary-star" => reply(&[("cache-control", "max-age=60"), ("vary", "*")], body),
        "expires" => {
            let at = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(60));
            reply(&[("expires", &at)], body)
        }
        "expired" => reply(&[("expires", "Thu, 01 Jan 1970 00:00:00 GMT")], body),
        "no-cache" | "etag" => {
            let cc = if name == "no-cache" { "no-cache" } else { "max-age=1" };
            if req
                .headers
                .get("if-none-match")
                .is_some_and(|v| v.to_str().unwrap() == etag)
            {
                Reply {
                    status: 304,
                    headers: vec![("etag", etag), ("cache-control", cc.into())],
                    ..Default::default()
                }
            } else {
                reply(&[("cache-control", cc), ("etag", &etag)], body)
            }
        }
        "last-modified" => {
            let lm = "Wed, 21 Oct 2015 07:28:00 GMT";
            if req
                .headers
                .get("if-modified-since")
                .is_some_and(|v| v.to_str().unwrap() == lm)
            {
                Reply {
                    status: 304,
                    headers: vec![("last-modified", lm.into()), ("cache-control", "max-age=60".into())],
                    ..Default::default()
                }
            } else {
                reply(&[("cache-control", "max-age=1"), ("last-modified", lm)], body)
            }
        }
        "validator-only" => {
            // An ETag and no freshness at all.
            if req
                .headers
                .get("if-none-match")
                .is_some_and(|v| v.to_str().unwrap() == "\"v0\"")
            {
                Reply {
                    status: 304,
                    headers: vec![("etag", "\"v0\"".into())],
                    ..Default::default()
                }
            } else {
                reply(&[("etag", "\"v0\"")], body)
            }
        }
        "error" => Reply {
            status: 500,
            body: body.into_bytes(),
            ..Default::default()
        },
        _ => reply(&[("cache-control", "max-age=60")], body),
    }
}

struct Answer {
    status: u16,
    x_cache: Option<String>,
    age: Option<u64>,
    body: String,
}

async fn fetch(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = client().request(method.parse().unwrap(), gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let header = |name: &str| resp.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    let (x_cache, age) = (header("x-cache"), header("age").map(|a| a.parse().unwrap()));
    let status = resp.status().as_u16();
    Answer {
        status,
        x_cache,
        age,
        body: resp.text().await.unwrap(),
    }
}

async fn get(gw: &Gateway, path: &str) -> Answer {
    fetch(gw, "GET", path, &[]).await
}

async fn start(extra: &str) -> (Origin, Gateway) {
    let origin = Origin::start(standard).await;
    let gw = Gateway::start(&config(origin.addr, extra)).await;
    (origin, gw)
}

fn x_cache(a: &Answer) -> &str {
    a.x_cache.as_deref().unwrap_or("(none)")
}

#[tokio::test]
async fn max_age_is_served_from_the_cache_with_age() {
    let (origin, gw) = start("").await;
    let first = get(&gw, "/a/max-age?q=1").await;
    assert_eq!((first.status, x_cache(&first)), (200, "MISS"));
    let second = get(&gw, "/a/max-age?q=1").await;
    assert_eq!((second.status, x_cache(&second)), (200, "HIT"));
    assert_eq!(second.body, first.body);
    assert!(second.age.is_some(), "a hit carries Age");
    assert_eq!(origin.hits("/a/max-age?q=1"), 1);

    // HEAD is answered from the stored GET; another query is another entry.
    let head = fetch(&gw, "HEAD", "/a/max-age?q=1", &[]).await;
    assert_eq!((head.status, x_cache(&head), head.body.as_str()), (200, "HIT", ""));
    assert_eq!(origin.hits("/a/max-age?q=1"), 1);
    assert_eq!(x_cache(&get(&gw, "/a/max-age?q=2").await), "MISS");
    // The host is part of the key.
    let other_host = fetch(&gw, "GET", "/a/max-age?q=1", &[("host", "other.test")]).await;
    assert_eq!(x_cache(&other_host), "MISS");
    assert_eq!(origin.hits("/a/max-age?q=1"), 2);

    // A HEAD on a cold key fetches (and stores) the GET.
    let head = fetch(&gw, "HEAD", "/a/max-age?q=3", &[]).await;
    assert_eq!((head.status, x_cache(&head)), (200, "MISS"));
    assert_eq!(origin.last("/a/max-age?q=3").method, "GET");
    let get_after_head = get(&gw, "/a/max-age?q=3").await;
    assert_eq!(
        (x_cache(&get_after_head), get_after_head.body.as_str()),
        ("HIT", "/a/max-age?q=3 #0")
    );

    // A byte range of a stored response comes from the store.
    let range = fetch(&gw, "GET", "/a/max-age?q=1", &[("range", "bytes=0-3")]).await;
    assert_eq!((range.status, range.body.as_str()), (206, "/a/m"));
    assert_eq!(origin.hits("/a/max-age?q=1"), 2);
}

#[tokio::test]
async fn s_maxage_wins_over_max_age_in_a_shared_cache() {
    let (origin, gw) = start("").await;
    get(&gw, "/s-maxage").await;
    assert_eq!(x_cache(&get(&gw, "/s-maxage").await), "HIT");
    assert_eq!(origin.hits("/s-maxage"), 1);
}

#[tokio::test]
async fn no_store_private_set_cookie_and_vary_star_are_never_stored() {
    let (origin, gw) = start("").await;
    for path in ["/no-store", "/private", "/cookie", "/vary-star", "/error"] {
        for _ in 0..3 {
            let a = get(&gw, path).await;
            assert_eq!(x_cache(&a), "MISS", "{path}");
        }
        assert_eq!(origin.hits(path), 3, "{path} must reach the origin every time");
    }
}

#[tokio::test]
async fn expires_sets_freshness_and_a_past_date_means_stale() {
    let (origin, gw) = start("").await;
    get(&gw, "/expires").await;
    assert_eq!(x_cache(&get(&gw, "/expires").await), "HIT");
    assert_eq!(origin.hits("/expires"), 1);
    get(&gw, "/expired").await;
    get(&gw, "/expired").await;
    assert_eq!(origin.hits("/expired"), 2);
}

#[tokio::test]
async fn no_cache_revalidates_every_time_with_the_etag() {
    let (origin, gw) = start("").await;
    let first = get(&gw, "/no-cache").await;
    assert_eq!(x_cache(&first), "MISS");
    for _ in 0..2 {
        let again = get(&gw, "/no-cache").await;
        assert_eq!((again.status, x_cache(&again)), (200, "REVALIDATED"));
        assert_eq!(again.body, first.body, "the stored body, confirmed by a 304");
    }
    assert_eq!(origin.hits("/no-cache"), 3);
    let last = origin.last("/no-cache");
    assert_eq!(last.headers.get("if-none-match").unwrap(), "\"v0\"");
}

#[tokio::test]
async fn a_304_refreshes_the_stored_entry() {
    let (origin, gw) = start("").await;
    let first = get(&gw, "/last-modified").await;
    tokio::time::sleep(Duration::from_millis(2100)).await; // max-age=1 runs out
    let revalidated = get(&gw, "/last-modified").await;
    assert_eq!(x_cache(&revalidated), "REVALIDATED");
    assert_eq!(revalidated.body, first.body);
    assert!(origin.last("/last-modified").headers.contains_key("if-modified-since"));
    // The 304 said max-age=60: fresh again.
    let hit = get(&gw, "/last-modified").await;
    assert_eq!(x_cache(&hit), "HIT");
    assert_eq!(origin.hits("/last-modified"), 2);
}

#[tokio::test]
async fn age_from_the_origin_counts_against_freshness() {
    let (origin, gw) = start("").await;
    get(&gw, "/aged").await;
    let hit = get(&gw, "/aged").await;
    assert_eq!(x_cache(&hit), "HIT");
    assert!(hit.age.unwrap() >= 50, "Age includes the origin's 50 s: {:?}", hit.age);
    assert_eq!(origin.hits("/aged"), 1);
}

#[tokio::test]
async fn vary_keeps_one_variant_per_header_value() {
    let (origin, gw) = start("").await;
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];
    assert_eq!(fetch(&gw, "GET", "/vary", &en).await.body, "en #0");
    let en_hit = fetch(&gw, "GET", "/vary", &en).await;
    assert_eq!((x_cache(&en_hit), en_hit.body.as_str()), ("HIT", "en #0"));
    let fr_miss = fetch(&gw, "GET", "/vary", &fr).await;
    assert_eq!((x_cache(&fr_miss), fr_miss.body.as_str()), ("MISS", "fr #1"));
    let fr_hit = fetch(&gw, "GET", "/vary", &fr).await;
    assert_eq!((x_cache(&fr_hit), fr_hit.body.as_str()), ("HIT", "fr #1"));
    assert_eq!(fetch(&gw, "GET", "/vary", &en).await.body, "en #0");
    assert_eq!(origin.hits("/vary"), 2);
}

#[tokio::test]
async fn authorization_is_neither_served_from_nor_stored_unless_allowed() {
    let (origin, gw) = start("").await;
    let auth = [("authorization", "Bearer alice")];
    // max-age alone does not allow sharing an authorized answer.
    fetch(&gw, "GET", "/private-data/max-age", &auth).await;
    fetch(&gw, "GET", "/private-data/max-age", &auth).await;
    assert_eq!(origin.hits("/private-data/max-age"), 2);
    // ...nor serving a stored one to a caller with credentials.
    get(&gw, "/shared/max-age").await;
    let bypass = fetch(&gw, "GET", "/shared/max-age", &auth).await;
    assert_eq!(x_cache(&bypass), "BYPASS");
    assert_eq!(origin.hits("/shared/max-age"), 2);
    // `public` (and s-maxage) allow it.
    fetch(&gw, "GET", "/p/public", &auth).await;
    assert_eq!(x_cache(&fetch(&gw, "GET", "/p/public", &auth).await), "HIT");
    assert_eq!(origin.hits("/p/public"), 1);
    // A route can opt in.
    fetch(&gw, "GET", "/opt-in/max-age", &auth).await;
    assert_eq!(x_cache(&fetch(&gw, "GET", "/opt-in/max-age", &auth).await), "HIT");
    assert_eq!(origin.hits("/opt-in/max-age"), 1);
}

#[tokio::test]
async fn routes_default_ttl_applies_when_the_origin_is_silent() {
    let (origin, gw) = start("").await;
    get(&gw, "/silent").await;
    assert_eq!(x_cache(&get(&gw, "/silent").await), "HIT", "5 min default");
    assert_eq!(origin.hits("/silent"), 1);

    get(&gw, "/short/silent").await;
    assert_eq!(x_cache(&get(&gw, "/short/silent").await), "HIT");
    tokio::time::sleep(Duration::from_millis(2100)).await; // the route's ttl: 1s
    assert_eq!(x_cache(&get(&gw, "/short/silent").await), "MISS");
    assert_eq!(origin.hits("/short/silent"), 2);

    // A route without `cache` neither caches nor says X-Cache.
    let plain = get(&gw, "/plain/max-age").await;
    assert!(plain.x_cache.is_none());
    get(&gw, "/plain/max-age").await;
    assert_eq!(origin.hits("/plain/max-age"), 2);
}

#[tokio::test]
async fn enable_caching_false_turns_it_off() {
    let origin = Origin::start(standard).await;
    let gw = Gateway::start_with_env(&config(origin.addr, ""), &[("ENABLE_CACHING", "false")]).await;
    for _ in 0..3 {
        assert!(get(&gw, "/max-age").await.x_cache.is_none());
    }
    assert_eq!(origin.hits("/max-age"), 3);
}

#[tokio::test]
async fn cache_ttl_env_sets_the_default_ttl() {
    let origin = Origin::start(standard).await;
    let gw = Gateway::start_with_env(&config(origin.addr, ""), &[("CACHE_TTL", "1")]).await;
    get(&gw, "/silent").await;
    assert_eq!(x_cache(&get(&gw, "/silent").await), "HIT");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(x_cache(&get(&gw, "/silent").await), "MISS");
    assert_eq!(origin.hits("/silent"), 2);
}

#[tokio::test]
async fn a_hundred_concurrent_misses_make_one_origin_request() {
    let origin = Origin::start(|req, n| Reply {
        delay: Duration::from_millis(300),
        ..reply(&[("cache-control", "max-age=60")], format!("{} #{n}", req.path))
    })
    .await;
    let gw = Gateway::start(&config(origin.addr, "")).await;
    let gw = Arc::new(gw);
    let requests = (0..100).map(|_| {
        let gw = gw.clone();
        tokio::spawn(async move { get(&gw, "/cold").await })
    });
    let answers = futures_util::future::join_all(requests).await;
    for a in &answers {
        let a = a.as_ref().unwrap();
        assert_eq!((a.status, a.body.as_str()), (200, "/cold #0"));
    }
    assert_eq!(origin.hits("/cold"), 1, "the cache lock let one request through");
    let misses = answers
        .iter()
        .filter(|a| x_cache(a.as_ref().unwrap()) == "MISS")
        .count();
    assert_eq!(misses, 1, "the others waited and were served the stored answer");
}

#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_refreshes_behind() {
    let origin = Origin::start(|req, n| Reply {
        // Revalidations are slow: a stale answer must not wait for them.
        delay: if n > 0 {
            Duration::from_millis(1500)
        } else {
            Duration::ZERO
        },
        // The refresh took 1.5 s, which counts in its age (RFC 9111 §4.2.3): it needs
        // more than max-age=1 to arrive fresh.
        ..reply(
            &[(
                "cache-control",
                if n == 0 {
                    "max-age=1, stale-while-revalidate=60"
                } else {
                    "max-age=60, stale-while-revalidate=60"
                },
            )],
            format!("{} #{n}", req.path),
        )
    })
    .await;
    let gw = Gateway::start(&config(origin.addr, "")).await;
    get(&gw, "/swr").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let started = std::time::Instant::now();
    let stale = get(&gw, "/swr").await;
    assert_eq!((x_cache(&stale), stale.body.as_str()), ("STALE", "/swr #0"));
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    eventually(Duration::from_secs(10), "the background refresh", || async {
        get(&gw, "/swr").await.body == "/swr #1"
    })
    .await;
    assert_eq!(origin.hits("/swr"), 2);
}

#[tokio::test]
async fn stale_if_error_serves_the_old_copy_when_the_origin_fails() {
    let origin = Origin::start(|req, n| {
        let cc = if req.path.contains("strict") {
            "max-age=1, must-revalidate"
        } else {
            "max-age=1, stale-if-error=60"
        };
        if n == 0 {
            reply(&[("cache-control", cc)], format!("{} #{n}", req.path))
        } else {
            Reply {
                status: 503,
                body: b"origin down".to_vec(),
                ..Default::default()
            }
        }
    })
    .await;
    let gw = Gateway::start(&config(origin.addr, "")).await;
    get(&gw, "/sie").await;
    get(&gw, "/strict").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = get(&gw, "/sie").await;
    assert_eq!(
        (stale.status, x_cache(&stale), stale.body.as_str()),
        (200, "STALE", "/sie #0")
    );
    // must-revalidate forbids it: the error goes through.
    let strict = get(&gw, "/strict").await;
    assert_eq!(strict.status, 503);
    assert_eq!(origin.hits("/sie"), 2);
}

#[tokio::test]
async fn unsafe_methods_invalidate_the_url() {
    let (origin, gw) = start("").await;
    get(&gw, "/item").await;
    assert_eq!(x_cache(&get(&gw, "/item").await), "HIT");
    let post = fetch(&gw, "POST", "/item", &[]).await;
    assert_eq!((post.status, x_cache(&post)), (200, "BYPASS"));
    assert_eq!(x_cache(&get(&gw, "/item").await), "MISS");
    assert_eq!(origin.hits("/item"), 3);
}

#[tokio::test]
async fn purge_by_url_and_by_prefix() {
    let (origin, gw) = start("").await;
    for path in ["/docs/a", "/docs/b", "/docs/c?x=1", "/other"] {
        get(&gw, path).await;
        assert_eq!(x_cache(&get(&gw, path).await), "HIT");
    }
    let admin = client();
    let purge = |body: serde_json::Value| admin.post(gw.admin_url("/admin/cache/purge")).json(&body).send();
    let r = purge(serde_json::json!({ "url": format!("http://127.0.0.1:{}/docs/a", gw.port) }))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["purged"], 1);
    assert_eq!(x_cache(&get(&gw, "/docs/a").await), "MISS");
    assert_eq!(x_cache(&get(&gw, "/docs/b").await), "HIT");

    let r = purge(serde_json::json!({ "prefix": "/docs/" })).await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["purged"], 3);
    for path in ["/docs/a", "/docs/b", "/docs/c?x=1"] {
        assert_eq!(x_cache(&get(&gw, path).await), "MISS", "{path}");
    }
    assert_eq!(x_cache(&get(&gw, "/other").await), "HIT");
    assert_eq!(origin.hits("/docs/b"), 2);

    let bad = purge(serde_json::json!({ "path": "/x" })).await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.json::<serde_json::Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn metrics_count_results_per_route() {
    let (_origin, gw) = start("").await;
    get(&gw, "/m").await;
    get(&gw, "/m").await;
    // Counted when the request is logged, which may come just after the client has the
    // answer.
    eventually(Duration::from_secs(5), "the hit counted", || async {
        gw.metrics_text()
            .await
            .contains(r#"gateway_cache_total{result="hit",route="cached"} 1"#)
    })
    .await;
    let text = gw.metrics_text().await;
    assert!(
        text.contains(r#"gateway_cache_total{result="miss",route="cached"} 1"#),
        "{text}"
    );
    assert!(text.contains("gateway_cache_entries 1"), "{text}");
}

#[tokio::test]
async fn the_size_bound_evicts_and_memory_stays_bounded() {
    const BODY: usize = 256 * 1024;
    let origin = Origin::start(|_, _| reply(&[("cache-control", "max-age=600")], vec![b'x'; BODY])).await;
    let gw = Gateway::start(&config(origin.addr, "cache: { max_size: 4MiB, max_object_size: 1MiB }")).await;
    // Warm up the allocator and connection pools before measuring.
    for i in 0..20 {
        get(&gw, &format!("/warm/{i}")).await;
    }
    let before = gw.rss_kib();
    // 200 distinct objects = 50 MiB through a 4 MiB cache.
    for i in 0..200 {
        let a = get(&gw, &format!("/fill/{i}")).await;
        assert_eq!(a.body.len(), BODY);
    }
    let stats: serde_json::Value = client()
        .get(gw.admin_url("/admin/cache"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (bytes, entries) = (stats["bytes"].as_u64().unwrap(), stats["entries"].as_u64().unwrap());
    assert!(bytes <= 4 << 20, "{stats}");
    assert!((5..20).contains(&entries), "evicted down to what fits: {stats}");
    let grown = gw.rss_kib().saturating_sub(before);
    assert!(grown < 24 * 1024, "RSS grew {grown} KiB for a 4 MiB cache");
    // The newest entry is still served from the cache.
    assert_eq!(x_cache(&get(&gw, "/fill/199").await), "HIT");
}

#[tokio::test]
async fn objects_over_max_object_size_are_not_stored() {
    let origin = Origin::start(|_, _| reply(&[("cache-control", "max-age=600")], vec![b'x'; 300 * 1024])).await;
    let gw = Gateway::start(&config(origin.addr, "cache: { max_object_size: 256KiB }")).await;
    for _ in 0..2 {
        let a = get(&gw, "/big").await;
        assert_eq!((a.status, a.body.len()), (200, 300 * 1024));
    }
    assert_eq!(origin.hits("/big"), 2);
}

/// `Cache-Status` (RFC 9211) of an answer.
async fn cache_status(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut req = client().request(method.parse().unwrap(), gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    resp.headers()
        .get("cache-status")
        .map_or("(none)".into(), |v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn cache_status_says_what_the_cache_did_in_rfc_9211_terms() {
    let (_origin, gw) = start("").await;
    assert_eq!(
        cache_status(&gw, "GET", "/cs/max-age", &[]).await,
        "gatehouse; fwd=uri-miss; fwd-status=200; stored"
    );
    let hit = cache_status(&gw, "GET", "/cs/max-age", &[]).await;
    let ttl: i64 = hit
        .strip_prefix("gatehouse; hit; ttl=")
        .unwrap_or_else(|| panic!("{hit}"))
        .parse()
        .unwrap();
    assert!((55..=60).contains(&ttl), "{hit}");
    assert_eq!(
        cache_status(&gw, "GET", "/cs/no-store", &[]).await,
        "gatehouse; fwd=uri-miss; fwd-status=200",
        "not stored"
    );
    assert_eq!(
        cache_status(&gw, "POST", "/cs/max-age", &[]).await,
        "gatehouse; fwd=method; fwd-status=200"
    );
    assert_eq!(
        cache_status(&gw, "GET", "/plain/max-age", &[]).await,
        "(none)",
        "not a caching route"
    );

    // A stored copy past its freshness, confirmed by the origin (304).
    cache_status(&gw, "GET", "/cs/etag", &[]).await;
    // (max-age=1: a poll, since how soon it is stale depends on the clock's second.)
    let mut etag_status = String::new();
    for _ in 0..50 {
        etag_status = cache_status(&gw, "GET", "/cs/etag", &[]).await;
        if etag_status.contains("fwd=stale") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        etag_status.starts_with("gatehouse; fwd=stale; fwd-status=304; ttl="),
        "{etag_status}"
    );
}

#[tokio::test]
async fn ttl_none_stores_only_what_the_origin_made_fresh_or_revalidatable() {
    let origin = Origin::start(standard).await;
    let gw = Gateway::start(&format!(
        "cache: {{ default_ttl: none }}\nupstreams: {{ origin: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: c, prefix: /, upstream: origin, cache: true }}]\n",
        origin.addr
    ))
    .await;
    // Nothing to go by: never stored (formerly stored already stale).
    for _ in 0..2 {
        assert_eq!(x_cache(&get(&gw, "/n/silent").await), "MISS");
    }
    assert_eq!(origin.hits("/n/silent"), 2);
    assert_eq!(
        cache_status(&gw, "GET", "/n/silent", &[]).await,
        "gatehouse; fwd=uri-miss; fwd-status=200"
    );
    // A validator and no freshness: stored stale, every use revalidated.
    assert_eq!(x_cache(&get(&gw, "/n/validator-only").await), "MISS");
    let again = get(&gw, "/n/validator-only").await;
    assert_eq!(
        (x_cache(&again), again.body.as_str()),
        ("REVALIDATED", "/n/validator-only #0")
    );
    assert_eq!(origin.last("/n/validator-only").headers["if-none-match"], "\"v0\"");
    // The origin's own freshness still counts.
    get(&gw, "/n/max-age").await;
    assert_eq!(x_cache(&get(&gw, "/n/max-age").await), "HIT");
}

#[tokio::test]
async fn requests_that_waited_on_a_fill_say_collapsed() {
    let origin = Origin::start(|req, n| Reply {
        // Long enough that all ten are in before the one fill ends.
        delay: Duration::from_millis(1000),
        ..reply(&[("cache-control", "max-age=60")], format!("{} #{n}", req.path))
    })
    .await;
    let gw = Arc::new(Gateway::start(&config(origin.addr, "")).await);
    let requests = (0..10).map(|_| {
        let gw = gw.clone();
        tokio::spawn(async move { cache_status(&gw, "GET", "/slow", &[]).await })
    });
    let statuses: Vec<String> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|s| s.unwrap())
        .collect();
    let fetched = statuses.iter().filter(|s| s.contains("fwd=uri-miss")).count();
    let collapsed = statuses
        .iter()
        .filter(|s| s.starts_with("gatehouse; hit;") && s.ends_with("; collapsed"))
        .count();
    assert_eq!(fetched, 1, "{statuses:#?}");
    assert_eq!(
        collapsed, 9,
        "every other request waited on the one fill: {statuses:#?}"
    );
    assert_eq!(origin.hits("/slow"), 1);
}
