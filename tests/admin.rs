//! The admin listener: token auth, every endpoint, reload with errors, runtime target
//! registration, Prometheus metrics values, Server-Timing.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

const TOKEN: &str = "admin-test-token";

fn admin_client(gw: &Gateway, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    client().request(method, gw.admin_url(path)).bearer_auth(TOKEN)
}

async fn admin_json(gw: &Gateway, path: &str) -> Value {
    let r = admin_client(gw, reqwest::Method::GET, path).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

async fn gateway_with_token(up: &MockUpstream) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let admin_port = free_port();
    let body = format!(
        "admin: {{ listen: \"127.0.0.1:{admin_port}\", token: \"{TOKEN}\" }}\nauth: {{ jwt: {{ secret: \"a-very-secret-secret-of-32-bytes!!\" }} }}\nupstreams: {{ api: {{ targets: [\"{}\"], health_check: {{ interval: 100ms }} }} }}\nroutes:\n  - {{ name: items, prefix: /items, upstream: api }}\n  - {{ name: secure, prefix: /secure, auth: jwt, upstream: api }}\n",
        up.addr()
    );
    std::fs::write(dir.path().join("admin.port"), admin_port.to_string()).unwrap();
    Gateway::start_on(free_port(), dir, &body).await
}

#[tokio::test]
async fn admin_calls_need_the_token_except_probes() {
    let up = MockUpstream::start("api").await;
    let gw = gateway_with_token(&up).await;
    for path in ["/metrics", "/admin/config", "/admin/routes", "/admin/upstreams", "/"] {
        let r = client().get(gw.admin_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without token");
        let r = client()
            .get(gw.admin_url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
    }
    assert_eq!(
        client().get(gw.admin_url("/health")).send().await.unwrap().status(),
        200
    );
    eventually(Duration::from_secs(5), "ready after the first health check", || async {
        client().get(gw.admin_url("/ready")).send().await.unwrap().status() == 200
    })
    .await;
    let r = client().post(gw.admin_url("/admin/reload")).send().await.unwrap();
    assert_eq!(r.status(), 401, "no reload without the token");
}

#[tokio::test]
async fn config_routes_and_upstreams_describe_the_running_gateway() {
    let up = MockUpstream::start("api").await;
    let gw = gateway_with_token(&up).await;
    let config = admin_json(&gw, "/admin/config").await;
    assert_eq!(config["generation"], 1);
    assert_eq!(config["hash"].as_str().unwrap().len(), 64);
    assert_eq!(config["config"]["auth"]["jwt"]["secret"], "[redacted]");
    assert_eq!(config["config"]["admin"]["token"], "[redacted]");
    assert!(!config.to_string().contains(TOKEN) && !config.to_string().contains("a-very-secret"));

    let routes = admin_json(&gw, "/admin/routes").await;
    let names: Vec<&str> = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["secure", "items"],
        "in the order they are tried: the longer prefix first"
    );
    assert_eq!(routes["routes"][0]["auth"], "jwt");
    assert_eq!(routes["routes"][1]["upstreams"][0], "api");

    let upstreams = admin_json(&gw, "/admin/upstreams").await;
    let target = &upstreams["upstreams"]["api"]["targets"][0];
    assert_eq!(target["addr"], up.addr().to_string());
    assert_eq!(target["in_flight"], 0);
    assert_eq!(upstreams["upstreams"]["api"]["balance"], "round_robin");

    let page = admin_client(&gw, reqwest::Method::GET, "/").send().await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.text().await.unwrap().contains("<table id=\"routes\">"));
}

#[tokio::test]
async fn reload_through_the_admin_api_answers_the_problems() {
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;
    let reload = || client().post(gw.admin_url("/admin/reload")).send();

    let r = reload().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["generation"], 2);

    std::fs::write(&gw.config_path, "routes: [{ prefix: /, upstream: nowhere }]\n").unwrap();
    let r = reload().await.unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    let problems: Vec<&str> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("routes[0].upstream: unknown upstream \"nowhere\"")),
        "{problems:?}"
    );
    assert_eq!(gw.get("/x").await.status(), 200, "the running config still serves");
    eventually(Duration::from_secs(5), "audit lines", || async {
        let logs = gw.logs();
        logs.contains("\"audit\":\"reload\"") && logs.contains("\"result\":\"refused\"")
    })
    .await;
}

#[tokio::test]
async fn targets_can_be_registered_and_deregistered_at_runtime() {
    let a = MockUpstream::start("a").await;
    let b = MockUpstream::start("b").await;
    let gw = Gateway::start(&simple_config(&[a.addr()])).await;
    assert_eq!(distribution(&gw, "/", 4).await.get("a"), Some(&4));

    let r = client()
        .post(gw.admin_url("/admin/upstreams/u/targets"))
        .json(&serde_json::json!({ "addr": b.addr().to_string(), "weight": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let counts = distribution(&gw, "/", 10).await;
    assert_eq!((counts.get("a"), counts.get("b")), (Some(&5), Some(&5)), "{counts:?}");

    // A SIGHUP reload keeps the registered target.
    gw.signal("HUP");
    eventually(Duration::from_secs(5), "reload", || async {
        gw.health().await["config_generation"] == 3
    })
    .await;
    assert_eq!(distribution(&gw, "/", 10).await.get("b"), Some(&5));

    let r = client()
        .delete(gw.admin_url(&format!("/admin/upstreams/u/targets/{}", a.addr())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(distribution(&gw, "/", 6).await.get("b"), Some(&6));

    // The last target cannot go, and unknown upstreams are refused.
    let r = client()
        .delete(gw.admin_url(&format!("/admin/upstreams/u/targets/{}", b.addr())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = client()
        .post(gw.admin_url("/admin/upstreams/nope/targets"))
        .json(&serde_json::json!({ "addr": "127.0.0.1:1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = client()
        .post(gw.admin_url("/admin/upstreams/u/targets"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    eventually(Duration::from_secs(5), "audit of the registration", || async {
        gw.logs().contains("\"audit\":\"register_target\"")
    })
    .await;
}

/// The value of `name{labels}` in a Prometheus text exposition.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        let all = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        (metric == name && all).then(|| value.parse().ok()).flatten()
    })
}

#[tokio::test]
async fn metrics_count_requests_latencies_and_refusals() {
    let up = MockUpstream::start("api").await;
    let gw = gateway_with_token(&up).await;
    for _ in 0..7 {
        assert_eq!(gw.get("/items/1").await.status(), 200);
    }
    for _ in 0..3 {
        assert_eq!(gw.get("/secure/1").await.status(), 401);
    }
    assert_eq!(gw.get("/nowhere").await.status(), 404);
    let text = eventually_metrics(&gw, |t| {
        metric(
            t,
            "gateway_requests_total",
            &[("route", "unmatched"), ("status", "404")],
        ) == Some(1.0)
    })
    .await;
    assert_eq!(
        metric(
            &text,
            "gateway_requests_total",
            &[("route", "items"), ("method", "GET"), ("status", "200")]
        ),
        Some(7.0)
    );
    assert_eq!(
        metric(
            &text,
            "gateway_request_duration_seconds_count",
            &[("route", "items"), ("method", "GET")]
        ),
        Some(7.0)
    );
    assert_eq!(
        metric(&text, "gateway_upstream_duration_seconds_count", &[("upstream", "api")]),
        Some(7.0)
    );
    assert_eq!(
        metric(
            &text,
            "gateway_rejections_total",
            &[("route", "secure"), ("reason", "auth")]
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(&text, "gateway_upstream_healthy", &[("upstream", "api")]),
        Some(1.0)
    );
    assert!(metric(&text, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 0.0));
    assert!(text.contains("gateway_config_info{"));

    let stats = admin_json(&gw, "/admin/stats").await;
    let items = stats["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "items")
        .unwrap()
        .clone();
    assert_eq!(items["requests"], 7);
    let p99 = items["p99_seconds"].as_f64().unwrap();
    assert!(p99 > 0.0 && p99 < 5.0, "p99 estimate {p99}");

    let r = gw.get("/items/2").await;
    let timing = r.headers()["server-timing"].to_str().unwrap().to_string();
    assert!(
        timing.starts_with("gateway;dur=") && timing.contains("upstream;dur="),
        "{timing}"
    );
    for metric in timing.split(", ") {
        let (_, dur) = metric.split_once(";dur=").unwrap();
        let (_, fraction) = dur.split_once('.').unwrap_or_default();
        assert!(
            dur.parse::<f64>().is_ok_and(|ms| ms >= 0.0) && fraction.len() == 3,
            "{timing}"
        );
    }
}

async fn eventually_metrics(gw: &Gateway, ready: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = admin_client(gw, reqwest::Method::GET, "/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if ready(&text) || std::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn enable_metrics_false_turns_request_metrics_off() {
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start_with_env(&simple_config(&[up.addr()]), &[("ENABLE_METRICS", "false")]).await;
    for _ in 0..3 {
        gw.get("/x").await;
    }
    let text = gw.metrics_text().await;
    assert_eq!(
        metric(&text, "gateway_requests_total", &[("route", "all")]),
        None,
        "{text}"
    );
}
