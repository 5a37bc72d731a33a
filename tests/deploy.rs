//! deploy/ is checked by the real tools: promtool validates the Prometheus config and the
//! alert rules, every PromQL of the Grafana dashboard names a metric gatehouse exports, and
//! a real Prometheus scrapes a real gatehouse and counts what the test sent.
//!
//! Needs Debian's `prometheus` (`make deps` installs it); without it the tests fail.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file)
}

#[test]
fn promtool_accepts_the_prometheus_config_and_the_rules() {
    require_tool("promtool", "prometheus");
    for args in [
        vec![
            "check".to_string(),
            "config".to_string(),
            deploy("prometheus.yml").display().to_string(),
        ],
        vec![
            "check".to_string(),
            "rules".to_string(),
            deploy("gatehouse.rules.yml").display().to_string(),
        ],
    ] {
        let out = Command::new("promtool").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every metric name gatehouse exports (histograms with their series suffixes).
fn exported_metrics() -> Vec<String> {
    let mut names: Vec<String> = [
        "gateway_requests_total",
        "gateway_rejections_total",
        "gateway_config_reloads_total",
        "gateway_upstream_healthy",
        "gateway_circuit_state",
        "gateway_rate_limit_redis_errors_total",
        "gateway_config_info",
        "gateway_cache_total",
        "gateway_cache_bytes",
        "gateway_cache_entries",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for histogram in ["gateway_request_duration_seconds", "gateway_upstream_duration_seconds"] {
        for suffix in ["_bucket", "_count", "_sum"] {
            names.push(format!("{histogram}{suffix}"));
        }
    }
    names
}

#[test]
fn every_dashboard_query_names_an_exported_metric() {
    let text = std::fs::read_to_string(deploy("grafana/gatehouse-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let exported = exported_metrics();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 7);
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("gateway_") || w.starts_with("process_"))
                .collect();
            assert!(!names.is_empty(), "{title}: {expr} names no gatehouse metric");
            for name in names {
                assert!(exported.iter().any(|e| e == name), "{title}: {name} is not exported");
            }
        }
    }
}

struct Prometheus {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn query(port: u16, promql: &str) -> Option<f64> {
    let r = client()
        .get(format!("http://127.0.0.1:{port}/api/v1/query"))
        .query(&[("query", promql)])
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[tokio::test]
async fn a_real_prometheus_scrapes_what_the_test_sent() {
    require_tool("prometheus", "prometheus");
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&format!(
        "upstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ name: scraped, prefix: /, upstream: api }}]\n",
        up.addr()
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{ scrape_interval: 1s }}\nscrape_configs:\n  - job_name: gatehouse\n    static_configs: [{{ targets: [\"127.0.0.1:{}\"] }}]\n",
            gw.admin_port()
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn prometheus");
    let prom = Prometheus { port, child, _dir: dir };

    for _ in 0..25 {
        assert_eq!(gw.get("/p").await.status(), 200);
    }
    for _ in 0..3 {
        assert_eq!(client().delete(gw.url("/p")).send().await.unwrap().status(), 200);
    }
    eventually(
        Duration::from_secs(30),
        "prometheus has scraped all 28 requests",
        || async { query(prom.port, r#"sum(gateway_requests_total{route="scraped"})"#).await == Some(28.0) },
    )
    .await;
    let get = query(
        prom.port,
        r#"gateway_requests_total{route="scraped",method="GET",status="200"}"#,
    )
    .await;
    assert_eq!(get, Some(25.0));
    let count = query(
        prom.port,
        r#"sum(gateway_request_duration_seconds_count{route="scraped"})"#,
    )
    .await;
    assert_eq!(count, Some(28.0), "the histogram counted every request");
    let up_targets = query(prom.port, r#"sum(gateway_upstream_healthy{upstream="api"})"#).await;
    assert_eq!(up_targets, Some(1.0));
}
