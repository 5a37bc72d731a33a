//! What clients do wrong at the edge is routine (#14): HTTP/2 streams reset by the client,
//! h2 connections that open with garbage, TLS handshakes abandoned half-way. None of them
//! is an ERROR line; each is counted in `gateway_downstream_errors_total{kind}`.

mod common;

use common::raw::{RawClient, ScriptedUpstream, Then};
use common::*;
use std::time::Duration;

fn error_lines(gw: &Gateway) -> Vec<String> {
    gw.logs()
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn client_resets_and_broken_handshakes_are_counted_not_logged_as_errors() {
    let silent = ScriptedUpstream::start(b"", Then::Hang).await;
    let pki = TestPki::new();
    let (cert, key) = pki.leaf("gw", "localhost", 0, 10);
    let tls_port = free_port();
    let gw = Gateway::start(&format!(
        "h2c: true\ntls: {{ listen: [\"127.0.0.1:{tls_port}\"], certs: [{{ cert: \"{}\", key: \"{}\" }}] }}\nupstreams: {{ u: {{ targets: [\"{}\"], retries: 0 }} }}\nroutes: [{{ prefix: /, upstream: u, timeout: 10s }}]\n",
        cert.display(),
        key.display(),
        silent.addr
    ))
    .await;

    // h2 streams the client gives up on (a cancelled call): RST_STREAM(CANCEL).
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    for _ in 0..3 {
        let err = h2.get(gw.url("/slow")).send().await.expect_err("the client times out");
        assert!(err.is_timeout(), "{err}");
    }
    eventually(Duration::from_secs(5), "three h2 resets counted", || async {
        gw.downstream_errors("h2_reset").await == 3
    })
    .await;

    // An h2c connection that sends the preface, then garbage: closed (Pingora notes it at
    // debug level itself).
    let mut c = RawClient::connect(gw.port).await;
    c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nthis is not a SETTINGS frame at all")
        .await;
    assert!(c.closed_within(Duration::from_secs(5)).await);

    // A TLS client that negotiates h2 by ALPN, then sends no HTTP/2 preface.
    let ca = pki.ca_path();
    let garbage_h2 = tokio::task::spawn_blocking(move || {
        let mut connector = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
        connector.set_ca_file(&ca).unwrap();
        connector.set_alpn_protos(b"\x02h2").unwrap();
        let tcp = std::net::TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut tls = connector.build().connect("localhost", tcp).unwrap();
        assert_eq!(tls.ssl().selected_alpn_protocol(), Some(&b"h2"[..]));
        use std::io::{Read, Write};
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest);
    });
    garbage_h2.await.unwrap();
    eventually(Duration::from_secs(5), "the broken h2 handshake counted", || async {
        gw.downstream_errors("h2_protocol").await == 1
    })
    .await;

    // A TLS handshake that is not one (a plain HTTP request on the TLS port).
    let mut c = RawClient::connect(tls_port).await;
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(c.closed_within(Duration::from_secs(5)).await);
    eventually(Duration::from_secs(5), "the failed TLS handshake counted", || async {
        gw.downstream_errors("tls_handshake").await == 1
    })
    .await;

    assert_eq!(
        error_lines(&gw),
        Vec::<String>::new(),
        "no ERROR line for what clients did"
    );
}
