//! Aggregate routes through the real gateway, with real upstreams scripted to be slow, fail,
//! answer non-JSON or too much: parallel calls, the seed's answer shape, partial answers,
//! required parts, the route's deadline, circuit breakers, caching, auth before any call.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SECRET: &str = "a-test-secret-that-is-32-bytes-long!";

struct Three {
    profile: MockUpstream,
    orders: MockUpstream,
    trending: MockUpstream,
}

impl Three {
    async fn start() -> Three {
        Three {
            profile: MockUpstream::start("profile").await,
            orders: MockUpstream::start("orders").await,
            trending: MockUpstream::start("trending").await,
        }
    }

    fn upstreams(&self, extra: &str) -> String {
        format!(
            "upstreams:\n  profile: {{ targets: [\"{}\"] {extra} }}\n  orders: {{ targets: [\"{}\"] {extra} }}\n  trending: {{ targets: [\"{}\"] {extra} }}\n",
            self.profile.addr(),
            self.orders.addr(),
            self.trending.addr()
        )
    }
}

fn dashboard(route_extra: &str, orders_required: bool) -> String {
    format!(
        r#"
auth: {{ jwt: {{ secret: "{SECRET}" }} }}
routes:
  - name: dashboard
    path: /api/v1/dashboard/:user
    auth: jwt
    {route_extra}
    aggregate:
      - {{ name: profile, upstream: profile, path: "/users/{{path.user}}/profile", headers: [Accept-Language] }}
      - {{ name: orders, upstream: orders, path: /orders, query: {{ user: "{{claims.sub}}", lang: "{{header.accept-language}}" }}, required: {orders_required} }}
      - {{ name: trending, upstream: trending, path: /trending }}
"#
    )
}

fn token() -> String {
    hs256(SECRET, &claims(json!({ "sub": "u|42" })))
}

async fn get(gw: &Gateway, path: &str) -> (u16, reqwest::header::HeaderMap, Value, Duration) {
    let started = Instant::now();
    let r = client()
        .get(gw.url(path))
        .bearer_auth(token())
        .header("Accept-Language", "fr")
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .send()
        .await
        .unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let body: Value = r.json().await.unwrap();
    (status, headers, body, started.elapsed())
}

#[tokio::test]
async fn parts_are_called_in_parallel_and_merged_in_the_seed_shape() {
    let up = Three::start().await;
    for part in [&up.profile, &up.orders, &up.trending] {
        part.set_delay(Duration::from_millis(400));
    }
    let gw = Gateway::start(&format!("{}{}", up.upstreams(""), dashboard("", true))).await;

    let (status, headers, body, took) = get(&gw, "/api/v1/dashboard/ann").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        took < Duration::from_millis(1000),
        "three 400 ms parts took {took:?}: the slowest, not the sum (1.2 s)"
    );
    assert_eq!(headers["x-aggregated"], "true");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"]["profile"]["path"], "/users/ann/profile");
    assert_eq!(
        body["data"]["orders"]["query"], "lang=fr&user=u%7C42",
        "query parameters go in name order"
    );
    assert_eq!(body["data"]["trending"]["upstream"], "trending");
    assert_eq!(body["errors"], json!({}));
    assert_eq!(body["meta"]["services_called"], 3);
    assert_eq!(body["meta"]["services_succeeded"], 3);
    let at = body["meta"]["aggregated_at"].as_str().unwrap();
    assert!(at.parse::<jiff::Timestamp>().is_ok(), "RFC 3339: {at}");

    // What each part received: the request id, its own span of the client's trace, the
    // identity and the header the part forwards.
    let rid = headers["x-request-id"].to_str().unwrap();
    let mut spans = Vec::new();
    for part in [&up.profile, &up.orders, &up.trending] {
        let seen = part.last();
        assert_eq!(seen.headers["x-request-id"], rid);
        assert_eq!(seen.headers["x-user-id"], "u|42");
        let tp = seen.headers["traceparent"].to_str().unwrap().to_string();
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{tp}");
        spans.push(tp[36..52].to_string());
    }
    spans.sort();
    spans.dedup();
    assert_eq!(spans.len(), 3, "a span per part");
    assert_eq!(up.profile.last().headers["accept-language"], "fr");
    assert!(
        !up.orders.last().headers.contains_key("accept-language"),
        "only named headers go"
    );

    // The line is written after the answer went out: wait for it.
    eventually(Duration::from_secs(5), "the request's access-log line", || async {
        gw.access_log().iter().any(|l| l["request_id"] == rid)
    })
    .await;
    let line = gw
        .access_log()
        .into_iter()
        .find(|l| l["request_id"] == rid)
        .expect("an access-log line");
    let parts = line["parts"].as_array().expect("parts in the access log");
    assert_eq!(parts.len(), 3);
    assert!(
        parts
            .iter()
            .all(|p| p["result"] == "ok" && p["status"] == 200 && p["millis"].as_u64() >= Some(400)),
        "{parts:?}"
    );
    gw.metrics_with(&["gateway_aggregate_parts_total{part=\"orders\",result=\"ok\",route=\"dashboard\"} 1"])
        .await;
}

#[tokio::test]
async fn failed_parts_make_a_partial_answer_unless_required() {
    let up = Three::start().await;
    let gw = Gateway::start(&format!("{}{}", up.upstreams(""), dashboard("", true))).await;

    up.trending.set_status(500);
    let (status, _, body, _) = get(&gw, "/api/v1/dashboard/ann").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "partial");
    assert_eq!(body["data"]["trending"], Value::Null);
    assert_eq!(body["errors"]["trending"], "upstream answered 500");
    assert_eq!(body["meta"]["services_succeeded"], 2);

    up.trending.set_status(200);
    up.trending.set_body("<html>not json</html>");
    up.profile.set_body(Box::leak(
        format!("{{\"oversize\": \"{}\"}}", "x".repeat(300)).into_boxed_str(),
    ));
    let gw2 = Gateway::start(&format!(
        "{}{}",
        up.upstreams(""),
        dashboard("max_part_size: 150B", true)
    ))
    .await;
    let (status, _, body, _) = get(&gw2, "/api/v1/dashboard/ann").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errors"]["trending"], "answer is not JSON");
    assert_eq!(body["errors"]["profile"], "answer larger than max_part_size");
    assert_eq!(body["data"]["orders"]["upstream"], "orders");

    up.orders.set_status(503);
    let (status, headers, body, _) = get(&gw, "/api/v1/dashboard/ann").await;
    assert_eq!(status, 502, "a required part failed: {body}");
    assert_eq!(body["code"], "aggregate_required_part_failed");
    assert!(body["error"].as_str().unwrap().contains("orders"), "{body}");
    assert_eq!(body["errors"]["orders"], "upstream answered 503");
    assert_eq!(body["request_id"], headers["x-request-id"].to_str().unwrap());

    let gw3 = Gateway::start(&format!("{}{}", up.upstreams(""), dashboard("", false))).await;
    up.profile.set_status(500);
    up.trending.set_status(500);
    let (status, _, body, _) = get(&gw3, "/api/v1/dashboard/ann").await;
    assert_eq!(status, 502, "every part failed: {body}");
    assert_eq!(body["code"], "aggregate_failed");
}

#[tokio::test]
async fn the_route_timeout_bounds_the_answer_and_a_late_required_part_is_a_504() {
    let up = Three::start().await;
    up.trending.set_delay(Duration::from_secs(3));
    let gw = Gateway::start(&format!("{}{}", up.upstreams(""), dashboard("timeout: 500ms", true))).await;
    let (status, _, body, took) = get(&gw, "/api/v1/dashboard/ann").await;
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_millis(1500),
        "bounded by the route's 500 ms: {took:?}"
    );
    assert_eq!(body["status"], "partial");
    assert_eq!(body["errors"]["trending"], "timed out");

    up.trending.set_delay(Duration::ZERO);
    up.orders.set_delay(Duration::from_secs(3));
    let (status, _, body, took) = get(&gw, "/api/v1/dashboard/ann").await;
    assert_eq!(status, 504, "{body}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(body["errors"]["orders"], "timed out");
}

#[tokio::test]
async fn an_open_circuit_fails_the_part_without_calling_it() {
    let up = Three::start().await;
    let gw = Gateway::start(&format!(
        "{}{}",
        up.upstreams(", circuit_breaker: { failures: 2, open_for: 30s }"),
        dashboard("", false)
    ))
    .await;
    up.trending.set_status(500);
    for _ in 0..2 {
        let (_, _, body, _) = get(&gw, "/api/v1/dashboard/ann").await;
        assert_eq!(body["errors"]["trending"], "upstream answered 500");
    }
    let calls = up.trending.hits();
    let (status, _, body, _) = get(&gw, "/api/v1/dashboard/ann").await;
    assert_eq!(status, 200);
    assert_eq!(body["errors"]["trending"], "circuit open");
    assert_eq!(up.trending.hits(), calls, "an open circuit is not called");
    gw.metrics_with(&[
        "gateway_circuit_state{upstream=\"trending\"} 1",
        "result=\"circuit_open\"",
    ])
    .await;
}

#[tokio::test]
async fn a_caching_aggregate_is_answered_from_the_cache_per_caller_and_parts_cache_alone() {
    let up = Three::start().await;
    let gw = Gateway::start(&format!(
        "{}{}",
        up.upstreams(""),
        dashboard("cache: { ttl: 30s }", true)
    ))
    .await;
    let (_, h1, b1, _) = get(&gw, "/api/v1/dashboard/ann").await;
    let (_, h2, b2, _) = get(&gw, "/api/v1/dashboard/ann").await;
    assert_eq!(
        (h1["x-cache"].to_str().unwrap(), h2["x-cache"].to_str().unwrap()),
        ("MISS", "HIT")
    );
    assert_eq!(b1["data"], b2["data"]);
    assert_eq!(up.orders.hits(), 1, "the second answer came from the cache");

    // Another caller does not get the first one's answer.
    let other = hs256(SECRET, &claims(json!({ "sub": "someone-else" })));
    let r = client()
        .get(gw.url("/api/v1/dashboard/ann"))
        .bearer_auth(other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-cache"], "MISS");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["orders"]["query"], "lang=&user=someone-else");

    // A partial answer is not kept.
    up.trending.set_status(500);
    let (_, h, _, _) = get(&gw, "/api/v1/dashboard/bob").await;
    let (_, h2, _, _) = get(&gw, "/api/v1/dashboard/bob").await;
    assert_eq!(
        (h["x-cache"].to_str().unwrap(), h2["x-cache"].to_str().unwrap()),
        ("MISS", "MISS")
    );

    // A part's own cache.
    let up2 = Three::start().await;
    let gw2 = Gateway::start(&format!(
        r#"{}
routes:
  - name: feed
    path: /feed
    aggregate:
      - {{ name: trending, upstream: trending, path: /trending, cache: 30s }}
      - {{ name: orders, upstream: orders, path: /orders }}
"#,
        up2.upstreams("")
    ))
    .await;
    for _ in 0..3 {
        let r = gw2.get("/feed").await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!((up2.trending.hits(), up2.orders.hits()), (1, 3));
    assert_eq!(
        up2.orders.connections(),
        1,
        "parts reuse kept-alive upstream connections"
    );
}

#[tokio::test]
async fn auth_and_limits_apply_before_any_part_is_called() {
    let up = Three::start().await;
    let gw = Gateway::start(&format!(
        "{}{}",
        up.upstreams(""),
        dashboard("rate_limit: { requests: 1, per: 1m, key: ip }", true)
    ))
    .await;
    let r = gw.get("/api/v1/dashboard/ann").await;
    assert_eq!(r.status(), 401);
    assert_eq!(up.orders.hits() + up.profile.hits() + up.trending.hits(), 0);
    let (status, ..) = get(&gw, "/api/v1/dashboard/ann").await;
    assert_eq!(status, 200);
    let (status, ..) = get(&gw, "/api/v1/dashboard/ann").await;
    assert_eq!(status, 429);
    assert_eq!(up.orders.hits(), 1, "the limited request called nothing");
}

#[tokio::test]
async fn parts_reach_tls_upstreams_and_retry_past_a_dead_target() {
    // The TLS upstream is another gatehouse with a certificate from the test CA, in front
    // of a plain mock.
    let pki = TestPki::new();
    let (cert, key) = pki.leaf("edge", "orders.test", 0, 10);
    let backend = MockUpstream::start("orders").await;
    let tls_port = free_port();
    let _edge = Gateway::start(&format!(
        "tls: {{ listen: [\"127.0.0.1:{tls_port}\"], certs: [{{ cert: \"{}\", key: \"{}\" }}] }}\nupstreams: {{ b: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, upstream: b }}]\n",
        cert.display(),
        key.display(),
        backend.addr()
    ))
    .await;
    let plain = MockUpstream::start("plain").await;
    let dead = free_port();
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  secure: {{ targets: ["127.0.0.1:{tls_port}"], tls: true, sni: orders.test, ca_file: "{}" }}
  flaky: {{ targets: ["127.0.0.1:{dead}", "{}"], retries: 1 }}
routes:
  - name: both
    path: /both
    aggregate:
      - {{ name: orders, upstream: secure, path: /orders, required: true }}
      - {{ name: plain, upstream: flaky, path: /p, required: true }}
"#,
        pki.ca_path().display(),
        plain.addr()
    ))
    .await;
    for _ in 0..4 {
        let r = gw.get("/both").await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], "success", "{body}");
        assert_eq!(body["data"]["orders"]["upstream"], "orders", "over verified TLS");
        assert_eq!(body["data"]["plain"]["path"], "/p");
    }
    assert_eq!(
        plain.hits(),
        4,
        "each call that met the dead target was retried on the live one"
    );
}
