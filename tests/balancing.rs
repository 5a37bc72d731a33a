//! Weighted round robin, active health checks and retries against real upstreams.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test]
async fn weighted_round_robin_follows_the_weights_within_5_percent() {
    let a = MockUpstream::start("a").await;
    let b = MockUpstream::start("b").await;
    let c = MockUpstream::start("c").await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  u:\n    targets: [\"{}\", {{ addr: \"{}\", weight: 3 }}, {{ addr: \"{}\", weight: 6 }}]\nroutes: [{{ prefix: /, upstream: u }}]\n",
        a.addr(),
        b.addr(),
        c.addr()
    ))
    .await;
    let n = 1200;
    let counts = distribution(&gw, "/", n).await;
    for (name, weight) in [("a", 1.0), ("b", 3.0), ("c", 6.0)] {
        let share = counts.get(name).copied().unwrap_or(0) as f64 / n as f64;
        let want = weight / 10.0;
        assert!(
            (share - want).abs() <= 0.05,
            "{name}: share {share:.3}, want {want:.3} ({counts:?})"
        );
    }
}

#[tokio::test]
async fn a_dead_target_is_ejected_and_comes_back_when_healthy() {
    let a = MockUpstream::start("a").await;
    let mut b = MockUpstream::start("b").await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  u:\n    targets: [\"{}\", \"{}\"]\n    retries: 0\n    health_check: {{ path: /health, interval: 100ms, timeout: 200ms, healthy: 2, unhealthy: 1 }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
        a.addr(),
        b.addr()
    ))
    .await;
    eventually(Duration::from_secs(5), "both targets healthy", || async {
        gw.healthy_targets("u").await == 2
    })
    .await;

    b.stop();
    eventually(Duration::from_secs(5), "b ejected", || async {
        gw.healthy_targets("u").await == 1
    })
    .await;
    // Once ejected, no client sees an error even with retries off: b gets no traffic.
    let counts = distribution(&gw, "/", 200).await;
    assert_eq!(counts.get("a"), Some(&200), "{counts:?}");
    let health = gw.health().await;
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["services"]["u"]["status"], "1/2");

    b.restart().await;
    eventually(Duration::from_secs(5), "b back", || async {
        gw.healthy_targets("u").await == 2
    })
    .await;
    let counts = distribution(&gw, "/", 100).await;
    assert_eq!(counts.get("b"), Some(&50), "traffic returns to b: {counts:?}");
}

#[tokio::test]
async fn an_unhealthy_status_also_ejects() {
    let a = MockUpstream::start("a").await;
    let b = MockUpstream::start("b").await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  u:\n    targets: [\"{}\", \"{}\"]\n    health_check: {{ interval: 100ms, healthy: 1, unhealthy: 1 }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
        a.addr(),
        b.addr()
    ))
    .await;
    b.set_health_status(503);
    eventually(Duration::from_secs(5), "b ejected by its 503", || async {
        gw.healthy_targets("u").await == 1
    })
    .await;
    let counts = distribution(&gw, "/", 50).await;
    assert_eq!(counts.get("a"), Some(&50));
    assert!(b.health_hits() > 0);
}

#[tokio::test]
async fn a_refused_connection_is_retried_on_another_target() {
    let a = MockUpstream::start("a").await;
    let dead = free_port();
    // No health check: the dead target stays "healthy", so only the retry saves requests.
    let gw = Gateway::start(&format!(
        "upstreams:\n  u:\n    targets: [\"{}\", \"127.0.0.1:{dead}\"]\n    retries: 1\nroutes: [{{ prefix: /, upstream: u }}]\n",
        a.addr()
    ))
    .await;
    let counts = distribution(&gw, "/", 40).await;
    assert_eq!(counts.get("a"), Some(&40));
    // Half the requests went to the dead target first and needed a second attempt (a retry
    // does not turn the round-robin wheel). Access lines are written just after each answer.
    eventually(Duration::from_secs(5), "40 access lines", || {
        let n = gw.access_log().iter().filter(|l| l["path"] == "/").count();
        async move { n == 40 }
    })
    .await;
    let retried = gw.access_log().iter().filter(|l| l["attempts"] == 2).count();
    assert_eq!(retried, 20, "every other request met the dead target first");
}

#[tokio::test]
async fn without_retries_a_refused_connection_is_a_502() {
    let dead = free_port();
    let gw = Gateway::start(&format!(
        "upstreams:\n  u:\n    targets: [\"127.0.0.1:{dead}\"]\n    retries: 0\nroutes: [{{ prefix: /, upstream: u }}]\n"
    ))
    .await;
    let r = gw.get("/x").await;
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], 502);
}

#[tokio::test]
async fn no_healthy_target_is_a_503() {
    let mut a = MockUpstream::start("a").await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  u:\n    targets: [\"{}\"]\n    health_check: {{ interval: 100ms, unhealthy: 1 }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
        a.addr()
    ))
    .await;
    a.stop();
    eventually(Duration::from_secs(5), "a ejected", || async {
        gw.healthy_targets("u").await == 0
    })
    .await;
    let r = gw.get("/x").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "no healthy target in upstream u");
    assert_eq!(gw.health().await["status"], "degraded");
}

#[tokio::test]
async fn a_target_added_at_runtime_leaves_what_was_known_of_the_others() {
    let a = MockUpstream::start("a").await;
    let mut b = MockUpstream::start("b").await;
    b.stop();
    let c = MockUpstream::start("c").await;
    // One probe at start, none again for the test's length: whatever /health says after
    // the change was carried over from before it, not probed anew.
    let gw = Gateway::start(&format!(
        "upstreams:\n  u:\n    targets: [\"{}\", \"{}\"]\n    retries: 0\n    health_check: {{ path: /health, interval: 10m, healthy: 1, unhealthy: 1 }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
        a.addr(),
        b.addr()
    ))
    .await;
    eventually(Duration::from_secs(5), "b found unhealthy", || async {
        gw.healthy_targets("u").await == 1
    })
    .await;

    let r = client()
        .post(gw.admin_url("/admin/upstreams/u/targets"))
        .json(&serde_json::json!({ "addr": c.addr().to_string() }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let health = gw.health().await;
    assert_eq!(health["services"]["u"]["total_instances"], 3, "{health}");
    assert_eq!(
        health["services"]["u"]["healthy_instances"], 2,
        "b is still known dead: {health}"
    );
    // With retries off, a b taken for healthy would answer 502s.
    let counts = distribution(&gw, "/", 100).await;
    assert_eq!((counts.get("a"), counts.get("c")), (Some(&50), Some(&50)), "{counts:?}");
}
