//! Fleet mode against a real etcd: every node serves the config under the prefix, follows
//! each change, refuses a bad one while serving the last good one, and survives etcd
//! going away (a node restarted meanwhile serves its state file).

mod common;

use common::etcd::{EtcdSecurity, EtcdServer};
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const PREFIX: &str = "/fleet-test/";

async fn admin_config(gw: &Gateway) -> Value {
    client()
        .get(gw.admin_url("/admin/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn status(gw: &Gateway, path: &str) -> u16 {
    client()
        .get(gw.url(path))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Held by the test that saturates the cores (three wrk for 8 s) and by the one that times
/// propagation against a deadline, so that they never run side by side. In a CI-like run on
/// 2 cores the timed one saw a p99 of 521 ms with the other fleet tests (the wrk one among
/// them) running beside it; alone beside two nice-19 CPU burners, 145 ms.
static TIMED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fleet config: upstream `api` → `up`, route `base` on /base.
fn seed(etcd: &EtcdServer, up: &MockUpstream) -> i64 {
    seed_with(&|k, v| etcd.put(k, v), up)
}

/// The same through any writer (`put` returns the new revision).
fn seed_with(put: &dyn Fn(&str, &str) -> i64, up: &MockUpstream) -> i64 {
    put(&format!("{PREFIX}settings"), "max_body: 1MiB\n");
    put(
        &format!("{PREFIX}upstreams/api"),
        &format!(r#"{{"targets": ["{}"]}}"#, up.addr()),
    );
    put(&format!("{PREFIX}routes/base"), "{ prefix: /base, upstream: api }")
}

#[tokio::test]
async fn every_node_serves_the_config_in_etcd_and_follows_each_change() {
    let etcd = EtcdServer::start().await;
    let up = MockUpstream::start("api").await;
    let revision = seed(&etcd, &up);
    let a = Gateway::start_fleet(&etcd.url(), PREFIX, tempfile::tempdir().unwrap()).await;
    let b = Gateway::start_fleet(&etcd.url(), PREFIX, tempfile::tempdir().unwrap()).await;
    for node in [&a, &b] {
        assert_eq!(status(node, "/base/x").await, 200);
        let config = admin_config(node).await;
        assert_eq!(
            config["generation"], revision,
            "the etcd revision is the generation: {config}"
        );
    }

    // Changes made with etcdctl reach every node; how long each took is reported.
    let mut delays = Vec::new();
    for i in 0..10 {
        let sent = Instant::now();
        etcd.put(
            &format!("{PREFIX}routes/r{i}"),
            &format!("{{ path: /r{i}, upstream: api }}"),
        );
        for node in [&a, &b] {
            eventually(Duration::from_secs(5), "the new route serves", || async {
                status(node, &format!("/r{i}")).await == 200
            })
            .await;
        }
        delays.push(sent.elapsed());
    }
    delays.sort();
    eprintln!(
        "change → serving on both nodes: p50 {:?}, max {:?}",
        delays[5], delays[9]
    );
    assert!(delays[9] < Duration::from_secs(2), "{delays:?}");

    // A deleted route stops serving everywhere.
    etcd.delete(&format!("{PREFIX}routes/r0"));
    for node in [&a, &b] {
        eventually(Duration::from_secs(5), "the route is gone", || async {
            status(node, "/r0").await == 404
        })
        .await;
    }
}

#[tokio::test]
async fn a_bad_change_is_refused_on_every_node_which_keeps_serving_and_says_why() {
    let etcd = EtcdServer::start().await;
    let up = MockUpstream::start("api").await;
    let good = seed(&etcd, &up);
    let a = Gateway::start_fleet(&etcd.url(), PREFIX, tempfile::tempdir().unwrap()).await;
    let b = Gateway::start_fleet(&etcd.url(), PREFIX, tempfile::tempdir().unwrap()).await;
    let bad = etcd.put(
        &format!("{PREFIX}routes/broken"),
        "{ prefix: /broken, upstream: nowhere }",
    );
    for node in [&a, &b] {
        eventually(Duration::from_secs(5), "the refusal is reported", || async {
            admin_config(node).await["refused"].is_object()
        })
        .await;
        let config = admin_config(node).await;
        assert_eq!(config["generation"], good, "still the last good revision");
        let refused = &config["refused"];
        assert!(
            refused["source"]
                .as_str()
                .unwrap()
                .contains(&format!("(revision {bad})")),
            "{refused}"
        );
        assert!(
            refused["problems"]
                .to_string()
                .contains("routes/broken: upstream: unknown upstream"),
            "{refused}"
        );
        assert_eq!(status(node, "/base/x").await, 200, "the last good config serves");
        assert!(node
            .metrics_text()
            .await
            .contains("gateway_config_reloads_total{result=\"invalid\"} 1"));
        eventually(Duration::from_secs(5), "the refusal logged", || async {
            node.logs()
                .contains("routes/broken: upstream: unknown upstream \\\"nowhere\\\"")
        })
        .await;
    }
    // Fixed in etcd: applied, and the refusal is cleared.
    let fixed = etcd.put(&format!("{PREFIX}routes/broken"), "{ prefix: /broken, upstream: api }");
    for node in [&a, &b] {
        eventually(Duration::from_secs(5), "the fix applies", || async {
            admin_config(node).await["generation"] == fixed
        })
        .await;
        assert!(admin_config(node).await["refused"].is_null());
        assert_eq!(status(node, "/broken").await, 200);
    }
}

#[tokio::test]
async fn without_etcd_nodes_keep_serving_a_restarted_one_serves_its_state_and_all_catch_up() {
    let mut etcd = EtcdServer::start().await;
    let up = MockUpstream::start("api").await;
    seed(&etcd, &up);
    let a = Gateway::start_fleet(&etcd.url(), PREFIX, tempfile::tempdir().unwrap()).await;
    let b = Gateway::start_fleet(&etcd.url(), PREFIX, tempfile::tempdir().unwrap()).await;
    let before = etcd.put(&format!("{PREFIX}routes/late"), "{ path: /late, upstream: api }");
    for node in [&a, &b] {
        eventually(Duration::from_secs(5), "caught up", || async {
            admin_config(node).await["generation"] == before
        })
        .await;
    }

    etcd.stop();
    for node in [&a, &b] {
        assert_eq!(status(node, "/base/x").await, 200, "serving while etcd is down");
    }
    // Node b restarts while etcd is down: it serves its last good config.
    let b_dir = b.kill();
    let b = Gateway::start_fleet(&etcd.url(), PREFIX, b_dir).await;
    assert_eq!(status(&b, "/late").await, 200);
    assert_eq!(admin_config(&b).await["generation"], before);
    assert!(b.logs().contains("serving the last good config from"), "{}", b.logs());

    // etcd comes back; changes made then, with the history compacted past every revision
    // the nodes saw (a watch resumed from there would be refused), reach both.
    etcd.restart().await;
    etcd.put(&format!("{PREFIX}routes/late"), "{ path: /late2, upstream: api }");
    let after = etcd.put(&format!("{PREFIX}routes/after"), "{ path: /after, upstream: api }");
    etcd.compact(after);
    for node in [&a, &b] {
        eventually(Duration::from_secs(15), "converged after the outage", || async {
            status(node, "/after").await == 200
        })
        .await;
        assert_eq!(admin_config(node).await["generation"], after);
    }
}

fn gatehouse(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN).args(args).output().unwrap()
}

#[tokio::test]
async fn config_push_writes_a_checked_file_as_one_transaction_and_pull_diff_read_it_back() {
    let etcd = EtcdServer::start().await;
    let up = MockUpstream::start("api").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.yaml");
    let url = etcd.url();
    let write = |routes: &str| {
        std::fs::write(
            &file,
            format!(
                "listen: [\"0.0.0.0:8080\"]\nmax_body: 1MiB\nauth: {{ jwt: {{ secret: \"${{FLEET_SECRET:-0123456789abcdef0123456789abcdef}}\" }} }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes:\n{routes}",
                up.addr()
            ),
        )
        .unwrap()
    };
    let push = |file: &std::path::Path| {
        gatehouse(&[
            "config",
            "push",
            file.to_str().unwrap(),
            "--etcd",
            &url,
            "--etcd-prefix",
            PREFIX,
        ])
    };

    // A file `check` refuses never reaches etcd.
    write("  - { name: a, prefix: /a, upstream: nowhere }\n");
    let out = push(&file);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was written"));
    let out = gatehouse(&["config", "pull", "--etcd", &url, "--etcd-prefix", PREFIX]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("routes"),
        "etcd stayed empty"
    );

    write("  - { name: a, prefix: /a, upstream: api }\n  - { name: b, prefix: /b, upstream: api }\n");
    let out = push(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "+ routes/a",
        "+ routes/b",
        "+ upstreams/api",
        "+ settings",
        "written at revision",
    ] {
        assert!(stdout.contains(line), "no `{line}` in {stdout}");
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not pushed"),
        "listen stays node-local"
    );
    let node = Gateway::start_fleet(&url, PREFIX, tempfile::tempdir().unwrap()).await;
    let first = admin_config(&node).await["generation"].as_i64().unwrap();
    assert_eq!(status(&node, "/b/x").await, 200);

    // Nothing changed: nothing to write.
    let out = gatehouse(&[
        "config",
        "diff",
        file.to_str().unwrap(),
        "--etcd",
        &url,
        "--etcd-prefix",
        PREFIX,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));

    // One route removed, one added: both land at one revision.
    write("  - { name: a, prefix: /a, upstream: api }\n  - { name: c, prefix: /c, upstream: api }\n");
    let out = gatehouse(&[
        "config",
        "diff",
        file.to_str().unwrap(),
        "--etcd",
        &url,
        "--etcd-prefix",
        PREFIX,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("- routes/b") && stdout.contains("+ routes/c"),
        "{stdout}"
    );
    assert!(push(&file).status.success());
    eventually(Duration::from_secs(5), "the push applies", || async {
        status(&node, "/c/x").await == 200
    })
    .await;
    assert_eq!(status(&node, "/b/x").await, 404);
    assert_eq!(
        admin_config(&node).await["generation"].as_i64().unwrap(),
        first + 1,
        "one transaction"
    );

    // Pull gives the document back, the secret's variable unexpanded.
    let out = gatehouse(&["config", "pull", "--etcd", &url, "--etcd-prefix", PREFIX]);
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        yaml.contains("${FLEET_SECRET:-") && yaml.contains("name: c") && !yaml.contains("0.0.0.0:8080"),
        "{yaml}"
    );
}

async fn put(gw: &Gateway, path: &str, body: &str, if_match: Option<i64>) -> (u16, Value) {
    let mut req = client().put(gw.admin_url(path)).body(body.to_string());
    if let Some(rev) = if_match {
        req = req.header("If-Match", rev.to_string());
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn the_admin_api_writes_through_etcd_validating_first_and_one_of_two_racing_writers_wins() {
    let etcd = EtcdServer::start().await;
    let up = MockUpstream::start("api").await;
    seed(&etcd, &up);
    let a = Gateway::start_fleet(&etcd.url(), PREFIX, tempfile::tempdir().unwrap()).await;
    let b = Gateway::start_fleet(&etcd.url(), PREFIX, tempfile::tempdir().unwrap()).await;

    // Written through node a, served by both.
    let (code, body) = put(
        &a,
        "/admin/routes/admin-made",
        r#"{"prefix": "/made", "upstream": "api"}"#,
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let revision = body["revision"].as_i64().unwrap();
    for node in [&a, &b] {
        eventually(Duration::from_secs(5), "served everywhere", || async {
            status(node, "/made/x").await == 200
        })
        .await;
    }

    // A change that would break the config: 400 with the problems, nothing written.
    let (code, body) = put(
        &a,
        "/admin/routes/broken",
        r#"{"prefix": "/broken", "upstream": "nowhere"}"#,
        None,
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["problems"]
            .to_string()
            .contains("routes/broken: upstream: unknown upstream"),
        "{body}"
    );
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            format!("--endpoints={}", etcd.url()),
            "get".into(),
            format!("{PREFIX}routes/broken"),
        ])
        .output()
        .unwrap();
    assert!(out.stdout.is_empty(), "nothing was written");

    // Two writers knowing the same revision race: exactly one wins, the others get 409.
    let racers = (0..6).map(|i| {
        let url = a.admin_url("/admin/routes/admin-made");
        let body = format!(r#"{{"prefix": "/made", "upstream": "api", "timeout": "{}s"}}"#, i + 1);
        tokio::spawn(async move {
            client()
                .put(url)
                .header("If-Match", revision.to_string())
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    });
    let mut codes = Vec::new();
    for r in racers {
        codes.push(r.await.unwrap());
    }
    codes.sort();
    assert_eq!(codes, vec![200, 409, 409, 409, 409, 409], "{codes:?}");

    // Delete, then delete again.
    let r = client()
        .delete(b.admin_url("/admin/routes/admin-made"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for node in [&a, &b] {
        eventually(Duration::from_secs(5), "gone everywhere", || async {
            status(node, "/made/x").await == 404
        })
        .await;
    }
    let r = client()
        .delete(b.admin_url("/admin/routes/admin-made"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn without_etcd_the_admin_api_edits_this_node_s_config_in_memory() {
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;
    let (code, body) = put(
        &gw,
        "/admin/upstreams/second",
        &format!(r#"{{"targets": ["{}"]}}"#, up.addr()),
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = put(
        &gw,
        "/admin/routes/extra",
        "prefix: /extra\nupstream: second\nmethods: [GET]\n",
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let generation = body["revision"].as_i64().unwrap();
    let r = client().get(gw.url("/extra/1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A stale If-Match: 409; an unknown upstream: 400.
    let (code, _) = put(
        &gw,
        "/admin/routes/extra",
        "prefix: /extra\nupstream: second\n",
        Some(generation - 1),
    )
    .await;
    assert_eq!(code, 409);
    let (code, body) = put(&gw, "/admin/routes/bad", "prefix: /bad\nupstream: nope\n", None).await;
    assert_eq!(code, 400, "{body}");
    let r = client()
        .delete(gw.admin_url("/admin/upstreams/second"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "route extra still uses it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_changes_under_wrk_load_on_three_nodes_fail_no_request() {
    let _alone = TIMED.lock().await;
    use std::sync::Arc;
    require_tool("wrk", "wrk");
    let etcd = Arc::new(EtcdServer::start().await);
    let up = MockUpstream::start("api").await;
    seed(&etcd, &up);
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Gateway::start_fleet(&etcd.url(), PREFIX, tempfile::tempdir().unwrap()).await);
    }
    // Long enough to cover the 50 writes and every node applying them (asserted below).
    const LOAD: Duration = Duration::from_secs(8);
    let loads: Vec<_> = nodes
        .iter()
        .map(|node| {
            std::process::Command::new("wrk")
                .args(["-t1", "-c8", &format!("-d{}s", LOAD.as_secs()), &node.url("/base/load")])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("wrk")
        })
        .collect();
    let started = Instant::now();
    let writer = etcd.clone();
    let last = tokio::task::spawn_blocking(move || {
        let mut revision = 0;
        for i in 0..50 {
            let key = format!("{PREFIX}routes/churn{}", i % 7);
            revision = if i % 3 == 2 {
                writer.delete(&key)
            } else {
                writer.put(&key, &format!("{{ prefix: /churn{i}, upstream: api }}"))
            };
        }
        revision
    })
    .await
    .unwrap();
    for node in &nodes {
        eventually(Duration::from_secs(10), "all 50 changes applied", || async {
            admin_config(node).await["generation"] == last
        })
        .await;
    }
    assert!(
        started.elapsed() < LOAD - Duration::from_secs(1),
        "the changes outlasted the load ({:?}): nothing proven",
        started.elapsed()
    );
    for load in loads {
        let out = load.wait_with_output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        let requests: u64 = report
            .lines()
            .find_map(|l| l.trim().split_once(" requests in ").and_then(|(n, _)| n.parse().ok()))
            .unwrap_or_else(|| panic!("no request count in wrk's report:\n{report}"));
        assert!(requests > 500, "too little load to prove anything:\n{report}");
        assert!(
            !report.contains("Socket errors") && !report.contains("Non-2xx"),
            "failed requests while the config changed:\n{report}"
        );
        eprintln!("{requests} requests during 50 changes, none failed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_cluster_loses_its_leader_and_the_nodes_never_stop_serving() {
    let mut cluster = common::etcd::EtcdCluster::start(3).await;
    let up = MockUpstream::start("api").await;
    seed_with(&|k, v| cluster.try_put(k, v).unwrap(), &up);
    let urls = cluster.urls();
    let a = Gateway::start_fleet(&urls, PREFIX, tempfile::tempdir().unwrap()).await;
    let b = Gateway::start_fleet(&urls, PREFIX, tempfile::tempdir().unwrap()).await;

    let probe = urls.clone();
    let leader = tokio::task::spawn_blocking(move || common::etcd::EtcdCluster::leader_of(&probe))
        .await
        .unwrap()
        .expect("a leader");
    cluster.kill(leader);
    for node in [&a, &b] {
        assert_eq!(
            status(node, "/base/x").await,
            200,
            "serving while the cluster elects a leader"
        );
    }
    // Writes resume once a new leader is elected; both nodes follow.
    let cluster = std::sync::Arc::new(cluster);
    let writer = cluster.clone();
    let revision = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match writer.try_put(&format!("{PREFIX}routes/after"), "{ prefix: /after, upstream: api }") {
                Ok(r) => return r,
                Err(e) if Instant::now() > deadline => panic!("no write after the leader died: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })
    .await
    .unwrap();
    for node in [&a, &b] {
        eventually(Duration::from_secs(15), "the nodes follow the new leader", || async {
            status(node, "/after/x").await == 200
        })
        .await;
        assert_eq!(admin_config(node).await["generation"], revision);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_route_created_through_one_node_serves_on_three_within_half_a_second() {
    let _alone = TIMED.lock().await;
    let cluster = common::etcd::EtcdCluster::start(3).await;
    let up = MockUpstream::start("api").await;
    seed_with(&|k, v| cluster.try_put(k, v).unwrap(), &up);
    let urls = cluster.urls();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Gateway::start_fleet(&urls, PREFIX, tempfile::tempdir().unwrap()).await);
    }
    let mut delays = Vec::new();
    for i in 0..100 {
        let (code, body) = put(
            &nodes[0],
            &format!("/admin/routes/c{i}"),
            &format!("{{ path: /c{i}, upstream: api }}"),
            None,
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let written = Instant::now();
        for node in &nodes {
            eventually(Duration::from_secs(5), "the route serves", || async {
                status(node, &format!("/c{i}")).await == 200
            })
            .await;
        }
        delays.push(written.elapsed());
    }
    delays.sort();
    let (p50, p99) = (delays[49], delays[98]);
    eprintln!(
        "admin write → serving on 3 nodes, 100 changes: p50 {p50:?}, p99 {p99:?}, max {:?}",
        delays[99]
    );
    assert!(p99 < Duration::from_millis(500), "p99 {p99:?}");
}

#[tokio::test]
async fn doctor_checks_etcd_and_the_node_s_last_good_config() {
    let mut etcd = EtcdServer::start().await;
    let up = MockUpstream::start("api").await;
    let revision = seed(&etcd, &up);
    let dir = tempfile::tempdir().unwrap();
    let node = Gateway::start_fleet(&etcd.url(), PREFIX, dir).await;
    let doctor = |url: String, bootstrap: std::path::PathBuf| {
        tokio::task::spawn_blocking(move || {
            let out = gatehouse(&[
                "doctor",
                "--json",
                "--etcd",
                &url,
                "--etcd-prefix",
                PREFIX,
                "-c",
                bootstrap.to_str().unwrap(),
            ]);
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            (out.status.code(), report["checks"].to_string())
        })
    };
    let (_, checks) = doctor(etcd.url(), node.config_path.clone()).await.unwrap();
    assert!(checks.contains(&format!("3 keys at revision {revision}")), "{checks}");
    assert!(checks.contains("last good config kept at"), "{checks}");

    etcd.stop();
    let (code, checks) = doctor(etcd.url(), node.config_path.clone()).await.unwrap();
    assert_eq!(code, Some(2));
    assert!(checks.contains("no etcd member answers"), "{checks}");
}

/// `gatehouse register` for `addr` as an instance of `service`, with a short lease.
fn sidecar(etcd: &str, service: &str, addr: &str) -> std::process::Child {
    std::process::Command::new(BIN)
        .args([
            "register",
            "--etcd",
            etcd,
            "--service",
            service,
            "--addr",
            addr,
            "--ttl",
            "2s",
        ])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn instances_registered_under_a_lease_join_and_leave_the_pool() {
    let etcd = EtcdServer::start().await;
    let (one, two) = (MockUpstream::start("one").await, MockUpstream::start("two").await);
    etcd.put(
        &format!("{PREFIX}upstreams/users"),
        r#"{"targets_from": {"etcd": "/services/users/"}}"#,
    );
    etcd.put(&format!("{PREFIX}routes/users"), "{ prefix: /users, upstream: users }");
    let node = Gateway::start_fleet(&etcd.url(), PREFIX, tempfile::tempdir().unwrap()).await;
    assert_eq!(status(&node, "/users/x").await, 503, "no instance registered yet");

    let mut first = sidecar(&etcd.url(), "users", &one.addr().to_string());
    let mut second = sidecar(&etcd.url(), "users", &two.addr().to_string());
    eventually(Duration::from_secs(10), "both instances in the pool", || async {
        node.health().await["services"]["users"]["total_instances"] == 2
    })
    .await;
    let seen = distribution(&node, "/users/x", 10).await;
    assert_eq!((seen.get("one"), seen.get("two")), (Some(&5), Some(&5)), "{seen:?}");

    // The first sidecar dies without a word: its key goes when the 2 s lease expires.
    let _ = first.kill();
    let _ = first.wait();
    let killed = Instant::now();
    eventually(Duration::from_secs(8), "the dead instance leaves", || async {
        node.health().await["services"]["users"]["total_instances"] == 1
    })
    .await;
    eprintln!("lease expiry removed the instance after {:?}", killed.elapsed());
    assert!(
        killed.elapsed() >= Duration::from_millis(1500),
        "not before its lease expired"
    );
    let seen = distribution(&node, "/users/x", 4).await;
    assert_eq!(seen.get("two"), Some(&4), "{seen:?}");

    // The second stops cleanly: its lease is revoked, it leaves at once.
    let stopped = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    let _ = second.wait();
    eventually(Duration::from_secs(5), "the stopped instance leaves", || async {
        node.health().await["services"]["users"]["total_instances"] == 0
    })
    .await;
    assert!(
        stopped.elapsed() < Duration::from_millis(1500),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(status(&node, "/users/x").await, 503);
}

/// `config_source.etcd` of a bootstrap file reaching `url` with these TLS files.
fn secure_bootstrap(
    url: &str,
    password: &str,
    ca: &std::path::Path,
    client: &(std::path::PathBuf, std::path::PathBuf),
) -> String {
    format!(
        "config_source:\n  etcd:\n    endpoints: [\"{url}\"]\n    prefix: {PREFIX}\n    username: root\n    password: {password}\n    tls: {{ ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\" }}\n",
        ca.display(),
        client.0.display(),
        client.1.display()
    )
}

#[tokio::test]
async fn an_etcd_behind_tls_client_certificates_and_a_password_serves_the_fleet() {
    let pki = TestPki::new();
    let client = pki.leaf("client", "gatehouse-node", -1, 30);
    let mut etcd = EtcdServer::start_secure(EtcdSecurity {
        ca: pki.ca_path(),
        server: pki.leaf("etcd", "127.0.0.1", -1, 30),
        client: client.clone(),
    })
    .await;
    etcd.enable_auth("s3cret-pw");
    let up = MockUpstream::start("api").await;
    let revision = seed(&etcd, &up);

    // A node configured by its bootstrap file: lists, serves, and watches over TLS.
    let gw = Gateway::start(&secure_bootstrap(&etcd.url(), "s3cret-pw", &pki.ca_path(), &client)).await;
    assert_eq!(status(&gw, "/base/x").await, 200);
    assert_eq!(admin_config(&gw).await["generation"], revision);
    etcd.put(&format!("{PREFIX}routes/r1"), "{ path: /r1, upstream: api }");
    eventually(
        Duration::from_secs(5),
        "the change arrives through the watch",
        || async { status(&gw, "/r1").await == 200 },
    )
    .await;

    // The CLI: --etcd-ca/--etcd-cert/--etcd-key, the password from the environment.
    let cli = |password: &str, ca: &std::path::Path| {
        std::process::Command::new(BIN)
            .args(["config", "pull", "--etcd", &etcd.url(), "--etcd-prefix", PREFIX])
            .arg("--etcd-ca")
            .arg(ca)
            .arg("--etcd-cert")
            .arg(&client.0)
            .arg("--etcd-key")
            .arg(&client.1)
            .env("GATEHOUSE_ETCD_USERNAME", "root")
            .env("GATEHOUSE_ETCD_PASSWORD", password)
            .output()
            .unwrap()
    };
    let pulled = cli("s3cret-pw", &pki.ca_path());
    let text = String::from_utf8_lossy(&pulled.stdout);
    assert!(pulled.status.success(), "{}", String::from_utf8_lossy(&pulled.stderr));
    assert!(text.contains("/r1"), "{text}");

    // A wrong password, a CA that did not sign the member's certificate: refused, saying why.
    let wrong_password = cli("nope", &pki.ca_path());
    let why = String::from_utf8_lossy(&wrong_password.stderr);
    assert!(!wrong_password.status.success());
    assert!(why.contains("authentication failed"), "{why}");
    let other = TestPki::new();
    let wrong_ca = cli("s3cret-pw", &other.ca_path());
    let why = String::from_utf8_lossy(&wrong_ca.stderr);
    assert!(!wrong_ca.status.success());
    assert!(why.contains("certificate verify failed"), "{why}");
}

#[tokio::test]
async fn certificates_in_etcd_serve_on_the_node_s_own_tls_listener_and_follow_changes() {
    let etcd = EtcdServer::start().await;
    let up = MockUpstream::start("api").await;
    seed(&etcd, &up);
    let pki = TestPki::new();
    let (a_cert, a_key) = pki.leaf("a", "a.test", -1, 10);
    let (b_cert, b_key) = pki.leaf("b", "b.test", -1, 10);
    let cert = |c: &std::path::Path, k: &std::path::Path| {
        format!(r#"{{"cert": "{}", "key": "{}"}}"#, c.display(), k.display())
    };
    etcd.put(&format!("{PREFIX}certs/a"), &cert(&a_cert, &a_key));
    // The listener is the node's (bootstrap); the certificates are the fleet's (etcd).
    let tls_port = free_port();
    let gw = Gateway::start(&format!(
        "config_source: {{ etcd: {{ endpoints: [\"{}\"], prefix: {PREFIX} }} }}\ntls: {{ listen: [\"127.0.0.1:{tls_port}\"] }}\n",
        etcd.url()
    ))
    .await;
    let client = pki.client(&[("a.test", tls_port), ("b.test", tls_port)]);
    let get = |host: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(format!("https://{host}:{tls_port}/base/x"))
                .send()
                .await
                .map_or(0, |r| r.status().as_u16())
        }
    };
    assert_eq!(get("a.test").await, 200);
    assert_eq!(
        get("b.test").await,
        0,
        "no certificate for b.test yet: the handshake fails"
    );

    etcd.put(&format!("{PREFIX}certs/b"), &cert(&b_cert, &b_key));
    eventually(Duration::from_secs(5), "b.test's certificate is served", || async {
        get("b.test").await == 200
    })
    .await;
    assert_eq!(get("a.test").await, 200);

    // A certificate file that does not exist is refused; both keep serving.
    etcd.put(
        &format!("{PREFIX}certs/b"),
        r#"{"cert": "/nonexistent.pem", "key": "/nonexistent.key"}"#,
    );
    eventually(Duration::from_secs(5), "the bad certificate is refused", || async {
        admin_config(&gw).await["refused"]["problems"]
            .to_string()
            .contains("certs/b")
    })
    .await;
    assert_eq!((get("a.test").await, get("b.test").await), (200, 200));
}
