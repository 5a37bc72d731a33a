//! Pingora's process flags pass through `gatehouse run`: `-d` (daemon with pid file) and
//! `-u` (take the listeners over from a running gatehouse on SIGQUIT).

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn write_config(dir: &std::path::Path, port: u16, up: &MockUpstream) -> std::path::PathBuf {
    let path = dir.join("gatehouse.yaml");
    let body = format!(
        "log_file: {}\n{}",
        dir.join("daemon.log").display(),
        simple_config(&[up.addr()])
    );
    std::fs::write(&path, Gateway::config_text(port, dir, &body)).unwrap();
    path
}

async fn status(port: u16) -> Option<u16> {
    client()
        .get(format!("http://127.0.0.1:{port}/x"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

fn alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; its state letter is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z"))
        .unwrap_or(false)
}

#[tokio::test]
async fn daemon_mode_detaches_and_writes_the_pid_file() {
    let up = MockUpstream::start("u").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &up);
    let started = Command::new(BIN)
        .args(["run", "-d", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        started.success(),
        "the launching process exits 0 once the daemon is forked"
    );

    eventually(Duration::from_secs(10), "daemon serving", || async {
        status(port).await == Some(200)
    })
    .await;
    let pid: u32 = std::fs::read_to_string(dir.path().join("gatehouse.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    let log = dir.path().join("daemon.log");
    eventually(Duration::from_secs(5), "access log line in log_file", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move { text.contains("\"status\":200") }
    })
    .await;
    Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    eventually(Duration::from_secs(10), "daemon gone", || async { !alive(pid) }).await;
}

#[tokio::test]
async fn upgrade_hands_the_listener_to_the_new_process() {
    let up = MockUpstream::start("u").await;
    let old = Gateway::start(&simple_config(&[up.addr()])).await;
    let sock = old.dir.path().join("upgrade.sock");

    let mut new = Command::new(BIN)
        .args(["run", "-u", "-c"])
        .arg(&old.config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The new process waits for the listeners on the upgrade socket.
    eventually(Duration::from_secs(10), "upgrade socket", || {
        let exists = sock.exists();
        async move { exists }
    })
    .await;
    old.signal("QUIT");
    let old_pid = old.pid();
    eventually(Duration::from_secs(15), "old process exited", || async {
        !alive(old_pid)
    })
    .await;
    assert_eq!(
        status(old.port).await,
        Some(200),
        "the new process serves the same port"
    );
    let _ = new.kill();
    let _ = new.wait();
}
