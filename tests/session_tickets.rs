//! TLS session resumption by tickets, with `openssl s_client -sess_out/-sess_in` as the
//! client: a ticket from one node resumes on another that shares the secret (same port on
//! another loopback address, as nodes behind a balancer), not on one with another secret;
//! keys rotate (a ticket older than two periods is refused); tickets can be turned off.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const SECRET: &str = "a-secret-shared-by-the-fleet-0123456789abcdef";

/// One TLS connection to `ip:port` that sends a request (so the TLS 1.3 tickets arrive),
/// saving or reusing the session; returns "New" or "Reused".
fn connect(ip: &str, port: u16, version: &str, sess: &Path, reuse: bool) -> String {
    let text = session(ip, port, version, sess, reuse);
    text.lines()
        .find_map(|l| l.split(',').next().filter(|w| *w == "New" || *w == "Reused"))
        .unwrap_or("no handshake")
        .to_string()
}

/// What `openssl s_client` printed.
fn session(ip: &str, port: u16, version: &str, sess: &Path, reuse: bool) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-ign_eof",
        version,
        "-servername",
        "gw.test",
        "-connect",
        &format!("{ip}:{port}"),
    ])
    .arg(if reuse { "-sess_in" } else { "-sess_out" })
    .arg(sess)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("openssl s_client");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(b"GET /health HTTP/1.0\r\nHost: gw.test\r\n\r\n");
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn node(pki: &TestPki, ip: &str, port: u16, tickets: &str) -> Gateway {
    let (cert, key) = pki.leaf(&format!("gw-{ip}"), "gw.test", 0, 10);
    Gateway::start(&format!(
        "tls: {{ listen: [\"{ip}:{port}\"], certs: [{{ cert: \"{}\", key: \"{}\" }}]{tickets} }}\nupstreams: {{ u: {{ targets: [\"127.0.0.1:9\"] }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
        cert.display(),
        key.display()
    ))
    .await
}

fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> tokio::task::JoinHandle<T> {
    tokio::task::spawn_blocking(f)
}

#[tokio::test]
async fn a_ticket_resumes_on_any_node_sharing_the_secret_in_tls_1_3_and_1_2() {
    require_tool("openssl", "openssl");
    let pki = TestPki::new();
    let port = free_port();
    let shared = format!(", session_tickets: {{ secret: \"{SECRET}\", rotate: 12h }}");
    let _a = node(&pki, "127.0.0.2", port, &shared).await;
    let _b = node(&pki, "127.0.0.3", port, &shared).await;
    let _c = node(
        &pki,
        "127.0.0.4",
        port,
        ", session_tickets: { secret: \"another-secret-of-another-fleet-0123456789\" }",
    )
    .await;
    for version in ["-tls1_3", "-tls1_2"] {
        let sess = pki.dir.path().join(format!("session{version}"));
        let (s, v) = (sess.clone(), version.to_string());
        let first = blocking(move || connect("127.0.0.2", port, &v, &s, false))
            .await
            .unwrap();
        assert_eq!(first, "New", "{version}");
        let (s, v) = (sess.clone(), version.to_string());
        let on_b = blocking(move || connect("127.0.0.3", port, &v, &s, true))
            .await
            .unwrap();
        assert_eq!(on_b, "Reused", "{version}: node b opens node a's ticket");
        let (s, v) = (sess.clone(), version.to_string());
        let on_c = blocking(move || connect("127.0.0.4", port, &v, &s, true))
            .await
            .unwrap();
        assert_eq!(on_c, "New", "{version}: another secret, a full handshake");
    }
}

#[tokio::test]
async fn keys_rotate_and_tickets_can_be_turned_off() {
    let pki = TestPki::new();
    let port = free_port();
    let _gw = node(
        &pki,
        "127.0.0.5",
        port,
        &format!(", session_tickets: {{ secret: \"{SECRET}\", rotate: 1s }}"),
    )
    .await;
    let sess = pki.dir.path().join("rotating");
    let s = sess.clone();
    assert_eq!(
        blocking(move || connect("127.0.0.5", port, "-tls1_3", &s, false))
            .await
            .unwrap(),
        "New"
    );
    // Two periods later neither the current key nor its predecessor issued the ticket.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let s = sess.clone();
    assert_eq!(
        blocking(move || connect("127.0.0.5", port, "-tls1_3", &s, true))
            .await
            .unwrap(),
        "New",
        "a ticket of an old key is refused"
    );

    // Off: no ticket is sent (TLS 1.2 shows it in the handshake); a ticket-issuing node does.
    let off_port = free_port();
    let _off = node(&pki, "127.0.0.6", off_port, ", session_tickets: { enabled: false }").await;
    let s = pki.dir.path().join("off");
    let off = blocking(move || session("127.0.0.6", off_port, "-tls1_2", &s, false))
        .await
        .unwrap();
    assert!(
        off.contains("New, TLSv1.2") && !off.contains("TLS session ticket lifetime hint"),
        "{off}"
    );
    let s = pki.dir.path().join("on");
    let on = blocking(move || session("127.0.0.5", port, "-tls1_2", &s, false))
        .await
        .unwrap();
    assert!(on.contains("TLS session ticket lifetime hint"), "{on}");
}
