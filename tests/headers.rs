//! What the upstream receives and what the client gets back: forwarded headers, request
//! ids, hop-by-hop headers, and everything else preserved. Plus the access log.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn forwarded_headers_are_set_and_appended() {
    let up = MockUpstream::start("u").await;
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;

    client()
        .get(gw.url("/a"))
        .header("Host", "shop.example.com")
        .send()
        .await
        .unwrap();
    let seen = up.last().headers;
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "shop.example.com");
    assert_eq!(seen["host"], "shop.example.com", "the client's Host is kept");

    client()
        .get(gw.url("/a"))
        .header("X-Forwarded-For", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(up.last().headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
}

#[tokio::test]
async fn request_id_is_kept_when_sane_generated_otherwise_and_returned() {
    let up = MockUpstream::start("u").await;
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;

    let r = client()
        .get(gw.url("/"))
        .header("X-Request-ID", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-123");
    assert_eq!(up.last().headers["x-request-id"], "trace-123");

    let r = client()
        .get(gw.url("/"))
        .header("X-Request-ID", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 36, "a UUID replaces an insane id");
    assert_eq!(up.last().headers["x-request-id"], generated.as_str());

    let a = gw.get("/").await.headers()["x-request-id"].clone();
    let b = gw.get("/").await.headers()["x-request-id"].clone();
    assert_ne!(a, b);
}

#[tokio::test]
async fn method_body_status_and_headers_are_preserved_both_ways() {
    let up = MockUpstream::start("u").await;
    up.set_status(201);
    up.add_response_header("X-Custom-Response", "kept");
    up.add_response_header("Set-Cookie", "a=1");
    up.add_response_header("Set-Cookie", "b=2");
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;

    let r = client()
        .patch(gw.url("/things/7?x=1&y=2"))
        .header("X-Custom-Request", "also-kept")
        .header("Content-Type", "text/plain")
        .body("hello world")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-custom-response"], "kept");
    let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    let seen = up.last();
    assert_eq!(seen.method, "PATCH");
    assert_eq!(seen.uri, "/things/7?x=1&y=2");
    assert_eq!(seen.body_len, 11);
    assert_eq!(seen.headers["x-custom-request"], "also-kept");
    assert_eq!(seen.headers["content-type"], "text/plain");
}

#[tokio::test]
async fn hop_by_hop_headers_do_not_cross_the_gateway() {
    let up = MockUpstream::start("u").await;
    up.add_response_header("Keep-Alive", "timeout=5");
    up.add_response_header("Connection", "X-Upstream-Private");
    up.add_response_header("X-Upstream-Private", "secret");
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;

    // Raw request so the hop-by-hop headers are exactly what we write.
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    conn.write_all(
        b"GET /h HTTP/1.1\r\nHost: x\r\nConnection: close, X-Client-Private\r\nX-Client-Private: 1\r\nKeep-Alive: 300\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(
        !lower.contains("keep-alive: timeout"),
        "upstream Keep-Alive leaked: {answer}"
    );
    assert!(
        !lower.contains("x-upstream-private"),
        "connection-nominated header leaked: {answer}"
    );

    let seen = up.last().headers;
    for name in ["x-client-private", "keep-alive", "te", "proxy-connection"] {
        assert!(!seen.contains_key(name), "{name} reached the upstream: {seen:?}");
    }
}

/// Each hop-by-hop field on its own, without a `Connection` field naming it: the proxy looks
/// for them in one pass over the request's names (vendor/README.md), which must find any one.
#[tokio::test]
async fn a_lone_hop_by_hop_field_is_still_removed() {
    let up = MockUpstream::start("u").await;
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;
    let fields = [
        ("Keep-Alive", "300"),
        ("Proxy-Connection", "keep-alive"),
        ("Proxy-Authorization", "Basic dTpw"),
        ("Proxy-Authenticate", "Basic"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
    ];
    let mut conn = common::raw::RawClient::connect(gw.port).await;
    for (name, value) in fields {
        conn.send(format!("GET /h HTTP/1.1\r\nHost: x\r\nX-Kept: 1\r\n{name}: {value}\r\n\r\n").as_bytes())
            .await;
        let answer = conn.response().await;
        assert_eq!(answer.status, 200, "{name}: {answer:?}");
        let seen = up.last().headers;
        assert!(
            !seen.contains_key(name.to_ascii_lowercase().as_str()),
            "{name} reached the upstream: {seen:?}"
        );
        assert_eq!(seen.get("x-kept").map(|v| v.as_bytes()), Some(&b"1"[..]), "{seen:?}");
    }
}

#[tokio::test]
async fn every_request_writes_one_json_access_log_line() {
    let up = MockUpstream::start("u").await;
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;
    let r = client()
        .post(gw.url("/logged?token=secret"))
        .header("X-Request-ID", "log-me")
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.text().await;
    let dead = gw.get("/health").await.status();
    assert_eq!(dead, 200);

    let line = gw.access_line("access log line", |l| l["request_id"] == "log-me").await;
    assert_eq!(line["method"], "POST");
    assert_eq!(
        line["path"], "/logged",
        "the query (which may hold tokens) is not logged"
    );
    assert_eq!(line["route"], "all");
    assert_eq!(line["upstream"], up.addr().to_string());
    assert_eq!(line["status"], 200);
    assert_eq!(line["client_ip"], "127.0.0.1");
    assert!(line["bytes_sent"].as_u64().unwrap() > 0);
    assert!(line["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(line["ts"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let up = MockUpstream::start("u").await;
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;
    for _ in 0..50 {
        assert_eq!(gw.get("/k").await.status(), 200);
    }
    assert_eq!(up.hits(), 50);
    assert!(
        up.connections() <= 2,
        "50 sequential requests opened {} upstream connections",
        up.connections()
    );
}
