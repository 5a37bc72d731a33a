//! A real etcd (Debian's `etcd-server`) on free loopback ports, and `etcdctl` to write to
//! it as an operator would.

use super::{eventually, free_port, require_tool};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One etcd member with its own data directory, killed when dropped; `restart` keeps the
/// data (and the revision).
pub struct EtcdServer {
    pub client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl EtcdServer {
    pub async fn start() -> EtcdServer {
        require_tool("etcd", "etcd-server");
        require_tool("etcdctl", "etcd-client");
        let mut server = EtcdServer {
            client_port: free_port(),
            peer_port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub async fn restart(&mut self) {
        self.stop();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("etcd log");
        let child = Command::new("etcd")
            .args(["--name", "n1", "--data-dir"])
            .arg(self.data_dir())
            .args([
                "--listen-client-urls",
                &self.url(),
                "--advertise-client-urls",
                &self.url(),
            ])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("n1={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
        let url = self.url();
        eventually(Duration::from_secs(15), "etcd answering", || {
            let url = url.clone();
            async move {
                tokio::task::spawn_blocking(move || ctl_status(&url, &["endpoint", "health"]).is_ok())
                    .await
                    .unwrap_or(false)
            }
        })
        .await;
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `etcdctl put KEY VALUE`; the store's revision after it.
    pub fn put(&self, key: &str, value: &str) -> i64 {
        let out = ctl_status(&self.url(), &["put", "-w", "json", key, value]).unwrap_or_else(|e| panic!("{e}"));
        let v: serde_json::Value = serde_json::from_str(&out).expect("etcdctl json");
        v["header"]["revision"].as_i64().expect("revision")
    }

    pub fn delete(&self, key: &str) -> i64 {
        let out = ctl_status(&self.url(), &["del", "-w", "json", key]).unwrap_or_else(|e| panic!("{e}"));
        let v: serde_json::Value = serde_json::from_str(&out).expect("etcdctl json");
        v["header"]["revision"].as_i64().expect("revision")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ctl_status(url: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={url}"))
        .arg("--dial-timeout=1s")
        .args(args)
        .output()
        .map_err(|e| format!("etcdctl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}
