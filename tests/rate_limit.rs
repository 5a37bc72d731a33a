//! Rate limits: exact GCRA buckets per key, locally and shared across two gatehouse nodes
//! through a real Redis server, with both `on_redis_error` policies while Redis is down.

mod common;

use common::*;
use std::time::Duration;

async fn get_as(gw: &Gateway, path: &str, client_key: &str) -> reqwest::Response {
    client()
        .get(gw.url(path))
        .header("X-Client", client_key)
        .send()
        .await
        .unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> u64 {
    r.headers()[name].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_local_limit_lets_n_through_per_key_and_answers_429_after() {
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&format!(
        "upstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes:\n  - {{ prefix: /, upstream: api, rate_limit: {{ requests: 5, per: 1m, key: \"header:X-Client\" }} }}\n",
        up.addr()
    ))
    .await;
    for i in 0..5 {
        let r = get_as(&gw, "/x", "alice").await;
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(header(&r, "ratelimit-limit"), 5);
        assert_eq!(header(&r, "ratelimit-remaining"), 4 - i);
        assert!(header(&r, "ratelimit-reset") <= 60);
    }
    let r = get_as(&gw, "/x", "alice").await;
    assert_eq!(r.status(), 429);
    let retry_after = header(&r, "retry-after");
    assert!(
        (1..=12).contains(&retry_after),
        "one token comes back every 12s: {retry_after}"
    );
    assert_eq!(header(&r, "ratelimit-remaining"), 0);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate limit exceeded");
    assert_eq!(body["status"], 429);
    assert_eq!(up.hits(), 5, "the 429 never reached the upstream");
    // Another key has its own bucket.
    assert_eq!(get_as(&gw, "/x", "bob").await.status(), 200);
}

#[tokio::test]
async fn the_global_limit_and_the_route_limit_both_apply() {
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&format!(
        "rate_limit: {{ requests: 3, per: 1m, key: ip }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes:\n  - {{ path: /a, upstream: api }}\n  - {{ path: /b, upstream: api, rate_limit: {{ requests: 1, per: 1m, key: route }} }}\n",
        up.addr()
    ))
    .await;
    assert_eq!(gw.get("/b").await.status(), 200);
    assert_eq!(gw.get("/b").await.status(), 429, "the route's own limit");
    assert_eq!(gw.get("/a").await.status(), 200);
    assert_eq!(
        gw.get("/a").await.status(),
        429,
        "the global limit counts every route: 3 used"
    );
}

async fn global_gateway(redis: &RedisServer, up: &MockUpstream, policy: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
redis: {{ url: "{}", timeout: 250ms, key_prefix: "test{}" }}
upstreams: {{ api: {{ targets: ["{}"] }} }}
routes:
  - {{ name: shared, path: /shared, upstream: api, rate_limit: {{ requests: 10, per: 1h, key: "header:X-Client", scope: global }} }}
  - {{ name: open, path: /open, upstream: api, rate_limit: {{ requests: 1000, per: 1h, key: ip, scope: global, on_redis_error: allow }} }}
  - {{ name: closed, path: /closed, upstream: api, rate_limit: {{ requests: 1000, per: 1h, key: ip, scope: global, on_redis_error: {policy} }} }}
"#,
        redis.url(),
        redis.port,
        up.addr()
    ))
    .await
}

/// Waits until a node's global limit answers from Redis (it connects in the background).
async fn wait_for_redis(gw: &Gateway) {
    eventually(Duration::from_secs(10), "the node connected to redis", || async {
        let r = get_as(gw, "/open", "probe").await;
        r.status() == 200 && header(&r, "ratelimit-remaining") < 1000
    })
    .await;
}

#[tokio::test]
async fn two_nodes_share_one_global_limit_exactly() {
    let redis = RedisServer::start().await;
    let up = MockUpstream::start("api").await;
    let node_a = global_gateway(&redis, &up, "deny").await;
    let node_b = global_gateway(&redis, &up, "deny").await;
    wait_for_redis(&node_a).await;
    wait_for_redis(&node_b).await;

    let mut allowed = 0;
    for i in 0..30 {
        let node = if i % 2 == 0 { &node_a } else { &node_b };
        if get_as(node, "/shared", "carol").await.status() == 200 {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10, "10 per hour across both nodes, whichever node answers");
    assert_eq!(
        get_as(&node_b, "/shared", "dave").await.status(),
        200,
        "keys are separate"
    );
}

#[tokio::test]
async fn when_redis_is_down_each_limit_follows_its_policy() {
    let mut redis = RedisServer::start().await;
    let up = MockUpstream::start("api").await;
    let gw = global_gateway(&redis, &up, "deny").await;
    wait_for_redis(&gw).await;
    assert_eq!(gw.get("/closed").await.status(), 200);

    redis.stop();
    let started = std::time::Instant::now();
    let r = gw.get("/open").await;
    assert_eq!(r.status(), 200, "on_redis_error: allow");
    assert!(
        r.headers().get("ratelimit-remaining").is_none(),
        "nothing was counted: no bucket state may be claimed"
    );
    let r = gw.get("/closed").await;
    assert_eq!(r.status(), 429, "on_redis_error: deny");
    assert!(r.headers().get("ratelimit-remaining").is_none());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "never a hang: {:?}",
        started.elapsed()
    );
    eventually(Duration::from_secs(5), "the outage is logged", || async {
        gw.logs().contains("rate-limit decisions follow on_redis_error")
    })
    .await;
    // Every decision taken by policy is counted and marked in the access log.
    let metrics = gw.metrics_text().await;
    for decision in ["allow", "deny"] {
        let line = format!("gateway_rate_limit_redis_errors_total{{decision=\"{decision}\"}} 1");
        assert!(metrics.contains(&line), "no `{line}` in:\n{metrics}");
    }
    let marked: Vec<_> = gw
        .access_log()
        .into_iter()
        .filter_map(|l| {
            l["rate_limit_policy"]
                .as_str()
                .map(|p| (l["path"].clone(), p.to_string()))
        })
        .collect();
    assert_eq!(
        marked,
        vec![
            ("/open".into(), "allow".to_string()),
            ("/closed".into(), "deny".to_string())
        ]
    );

    // Redis comes back: decisions are made by Redis again.
    redis.restart().await;
    eventually(Duration::from_secs(10), "limits answered by redis again", || async {
        gw.get("/closed").await.status() == 200
    })
    .await;
}
