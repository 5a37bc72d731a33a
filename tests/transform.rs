//! Transformations through the real gateway: what the upstream receives after `rewrite`,
//! `request_headers`, `request_query` and `upstream_host`, and what the client gets after
//! `response_headers` and `json` edits (cached copies included).

mod common;

use common::*;
use serde_json::{json, Value};

const SECRET: &str = "a-test-secret-that-is-32-bytes-long!";

#[tokio::test]
async fn rewrite_headers_query_and_host_reach_the_upstream_as_configured() {
    let up = MockUpstream::start("users").await;
    let gw = Gateway::start(&format!(
        r#"
auth: {{ jwt: {{ secret: "{SECRET}" }} }}
upstreams: {{ users: {{ targets: ["{addr}"] }} }}
routes:
  - name: v1
    path: /v1/:kind/*rest
    auth: jwt
    upstream: users
    rewrite: {{ regex: "^/v1/([a-z]+)/(.*)$", to: "/api/$1/items/$2" }}
    request_headers:
      set: {{ X-Tenant: "{{claims.tenant}}", X-Kind: "{{path.kind}}" }}
      add: {{ X-Client-IP: "{{client_ip}}", X-Trace-Copy: "{{request_id}}/{{header.x-a}}/{{query.q}}" }}
      remove: [X-Debug]
      rename: {{ X-Old: X-New }}
    request_query:
      set: {{ page: "1" }}
      add: {{ user: "{{claims.sub}}" }}
      remove: [debug]
    upstream_host: target
  - name: literal
    prefix: /lit
    upstream: users
    upstream_host: internal.example:8443
  - name: kept
    prefix: /kept
    upstream: users
"#,
        addr = up.addr()
    ))
    .await;
    let token = hs256(SECRET, &claims(json!({ "sub": "user 7", "tenant": "acme" })));

    let r = client()
        .get(gw.url("/v1/books/a/b?q=x%20y&debug=1&page=9&keep=1"))
        .bearer_auth(&token)
        .header("X-Request-ID", "rid-42")
        .header("X-A", "alpha")
        .header("X-Debug", "secret")
        .header("X-Old", "o1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.uri, "/api/books/items/a/b?q=x%20y&keep=1&page=1&user=user%207");
    let h = &seen.headers;
    assert_eq!(h["x-tenant"], "acme");
    assert_eq!(h["x-kind"], "books");
    assert_eq!(h["x-client-ip"], "127.0.0.1");
    assert_eq!(h["x-trace-copy"], "rid-42/alpha/x%20y");
    assert!(!h.contains_key("x-debug"), "removed");
    assert!(!h.contains_key("x-old"), "renamed away");
    assert_eq!(h["x-new"], "o1");
    assert_eq!(h["host"], up.addr().to_string().as_str(), "upstream_host: target");
    assert_eq!(h["x-user-id"], "user 7", "the gateway's own headers still go");
    assert_eq!(h["x-request-id"], "rid-42");

    client()
        .get(gw.url("/lit/x"))
        .header("Host", "shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(up.last().headers["host"], "internal.example:8443");
    assert_eq!(
        up.last().headers["x-forwarded-host"],
        "shop.example",
        "the client's host stays visible"
    );
    client()
        .get(gw.url("/kept/x"))
        .header("Host", "shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(up.last().headers["host"], "shop.example", "preserve is the default");
}

#[tokio::test]
async fn gateway_headers_change_only_with_override_and_response_headers_apply() {
    let up = MockUpstream::start("u").await;
    up.add_response_header("X-Internal", "db-3");
    up.add_response_header("X-Powered-By", "php");
    let gw = Gateway::start(&format!(
        r#"
upstreams: {{ u: {{ targets: ["{}"] }} }}
routes:
  - name: all
    prefix: /
    upstream: u
    request_headers: {{ override: true, set: {{ X-Forwarded-Host: public.example.com }} }}
    response_headers:
      set: {{ X-Served-By: "gatehouse {{request_id}}" }}
      add: {{ X-Extra: one }}
      remove: [X-Internal]
"#,
        up.addr()
    ))
    .await;
    let r = client()
        .get(gw.url("/x"))
        .header("Host", "shop.example")
        .header("X-Request-ID", "r-1")
        .send()
        .await
        .unwrap();
    assert_eq!(up.last().headers["x-forwarded-host"], "public.example.com");
    assert_eq!(r.headers()["x-served-by"], "gatehouse r-1");
    assert_eq!(r.headers()["x-extra"], "one");
    assert!(!r.headers().contains_key("x-internal"));
    assert_eq!(r.headers()["x-powered-by"], "php", "untouched headers pass");
    assert_eq!(r.headers()["x-request-id"], "r-1");
}

#[tokio::test]
async fn json_fields_are_removed_and_masked_and_the_cache_keeps_the_edited_copy() {
    let up = FnServer::start(|_, path, _| {
        let body = match path {
            "/user" => json!({
                "id": 7, "password": "hunter2", "card": {"number": "4111111111111111", "exp": "12/30"},
                "items": [{"sku": "a", "ssn": "111"}, {"sku": "b", "ssn": "222"}]
            })
            .to_string(),
            "/big" => json!({ "password": "p", "pad": "x".repeat(4096) }).to_string(),
            "/broken" => "{\"password\": ".to_string(),
            _ => "password=plain".to_string(),
        };
        let ctype = if path == "/text" {
            "text/plain"
        } else {
            "application/json"
        };
        (200, body, ctype)
    })
    .await;
    let gw = Gateway::start(&format!(
        r#"
cache: {{ max_size: 16MiB }}
upstreams: {{ u: {{ targets: ["{}"] }} }}
routes:
  - name: users
    prefix: /
    upstream: u
    cache: {{ ttl: 60s }}
    json:
      remove: ["$.password", "$.items[*].ssn"]
      mask: ["$.card.number"]
      max_size: 1KiB
"#,
        up.addr()
    ))
    .await;

    for expected_cache in ["MISS", "HIT"] {
        let r = gw.get("/user").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-cache"], expected_cache);
        let text = r.text().await.unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            doc,
            json!({"id": 7, "card": {"number": "****", "exp": "12/30"}, "items": [{"sku": "a"}, {"sku": "b"}]})
        );
    }
    assert_eq!(up.calls(), 1, "the second answer came from the cache, already edited");

    let big = gw.get("/big").await.text().await.unwrap();
    assert!(big.contains("\"password\":\"p\""), "larger than max_size: untouched");
    assert_eq!(gw.get("/broken").await.text().await.unwrap(), "{\"password\": ");
    assert_eq!(gw.get("/text").await.text().await.unwrap(), "password=plain");

    let lines: Vec<String> = [("applied", 1), ("too_large", 1), ("invalid", 1), ("not_json", 1)]
        .iter()
        .map(|(result, n)| format!("gateway_json_transform_total{{result=\"{result}\",route=\"users\"}} {n}"))
        .collect();
    gw.metrics_with(&lines.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
}

#[tokio::test]
async fn a_json_edit_on_a_streamed_body_gives_a_well_framed_answer_over_raw_http1() {
    let up = MockUpstream::start("u").await;
    let gw = Gateway::start(&format!(
        r#"
upstreams: {{ u: {{ targets: ["{}"] }} }}
routes:
  - {{ name: all, prefix: /, upstream: u, json: {{ remove: ["$.query"] }} }}
"#,
        up.addr()
    ))
    .await;
    // Two requests on one connection: the edited body's framing must let the second through.
    let raw = raw_exchange(
        gw.port,
        b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert!(
        text.contains("transfer-encoding: chunked") || text.contains("Transfer-Encoding: chunked"),
        "{text}"
    );
    assert!(
        !text.contains("\"query\""),
        "the field is gone from both answers: {text}"
    );
    assert!(
        text.contains("\"path\":\"/a\"") && text.contains("\"path\":\"/b\""),
        "{text}"
    );
}

async fn raw_exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the gateway closes after the second answer")
        .unwrap();
    out
}
