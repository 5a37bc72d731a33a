//! `gatehouse explain` and `POST /admin/explain`: the route that wins and why the others
//! did not, the steps that would run, and the request the upstream would get; nothing sent.

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::Command;

const CONFIG: &str = r#"
auth: { jwt: { secret: "0123456789abcdef0123456789abcdef" }, api_keys: { header: X-API-Key, keys: [{ consumer: partner, sha256: "c48a01f49fd0f2cc404bc3cbbc80e91457a3d41bb429a695243de4c61794155c" }] } }
cors: { origins: ["https://app.example.com"] }
cache: { max_size: 16MiB }
upstreams:
  users: { targets: ["127.0.0.1:9"] }
  v2: { targets: ["127.0.0.1:9"] }
routes:
  - { name: users-v2, prefix: /api/users, headers: { X-Api-Version: "2" }, upstream: v2 }
  - { name: users, prefix: /api/users, methods: [GET, POST], strip_prefix: /api, auth: jwt, rate_limit: { requests: 5, per: 1m, key: "header:X-Client" }, upstream: users }
  - { name: partner, prefix: /partner, auth: api_key, upstream: users }
  - { name: pages, prefix: /pages, cache: { ttl: 1m }, upstream: users }
"#;

fn explain(dir: &std::path::Path, args: &[&str]) -> (bool, Value) {
    let path = dir.join("gatehouse.yaml");
    std::fs::write(&path, format!("listen: [\"127.0.0.1:1\"]\n{CONFIG}")).unwrap();
    let out = Command::new(BIN)
        .arg("explain")
        .args(args)
        .arg("-c")
        .arg(&path)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), v)
}

#[test]
fn the_winning_route_the_ones_before_it_and_the_request_the_upstream_gets() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, v) = explain(
        dir.path(),
        &[
            "GET",
            "http://api.test/api/users/42?page=2",
            "-H",
            "X-Client: alice",
            "-H",
            "X-User-ID: forged",
            "-H",
            "Authorization: Bearer abc",
        ],
    );
    assert!(ok);
    assert_eq!(v["route"]["name"], "users", "{v:#}");
    assert_eq!(v["outcome"], "proxied on route users");
    // users-v2 is more specific (a header condition) and is tried first: it says why not.
    let tried = v["routes_tried"].as_array().unwrap();
    assert_eq!(tried[0]["route"], "users-v2");
    assert_eq!(tried[0]["why_not"], "header x-api-version is missing");
    assert_eq!(tried.last().unwrap()["route"], "users");
    // The steps, with the limit's key for this very request.
    let steps = v["steps"].to_string();
    assert!(steps.contains("bearer token (JWT or introspected): present"), "{steps}");
    assert!(steps.contains("counted under key \\\"alice\\\""), "{steps}");
    assert!(steps.contains("origins https://app.example.com"), "{steps}");
    // The upstream request: prefix stripped, identity header from the client removed.
    let up = &v["upstream_request"];
    assert_eq!(up["path"], "/users/42?page=2", "{up:#}");
    assert!(up["removed_or_replaced"].to_string().contains("forged"), "{up:#}");
    assert!(!up["headers"].to_string().contains("forged"), "{up:#}");
    assert!(up["headers"].to_string().contains("x-forwarded-host"), "{up:#}");
    assert_eq!(v["upstream"]["pools"][0]["name"], "users");
}

#[test]
fn a_404_a_405_a_missing_credential_and_a_cache_key_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (_, v) = explain(dir.path(), &["GET", "http://api.test/nowhere"]);
    assert_eq!(v["status"], 404, "{v:#}");
    assert!(v["routes_tried"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["matches"] == false && t["why_not"].as_str().unwrap().contains("does not match")));

    let (_, v) = explain(dir.path(), &["DELETE", "http://api.test/api/users/1"]);
    assert_eq!(v["status"], 405, "{v:#}");
    let why: Vec<&str> = v["routes_tried"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["why_not"].as_str())
        .collect();
    assert!(why.contains(&"method DELETE is not among GET, POST"), "{why:?}");

    let (_, v) = explain(dir.path(), &["GET", "http://api.test/partner/x"]);
    assert!(v["steps"].to_string().contains("API key: missing"), "{v:#}");
    let (_, v) = explain(
        dir.path(),
        &["GET", "http://api.test/partner/x", "-H", "X-API-Key: demo-key"],
    );
    assert!(
        v["steps"].to_string().contains("API key: valid, consumer partner"),
        "{v:#}"
    );

    let (_, v) = explain(dir.path(), &["GET", "http://API.test:8080/pages/a?b=1"]);
    assert_eq!(v["cache"]["key"], "api.test/pages/a?b=1 pages", "{v:#}");
}

#[tokio::test]
async fn the_admin_api_explains_with_live_target_health() {
    let dead = free_port();
    let gw = Gateway::start(&format!(
        "upstreams: {{ api: {{ targets: [\"127.0.0.1:{dead}\"], health_check: {{ path: /, interval: 100ms }} }} }}\nroutes: [{{ name: all, prefix: /, upstream: api }}]\n"
    ))
    .await;
    let ask = |body: Value| {
        let url = gw.admin_url("/admin/explain");
        async move { client().post(url).json(&body).send().await.unwrap() }
    };
    eventually(
        std::time::Duration::from_secs(5),
        "the dead target is out of service",
        || async {
            let r = ask(json!({ "method": "GET", "url": "http://x.test/a" })).await;
            let v: Value = r.json().await.unwrap();
            v["upstream"]["pools"][0]["targets"][0]["takes_traffic"] == false
        },
    )
    .await;
    let r = ask(json!({ "url": 5 })).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("url"));
}
