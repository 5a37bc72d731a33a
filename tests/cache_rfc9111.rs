//! The cache's conformance to RFC 9111 (and RFC 9213) where caches commonly get it wrong:
//! Age lists and invalid Age, Expires against the origin's own Date (clocks far off),
//! every HTTP-date form, 304s that change headers, any status with explicit freshness,
//! the heuristic, targeted cache-control, must-understand, Vary normalisation and
//! invalidation by Location. The origin is scripted per path and counts what it is asked:
//! the count proves whether the cache answered.

mod common;

use common::origin::{reply, Origin, Reply, Seen};
use common::Gateway;
use std::time::{Duration, SystemTime};

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("(none)", |v| v.to_str().unwrap())
    }

    fn x_cache(&self) -> &str {
        self.header("x-cache")
    }
}

async fn fetch(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    // Redirects are answers to look at, not to follow.
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = client.request(method.parse().unwrap(), gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

async fn get(gw: &Gateway, path: &str) -> Answer {
    fetch(gw, "GET", path, &[]).await
}

fn config(origin: &Origin, cache: &str) -> String {
    format!(
        "cache: {{ {cache} }}\nupstreams:\n  origin: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: none, prefix: /none/, upstream: origin, cache: {{ ttl: none }} }}\n  - {{ name: cached, prefix: /, upstream: origin, cache: true }}\n",
        origin.addr
    )
}

fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

fn shifted(secs: i64) -> SystemTime {
    let now = SystemTime::now();
    if secs < 0 {
        now - Duration::from_secs(secs.unsigned_abs())
    } else {
        now + Duration::from_secs(secs as u64)
    }
}

fn with_status(status: u16, headers: &[(&'static str, &str)], body: String) -> Reply {
    Reply {
        status,
        ..reply(headers, body)
    }
}

/// Asks twice; true when the second answer came from the cache (the origin saw one).
async fn second_is_hit(gw: &Gateway, origin: &Origin, path: &str) -> bool {
    get(gw, path).await;
    let second = get(gw, path).await;
    let hit = origin.hits(path) == 1;
    assert_eq!(
        hit,
        second.x_cache() == "HIT",
        "{path}: X-Cache agrees with the origin's count"
    );
    hit
}

#[tokio::test]
async fn age_uses_the_first_member_and_an_invalid_age_makes_the_response_stale() {
    let origin = Origin::start(|req: &Seen, n| {
        let age = match req.path.as_str() {
            "/list-fresh" => vec![("age", "10, 7200")],
            "/list-stale" => vec![("age", "7200, 0")],
            "/lines" => vec![("age", "5"), ("age", "3000")],
            "/float" => vec![("age", "1.5")],
            "/negative" => vec![("age", "-1")],
            _ => vec![],
        };
        let mut headers = vec![("cache-control", "max-age=3600")];
        headers.extend(age);
        reply(&headers, format!("#{n}"))
    })
    .await;
    let gw = Gateway::start(&config(&origin, "")).await;

    assert!(second_is_hit(&gw, &origin, "/list-fresh").await);
    let age: u64 = get(&gw, "/list-fresh").await.header("age").parse().unwrap();
    assert!(
        (10..100).contains(&age),
        "Age counts from the first member (10), got {age}"
    );
    assert!(!second_is_hit(&gw, &origin, "/list-stale").await, "7200 > max-age 3600");
    assert!(second_is_hit(&gw, &origin, "/lines").await);
    let age: u64 = get(&gw, "/lines").await.header("age").parse().unwrap();
    assert!((5..100).contains(&age), "the first line's value, got {age}");
    for invalid in ["/float", "/negative"] {
        assert!(
            !second_is_hit(&gw, &origin, invalid).await,
            "{invalid}: invalid Age = stale"
        );
    }
}

#[tokio::test]
async fn expires_counts_from_the_origins_date_whatever_its_clock_says() {
    // Each path: the origin's clock skew in seconds and the lifetime Expires gives.
    let origin = Origin::start(|req: &Seen, n| {
        let (skew, lifetime, form) = match req.path.as_str() {
            "/behind" => (-86_400, 60, "imf"),
            "/ahead" => (86_400, 60, "imf"),
            "/ahead-short" => (86_400, 1, "imf"),
            "/rfc850" => (0, 60, "rfc850"),
            "/asctime" => (0, 60, "asctime"),
            "/lower" => (0, 60, "lower"),
            _ => (0, 0, "invalid"),
        };
        let date = shifted(skew);
        let expires = date + Duration::from_secs(lifetime);
        let imf = http_date(expires);
        let expires = match form {
            "imf" => imf,
            "lower" => imf.to_lowercase(),
            "rfc850" => jiff::Timestamp::try_from(expires)
                .unwrap()
                .strftime("%A, %d-%b-%y %H:%M:%S GMT")
                .to_string(),
            "asctime" => jiff::Timestamp::try_from(expires)
                .unwrap()
                .strftime("%a %b %e %H:%M:%S %Y")
                .to_string(),
            _ => "soon".to_string(),
        };
        reply(&[("date", &http_date(date)), ("expires", &expires)], format!("#{n}"))
    })
    .await;
    let gw = Gateway::start(&config(&origin, "")).await;

    for path in ["/behind", "/ahead", "/rfc850", "/asctime", "/lower"] {
        assert!(
            second_is_hit(&gw, &origin, path).await,
            "{path}: fresh for Expires − Date = 60 s"
        );
        let ttl = get(&gw, path).await.header("cache-status").to_string();
        let ttl: i64 = ttl.rsplit("ttl=").next().unwrap().parse().unwrap();
        assert!((55..=60).contains(&ttl), "{path}: {ttl}");
    }
    assert!(
        !second_is_hit(&gw, &origin, "/invalid").await,
        "an invalid Expires is in the past"
    );

    // A day ahead, but only 1 s of freshness: gone after a second, not in a day.
    assert!(second_is_hit(&gw, &origin, "/ahead-short").await);
    tokio::time::sleep(Duration::from_millis(2100)).await; // the lifetime has to run out
    assert_eq!(get(&gw, "/ahead-short").await.x_cache(), "MISS");
    assert_eq!(origin.hits("/ahead-short"), 2);
}

#[tokio::test]
async fn a_304_replaces_every_stored_field_but_the_framing() {
    // no-cache: every use revalidates. The first answer says version 1; every 304 says
    // version 2, a new Content-Type, and max-age=60 (fresh from then on).
    let origin = Origin::start(|req: &Seen, n| {
        if req.headers.get("if-none-match").is_some_and(|v| v == "\"e1\"") {
            return Reply {
                status: 304,
                headers: vec![
                    ("etag", "\"e1\"".into()),
                    ("cache-control", "max-age=60".into()),
                    ("content-type", "text/markdown".into()),
                    ("x-version", "2".into()),
                    ("link", "</next>; rel=next".into()),
                ],
                ..Default::default()
            };
        }
        reply(
            &[
                ("etag", "\"e1\""),
                ("cache-control", "no-cache"),
                ("content-type", "text/plain"),
                ("x-version", "1"),
                ("x-untouched", "kept"),
                ("link", "</a>; rel=a"),
                ("link", "</b>; rel=b"),
            ],
            format!("body #{n}"),
        )
    })
    .await;
    let gw = Gateway::start(&config(&origin, "")).await;

    let first = get(&gw, "/doc").await;
    assert_eq!((first.x_cache(), first.header("x-version")), ("MISS", "1"));
    let revalidated = get(&gw, "/doc").await;
    assert_eq!(revalidated.x_cache(), "REVALIDATED");
    for answer in [&revalidated, &get(&gw, "/doc").await] {
        assert_eq!(answer.body, "body #0", "the stored body");
        assert_eq!(answer.header("x-version"), "2");
        assert_eq!(answer.header("content-type"), "text/markdown");
        assert_eq!(answer.header("x-untouched"), "kept");
        assert_eq!(answer.header("content-length"), "7", "framing stays the stored body's");
        let links: Vec<_> = answer.headers.get_all("link").iter().collect();
        assert_eq!(links, ["</next>; rel=next"], "all lines of a field replaced");
    }
    assert_eq!(
        get(&gw, "/doc").await.x_cache(),
        "HIT",
        "the 304's max-age=60 now governs"
    );
    assert_eq!(origin.hits("/doc"), 2);
}

#[tokio::test]
async fn any_status_with_explicit_freshness_is_cached_and_others_are_not() {
    let origin = Origin::start(|req: &Seen, n| {
        let path = req.path.trim_start_matches('/');
        let (status, cc) = path.split_once('/').unwrap_or((path, ""));
        let status: u16 = status.parse().unwrap();
        let cc = match cc {
            "explicit" => vec![("cache-control", "max-age=60".to_string())],
            "expires" => vec![("expires", http_date(shifted(60)))],
            _ => vec![],
        };
        let headers: Vec<(&'static str, &str)> = cc.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        let mut r = with_status(status, &headers, format!("{status} #{n}"));
        if matches!(status, 301 | 302 | 307 | 308) {
            r.headers.push(("location", "/elsewhere".into()));
        }
        r
    })
    .await;
    let gw = Gateway::start(&config(&origin, "")).await;

    for status in [200, 302, 307, 400, 403, 404, 410, 500, 502, 503] {
        let path = format!("/{status}/explicit");
        assert!(second_is_hit(&gw, &origin, &path).await, "{path}");
        assert_eq!(get(&gw, &path).await.status, status);
    }
    assert!(second_is_hit(&gw, &origin, "/503/expires").await);
    // Without freshness only heuristically cacheable statuses get the route's ttl.
    for (status, cached) in [
        (200, true),
        (404, true),
        (301, true),
        (302, false),
        (500, false),
        (503, false),
    ] {
        let path = format!("/{status}/silent");
        assert_eq!(second_is_hit(&gw, &origin, &path).await, cached, "{path}");
    }
}

#[tokio::test]
async fn heuristic_freshness_is_a_tenth_of_the_last_modified_age_when_enabled() {
    let script = |req: &Seen, n| {
        let lm = http_date(shifted(-1000));
        let date = http_date(SystemTime::now());
        let status = if req.headers.contains_key("if-modified-since") {
            304
        } else {
            200
        };
        with_status(status, &[("last-modified", &lm), ("date", &date)], format!("#{n}"))
    };
    let on = Origin::start(script).await;
    let gw_on = Gateway::start(&config(&on, "heuristic: true, heuristic_max: 1h")).await;
    // `/none/` has no ttl of its own: the heuristic alone makes it fresh.
    assert!(second_is_hit(&gw_on, &on, "/none/page").await);
    let status = get(&gw_on, "/none/page").await.header("cache-status").to_string();
    let ttl: i64 = status.rsplit("ttl=").next().unwrap().parse().unwrap();
    assert!((95..=100).contains(&ttl), "10 % of 1000 s: {status}");

    let off = Origin::start(script).await;
    let gw_off = Gateway::start(&config(&off, "")).await;
    get(&gw_off, "/none/page").await;
    assert_eq!(
        get(&gw_off, "/none/page").await.x_cache(),
        "REVALIDATED",
        "stored stale, revalidated"
    );
    assert_eq!(off.hits("/none/page"), 2);
}

#[tokio::test]
async fn cdn_and_gatehouse_cache_control_govern_this_cache_and_stay_here() {
    let origin = Origin::start(|req: &Seen, n| {
        let headers: &[(&'static str, &str)] = match req.path.as_str() {
            "/cdn" => &[("cache-control", "no-store"), ("cdn-cache-control", "max-age=60")],
            "/own" => &[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "max-age=60"),
                ("gatehouse-cache-control", "no-store"),
            ],
            "/invalid" => &[("cache-control", "max-age=60"), ("cdn-cache-control", "max-age=\"60")],
            "/renamed" => &[("cache-control", "no-store"), ("edge-control", "max-age=60")],
            "/must-understand" => &[("cache-control", "must-understand, no-store, max-age=60")],
            _ => &[],
        };
        reply(headers, format!("#{n}"))
    })
    .await;
    let gw = Gateway::start(&config(&origin, "")).await;
    assert!(
        second_is_hit(&gw, &origin, "/cdn").await,
        "CDN-Cache-Control beats no-store"
    );
    let answer = get(&gw, "/cdn").await;
    assert_eq!(answer.header("cdn-cache-control"), "(none)", "removed downstream");
    assert_eq!(
        answer.header("cache-control"),
        "no-store",
        "Cache-Control is for the client"
    );
    assert!(
        !second_is_hit(&gw, &origin, "/own").await,
        "Gatehouse-Cache-Control beats both"
    );
    assert_eq!(get(&gw, "/own").await.header("gatehouse-cache-control"), "(none)");
    assert!(
        second_is_hit(&gw, &origin, "/invalid").await,
        "an invalid targeted field is ignored"
    );
    assert!(
        second_is_hit(&gw, &origin, "/must-understand").await,
        "must-understand lifts no-store"
    );

    let renamed = Origin::start(|_: &Seen, n| {
        reply(
            &[("cache-control", "no-store"), ("edge-control", "max-age=60")],
            format!("#{n}"),
        )
    })
    .await;
    let gw = Gateway::start(&config(
        &renamed,
        "targeted_header: Edge-Control, strip_targeted: false",
    ))
    .await;
    assert!(second_is_hit(&gw, &renamed, "/renamed").await);
    assert_eq!(
        get(&gw, "/renamed").await.header("edge-control"),
        "max-age=60",
        "kept when asked"
    );
}

#[tokio::test]
async fn equal_accept_headers_share_one_variant() {
    let origin = Origin::start(|req: &Seen, n| {
        let h = |name| req.headers.get(name).map_or("-", |v| v.to_str().unwrap()).to_string();
        reply(
            &[
                ("cache-control", "max-age=60"),
                ("vary", "Accept-Encoding, Accept-Language"),
            ],
            format!("{} | {} #{n}", h("accept-encoding"), h("accept-language")),
        )
    })
    .await;
    let gw = Gateway::start(&config(&origin, "")).await;
    let ask = |ae: &'static str, al: &'static str| {
        let gw = &gw;
        async move { fetch(gw, "GET", "/v", &[("accept-encoding", ae), ("accept-language", al)]).await }
    };
    let first = ask("gzip, br", "en-US, fr;q=0.5").await;
    assert_eq!(first.x_cache(), "MISS");
    for (ae, al) in [
        ("br,gzip", "en-US,fr;q=0.5"),
        ("GZIP , br", "fr; q=0.50, en-us"),
        ("br, gzip;q=1.0", "en-us;q=1, fr;q=0.500"),
    ] {
        let same = ask(ae, al).await;
        assert_eq!(
            (same.x_cache(), same.body.as_str()),
            ("HIT", first.body.as_str()),
            "{ae} / {al}"
        );
    }
    assert_eq!(
        ask("gzip", "en-US, fr;q=0.5").await.x_cache(),
        "MISS",
        "another coding list"
    );
    assert_eq!(
        ask("gzip, br", "en-US, fr;q=0.4").await.x_cache(),
        "MISS",
        "another q-value"
    );
    assert_eq!(origin.hits("/v"), 3);
}

#[tokio::test]
async fn unsafe_requests_invalidate_what_location_and_content_location_name() {
    let origin = Origin::start(|req: &Seen, n| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/items") => with_status(201, &[("location", "/items/1")], "created".into()),
        ("PUT", "/items/2/edit") => reply(&[("content-location", "http://shop.test/items/2")], "ok"),
        ("PATCH", "/items/3/edit") => reply(&[("content-location", "http://other.test/items/3")], "ok"),
        ("DELETE", "/items/4") => with_status(204, &[("location", "./5?x=1")], String::new()),
        _ => reply(&[("cache-control", "max-age=60")], format!("{} #{n}", req.path)),
    })
    .await;
    let gw = Gateway::start(&config(&origin, "")).await;
    let host = [("host", "shop.test")];
    let other = [("host", "other.test")];
    let warm = |path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let gw = &gw;
        async move {
            fetch(gw, "GET", path, headers).await;
            assert_eq!(fetch(gw, "GET", path, headers).await.x_cache(), "HIT", "{path}");
        }
    };
    warm("/items/1", &[("host", "shop.test")]).await;
    warm("/items/2", &[("host", "shop.test")]).await;
    warm("/items/3", &[("host", "other.test")]).await;
    warm("/items/5?x=1", &[("host", "shop.test")]).await;

    fetch(&gw, "POST", "/items", &host).await;
    assert_eq!(fetch(&gw, "GET", "/items/1", &host).await.x_cache(), "MISS", "Location");
    fetch(&gw, "PUT", "/items/2/edit", &host).await;
    assert_eq!(
        fetch(&gw, "GET", "/items/2", &host).await.x_cache(),
        "MISS",
        "Content-Location"
    );
    fetch(&gw, "PATCH", "/items/3/edit", &host).await;
    assert_eq!(
        fetch(&gw, "GET", "/items/3", &other).await.x_cache(),
        "HIT",
        "another host's entry is not touched"
    );
    fetch(&gw, "DELETE", "/items/4", &host).await;
    assert_eq!(
        fetch(&gw, "GET", "/items/5?x=1", &host).await.x_cache(),
        "MISS",
        "relative Location"
    );
}

#[tokio::test]
async fn a_hit_carries_the_stored_responses_date_and_the_gateways_own_answers_carry_now() {
    let stamped = http_date(shifted(-30));
    let date = stamped.clone();
    let origin =
        Origin::start(move |_: &Seen, n| reply(&[("cache-control", "max-age=3600"), ("date", &date)], format!("#{n}")))
            .await;
    let gw = Gateway::start(&config(&origin, "")).await;
    let miss = get(&gw, "/dated").await;
    assert_eq!((miss.x_cache(), miss.header("date")), ("MISS", stamped.as_str()));
    for _ in 0..2 {
        let hit = get(&gw, "/dated").await;
        assert_eq!(hit.x_cache(), "HIT");
        assert_eq!(
            hit.header("date"),
            stamped,
            "the stored response's Date, not the time of the hit"
        );
        assert!(hit.header("age").parse::<u64>().is_ok(), "with an Age");
    }
    // An answer the gateway makes itself is dated now.
    let own = fetch(&gw, "GET", "/dated", &[("host", "bad host")]).await;
    assert_eq!(own.status, 400, "the gateway refuses the Host itself");
    let own_date = httpdate::parse_http_date(own.header("date")).expect("a Date on the gateway's answer");
    let skew = SystemTime::now().duration_since(own_date).unwrap_or_default();
    assert!(
        skew < Duration::from_secs(5),
        "{own:?} dated {skew:?} ago",
        own = own.status
    );
}
