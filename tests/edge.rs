//! The rest of the front door: IP allow/deny lists (with trusted proxies), request body
//! limits (declared and streamed), CORS, and security headers.

mod common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn status_from(gw: &Gateway, path: &str, xff: &str) -> u16 {
    client()
        .get(gw.url(path))
        .header("X-Forwarded-For", xff)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn ip_lists_use_the_client_behind_trusted_proxies() {
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&format!(
        r#"
trusted_proxies: ["127.0.0.1/32"]
ip_deny: ["203.0.113.66"]
upstreams: {{ api: {{ targets: ["{}"] }} }}
routes:
  - {{ prefix: /internal, ip_allow: ["10.0.0.0/8", "2001:db8::/32"], upstream: api }}
  - {{ prefix: /, upstream: api }}
"#,
        up.addr()
    ))
    .await;
    assert_eq!(status_from(&gw, "/internal/x", "10.1.2.3").await, 200);
    assert_eq!(status_from(&gw, "/internal/x", "2001:db8::7").await, 200);
    assert_eq!(status_from(&gw, "/internal/x", "198.51.100.1").await, 403);
    // Spoofing an internal address to the left of the real client does not help: the
    // right-most untrusted entry is the client.
    assert_eq!(status_from(&gw, "/internal/x", "10.0.0.1, 198.51.100.1").await, 403);
    // The global deny list applies to every route.
    assert_eq!(status_from(&gw, "/public", "203.0.113.66").await, 403);
    assert_eq!(status_from(&gw, "/public", "203.0.113.67").await, 200);

    let r = client()
        .get(gw.url("/internal/x"))
        .header("X-Forwarded-For", "8.8.8.8")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "client address not allowed");
    eventually(Duration::from_secs(5), "the ip rejection in the access log", || {
        let logged = gw
            .access_log()
            .iter()
            .any(|l| l["rejected"] == "ip" && l["client_ip"] == "8.8.8.8");
        async move { logged }
    })
    .await;
}

#[tokio::test]
async fn without_trusted_proxies_x_forwarded_for_is_ignored() {
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&format!(
        "upstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, ip_allow: [\"10.0.0.0/8\"], upstream: api }}]\n",
        up.addr()
    ))
    .await;
    assert_eq!(
        status_from(&gw, "/x", "10.1.2.3").await,
        403,
        "127.0.0.1 is the client; XFF is not believed"
    );
}

#[tokio::test]
async fn bodies_over_max_body_are_413_declared_or_streamed() {
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&format!(
        "max_body: 1MiB\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes:\n  - {{ prefix: /small, max_body: 1KiB, upstream: api }}\n  - {{ prefix: /, upstream: api }}\n",
        up.addr()
    ))
    .await;
    // Declared: refused before anything reaches the upstream.
    let r = client()
        .post(gw.url("/small"))
        .body(vec![b'a'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "request body too large");
    assert_eq!(up.hits(), 0);
    assert_eq!(
        client()
            .post(gw.url("/small"))
            .body(vec![b'a'; 1024])
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Chunked (no Content-Length): cut while streaming.
    let r = client()
        .post(gw.url("/big"))
        .body(streaming_body(3 * 1024 * 1024))
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), 413),
        // The gateway may close the connection while the client is still sending.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    let r = client()
        .post(gw.url("/big"))
        .body(streaming_body(512 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "under the global limit");
    let seen: serde_json::Value = r.json().await.unwrap();
    assert_eq!(seen["body_len"], 512 * 1024);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_gets_a_413_response() {
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&format!(
        "upstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, max_body: 1KiB, upstream: api }}]\n",
        up.addr()
    ))
    .await;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let chunk = vec![b'z'; 1000];
    conn.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..3 {
        let _ = conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await;
        let _ = conn.write_all(&chunk).await;
        let _ = conn.write_all(b"\r\n").await;
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn cors_preflights_and_responses_follow_the_policy() {
    let up = MockUpstream::start("api").await;
    up.add_response_header("X-Total-Count", "42");
    let gw = Gateway::start(&format!(
        r#"
cors: {{ origins: ["https://app.example.com"], methods: [GET, PUT], headers: [Content-Type, X-Custom], expose_headers: [X-Total-Count], credentials: true, max_age: 10m }}
upstreams: {{ api: {{ targets: ["{}"] }} }}
routes:
  - {{ path: /items, methods: [GET, PUT], upstream: api }}
  - {{ path: /open, upstream: api, cors: {{ origins: ["*"] }} }}
"#,
        up.addr()
    ))
    .await;
    let preflight = |origin: &'static str, method: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, gw.url("/items"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", method)
            .header("Access-Control-Request-Headers", "content-type, x-custom")
            .send()
    };
    // OPTIONS is not among the route's methods: the preflight is routed by PUT.
    let r = preflight("https://app.example.com", "PUT").await.unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-allow-methods"], "GET, PUT");
    assert_eq!(h["access-control-allow-headers"], "content-type, x-custom");
    assert_eq!(h["access-control-max-age"], "600");
    assert_eq!(up.hits(), 0, "preflights are answered by the gateway");

    let r = preflight("https://evil.example", "PUT").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = preflight("https://app.example.com", "DELETE").await.unwrap();
    assert_eq!(r.status(), 403);

    let r = client()
        .get(gw.url("/items"))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(r.headers()["access-control-expose-headers"], "x-total-count");
    assert_eq!(r.headers()["vary"], "Origin");
    let r = client()
        .get(gw.url("/items"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "CORS does not block the request itself; the browser does"
    );
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let r = client()
        .get(gw.url("/open"))
        .header("Origin", "https://anyone.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn security_headers_are_added_and_internal_headers_removed() {
    let up = MockUpstream::start("api").await;
    up.add_response_header("Server", "Apache/2.4.1 (Internal)");
    up.add_response_header("X-Powered-By", "PHP/5.1");
    up.add_response_header("X-Frame-Options", "SAMEORIGIN");
    let gw = Gateway::start(&format!(
        r#"
security_headers:
  hsts: "max-age=31536000; includeSubDomains"
  content_security_policy: "default-src 'none'"
  remove: [Server, X-Powered-By]
upstreams: {{ api: {{ targets: ["{}"] }} }}
routes: [{{ path: /x, upstream: api }}]
"#,
        up.addr()
    ))
    .await;
    let r = gw.get("/x").await;
    let h = r.headers();
    assert!(
        h.get("strict-transport-security").is_none(),
        "HSTS never over plain HTTP (RFC 6797 §7.2); tests/tls.rs checks it over TLS"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
    assert_eq!(h["content-security-policy"], "default-src 'none'");
    assert_eq!(h["x-frame-options"], "SAMEORIGIN", "an upstream's own value is kept");
    assert!(h.get("server").is_none() && h.get("x-powered-by").is_none());

    // The gateway's own answers carry them too.
    let r = gw.get("/missing").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
}
