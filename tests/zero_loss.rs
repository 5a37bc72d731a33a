//! Never drop a request: keep-alive clients send back to back while the gateway (a)
//! reloads its config, (b) hands its listener to a new binary (graceful upgrade), (c) one
//! of two processes sharing the port (SO_REUSEPORT) is terminated. Each test prints its
//! figures (`cargo test --test zero_loss -- --nocapture`).

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CLIENTS: usize = 8;

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
}

#[tokio::test]
async fn reloads_under_load_fail_no_request() {
    let up = MockUpstream::start("api").await;
    let config = |n: usize| {
        format!(
            "upstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes:\n  - {{ name: main, prefix: /, upstream: api }}\n  - {{ name: extra-{n}, path: /extra, upstream: api }}\n",
            up.addr()
        )
    };
    let gw = Gateway::start(&config(0)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(gw.url("/load"), CLIENTS, stop.clone());
    for n in 1..=10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        gw.write_config(&config(n));
        gw.signal("HUP");
    }
    eventually(Duration::from_secs(5), "10 reloads applied", || async {
        gw.health().await["config_generation"] == 11
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let report = load.await.unwrap();
    eprintln!(
        "reload under load: {} requests, {} failed",
        report.ok + report.failed,
        report.failed
    );
    assert!(report.ok > 100, "the load ran: {report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
}

#[tokio::test]
async fn a_graceful_upgrade_under_load_fails_no_request() {
    let up = MockUpstream::start("api").await;
    let old = Gateway::start(&format!(
        "grace_period: 2s\nshutdown_timeout: 2s\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, upstream: api }}]\n",
        up.addr()
    ))
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(old.url("/load"), CLIENTS, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The new binary waits for the listeners; SIGQUIT makes the old one hand them over.
    let log = std::fs::File::create(old.dir.path().join("new.log")).unwrap();
    let mut new = Command::new(BIN)
        .args(["run", "-u", "-c"])
        .arg(&old.config_path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let sock = old.dir.path().join("upgrade.sock");
    eventually(
        Duration::from_secs(10),
        "the new process waiting on the upgrade socket",
        || {
            let ready = sock.exists();
            async move { ready }
        },
    )
    .await;
    old.signal("QUIT");
    let old_pid = old.pid();
    eventually(Duration::from_secs(20), "the old process gone", || async {
        !alive(old_pid)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let report = load.await.unwrap();
    let _ = new.kill();
    let _ = new.wait();
    eprintln!(
        "graceful upgrade under load: {} requests, {} failed",
        report.ok + report.failed,
        report.failed
    );
    assert!(report.ok > 100, "the load ran: {report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
}

#[tokio::test]
async fn sigterm_on_one_of_two_processes_sharing_the_port() {
    let up = MockUpstream::start("api").await;
    let body = format!(
        "reuse_port: true\ngrace_period: 1s\nshutdown_timeout: 2s\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, upstream: api }}]\n",
        up.addr()
    );
    let first = Gateway::start(&body).await;
    // The second process: same port, its own pid file, upgrade socket and admin port.
    let dir = tempfile::tempdir().unwrap();
    let second_config = dir.path().join("second.yaml");
    std::fs::write(&second_config, Gateway::config_text(first.port, dir.path(), &body)).unwrap();
    let mut second = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&second_config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(first.url("/load"), CLIENTS, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.signal("TERM");
    let pid = first.pid();
    eventually(Duration::from_secs(20), "the terminated process gone", || async {
        !alive(pid)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let report = load.await.unwrap();
    let _ = second.kill();
    let _ = second.wait();
    eprintln!(
        "SIGTERM on one of two SO_REUSEPORT processes: {} requests, {} failed {:?}",
        report.ok + report.failed,
        report.failed,
        report.samples
    );
    assert!(report.ok > 100, "the load ran: {report:?}");
    // Linux resets connections still queued on the closing process' socket: a handful
    // may fail, never a flood.
    assert!(report.failed <= 16, "{report:?}");
}

#[tokio::test]
async fn the_upgrade_script_swaps_a_daemon_without_failed_requests() {
    let up = MockUpstream::start("api").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("gatehouse.yaml");
    let body = format!(
        "log_file: {}\ngrace_period: 2s\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, upstream: api }}]\n",
        dir.path().join("daemon.log").display(),
        up.addr()
    );
    std::fs::write(&config, Gateway::config_text(port, dir.path(), &body)).unwrap();
    let started = Command::new(BIN)
        .args(["run", "-d", "-c"])
        .arg(&config)
        .status()
        .unwrap();
    assert!(started.success());
    let pid_file = dir.path().join("gatehouse.pid");
    let read_pid = || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
    };
    let url = format!("http://127.0.0.1:{port}/load");
    eventually(Duration::from_secs(10), "the daemon serving", || {
        let url = url.clone();
        async move { client().get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    let old_pid = read_pid().expect("pid file written by the daemon");

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(url, CLIENTS, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/upgrade.sh");
    let upgrade = Command::new("bash").arg(script).arg(&config).arg(BIN).output().unwrap();
    assert!(
        upgrade.status.success(),
        "deploy/upgrade.sh failed: {}",
        String::from_utf8_lossy(&upgrade.stderr)
    );
    let new_pid = read_pid().expect("pid file after the upgrade");
    assert_ne!(new_pid, old_pid, "the pid file names the new process");
    eventually(Duration::from_secs(20), "the old daemon gone", || async {
        !alive(old_pid)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let report = load.await.unwrap();
    assert!(alive(new_pid), "the new daemon serves on");
    let _ = Command::new("kill").args(["-INT", &new_pid.to_string()]).status();
    eprintln!(
        "deploy/upgrade.sh under load: {} requests, {} failed",
        report.ok + report.failed,
        report.failed
    );
    assert!(report.ok > 100, "the load ran: {report:?}");
    assert_eq!(report.failed, 0, "{report:?}");

    // A config that does not load is refused before the running daemon is touched.
    std::fs::write(dir.path().join("broken.yaml"), "routes: [{ prefix: nope }]\n").unwrap();
    let refused = Command::new("bash")
        .arg(script)
        .arg(dir.path().join("broken.yaml"))
        .arg(BIN)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not load"));
}
