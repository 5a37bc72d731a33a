//! What a new operator trips on (issue #15): a busy port, a slow stop, dependencies that
//! are not there yet when the node says it is ready, and the small gaps around them.

mod common;

use common::{free_port, Gateway, MockUpstream, BIN};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn config_on(dir: &std::path::Path, listen: u16, admin: u16, upstream: std::net::SocketAddr) -> std::path::PathBuf {
    let path = dir.join("gatehouse.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: [\"127.0.0.1:{listen}\"]\nadmin: {{ listen: \"127.0.0.1:{admin}\" }}\n\
             pid_file: {}/g.pid\nupgrade_sock: {}/g.sock\n\
             upstreams: {{ api: {{ targets: [\"{upstream}\"] }} }}\nroutes: [{{ prefix: /, upstream: api }}]\n",
            dir.display(),
            dir.display()
        ),
    )
    .unwrap();
    path
}

/// Runs `gatehouse run -c path`, expecting it to exit by itself within `within`.
fn run_until_exit(path: &std::path::Path, within: Duration) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(["run", "-c"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while started.elapsed() < within {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
            return (out.status.code(), text, started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (
        None,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_busy_listen_or_admin_port_makes_run_exit_at_once_naming_address_and_holder() {
    let up = MockUpstream::start("api").await;
    let dir = tempfile::tempdir().unwrap();
    let me = format!("pid {}", std::process::id());
    for busy_role in ["listen", "admin.listen"] {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = held.local_addr().unwrap().port();
        let (listen, admin) = if busy_role == "listen" {
            (busy, free_port())
        } else {
            (free_port(), busy)
        };
        let path = config_on(dir.path(), listen, admin, up.addr());
        let (code, text, took) = run_until_exit(&path, Duration::from_secs(10));
        assert_eq!(
            code,
            Some(1),
            "{busy_role} busy: run must exit 1 at once, got {code:?} after {took:?}:\n{text}"
        );
        assert!(took < Duration::from_secs(3), "took {took:?}");
        let expected = format!("{busy_role}: 127.0.0.1:{busy}: the address is already in use, held by {me}");
        assert!(text.contains(&expected), "wanted `{expected}` in:\n{text}");
        assert!(!text.contains("will try again"), "{text}");

        // `check` says the same as a warning and still passes: the port may be free later.
        let out = Command::new(BIN).args(["check", "-c"]).arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("warning:") && stderr.contains(&expected), "{stderr}");
        drop(held);
    }
}

#[tokio::test]
async fn sigterm_on_an_idle_gateway_exits_right_after_the_drain_not_the_grace_period() {
    let up = MockUpstream::start("api").await;
    let mut gw = Gateway::start(&format!(
        "drain_period: 500ms\ngrace_period: 30s\nshutdown_timeout: 5s\n{}",
        common::simple_config(&[up.addr()])
    ))
    .await;
    assert_eq!(gw.get("/x").await.status(), 200);
    let sent = Instant::now();
    gw.signal("TERM");
    let status = gw.wait_exit(Duration::from_secs(10)).await;
    let took = sent.elapsed();
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{}", gw.logs());
    assert!(took < Duration::from_secs(3), "an idle gateway took {took:?} to stop");
    assert!(
        took >= Duration::from_millis(500),
        "left before the drain period: {took:?}"
    );
    assert!(gw.logs().contains("no client connection left"), "{}", gw.logs());
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_before_the_grace_period_ends() {
    let up = MockUpstream::start("api").await;
    up.set_delay(Duration::from_secs(2));
    let mut gw = Gateway::start(&format!(
        "drain_period: 0s\ngrace_period: 30s\nshutdown_timeout: 5s\n{}",
        common::simple_config(&[up.addr()])
    ))
    .await;
    let url = gw.url("/slow");
    let slow = tokio::spawn(async move { common::client().get(url).send().await.map(|r| r.status().as_u16()) });
    common::eventually(Duration::from_secs(5), "the request reaches the upstream", || {
        let hits = up.hits();
        async move { hits == 1 }
    })
    .await;
    let sent = Instant::now();
    gw.signal("TERM");
    let status = gw.wait_exit(Duration::from_secs(15)).await;
    let took = sent.elapsed();
    assert!(status.is_some(), "still running after 15 s:\n{}", gw.logs());
    assert_eq!(slow.await.unwrap().ok(), Some(200), "the in-flight request was cut");
    assert!(took < Duration::from_secs(5), "took {took:?} (grace period 30 s)");
}

async fn ready(gw: &Gateway) -> (u16, serde_json::Value) {
    let r = common::client().get(gw.admin_url("/ready")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn an_idp_down_at_start_keeps_ready_at_503_and_tokens_at_503_until_its_keys_load() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let idp_up = Arc::new(AtomicBool::new(false));
    let flag = idp_up.clone();
    let idp = common::FnServer::start(move |_, _, _| {
        if flag.load(Ordering::SeqCst) {
            (200, common::jwks_document("rsa_a"), "application/json")
        } else {
            (503, "starting".into(), "text/plain")
        }
    })
    .await;
    let up = MockUpstream::start("api").await;
    let gw = common::jwks_gateway(&idp.url("/jwks"), "", &up).await;
    let token = common::sign(
        jsonwebtoken::Algorithm::RS256,
        &common::rsa_key("rsa_a"),
        Some("key-a"),
        &common::claims(serde_json::json!({})),
    );
    let call = || async {
        let r = common::client()
            .get(gw.url("/api/x"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    };

    let (status, body) = ready(&gw).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["waiting_for"].to_string().contains("JWKS"), "{body}");
    let (status, body) = call().await;
    assert_eq!(
        status, 503,
        "the keys could not be fetched: not the token's fault: {body}"
    );
    assert!(body.contains("\"code\":\"idp_unavailable\""), "{body}");
    assert_eq!(up.hits(), 0);

    // The IdP comes up: within about min_refresh (1 s) the keys are there.
    idp_up.store(true, Ordering::SeqCst);
    let since = Instant::now();
    common::eventually(Duration::from_secs(5), "the token passes", || async {
        call().await.0 == 200
    })
    .await;
    assert!(
        since.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        since.elapsed()
    );
    common::eventually(Duration::from_secs(3), "the node is ready", || async {
        ready(&gw).await.0 == 200
    })
    .await;
}

#[tokio::test]
async fn ready_waits_at_most_ready_timeout_then_names_what_is_missing() {
    let idp = common::FnServer::start(|_, _, _| (500, "down".into(), "text/plain")).await;
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&format!(
        "ready_timeout: 1s\nauth: {{ jwt: {{ jwks_url: \"{}\" }} }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /api, auth: jwt, upstream: api }}]\n",
        idp.url("/jwks"),
        up.addr()
    ))
    .await;
    common::eventually(Duration::from_secs(5), "ready after ready_timeout", || async {
        ready(&gw).await.0 == 200
    })
    .await;
    let (_, body) = ready(&gw).await;
    assert!(body["degraded"].to_string().contains("JWKS"), "{body}");
}

#[tokio::test]
async fn a_fresh_node_counts_its_first_requests_in_redis_and_waits_for_it_to_be_ready() {
    let mut redis = common::RedisServer::start().await;
    let up = MockUpstream::start("api").await;
    let config = format!(
        "redis: {{ url: \"{}\", timeout: 250ms, key_prefix: \"fresh{}\" }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\n\
         routes: [{{ prefix: /, upstream: api, rate_limit: {{ requests: 1000, per: 1h, key: ip, scope: global, on_redis_error: deny }} }}]\n",
        redis.url(),
        redis.port,
        up.addr()
    );
    // Redis healthy: from the very first request every decision is Redis's, none the policy's.
    let gw = Gateway::start(&config).await;
    for i in 0..10u64 {
        let r = gw.get("/x").await;
        assert_eq!(r.status(), 200, "request {i} right after start was refused by policy");
        let remaining: u64 = r.headers()["ratelimit-remaining"].to_str().unwrap().parse().unwrap();
        assert_eq!(remaining, 999 - i, "request {i} was not counted");
    }
    assert_eq!(ready(&gw).await.0, 200);
    drop(gw);

    // Redis down at start: the node is not ready (within ready_timeout) and says why.
    redis.stop();
    let gw = Gateway::start(&config).await;
    let (status, body) = ready(&gw).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["waiting_for"].to_string().contains("redis"), "{body}");
    redis.restart().await;
    common::eventually(Duration::from_secs(5), "ready once redis is up", || async {
        ready(&gw).await.0 == 200
    })
    .await;
}

#[tokio::test]
async fn metrics_off_means_no_metrics_and_the_log_names_every_address() {
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start_with_env(&common::simple_config(&[up.addr()]), &[("ENABLE_METRICS", "false")]).await;
    let r = common::client().get(gw.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("ENABLE_METRICS=false"));
    let logs = gw.logs();
    for url in [
        format!("listen http://127.0.0.1:{}", gw.port),
        format!("admin.listen http://127.0.0.1:{}", gw.admin_port()),
    ] {
        assert!(logs.contains(&url), "no `{url}` in the startup log:\n{logs}");
    }
}

#[tokio::test]
async fn healthz_answers_like_health_and_passive_ejections_show_in_it() {
    let dead = common::free_port();
    let gw = Gateway::start(&format!(
        "upstreams: {{ api: {{ targets: [\"127.0.0.1:{dead}\"], retries: 0, passive_health: {{ failures: 1, eject_for: 1m }} }} }}\nroutes: [{{ prefix: /, upstream: api }}]\n"
    ))
    .await;
    let healthz: serde_json::Value = gw.get("/healthz").await.json().await.unwrap();
    assert_eq!(healthz["services"]["api"]["healthy_instances"], 1, "{healthz}");
    assert_eq!(gw.get("/x").await.status(), 502);
    let health = gw.health().await;
    let api = &health["services"]["api"];
    assert_eq!(api["healthy_instances"], 0, "{health}");
    assert_eq!(
        api["targets"][0]["healthy"], false,
        "an ejected target is not healthy: {health}"
    );
    assert_eq!(api["targets"][0]["state"], "ejected", "{health}");
    assert_eq!(health["status"], "degraded");
    assert_eq!(gw.get("/x").await.status(), 503, "no target left to try");
}

/// Kills the wrapped process when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_target_name_that_does_not_resolve_yet_waits_out_of_service_and_joins_when_it_does() {
    let up = MockUpstream::start("api").await;
    let dir = tempfile::tempdir().unwrap();
    // The gateway runs in a mount namespace of its own where /etc/hosts is this file, so
    // the test decides when `later.test` resolves (as a compose service coming up would).
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let (port, admin) = (free_port(), free_port());
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: [\"127.0.0.1:{port}\"]\nadmin: {{ listen: \"127.0.0.1:{admin}\" }}\nthreads: 1\n\
             pid_file: {d}/g.pid\nupgrade_sock: {d}/g.sock\n\
             upstreams: {{ api: {{ targets: [\"later.test:{}\"] }} }}\nroutes: [{{ prefix: /, upstream: api }}]\n",
            up.addr().port(),
            d = dir.path().display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let child = Command::new("unshare")
        .args([
            "-rm",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/hosts && exec \"$1\" run -c \"$2\"",
        ])
        .arg(&hosts)
        .arg(BIN)
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("unshare (util-linux) runs the gateway in its own mount namespace");
    let _running = Running(child);
    let url = format!("http://127.0.0.1:{port}/x");
    let logs = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    common::eventually(Duration::from_secs(10), "the gateway serves", || async {
        common::client().get(&url).send().await.is_ok()
    })
    .await;
    let r = common::client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 503, "an unresolved target is out of service:\n{}", logs());
    assert!(
        logs().contains("\"later.test:") && logs().contains("does not resolve now"),
        "{}",
        logs()
    );

    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.1 later.test\n").unwrap();
    common::eventually(Duration::from_secs(10), "the target joins once it resolves", || async {
        common::client().get(&url).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(logs().contains("resolved to 127.0.0.1"), "{}", logs());
    assert_eq!(up.hits(), 1);
}

#[test]
fn config_problems_name_file_line_column_field_and_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.yaml");
    std::fs::write(
        &path,
        "upstreams:\n  api: { targets: [\"127.0.0.1:9\"] }\nroutes:\n  - prefix: /a\n    upstream: api\n  - prefix: /b\n    upstream: apj\n    methds: [GET]\n",
    )
    .unwrap();
    let out = Command::new(BIN).args(["check", "-c"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let file = path.display().to_string();
    // A semantic problem found by validation, located in the file.
    assert!(stderr.contains(&format!("{file}:7:5: routes[1].upstream:")), "{stderr}");
    // A misspelled key, with the key meant.
    assert!(
        stderr.contains(&format!(
            "{file}:8:5: routes[1].methds: unknown key (did you mean `methods`?)"
        )),
        "{stderr}"
    );
}

#[test]
fn routes_json_reports_every_problem_at_once_with_lines_and_suggestions() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.json");
    std::fs::write(
        &routes,
        "{\n  \"routes\": [\n    { \"path\": \"/a\", \"targetURL\": \"http://127.0.0.1:9\", \"methds\": [\"GET\"] },\n    { \"path\": \"/b\", \"targetURL\": \"ftp://127.0.0.1:9\" }\n  ]\n}\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .env_remove("BACKEND_URL")
        .env_remove("BACKEND_URLS")
        .env("ROUTES_CONFIG_PATH", &routes)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let file = routes.display().to_string();
    assert!(
        stderr.contains(&format!(
            "{file}:3:56: routes[0].methds: unknown key (did you mean `methods`?)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:4:21: routes[1].targetURL:")),
        "the other problem too: {stderr}"
    );
}
