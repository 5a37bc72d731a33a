//! Purges by cache tag: origins tag answers with `Cache-Tag` (comma list) or
//! `Surrogate-Key` (space list); `POST /admin/cache/purge {"tags": [...]}` drops every
//! entry with a tag, or with `"soft": true` marks them stale so they revalidate (and
//! `stale-while-revalidate` still answers at once).

mod common;

use common::origin::{reply, Origin, Reply, Seen};
use common::{client, Gateway};
use serde_json::{json, Value};

fn script(req: &Seen, n: usize) -> Reply {
    let etag = "\"v1\"";
    if req.headers.get("if-none-match").is_some_and(|v| v == etag) {
        // Revalidations confirm without repeating the tags: the stored ones stay.
        return Reply {
            status: 304,
            headers: vec![("etag", etag.into()), ("cache-control", "max-age=60".into())],
            ..Default::default()
        };
    }
    let tags: &[(&'static str, &str)] = match req.path.as_str() {
        "/p/1" => &[("cache-tag", "product-1, catalog")],
        "/p/2" => &[("surrogate-key", "product-2 catalog")],
        "/p/swr" => &[
            ("cache-tag", "catalog"),
            ("cache-control", "max-age=60, stale-while-revalidate=60"),
        ],
        "/p/custom" => &[("x-tags", "custom-1")],
        _ => &[],
    };
    let mut headers = vec![("cache-control", "max-age=60"), ("etag", etag)];
    if tags.iter().any(|(k, _)| *k == "cache-control") {
        headers.remove(0);
    }
    headers.extend_from_slice(tags);
    reply(&headers, format!("{} #{n}", req.path))
}

fn config(origin: &Origin, cache: &str) -> String {
    format!(
        "cache: {{ {cache} }}\nupstreams:\n  origin: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ prefix: /, upstream: origin, cache: true }}\n",
        origin.addr
    )
}

async fn get(gw: &Gateway, path: &str) -> (String, reqwest::header::HeaderMap) {
    let resp = client().get(gw.url(path)).send().await.unwrap();
    let x_cache = resp
        .headers()
        .get("x-cache")
        .map_or("(none)".into(), |v| v.to_str().unwrap().to_string());
    (x_cache, resp.headers().clone())
}

async fn purge(gw: &Gateway, body: Value) -> (u16, Value) {
    let resp = client()
        .post(gw.admin_url("/admin/cache/purge"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn a_tag_purge_drops_every_entry_with_the_tag_and_nothing_else() {
    let origin = Origin::start(script).await;
    let gw = Gateway::start(&config(&origin, "")).await;
    for path in ["/p/1", "/p/2", "/p/3"] {
        get(&gw, path).await;
        let (x_cache, headers) = get(&gw, path).await;
        assert_eq!(x_cache, "HIT", "{path}");
        assert!(
            !headers.contains_key("cache-tag") && !headers.contains_key("surrogate-key"),
            "tags stay here"
        );
    }

    let (status, body) = purge(&gw, json!({ "tags": ["product-1"] })).await;
    assert_eq!(
        (status, &body["purged"], &body["soft"]),
        (200, &json!(1), &json!(false)),
        "{body}"
    );
    assert_eq!(get(&gw, "/p/1").await.0, "MISS");
    assert_eq!(get(&gw, "/p/2").await.0, "HIT");

    // Both header styles, several tags at once, each entry counted once.
    let (_, body) = purge(&gw, json!({ "tags": ["catalog", "product-2", "unknown"] })).await;
    assert_eq!(body["purged"], 2, "{body}");
    for path in ["/p/1", "/p/2"] {
        assert_eq!(get(&gw, path).await.0, "MISS", "{path}");
    }
    assert_eq!(get(&gw, "/p/3").await.0, "HIT", "untagged entries are untouched");
    assert_eq!(origin.hits("/p/3"), 1);

    for bad in [
        json!({ "tags": [] }),
        json!({ "tags": "catalog" }),
        json!({ "tags": [""] }),
        json!({ "tags": ["a"], "soft": "yes" }),
    ] {
        let (status, body) = purge(&gw, bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn a_soft_purge_marks_stale_so_entries_revalidate_and_stale_while_revalidate_still_answers() {
    let origin = Origin::start(script).await;
    let gw = Gateway::start(&config(&origin, "")).await;
    for path in ["/p/1", "/p/swr"] {
        get(&gw, path).await;
    }
    let (_, body) = purge(&gw, json!({ "tags": ["catalog"], "soft": true })).await;
    assert_eq!((&body["purged"], &body["soft"]), (&json!(2), &json!(true)), "{body}");

    // Kept, but stale: a conditional request to the origin, answered from the store.
    assert_eq!(get(&gw, "/p/1").await.0, "REVALIDATED");
    assert!(origin.last("/p/1").headers.contains_key("if-none-match"));
    assert_eq!(get(&gw, "/p/1").await.0, "HIT", "fresh again after the 304");
    // stale-while-revalidate: served at once, refreshed behind.
    assert_eq!(get(&gw, "/p/swr").await.0, "STALE");
    common::eventually(std::time::Duration::from_secs(5), "the background refresh", || async {
        origin.hits("/p/swr") == 2
    })
    .await;

    // The 304 carried no tags, and the entry still has its own.
    let (_, body) = purge(&gw, json!({ "tags": ["product-1"] })).await;
    assert_eq!(body["purged"], 1, "{body}");
}

#[tokio::test]
async fn tag_headers_are_configurable_and_can_be_passed_on() {
    let origin = Origin::start(script).await;
    let gw = Gateway::start(&config(&origin, "tag_headers: [X-Tags], strip_tags: false")).await;
    get(&gw, "/p/custom").await;
    get(&gw, "/p/1").await;
    let (x_cache, headers) = get(&gw, "/p/custom").await;
    assert_eq!(
        (x_cache.as_str(), headers.get("x-tags").unwrap().to_str().unwrap()),
        ("HIT", "custom-1")
    );
    let (_, body) = purge(&gw, json!({ "tags": ["custom-1", "product-1"] })).await;
    assert_eq!(body["purged"], 1, "Cache-Tag is not a tag header here: {body}");
    assert_eq!(get(&gw, "/p/custom").await.0, "MISS");
}
