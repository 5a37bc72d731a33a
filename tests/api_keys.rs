//! API keys: looked up by SHA-256 in constant time, from a header or a query parameter,
//! naming a consumer the backend sees as X-Consumer.

mod common;

use common::*;

fn sha256_hex(key: &str) -> String {
    let out = std::process::Command::new(BIN)
        .args(["hash-key", key])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn keys_name_consumers_and_unknown_or_missing_keys_are_401() {
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&format!(
        r#"
auth:
  api_keys:
    header: X-API-Key
    query: api_key
    keys:
      - {{ consumer: alice, sha256: "{}" }}
      - {{ consumer: bob, sha256: "{}" }}
upstreams: {{ api: {{ targets: ["{}"] }} }}
routes: [{{ prefix: /partner, auth: api_key, upstream: api }}]
"#,
        sha256_hex("alice-key-123"),
        sha256_hex("bob-key-456"),
        up.addr()
    ))
    .await;

    let r = client()
        .get(gw.url("/partner/a"))
        .header("X-API-Key", "alice-key-123")
        .header("X-Consumer", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        up.last().headers["x-consumer"],
        "alice",
        "the client's X-Consumer was replaced"
    );

    assert_eq!(gw.get("/partner/b?api_key=bob-key-456").await.status(), 200);
    assert_eq!(up.last().headers["x-consumer"], "bob");

    let hits = up.hits();
    let r = client()
        .get(gw.url("/partner/a"))
        .header("X-API-Key", "alice-key-124")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("ApiKey realm=\"gatehouse\""));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unknown API key");

    let r = gw.get("/partner/a").await;
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "missing API key");
    assert_eq!(up.hits(), hits, "refused requests never reached the backend");
}

#[test]
fn hash_key_prints_the_hex_sha256() {
    assert_eq!(
        sha256_hex("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
