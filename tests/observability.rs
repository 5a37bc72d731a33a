//! W3C trace context propagation, and the admin status page in a real browser.

mod common;

use common::*;
use std::time::Duration;

fn traceparent_parts(value: &str) -> Vec<String> {
    value.split('-').map(String::from).collect()
}

#[tokio::test]
async fn traceparent_is_continued_with_a_new_span_or_started() {
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;

    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    client()
        .get(gw.url("/t"))
        .header("traceparent", incoming)
        .header("tracestate", "vendor=abc")
        .header("X-Request-ID", "traced-1")
        .send()
        .await
        .unwrap();
    let seen = up.last().headers;
    let parts = traceparent_parts(seen["traceparent"].to_str().unwrap());
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_ne!(parts[2], "00f067aa0ba902b7", "a new span for this hop");
    assert_eq!(parts[2].len(), 16);
    assert_eq!(parts[3], "01");
    assert_eq!(seen["tracestate"], "vendor=abc");

    client()
        .get(gw.url("/t"))
        .header("X-Request-ID", "traced-2")
        .send()
        .await
        .unwrap();
    let started = traceparent_parts(up.last().headers["traceparent"].to_str().unwrap());
    assert_eq!(
        (started[0].as_str(), started[1].len(), started[2].len()),
        ("00", 32, 16)
    );

    client()
        .get(gw.url("/t"))
        .header("traceparent", "00-zz-yy-01")
        .send()
        .await
        .unwrap();
    let replaced = traceparent_parts(up.last().headers["traceparent"].to_str().unwrap());
    assert_eq!(replaced[1].len(), 32, "a malformed traceparent is replaced");

    eventually(Duration::from_secs(5), "trace ids in the access log", || {
        let log = gw.access_log();
        let a = log
            .iter()
            .any(|l| l["request_id"] == "traced-1" && l["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736");
        let b = log
            .iter()
            .any(|l| l["request_id"] == "traced-2" && l["trace_id"] == started[1].as_str());
        async move { a && b }
    })
    .await;
}

fn browse(args: &[&str], url: &str, profile: &std::path::Path) -> String {
    let out = headless_chromium(profile)
        .arg("--virtual-time-budget=10000")
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn the_status_page_shows_routes_and_targets_in_a_browser() {
    require_tool("chromium", "chromium");
    let up = MockUpstream::start("api").await;
    let dead = free_port();
    let gw = Gateway::start(&format!(
        "upstreams:\n  api: {{ targets: [\"{}\", \"127.0.0.1:{dead}\"], health_check: {{ interval: 100ms, unhealthy: 1 }}, circuit_breaker: {{ failures: 50 }} }}\nroutes:\n  - {{ name: orders, prefix: /orders, upstream: api }}\n  - {{ name: users, prefix: /users, upstream: api }}\n",
        up.addr()
    ))
    .await;
    eventually(Duration::from_secs(5), "dead target ejected", || async {
        gw.healthy_targets("api").await == 1
    })
    .await;
    for _ in 0..5 {
        gw.get("/orders/1").await;
    }
    let url = gw.admin_url("/");
    let profile = tempfile::tempdir().unwrap();
    let dom = tokio::task::spawn_blocking({
        let (url, dir) = (url.clone(), profile.path().to_path_buf());
        move || browse(&["--dump-dom"], &url, &dir)
    })
    .await
    .unwrap();
    assert!(
        dom.contains("<td>orders</td>") && dom.contains("<td>users</td>"),
        "routes table:\n{dom}"
    );
    assert!(
        dom.contains(&format!("<td>{}</td>", up.addr())),
        "targets table:\n{dom}"
    );
    assert!(
        dom.contains("unhealthy") && dom.contains("healthy"),
        "health column:\n{dom}"
    );
    assert!(dom.contains("closed"), "circuit column:\n{dom}");
    assert!(dom.contains("config generation 1"), "{dom}");

    let shot = gw.dir.path().join("status-page.png");
    tokio::task::spawn_blocking({
        let (url, dir, shot) = (url.clone(), profile.path().to_path_buf(), shot.clone());
        move || {
            browse(
                &[&format!("--screenshot={}", shot.display()), "--window-size=1200,800"],
                &url,
                &dir,
            )
        }
    })
    .await
    .unwrap();
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5000,
        "a real screenshot ({} bytes)",
        png.len()
    );
}

#[tokio::test]
async fn logs_never_show_credentials() {
    let up = MockUpstream::start("api").await;
    let dead = free_port();
    let gw = Gateway::start(&format!(
        "access_log_query: true\nupstreams: {{ api: {{ targets: [\"{}\"] }}, dead: {{ targets: [\"127.0.0.1:{dead}\"] }} }}\nroutes: [{{ prefix: /dead, upstream: dead }}, {{ prefix: /, upstream: api }}]\n",
        up.addr()
    ))
    .await;
    // A failed request: Pingora's error records name it too (`Fail to proxy: …`).
    let r = client()
        .get(gw.url("/dead?access_token=SECRET-FAILED-TOKEN&page=1"))
        .header("X-Request-ID", "redaction-failed")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let failure_record = |gw: &Gateway| {
        gw.logs()
            .lines()
            .find(|l| l.contains("\"level\":\"ERROR\"") && l.contains("request_id: redaction-failed"))
            .map(String::from)
    };
    eventually(Duration::from_secs(5), "the 502's error record", || {
        let found = failure_record(&gw).is_some();
        async move { found }
    })
    .await;
    let record = failure_record(&gw).expect("the 502's error record");
    assert!(
        record.contains("GET /dead?access_token=[redacted]&page=1, Host: "),
        "{record}"
    );
    client()
        .get(gw.url("/search?q=shoes&access_token=SECRET-QUERY-TOKEN&page=2"))
        .header("Authorization", "Bearer SECRET-BEARER")
        .header("Cookie", "session=SECRET-COOKIE")
        .header("X-API-Key", "SECRET-API-KEY")
        .header("X-Request-ID", "redaction-1")
        .send()
        .await
        .unwrap();
    let line = gw
        .access_line("the access line", |l| l["request_id"] == "redaction-1")
        .await;
    assert_eq!(line["query"], "q=shoes&access_token=[redacted]&page=2");
    let logs = gw.logs();
    for secret in [
        "SECRET-QUERY-TOKEN",
        "SECRET-BEARER",
        "SECRET-COOKIE",
        "SECRET-API-KEY",
        "SECRET-FAILED-TOKEN",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into the log");
    }
}

#[tokio::test]
async fn spans_are_exported_over_otlp_with_the_propagated_ids() {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = received.clone();
    let collector = FnServer::start(move |method, path, body| {
        if method == "POST" && path == "/v1/traces" {
            sink.lock().unwrap().push(String::from_utf8_lossy(body).into_owned());
        }
        (200, "{}".into(), "application/json")
    })
    .await;
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start_with_env(
        &format!(
            "tracing: {{ otlp_endpoint: \"{}\", service_name: gatehouse-test }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: traced, prefix: /, upstream: api }}]\n",
            collector.url("/v1/traces"),
            up.addr()
        ),
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    )
    .await;
    let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    assert_eq!(
        client()
            .get(gw.url("/o"))
            .header("traceparent", incoming)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let hop = traceparent_parts(up.last().headers["traceparent"].to_str().unwrap());

    eventually(Duration::from_secs(10), "a span at the collector", || {
        let got = received
            .lock()
            .unwrap()
            .iter()
            .any(|b| b.contains("0af7651916cd43dd8448eb211c80319c"));
        async move { got }
    })
    .await;
    let body = received
        .lock()
        .unwrap()
        .iter()
        .find(|b| b.contains("0af7651916"))
        .cloned()
        .unwrap();
    let export: serde_json::Value = serde_json::from_str(&body).unwrap();
    let spans = export["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().unwrap();
    let span = spans
        .iter()
        .find(|s| s["traceId"] == "0af7651916cd43dd8448eb211c80319c")
        .unwrap();
    assert_eq!(span["traceId"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(
        span["parentSpanId"], "b7ad6b7169203331",
        "the client's span is the parent"
    );
    assert_eq!(
        span["spanId"],
        hop[2].as_str(),
        "the upstream's parent is the exported span"
    );
    assert_eq!(span["name"], "GET traced");
    assert!(body.contains("gatehouse-test"), "service.name");
}

/// The access log's writer gathers lines while they keep coming: a burst from many
/// connections is logged line for line (none lost, none torn), and a request after the
/// burst, when the writer has gone back to waiting, is logged too.
#[tokio::test]
async fn a_burst_is_logged_line_for_line_and_a_later_request_too() {
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&format!(
        "access_log: true\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, upstream: api }}]\n",
        up.addr()
    ))
    .await;
    const TASKS: usize = 16;
    const EACH: usize = 50;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let url = gw.url("/burst");
        tasks.push(tokio::spawn(async move {
            let c = client();
            for i in 0..EACH {
                let r = c
                    .get(&url)
                    .header("X-Request-ID", format!("burst-{t}-{i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let burst_ids = |gw: &Gateway| {
        let mut ids: Vec<String> = gw
            .access_log()
            .iter()
            .filter_map(|l| {
                l["request_id"]
                    .as_str()
                    .filter(|id| id.starts_with("burst-"))
                    .map(String::from)
            })
            .collect();
        ids.sort();
        ids
    };
    eventually(Duration::from_secs(10), "every line of the burst", || {
        let n = burst_ids(&gw).len();
        async move { n >= TASKS * EACH }
    })
    .await;
    let ids = burst_ids(&gw);
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(
        (ids.len(), unique.len()),
        (TASKS * EACH, TASKS * EACH),
        "each request once"
    );
    let torn = gw
        .logs()
        .lines()
        .filter(|l| l.contains("burst-") && serde_json::from_str::<serde_json::Value>(l).is_err())
        .count();
    assert_eq!(torn, 0, "no line is cut or mixed with another");

    client()
        .get(gw.url("/after"))
        .header("X-Request-ID", "after-the-burst")
        .send()
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "the line of a request after the burst", || {
        let found = gw.access_log().iter().any(|l| l["request_id"] == "after-the-burst");
        async move { found }
    })
    .await;
}

/// Lines wait in the log writer's buffer for up to 10 ms: on a clean exit (SIGINT, as
/// `make run`'s Ctrl-C) every one is written first, the access lines of the last requests
/// and the shutdown's own records alike.
#[tokio::test]
async fn a_clean_exit_writes_every_buffered_log_line() {
    let up = MockUpstream::start("api").await;
    let mut gw = Gateway::start(&format!(
        "access_log: true\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, upstream: api }}]\n",
        up.addr()
    ))
    .await;
    let c = client();
    for i in 0..200 {
        let r = c
            .get(gw.url("/last"))
            .header("X-Request-ID", format!("last-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // At once: the last lines are still in the buffer.
    gw.signal("INT");
    let status = gw.wait_exit(Duration::from_secs(15)).await;
    assert!(status.is_some(), "still running 15 s after SIGINT:\n{}", gw.logs());
    let logged = gw
        .access_log()
        .iter()
        .filter(|l| l["request_id"].as_str().is_some_and(|id| id.starts_with("last-")))
        .count();
    assert_eq!(logged, 200, "access lines written before the exit");
    assert!(
        gw.logs().contains("All runtimes exited"),
        "the shutdown's last record is written too:\n{}",
        gw.logs()
    );
}

/// A gateway whose stdout and stderr are a pipe this test holds and never reads: it fills
/// at 64 KiB, and from then on a write to it blocks. Killed when dropped.
struct StderrBlocked {
    child: std::process::Child,
    port: u16,
    admin_port: u16,
    _dir: tempfile::TempDir,
}

impl StderrBlocked {
    async fn start(body: &str) -> StderrBlocked {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = dir.path().join("gatehouse.yaml");
        std::fs::write(&config, Gateway::config_text(port, dir.path(), body)).expect("write config");
        let admin_port: u16 = std::fs::read_to_string(dir.path().join("admin.port"))
            .expect("admin port")
            .trim()
            .parse()
            .expect("admin port number");
        let child = std::process::Command::new(BIN)
            .args(["run", "-c"])
            .arg(&config)
            .env_remove("PORT")
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn gatehouse");
        let gateway = StderrBlocked {
            child,
            port,
            admin_port,
            _dir: dir,
        };
        let url = gateway.url("/");
        eventually(Duration::from_secs(15), "the gateway answering", || {
            let url = url.clone();
            async move { client().get(&url).send().await.is_ok() }
        })
        .await;
        gateway
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `tasks` × `each` requests for `path`, each answered with `status` within 5 s.
    async fn requests(&self, path: &str, tasks: usize, each: usize, status: u16) {
        let mut running = Vec::new();
        for _ in 0..tasks {
            let (http, url) = (client(), self.url(path));
            running.push(tokio::spawn(async move {
                for _ in 0..each {
                    let r = tokio::time::timeout(Duration::from_secs(5), http.get(&url).send())
                        .await
                        .expect("a request answered within 5 s with stderr blocked")
                        .expect("request");
                    assert_eq!(r.status(), status);
                }
            }));
        }
        for task in running {
            task.await.expect("request task");
        }
    }
}

impl Drop for StderrBlocked {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// stderr blocked (a pipe nobody reads): requests are still answered at once, the lines
/// that do not fit the writer's buffer are dropped and counted, and the warning about it
/// does not stall a request either (it is the writer's to log, and the writer is the one
/// blocked).
#[tokio::test]
async fn a_blocked_stderr_drops_access_lines_and_never_stalls_requests() {
    let up = MockUpstream::start("api").await;
    let body = format!(
        "access_log: true\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, upstream: api }}]\n",
        up.addr()
    );
    let gateway = StderrBlocked::start(&body).await;
    let http = client();

    // Lines of ≈ 4 KiB (the path is logged): ≈ 2,100 of them fill the 8 MiB buffer.
    let path = format!("/{}", "p".repeat(4000));
    let started = std::time::Instant::now();
    gateway.requests(&path, 8, 400, 200).await;
    let metrics = http
        .get(format!("http://127.0.0.1:{}/metrics", gateway.admin_port))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gateway_access_log_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        dropped >= 1000.0,
        "3,200 requests with stderr blocked, {dropped} lines counted as dropped"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the requests took {:?}",
        started.elapsed()
    );
}

/// A dead upstream makes Pingora log two records per request (the failed try and the
/// 502). With stderr blocked they must not stall the requests that log them: before
/// they went through the log writer, the 52nd request hung on the full pipe.
#[tokio::test]
async fn a_blocked_stderr_never_stalls_requests_that_log_an_upstream_failure() {
    let dead = free_port();
    let body = format!(
        "upstreams: {{ api: {{ targets: [\"127.0.0.1:{dead}\"] }} }}\nroutes: [{{ prefix: /, upstream: api }}]\n"
    );
    let gateway = StderrBlocked::start(&body).await;
    // ≈ 560 bytes of records per request: the 64 KiB pipe is full after ≈ 120.
    gateway.requests("/api", 4, 250, 502).await;
}
