//! Protecting services from failures and spreading load: the circuit breaker, passive
//! health, least connections, consistent hashing, canary splits and retries with backoff.

mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

async fn status(gw: &Gateway, path: &str) -> u16 {
    gw.get(path).await.status().as_u16()
}

#[tokio::test]
async fn the_circuit_opens_half_opens_and_closes() {
    let up = MockUpstream::start("flaky").await;
    let gw = Gateway::start(&format!(
        "upstreams: {{ u: {{ targets: [\"{}\"], retries: 0, circuit_breaker: {{ failures: 3, open_for: 500ms, half_open_requests: 1 }} }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
        up.addr()
    ))
    .await;
    up.set_status(500);
    for _ in 0..3 {
        assert_eq!(status(&gw, "/x").await, 500, "upstream 500s are relayed while closed");
    }
    // Open: refused without touching the upstream.
    let hits = up.hits();
    let r = gw.get("/x").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "circuit open for upstream u");
    assert_eq!(up.hits(), hits);
    assert_eq!(gw.health().await["services"]["u"]["circuit"], "open");

    // After open_for a failed probe opens it again...
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(status(&gw, "/x").await, 500, "the probe reaches the upstream");
    assert_eq!(status(&gw, "/x").await, 503, "and its failure reopens the circuit");

    // ...and a good probe closes it.
    up.set_status(200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(status(&gw, "/x").await, 200);
    assert_eq!(gw.health().await["services"]["u"]["circuit"], "closed");
    for _ in 0..5 {
        assert_eq!(status(&gw, "/x").await, 200);
    }
    eventually(Duration::from_secs(5), "the circuit's changes logged", || async {
        gw.logs().contains("circuit open") && gw.logs().contains("circuit closed")
    })
    .await;
}

#[tokio::test]
async fn connect_failures_open_the_circuit_too() {
    let dead = free_port();
    let gw = Gateway::start(&format!(
        "upstreams: {{ u: {{ targets: [\"127.0.0.1:{dead}\"], retries: 0, circuit_breaker: {{ failures: 2, open_for: 1m }} }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n"
    ))
    .await;
    assert_eq!(status(&gw, "/").await, 502);
    assert_eq!(status(&gw, "/").await, 502);
    assert_eq!(status(&gw, "/").await, 503);
}

#[tokio::test]
async fn a_target_failing_in_live_traffic_is_ejected_then_returns() {
    let good = MockUpstream::start("good").await;
    let bad = MockUpstream::start("bad").await;
    bad.set_status(503);
    let gw = Gateway::start(&format!(
        "upstreams: {{ u: {{ targets: [\"{}\", \"{}\"], retries: 0, passive_health: {{ failures: 2, eject_for: 700ms }} }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
        good.addr(),
        bad.addr()
    ))
    .await;
    // Round robin alternates until `bad` has failed twice.
    for _ in 0..4 {
        gw.get("/x").await;
    }
    assert_eq!(bad.hits(), 2);
    let counts = distribution(&gw, "/x", 20).await;
    assert_eq!(
        counts.get("good"),
        Some(&20),
        "the ejected target gets nothing: {counts:?}"
    );
    let health = gw.health().await;
    assert_eq!(health["services"]["u"]["healthy_instances"], 1);

    bad.set_status(200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let counts = distribution(&gw, "/x", 10).await;
    assert_eq!(counts.get("bad"), Some(&5), "back after eject_for: {counts:?}");
}

#[tokio::test]
async fn least_conn_sends_new_requests_to_the_least_busy_target() {
    let slow = MockUpstream::start("slow").await;
    let fast = MockUpstream::start("fast").await;
    slow.set_delay(Duration::from_millis(1500));
    let gw = Gateway::start(&format!(
        "upstreams: {{ u: {{ targets: [\"{}\", \"{}\"], balance: least_conn }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
        slow.addr(),
        fast.addr()
    ))
    .await;
    let mut pending = Vec::new();
    for _ in 0..20 {
        let url = gw.url("/work");
        pending.push(tokio::spawn(async move {
            client().get(url).send().await.map(|r| r.status())
        }));
        // Long enough for a fast answer to complete even on a loaded machine.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    for p in pending {
        assert_eq!(p.await.unwrap().unwrap(), 200);
    }
    assert!(slow.hits() <= 3, "the busy slow target got {} of 20", slow.hits());
    assert!(fast.hits() >= 17);
}

/// Which target answers for each of `keys`, sending the key in X-User.
async fn placement(gw: &Gateway, keys: &[String]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for k in keys {
        let r = client().get(gw.url("/p")).header("X-User", k).send().await.unwrap();
        out.insert(k.clone(), r.headers()["x-upstream"].to_str().unwrap().to_string());
    }
    out
}

#[tokio::test]
async fn consistent_hashing_keeps_keys_on_their_target_when_one_is_added() {
    let ups = [
        MockUpstream::start("t1").await,
        MockUpstream::start("t2").await,
        MockUpstream::start("t3").await,
        MockUpstream::start("t4").await,
    ];
    let config = |n: usize| {
        let targets: Vec<String> = ups[..n].iter().map(|u| format!("\"{}\"", u.addr())).collect();
        format!(
            "upstreams: {{ u: {{ targets: [{}], balance: consistent_hash, hash_key: \"header:X-User\" }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
            targets.join(", ")
        )
    };
    let gw = Gateway::start(&config(3)).await;
    let keys: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
    let before = placement(&gw, &keys).await;
    assert_eq!(
        placement(&gw, &keys[..20]).await,
        keys[..20].iter().map(|k| (k.clone(), before[k].clone())).collect()
    );
    let used: HashSet<&String> = before.values().collect();
    assert_eq!(used.len(), 3, "keys spread over every target");

    gw.write_config(&config(4));
    gw.signal("HUP");
    eventually(Duration::from_secs(5), "reload", || async {
        gw.health().await["services"]["u"]["total_instances"] == 4
    })
    .await;
    let after = placement(&gw, &keys).await;
    let moved: Vec<&String> = keys.iter().filter(|k| before[*k] != after[*k]).collect();
    assert!(
        moved.iter().all(|k| after[*k] == "t4"),
        "keys only move to the new target"
    );
    let share = moved.len() as f64 / keys.len() as f64;
    assert!(
        (0.1..=0.4).contains(&share),
        "about 1/4 of the keys should move, {share:.2} did"
    );
}

#[tokio::test]
async fn a_canary_split_follows_its_weights_within_3_percent() {
    let stable = MockUpstream::start("stable").await;
    let canary = MockUpstream::start("canary").await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  stable: {{ targets: [\"{}\"] }}\n  canary: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ prefix: /, split: [{{ upstream: stable, weight: 90 }}, {{ upstream: canary, weight: 10 }}] }}\n",
        stable.addr(),
        canary.addr()
    ))
    .await;
    let n = 2000;
    let counts = distribution(&gw, "/c", n).await;
    let share = counts.get("canary").copied().unwrap_or(0) as f64 / n as f64;
    assert!((share - 0.10).abs() <= 0.03, "canary share {share:.3} ({counts:?})");
}

#[tokio::test]
async fn retries_wait_their_backoff_and_skip_the_failed_target() {
    let live = MockUpstream::start("live").await;
    let dead = free_port();
    let gw = Gateway::start(&format!(
        "upstreams: {{ u: {{ targets: [\"127.0.0.1:{dead}\", \"{}\"], retries: 2, retry_backoff: 300ms }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
        live.addr()
    ))
    .await;
    let mut retried = Vec::new();
    let mut direct = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        assert_eq!(status(&gw, "/r").await, 200);
        let took = started.elapsed();
        if took >= Duration::from_millis(300) {
            retried.push(took);
        } else {
            direct.push(took);
        }
    }
    assert_eq!(
        retried.len(),
        2,
        "half the requests hit the dead target first, then waited: {retried:?} {direct:?}"
    );
    assert!(retried.iter().all(|t| *t < Duration::from_millis(1500)));
}

/// Accepts, reads the request, hangs up: a connection lost before any response byte.
async fn hang_up_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let _ = conn.shutdown().await;
        }
    });
    (addr, task)
}

#[tokio::test]
async fn non_idempotent_requests_are_retried_only_when_configured() {
    let (bad, task) = hang_up_upstream().await;
    let good = MockUpstream::start("good").await;
    let config = |any: bool| {
        format!(
            "upstreams: {{ u: {{ targets: [\"{bad}\", \"{}\"], retries: 1, retry_non_idempotent: {any} }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
            good.addr()
        )
    };
    let strict = Gateway::start(&config(false)).await;
    let mut statuses = HashSet::new();
    for _ in 0..4 {
        statuses.insert(
            client()
                .post(strict.url("/p"))
                .body("x")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert!(statuses.contains(&502), "POST is not retried by default: {statuses:?}");

    let lenient = Gateway::start(&config(true)).await;
    for _ in 0..4 {
        assert_eq!(
            client()
                .post(lenient.url("/p"))
                .body("x")
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    task.abort();
}
