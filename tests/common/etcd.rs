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
    secure: Option<EtcdSecurity>,
    /// Once authentication is on: the root user etcdctl signs in as.
    user: Option<String>,
}

/// PEM files for an etcd serving TLS and asking clients for a certificate.
#[derive(Clone)]
pub struct EtcdSecurity {
    pub ca: PathBuf,
    /// The member's certificate and key.
    pub server: (PathBuf, PathBuf),
    /// A client certificate and key signed by `ca` (etcdctl's).
    pub client: (PathBuf, PathBuf),
}

impl EtcdServer {
    pub async fn start() -> EtcdServer {
        Self::start_with(None).await
    }

    /// TLS on the client port, and a client certificate required (`--client-cert-auth`).
    pub async fn start_secure(secure: EtcdSecurity) -> EtcdServer {
        Self::start_with(Some(secure)).await
    }

    async fn start_with(secure: Option<EtcdSecurity>) -> EtcdServer {
        require_tool("etcd", "etcd-server");
        require_tool("etcdctl", "etcd-client");
        let mut server = EtcdServer {
            client_port: free_port(),
            peer_port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            secure,
            user: None,
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        let scheme = if self.secure.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// etcdctl's flags for this server: its TLS files, its user.
    fn ctl_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(s) = &self.secure {
            flags.push(format!("--cacert={}", s.ca.display()));
            flags.push(format!("--cert={}", s.client.0.display()));
            flags.push(format!("--key={}", s.client.1.display()));
        }
        if let Some(user) = &self.user {
            flags.push(format!("--user={user}"));
        }
        flags
    }

    /// Turns authentication on with a `root` user: from now on every client must sign in.
    pub fn enable_auth(&mut self, password: &str) {
        let run = |args: &[&str]| ctl_status(&self.url(), &self.ctl_flags(), args).unwrap_or_else(|e| panic!("{e}"));
        run(&["user", "add", &format!("root:{password}")]);
        run(&["auth", "enable"]);
        self.user = Some(format!("root:{password}"));
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub async fn restart(&mut self) {
        self.stop();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("etcd log");
        let mut etcd = Command::new("etcd");
        if let Some(secure) = &self.secure {
            etcd.arg(format!("--trusted-ca-file={}", secure.ca.display()))
                .arg(format!("--cert-file={}", secure.server.0.display()))
                .arg(format!("--key-file={}", secure.server.1.display()))
                .arg("--client-cert-auth");
        }
        let child = etcd
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
        let (url, flags) = (self.url(), self.ctl_flags());
        eventually(Duration::from_secs(15), "etcd answering", || {
            let (url, flags) = (url.clone(), flags.clone());
            async move {
                tokio::task::spawn_blocking(move || ctl_status(&url, &flags, &["endpoint", "health"]).is_ok())
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
        let out = ctl_status(&self.url(), &self.ctl_flags(), &["put", "-w", "json", key, value])
            .unwrap_or_else(|e| panic!("{e}"));
        let v: serde_json::Value = serde_json::from_str(&out).expect("etcdctl json");
        v["header"]["revision"].as_i64().expect("revision")
    }

    /// `etcdctl compact REVISION`: the history before it is gone.
    pub fn compact(&self, revision: i64) {
        ctl_status(&self.url(), &self.ctl_flags(), &["compact", &revision.to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn delete(&self, key: &str) -> i64 {
        let out =
            ctl_status(&self.url(), &self.ctl_flags(), &["del", "-w", "json", key]).unwrap_or_else(|e| panic!("{e}"));
        let v: serde_json::Value = serde_json::from_str(&out).expect("etcdctl json");
        v["header"]["revision"].as_i64().expect("revision")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ctl_status(url: &str, flags: &[String], args: &[&str]) -> Result<String, String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={url}"))
        .args(flags)
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

/// A cluster of `n` etcd members on loopback, each killed when dropped.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<(u16, u16, Option<Child>)>,
}

impl EtcdCluster {
    pub async fn start(n: usize) -> EtcdCluster {
        require_tool("etcd", "etcd-server");
        let members = (0..n).map(|_| (free_port(), free_port(), None)).collect();
        let mut cluster = EtcdCluster {
            dir: tempfile::tempdir().expect("tempdir"),
            members,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        let urls = cluster.urls();
        eventually(Duration::from_secs(20), "the etcd cluster has a leader", || {
            let urls = urls.clone();
            async move {
                tokio::task::spawn_blocking(move || ctl_status(&urls, &[], &["put", "/probe", "1"]).is_ok())
                    .await
                    .unwrap_or(false)
            }
        })
        .await;
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let initial: Vec<String> = self
            .members
            .iter()
            .enumerate()
            .map(|(j, (_, peer, _))| format!("m{j}=http://127.0.0.1:{peer}"))
            .collect();
        let (client, peer, _) = self.members[i];
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(self.dir.path().join(format!("m{i}.log"))).expect("log");
        let child = Command::new("etcd")
            .args(["--name", &format!("m{i}"), "--data-dir"])
            .arg(self.dir.path().join(format!("m{i}")))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args([
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-state",
                "new",
            ])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.members[i].2 = Some(child);
    }

    /// Every member's client URL, comma-separated.
    pub fn urls(&self) -> String {
        self.members
            .iter()
            .map(|(client, _, _)| format!("http://127.0.0.1:{client}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the member that leads now, among the members of `urls`.
    pub fn leader_of(urls: &str) -> Option<usize> {
        let out = ctl_status(urls, &[], &["endpoint", "status", "-w", "json"]).ok()?;
        let statuses: serde_json::Value = serde_json::from_str(&out).ok()?;
        let leader = statuses.as_array()?.first()?["Status"]["leader"].as_u64()?;
        statuses.as_array()?.iter().find_map(|s| {
            (s["Status"]["header"]["member_id"].as_u64() == Some(leader))
                .then(|| s["Endpoint"].as_str())
                .flatten()
                .and_then(|e| urls.split(',').position(|u| u == e))
        })
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].2.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `etcdctl put` through whichever member answers; the new revision, or why not.
    pub fn try_put(&self, key: &str, value: &str) -> Result<i64, String> {
        let out = ctl_status(&self.urls(), &[], &["put", "-w", "json", key, value])?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        v["header"]["revision"].as_i64().ok_or_else(|| "no revision".into())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
