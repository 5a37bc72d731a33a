//! `targets_from: { dns: ... }` against a real DNS server (dnsmasq on a loopback port,
//! answering from a hosts file the test rewrites, and SRV records given at its start): the
//! pool follows the records.

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
    /// `srv`: dnsmasq's `--srv-host` values (`_service._proto.name,target,port,priority,weight`).
    async fn start(port: u16, records: &str, srv: &[String]) -> Dnsmasq {
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
            .args(srv.iter().map(|s| format!("--srv-host={s}")))
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
    let dns = Dnsmasq::start(dns_port, "127.0.0.2 users.test\n", &[]).await;
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

#[tokio::test]
async fn srv_records_give_the_targets_their_ports_and_weights() {
    // Different ports on different addresses: only the SRV records say which is where.
    let (port_a, port_b, port_c) = (free_port(), free_port(), free_port());
    let _a = MockUpstream::start_at("a", &format!("127.0.0.2:{port_a}")).await;
    let _b = MockUpstream::start_at("b", &format!("127.0.0.3:{port_b}")).await;
    let _c = MockUpstream::start_at("c", &format!("127.0.0.4:{port_c}")).await;
    let dns_port = free_port();
    let dns = Dnsmasq::start(
        dns_port,
        "127.0.0.2 a.test\n127.0.0.3 b.test\n127.0.0.4 c.test\n",
        &[
            format!("_http._tcp.users.test,a.test,{port_a},0,1000"),
            format!("_http._tcp.users.test,b.test,{port_b},0,3000"),
            // A backup: a worse priority, used only when no better record resolves.
            format!("_http._tcp.users.test,c.test,{port_c},1,10"),
        ],
    )
    .await;
    let gw = Gateway::start(&format!(
        "upstreams: {{ users: {{ targets_from: {{ dns: _http._tcp.users.test, resolver: \"127.0.0.1:{dns_port}\", interval: 2s }} }} }}\nroutes: [{{ prefix: /, upstream: users }}]\n"
    ))
    .await;
    eventually(
        Duration::from_secs(5),
        "both best-priority records are targets",
        || async { instances(&gw).await == 2 },
    )
    .await;
    // SRV weights go to 65535; the pool's to 100: 1000:3000 becomes 33:100, one whole
    // round of the weighted wheel is 133 picks.
    let seen = distribution(&gw, "/x", 133).await;
    assert_eq!((seen.get("a"), seen.get("b")), (Some(&33), Some(&100)), "{seen:?}");

    // Neither best record resolves any more: the backup takes over.
    dns.set("127.0.0.4 c.test\n");
    eventually(Duration::from_secs(6), "the backup record is the target", || async {
        instances(&gw).await == 1
    })
    .await;
    assert_eq!(distribution(&gw, "/x", 4).await.get("c"), Some(&4));
}

#[tokio::test]
async fn a_dns_name_that_is_neither_name_port_nor_srv_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.yaml");
    std::fs::write(
        &path,
        "upstreams: { users: { targets_from: { dns: users.test } } }\nroutes: [{ prefix: /, upstream: users }]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("targets_from.dns") && text.contains("SRV name"), "{text}");
}
