//! `gatehouse doctor` against setups with each kind of problem: one line per check with
//! ok / warn / FAIL and what to do, exit code = the worst (0, 1, 2), `--json` for tools.

mod common;

use common::*;
use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

fn config(dir: &Path, listen: u16, body: &str) -> PathBuf {
    let path = dir.join("gatehouse.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: [\"127.0.0.1:{listen}\"]\nadmin: {{ listen: \"127.0.0.1:{}\" }}\n{body}",
            free_port()
        ),
    )
    .unwrap();
    path
}

/// `doctor --json`: exit code and the checks. Off the test's runtime, which serves the
/// test's upstreams and IdP meanwhile.
async fn doctor(path: &Path, shell_prefix: &str) -> (i32, Vec<Value>) {
    let (path, prefix) = (path.to_path_buf(), shell_prefix.to_string());
    tokio::task::spawn_blocking(move || doctor_now(&path, &prefix))
        .await
        .unwrap()
}

fn doctor_now(path: &Path, shell_prefix: &str) -> (i32, Vec<Value>) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{shell_prefix} exec \"$0\" doctor --json -c \"$1\""))
        .arg(BIN)
        .arg(path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (
        out.status.code().unwrap_or(-1),
        report["checks"].as_array().unwrap().clone(),
    )
}

/// The findings of `check` with `status`, as "detail → hint" strings.
fn lines(checks: &[Value], check: &str, status: &str) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c["check"] == check && c["status"] == status)
        .map(|c| {
            format!(
                "{} → {}",
                c["detail"].as_str().unwrap_or(""),
                c["hint"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[tokio::test]
async fn a_healthy_setup_is_all_ok_and_exits_0() {
    let up = MockUpstream::start("api").await;
    let idp = FnServer::start(|_, _, _| {
        let keys = std::fs::read_to_string(fixture("keys/rsa_a.jwks.json")).unwrap();
        (200, keys, "application/json")
    })
    .await;
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        free_port(),
        &format!(
            "auth: {{ jwt: {{ jwks_url: \"{}\" }} }}\nredis: {{ url: \"{}\" }}\n\
             upstreams: {{ api: {{ targets: [\"{}\"], health_check: {{ path: /health }} }} }}\n\
             routes: [{{ prefix: /, upstream: api, rate_limit: {{ requests: 5, per: 1s, scope: global }} }}]\n",
            idp.url("/jwks"),
            redis.url(),
            up.addr()
        ),
    );
    let (code, checks) = doctor(&path, "").await;
    let not_ok: Vec<&Value> = checks.iter().filter(|c| c["status"] != "ok").collect();
    assert_eq!((code, not_ok.len()), (0, 0), "{not_ok:#?}");
    let all = serde_json::to_string(&checks).unwrap();
    for expected in [
        "health check /health answers 200",
        "1 usable keys (key-a)",
        "connected, rate-limit script loaded",
        "listen 127.0.0.1:",
        "largest skew",
    ] {
        assert!(all.contains(expected), "no `{expected}` in {all}");
    }
    assert!(up.health_hits() >= 1, "the health path was really asked");
}

#[tokio::test]
async fn each_problem_is_a_line_with_what_to_do_and_the_exit_code_is_the_worst() {
    let sick = MockUpstream::start("sick").await;
    sick.set_health_status(503);
    let dead = free_port();
    let idp = FnServer::start(|_, _, _| (500, "down".into(), "text/plain")).await;
    let redis_port = free_port();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        busy,
        &format!(
            "grace_period: 30s\nauth: {{ jwt: {{ jwks_url: \"{}\" }} }}\nredis: {{ url: \"redis://127.0.0.1:{redis_port}\" }}\n\
             upstreams:\n  sick: {{ targets: [\"{}\"], health_check: {{ path: /health }} }}\n  gone: {{ targets: [\"127.0.0.1:{dead}\"] }}\n\
             routes:\n  - {{ prefix: /a, upstream: sick, rate_limit: {{ requests: 5, per: 1s, scope: global }} }}\n  - {{ prefix: /b, upstream: gone }}\n",
            idp.url("/jwks"),
            sick.addr()
        ),
    );
    let (code, checks) = doctor(&path, "ulimit -n 1024 &&").await;
    assert_eq!(code, 2, "{checks:#?}");
    let me = format!("pid {}", std::process::id());
    let expect = [
        (
            "ports",
            "fail",
            format!("127.0.0.1:{busy}: the address is already in use, held by {me}"),
        ),
        ("upstream", "fail", "health check /health answers 503".to_string()),
        ("upstream", "fail", format!("127.0.0.1:{dead}: cannot connect")),
        ("idp", "fail", "HTTP 500 → tokens get 503 idp_unavailable".to_string()),
        ("redis", "fail", "cannot connect".to_string()),
        ("shutdown", "warn", "stopping takes at most 32s".to_string()),
        ("shutdown", "warn", "terminationGracePeriodSeconds > 33s".to_string()),
        ("fds", "warn", "open files: 1024".to_string()),
        ("fds", "warn", "LimitNOFILE".to_string()),
    ];
    for (check, status, text) in expect {
        let found = lines(&checks, check, status);
        assert!(
            found.iter().any(|l| l.contains(&text)),
            "{check}/{status}: no `{text}` in {found:#?}"
        );
    }
    drop(held);
}

#[test]
fn a_config_that_does_not_load_is_the_one_failure_reported_with_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        free_port(),
        "upstreams: { api: { targets: [\"127.0.0.1:1\"] } }\nroutes:\n  - { prefix: /, upstream: apj }\n",
    );
    let (code, checks) = doctor_now(&path, "");
    assert_eq!(code, 2);
    assert!(checks.iter().all(|c| c["check"] == "config"), "{checks:#?}");
    let failures = lines(&checks, "config", "fail");
    assert!(
        failures
            .iter()
            .any(|l| l.contains(":5:18: routes[0].upstream: unknown upstream")),
        "{failures:#?}"
    );
}

#[tokio::test]
async fn a_port_held_by_a_running_gatehouse_is_an_upgrade_not_a_failure() {
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;
    let (code, checks) = doctor(&gw.config_path, "").await;
    let ports = lines(&checks, "ports", "ok");
    assert!(
        ports
            .iter()
            .any(|l| l.contains("held by a running gatehouse") && l.contains("gatehouse run -u")),
        "{ports:#?}"
    );
    assert_eq!(code, 0, "{checks:#?}");
}

#[tokio::test]
async fn tls_upstreams_are_handshaken_and_certificates_close_to_expiry_warned() {
    let pki = TestPki::new();
    let (up_cert, up_key) = pki.leaf("upstream", "upstream.test", 0, 10);
    let upstream = s_server(free_port(), &up_cert, &up_key).await;
    let (cert, key) = pki.leaf("edge", "edge.test", 0, 5);
    let other_ca = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let body = |ca: &Path| {
        format!(
            "tls: {{ listen: [\"127.0.0.1:{}\"], certs: [{{ cert: \"{}\", key: \"{}\" }}] }}\n\
             upstreams: {{ secure: {{ targets: [\"127.0.0.1:{}\"], tls: true, sni: upstream.test, ca_file: \"{}\" }} }}\n\
             routes: [{{ prefix: /, upstream: secure }}]\n",
            free_port(),
            cert.display(),
            key.display(),
            upstream.port,
            ca.display()
        )
    };
    let (code, checks) = doctor(&config(dir.path(), free_port(), &body(&pki.ca_path())), "").await;
    assert_eq!(code, 1, "a warning, no failure: {checks:#?}");
    assert!(
        lines(&checks, "upstream", "ok")
            .iter()
            .any(|l| l.contains("accepts TLS connections")),
        "{checks:#?}"
    );
    let tls = lines(&checks, "tls", "warn");
    assert!(
        tls.iter()
            .any(|l| l.contains("(edge.test) expires in 4 days") || l.contains("(edge.test) expires in 5 days")),
        "{tls:#?}"
    );

    let (code, checks) = doctor(&config(dir.path(), free_port(), &body(&other_ca.ca_path())), "").await;
    assert_eq!(code, 2);
    let failed = lines(&checks, "upstream", "fail");
    assert!(
        failed
            .iter()
            .any(|l| l.contains("TLS handshake as upstream.test failed")),
        "{failed:#?}"
    );
}

#[tokio::test]
async fn the_introspection_endpoint_must_accept_gatehouse_s_credentials() {
    for (answer, status, expected) in [
        (200, "ok", "answers (a probe token is inactive)"),
        (
            401,
            "fail",
            "HTTP 401 for gatehouse's credentials → check auth.introspection.client_id",
        ),
    ] {
        let idp = FnServer::start(move |_, _, body| {
            assert!(String::from_utf8_lossy(body).contains("token=gatehouse-doctor-probe"));
            (answer, "{\"active\": false}".into(), "application/json")
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let path = config(
            dir.path(),
            free_port(),
            &format!(
                "auth: {{ introspection: {{ url: \"{}\", client_id: gw, client_secret: s }} }}\nupstreams: {{ api: {{ targets: [\"127.0.0.1:1\"] }} }}\nroutes: [{{ prefix: /, auth: jwt, upstream: api }}]\n",
                idp.url("/introspect")
            ),
        );
        let (_, checks) = doctor(&path, "").await;
        let found = lines(&checks, "idp", status);
        assert!(found.iter().any(|l| l.contains(expected)), "{status}: {found:#?}");
        assert_eq!(idp.calls(), 1);
    }
}
