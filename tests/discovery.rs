//! `targets_from: { dns: name:port }` against a real DNS server (dnsmasq on a loopback
//! port, answering from a hosts file the test rewrites): the pool follows the records.

mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Dnsmasq {
    child: Child,
    hosts: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    async fn start(port: u16, records: &str) -> Dnsmasq {
        require_tool("dnsmasq", "dnsmasq");
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, records).unwrap();
        let child = Command::new("dnsmasq")
            .args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces"])
            .args([
                "--listen-address=127.0.0.1",
                "--local-ttl=1",
                "--user=root",
                "--log-facility=-",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--addn-hosts={}", hosts.display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq");
        eventually(Duration::from_secs(5), "dnsmasq listening", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        Dnsmasq {
            child,
            hosts,
            _dir: dir,
        }
    }

    /// New records, read again on SIGHUP as an operator's edit would be.
    fn set(&self, records: &str) {
        std::fs::write(&self.hosts, records).unwrap();
        let _ = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn instances(gw: &Gateway) -> u64 {
    gw.health().await["services"]["users"]["total_instances"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test]
async fn dns_discovered_targets_follow_the_records() {
    let port = free_port();
    // Kept alive for the whole test: the names only say which one answered.
    let _a = MockUpstream::start_at("a", &format!("127.0.0.2:{port}")).await;
    let _b = MockUpstream::start_at("b", &format!("127.0.0.3:{port}")).await;
    let dns_port = free_port();
    let dns = Dnsmasq::start(dns_port, "127.0.0.2 users.test\n").await;
    let gw = Gateway::start(&format!(
        "upstreams: {{ users: {{ targets_from: {{ dns: \"users.test:{port}\", resolver: \"127.0.0.1:{dns_port}\", interval: 2s }} }} }}\nroutes: [{{ prefix: /, upstream: users }}]\n"
    ))
    .await;
    eventually(Duration::from_secs(5), "the first address is a target", || async {
        instances(&gw).await == 1
    })
    .await;
    assert_eq!(distribution(&gw, "/x", 4).await.get("a"), Some(&4));

    // A second address appears: within a TTL (1 s) or two, both take traffic.
    dns.set("127.0.0.2 users.test\n127.0.0.3 users.test\n");
    eventually(Duration::from_secs(6), "both addresses are targets", || async {
        instances(&gw).await == 2
    })
    .await;
    let seen = distribution(&gw, "/x", 10).await;
    assert_eq!((seen.get("a"), seen.get("b")), (Some(&5), Some(&5)), "{seen:?}");

    // The first goes.
    dns.set("127.0.0.3 users.test\n");
    eventually(Duration::from_secs(6), "the removed address leaves", || async {
        instances(&gw).await == 1
    })
    .await;
    assert_eq!(distribution(&gw, "/x", 4).await.get("b"), Some(&4));

    // The name answers nothing: the last known targets stay, and it is logged.
    dns.set("");
    eventually(Duration::from_secs(6), "the empty answer is logged", || async {
        gw.logs().contains("keeping the last targets")
    })
    .await;
    assert_eq!(instances(&gw).await, 1);
    assert_eq!(distribution(&gw, "/x", 2).await.get("b"), Some(&2));
}
