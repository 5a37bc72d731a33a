//! Every routing rule through the real gateway: each route points at its own upstream, so
//! the `x-upstream` header says which route answered.

mod common;

use common::*;
use serde_json::Value;

struct Setup {
    gw: Gateway,
    _ups: Vec<MockUpstream>,
}

/// One upstream per name; routes written by the test refer to them by name.
async fn setup(names: &[&str], routes: &str) -> Setup {
    let mut ups = Vec::new();
    let mut body = String::from("upstreams:\n");
    for name in names {
        let up = MockUpstream::start(name).await;
        body.push_str(&format!("  {name}: {{ targets: [\"{}\"] }}\n", up.addr()));
        ups.push(up);
    }
    body.push_str("routes:\n");
    body.push_str(routes);
    Setup {
        gw: Gateway::start(&body).await,
        _ups: ups,
    }
}

async fn who(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = client().request(method.parse().unwrap(), gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let upstream = r
        .headers()
        .get("x-upstream")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, upstream)
}

#[tokio::test]
async fn most_specific_path_wins() {
    let s = setup(
        &["regex", "prefix", "wild", "param", "exact"],
        r#"
  - { name: r-regex, regex: "^/api/v[0-9]+/.*", upstream: regex }
  - { name: r-prefix, prefix: /api, upstream: prefix }
  - { name: r-wild, path: "/api/users/*rest", upstream: wild }
  - { name: r-param, path: "/api/users/:id", upstream: param }
  - { name: r-exact, path: /api/users/me, upstream: exact }
"#,
    )
    .await;
    let gw = &s.gw;
    assert_eq!(who(gw, "GET", "/api/users/me", &[]).await, (200, "exact".into()));
    assert_eq!(who(gw, "GET", "/api/users/42", &[]).await, (200, "param".into()));
    assert_eq!(who(gw, "GET", "/api/users/42/orders", &[]).await, (200, "wild".into()));
    assert_eq!(who(gw, "GET", "/api/users", &[]).await, (200, "wild".into()));
    assert_eq!(who(gw, "GET", "/api/other", &[]).await, (200, "prefix".into()));
    assert_eq!(who(gw, "GET", "/apix", &[]).await, (200, "prefix".into()));
    // The regex ranks after every prefix; it still answers what no prefix takes.
    let s2 = setup(
        &["regex", "prefix"],
        "  - { regex: \"^/v[0-9]+/\", upstream: regex }\n  - { prefix: /api, upstream: prefix }\n",
    )
    .await;
    assert_eq!(who(&s2.gw, "GET", "/v2/x", &[]).await, (200, "regex".into()));
    assert_eq!(who(&s2.gw, "GET", "/vx/x", &[]).await.0, 404);
}

#[tokio::test]
async fn host_header_and_query_matches() {
    let s = setup(
        &["api", "wild", "any", "v2", "beta"],
        r#"
  - { host: api.example.com, prefix: /, upstream: api }
  - { host: "*.example.com", prefix: /, upstream: wild }
  - { prefix: /, upstream: any }
  - { prefix: /, headers: { X-Api-Version: "2" }, upstream: v2 }
  - { prefix: /, query: { beta: "1" }, upstream: beta }
"#,
    )
    .await;
    let gw = &s.gw;
    assert_eq!(who(gw, "GET", "/x", &[("Host", "api.example.com")]).await.1, "api");
    assert_eq!(who(gw, "GET", "/x", &[("Host", "API.example.com:8080")]).await.1, "api");
    assert_eq!(who(gw, "GET", "/x", &[("Host", "www.example.com")]).await.1, "wild");
    assert_eq!(who(gw, "GET", "/x", &[("Host", "example.org")]).await.1, "any");
    assert_eq!(who(gw, "GET", "/x", &[("X-Api-Version", "2")]).await.1, "v2");
    assert_eq!(who(gw, "GET", "/x", &[("X-Api-Version", "3")]).await.1, "any");
    assert_eq!(who(gw, "GET", "/x?a=b&beta=1", &[]).await.1, "beta");
    assert_eq!(who(gw, "GET", "/x?beta=2", &[]).await.1, "any");
}

#[tokio::test]
async fn methods_select_routes_and_others_get_405_with_allow() {
    let s = setup(
        &["reader", "writer"],
        r#"
  - { path: /items, methods: [GET], upstream: reader }
  - { path: /items, methods: [POST, PUT], upstream: writer }
"#,
    )
    .await;
    let gw = &s.gw;
    assert_eq!(who(gw, "GET", "/items", &[]).await, (200, "reader".into()));
    assert_eq!(who(gw, "HEAD", "/items", &[]).await, (200, "reader".into()));
    assert_eq!(who(gw, "PUT", "/items", &[]).await, (200, "writer".into()));
    let r = client().delete(gw.url("/items")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD, POST, PUT");
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 405);
    assert_eq!(body["request_id"], id.as_str());
    assert!(body["error"].as_str().unwrap().contains("method not allowed"));
}

#[tokio::test]
async fn no_route_is_a_json_404() {
    let s = setup(&["a"], "  - { path: /only, upstream: a }\n").await;
    let r = s.gw.get("/elsewhere").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["error"], "no route matches this request");
    assert!(!body["request_id"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn strip_prefix_rewrites_the_upstream_path_and_keeps_the_query() {
    let up = MockUpstream::start("users").await;
    let gw = Gateway::start(&format!(
        "upstreams: {{ users: {{ targets: [\"{}\"] }} }}\nroutes:\n  - {{ path: \"/api/users/*path\", upstream: users, strip_prefix: /api/users }}\n",
        up.addr()
    ))
    .await;
    assert_eq!(gw.get("/api/users/42/orders?page=2").await.status(), 200);
    assert_eq!(up.last().uri, "/42/orders?page=2");
    assert_eq!(gw.get("/api/users").await.status(), 200);
    assert_eq!(up.last().uri, "/");
}

#[tokio::test]
async fn dot_segments_are_refused() {
    let s = setup(&["a"], "  - { prefix: /public, upstream: a }\n").await;
    // reqwest would normalise the path; send it raw.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", s.gw.port)).await.unwrap();
    conn.write_all(b"GET /public/../admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("dot segments") || answer.contains(". or .."),
        "{answer}"
    );
    assert_eq!(s._ups[0].hits(), 0);
}
