//! `gatehouse check` on every fixture and shipped config, `--version`.
//!
//! Each `tests/fixtures/invalid/*.yaml` names the messages it must produce in
//! `# expect: ...` lines; each `tests/fixtures/valid/*.yaml` its warnings in `# warn: ...`.

mod common;

use common::BIN;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn check(path: &Path) -> Output {
    Command::new(BIN)
        .args(["check", "-c"])
        .arg(path)
        .env_remove("PORT")
        .env_remove("GATEHOUSE_TEST_UNSET")
        .output()
        .expect("run gatehouse check")
}

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn tagged(path: &Path, tag: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read fixture")
        .lines()
        .filter_map(|l| l.strip_prefix(tag).map(|m| m.trim().to_string()))
        .collect()
}

#[test]
fn every_invalid_fixture_is_refused_with_its_messages() {
    let mut failures = Vec::new();
    for path in fixtures("invalid") {
        let expected = tagged(&path, "# expect:");
        assert!(!expected.is_empty(), "{} has no `# expect:` line", path.display());
        let out = check(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            failures.push(format!("{}: accepted", path.display()));
        }
        let file = path.display().to_string();
        for message in expected {
            // Each problem line names the file (and line:column where the field is in
            // it), then the field path and reason.
            let found = stderr.lines().map(str::trim).any(|l| {
                l.strip_prefix(file.as_str())
                    .and_then(|rest| rest.split_once(": "))
                    .is_some_and(|(at, problem)| {
                        let located = at.is_empty() || at.split(':').skip(1).all(|n| n.parse::<usize>().is_ok());
                        located && problem.starts_with(message.as_str())
                    })
            });
            if !found {
                failures.push(format!("{file}: missing {message:?} in:\n{stderr}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_fixtures_and_shipped_configs_pass_check_with_their_warnings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = fixtures("valid");
    files.push(root.join("conf/gatehouse.yaml"));
    for path in files {
        let out = check(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{} refused:\n{stderr}", path.display());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("OK"),
            "{}",
            path.display()
        );
        let expected = tagged(&path, "# warn:");
        for warning in &expected {
            assert!(
                stderr.contains(warning.as_str()),
                "{}: missing warning {warning:?} in:\n{stderr}",
                path.display()
            );
        }
        assert_eq!(
            stderr.matches("warning:").count(),
            expected.len(),
            "{}: unexpected warnings:\n{stderr}",
            path.display()
        );
    }
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let out = check(Path::new("/nonexistent/gatehouse.yaml"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn version_is_printed() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("gatehouse {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn run_refuses_a_bad_config_and_exits_non_zero() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid/unknown_upstream.yaml");
    let out = Command::new(BIN).args(["run", "-c"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown upstream \"billing\""));
}

#[test]
fn without_c_the_bundled_config_is_used_unless_backend_variables_are_set() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plain = Command::new(BIN)
        .arg("check")
        .current_dir(root)
        .env_remove("BACKEND_URL")
        .env_remove("BACKEND_URLS")
        .env_remove("ROUTES_CONFIG_PATH")
        .output()
        .unwrap();
    assert!(plain.status.success(), "{}", String::from_utf8_lossy(&plain.stderr));
    assert!(String::from_utf8_lossy(&plain.stdout).starts_with("conf/gatehouse.yaml: OK"));

    let env_mode = Command::new(BIN)
        .arg("check")
        .current_dir(root)
        .env("BACKEND_URLS", "http://127.0.0.1:1,http://127.0.0.1:2")
        .output()
        .unwrap();
    assert!(
        env_mode.status.success(),
        "{}",
        String::from_utf8_lossy(&env_mode.stderr)
    );
    assert!(String::from_utf8_lossy(&env_mode.stdout).starts_with("environment: OK (1 routes, 1 upstreams)"));
}

#[tokio::test]
async fn health_exits_0_on_a_2xx_and_1_otherwise_saying_what_it_got() {
    let up = common::MockUpstream::start("a").await;
    let gw = common::Gateway::start(&format!(
        "upstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /api, upstream: u }}]\n",
        up.addr()
    ))
    .await;
    let health = |url: String| async move {
        tokio::task::spawn_blocking(move || Command::new(BIN).args(["health", "--url", &url]).output().unwrap())
            .await
            .unwrap()
    };
    let ready = health(gw.admin_url("/ready")).await;
    assert_eq!(ready.status.code(), Some(0), "{ready:?}");
    assert!(String::from_utf8_lossy(&ready.stdout).contains("200 OK"));

    let live = tokio::task::spawn_blocking({
        let port = gw.port.to_string();
        move || Command::new(BIN).arg("health").env("PORT", port).output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        live.status.code(),
        Some(0),
        "the default URL is /health on PORT: {live:?}"
    );

    let missing = health(gw.url("/nowhere-routed")).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"), "{missing:?}");

    let closed = health(format!("http://127.0.0.1:{}/ready", common::free_port())).await;
    assert_eq!(closed.status.code(), Some(1));
    assert!(!closed.stderr.is_empty());
}
