//! What a client's connection looks like after the gateway answered for a failure (#14):
//! an answer that says `keep-alive` keeps the connection usable, one that cannot keep it
//! says `Connection: close`; a response already started is cut; an interim `100
//! Continue` never stands in for the final answer, in logs and metrics either.

mod common;

use common::raw::{RawClient, ScriptedUpstream, Then};
use common::*;
use std::time::Duration;

const SECRET: &str = "a-test-secret-that-is-32-bytes-long!";

async fn gateway(routes: &[(&str, std::net::SocketAddr)]) -> Gateway {
    let upstreams: String = routes
        .iter()
        .enumerate()
        .map(|(i, (_, addr))| format!("  u{i}: {{ targets: [\"{addr}\"], retries: 0 }}\n"))
        .collect();
    let routes: String = routes
        .iter()
        .enumerate()
        .map(|(i, (prefix, _))| format!("  - {{ prefix: {prefix}, upstream: u{i}, timeout: 500ms }}\n"))
        .collect();
    Gateway::start(&format!(
        "auth: {{ jwt: {{ secret: \"{SECRET}\" }} }}\nrate_limit: {{ requests: 1000, per: 1s }}\nupstreams:\n{upstreams}routes:\n{routes}"
    ))
    .await
}

const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n";

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

/// The gateway answers `path` itself with `status`, says keep-alive and serves the next
/// request on the same connection.
async fn answered_then_reused(gw: &Gateway, path: &str, status: u16) {
    let mut c = RawClient::connect(gw.port).await;
    c.send(&get(path)).await;
    let r = c.response().await;
    assert_eq!(r.status, status, "{path}");
    assert_eq!(r.header("connection"), Some("keep-alive"), "{path}");
    c.send(&get(path)).await;
    assert_eq!(
        c.response().await.status,
        status,
        "{path}: the same socket answers again"
    );
}

/// A failed upstream attempt for `path` answered with `status` and the JSON `error`,
/// twice on the same connection.
async fn failed_then_reused(gw: &Gateway, path: &str, status: u16, error: &str) {
    let mut c = RawClient::connect(gw.port).await;
    for attempt in ["first", "second"] {
        c.send(&get(path)).await;
        let r = c.response().await;
        assert_eq!(r.status, status, "{path}, {attempt} request");
        assert_eq!(r.header("connection"), Some("keep-alive"), "{path}");
        assert_eq!(r.json()["error"], error, "{path}");
    }
}

/// The gateway answers `path` with `status` JSON, says `close`, and closes.
async fn answered_then_closed(gw: &Gateway, request: &[u8], status: u16, error: &str) {
    let mut c = RawClient::connect(gw.port).await;
    c.send(request).await;
    let r = c.response().await;
    assert_eq!(r.status, status, "{error}");
    assert_eq!(r.header("connection"), Some("close"), "{error}");
    assert_eq!(r.json()["error"], error);
    assert!(
        c.closed_within(Duration::from_secs(3)).await,
        "{error}: closed as announced"
    );
}

#[tokio::test]
async fn answers_that_say_keep_alive_keep_the_connection_and_the_others_say_close() {
    let dead = free_port();
    let silent = ScriptedUpstream::start(b"", Then::Hang).await;
    let hangs_up = ScriptedUpstream::start(b"", Then::Close).await;
    let half = ScriptedUpstream::start(b"HTTP/1.1 200 OK\r\nContent-Le", Then::Close).await;
    let reset = ScriptedUpstream::start(b"", Then::Reset).await;
    let ok = ScriptedUpstream::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", Then::Again).await;
    let gw = gateway(&[
        ("/dead", format!("127.0.0.1:{dead}").parse().unwrap()),
        ("/silent", silent.addr),
        ("/hangs-up", hangs_up.addr),
        ("/half", half.addr),
        ("/reset", reset.addr),
        ("/ok", ok.addr),
    ])
    .await;

    // Decided by the gateway before any upstream: the connection stays usable.
    answered_then_reused(&gw, "/nowhere", 404).await;
    answered_then_reused(&gw, "/ok", 200).await;

    // A failed upstream attempt keeps the client connection, as nginx does: an outage
    // must not make every client reconnect (and redo its TLS handshake) per request.
    let refused = "the upstream could not be reached or failed";
    failed_then_reused(&gw, "/dead", 502, refused).await;
    failed_then_reused(&gw, "/silent", 504, "the upstream did not answer in time").await;
    failed_then_reused(&gw, "/hangs-up", 502, refused).await;
    failed_then_reused(&gw, "/half", 502, refused).await;
    failed_then_reused(&gw, "/reset", 502, refused).await;
    // The upstream connection that failed is not reused: each attempt opened its own.
    assert_eq!(half.connections(), 2);
    // But not when the request's body is still unread: its rest would be taken for the
    // next request.
    answered_then_closed(
        &gw,
        b"POST /dead HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        502,
        refused,
    )
    .await;
    // And the gateway itself is fine: the next client connection is served.
    let mut c = RawClient::connect(gw.port).await;
    c.send(GET).await;
    assert_eq!(c.response().await.status, 404);
}

/// A failed attempt keeps the connection, but not while the gateway drains before it stops:
/// then every answer, a 502 too, says `close` so that the client reconnects elsewhere.
#[tokio::test]
async fn while_draining_a_failed_attempts_answer_says_close() {
    let dead = free_port();
    let gw = Gateway::start(&format!(
        "drain_period: 5s\ngrace_period: 10s\nupstreams: {{ u: {{ targets: [\"127.0.0.1:{dead}\"], retries: 0 }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n"
    ))
    .await;
    let refused = "the upstream could not be reached or failed";
    failed_then_reused(&gw, "/dead", 502, refused).await;
    gw.signal("TERM");
    eventually(
        Duration::from_secs(5),
        "a 502 that says close, once draining",
        || async {
            let mut c = RawClient::connect(gw.port).await;
            c.send(&get("/dead")).await;
            let r = c.response().await;
            assert_eq!(r.status, 502);
            assert_eq!(r.json()["error"], refused);
            r.header("connection") == Some("close") && c.closed_within(Duration::from_secs(3)).await
        },
    )
    .await;
}

#[tokio::test]
async fn a_response_cut_by_the_upstream_is_cut_for_the_client_and_not_reused() {
    // Content-Length promises 100 bytes, 10 come, then the upstream closes / resets / stalls.
    const SHORT: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
    const BAD_CHUNK: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n";
    let closes = ScriptedUpstream::start(SHORT, Then::Close).await;
    let resets = ScriptedUpstream::start(SHORT, Then::Reset).await;
    let bad_chunk = ScriptedUpstream::start(BAD_CHUNK, Then::Hang).await;
    let gw = gateway(&[
        ("/closes", closes.addr),
        ("/resets", resets.addr),
        ("/chunk", bad_chunk.addr),
    ])
    .await;
    for path in ["/closes", "/resets", "/chunk"] {
        let mut c = RawClient::connect(gw.port).await;
        c.send(&get(path)).await;
        assert!(
            c.closed_within(Duration::from_secs(3)).await,
            "{path}: the client connection is cut"
        );
        let received = String::from_utf8_lossy(c.unread()).into_owned();
        assert!(received.starts_with("HTTP/1.1 200"), "{path}: {received}");
        // Never a complete response made of a cut one: not all 100 bytes, no last chunk.
        let body = &received[received.find("\r\n\r\n").unwrap() + 4..];
        assert!(body.len() < 100 && !body.ends_with("0\r\n\r\n"), "{path}: {body:?}");
    }
    // The broken upstream connection went back to no pool: the next request opens another.
    let mut c = RawClient::connect(gw.port).await;
    c.send(&get("/chunk")).await;
    let _ = c.closed_within(Duration::from_secs(3)).await;
    assert_eq!(bad_chunk.connections(), 2);
}

#[tokio::test]
async fn after_100_continue_the_client_still_gets_the_final_answer() {
    let continue_then_close = ScriptedUpstream::start(b"HTTP/1.1 100 Continue\r\n\r\n", Then::Close).await;
    let continue_then_hang = ScriptedUpstream::start(b"HTTP/1.1 100 Continue\r\n\r\n", Then::Hang).await;
    let continue_then_ok = ScriptedUpstream::start(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        Then::Hang,
    )
    .await;
    let gw = gateway(&[
        ("/close", continue_then_close.addr),
        ("/hang", continue_then_hang.addr),
        ("/ok", continue_then_ok.addr),
    ])
    .await;
    let upload = |path: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n").into_bytes()
    };
    for (path, status, error) in [
        ("/close", 502, "the upstream could not be reached or failed"),
        ("/hang", 504, "the upstream did not answer in time"),
    ] {
        let mut c = RawClient::connect(gw.port).await;
        c.send(&upload(path)).await;
        let interim = c.response().await;
        assert_eq!(interim.status, 100, "{path}");
        assert!(
            interim.header("x-request-id").is_none(),
            "interim responses pass undecorated"
        );
        c.send(b"hello").await;
        let r = c.response().await;
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.json()["error"], error, "{path}");
        assert!(c.closed_within(Duration::from_secs(3)).await);
    }
    let mut c = RawClient::connect(gw.port).await;
    c.send(&upload("/ok")).await;
    assert_eq!(c.response().await.status, 100);
    c.send(b"hello").await;
    let r = c.response().await;
    assert_eq!((r.status, r.body.as_slice()), (201, &b"ok"[..]));
    assert!(r.header("x-request-id").is_some());

    // The log and the metrics have the final statuses, never 100.
    eventually(Duration::from_secs(5), "three uploads in the access log", || {
        let n = gw.access_log().iter().filter(|l| l["method"] == "POST").count();
        async move { n == 3 }
    })
    .await;
    let statuses: Vec<u64> = gw
        .access_log()
        .iter()
        .filter(|l| l["method"] == "POST")
        .filter_map(|l| l["status"].as_u64())
        .collect();
    assert_eq!(statuses, vec![502, 504, 201]);
    let metrics = gw.metrics_text().await;
    assert!(
        !metrics.contains("status=\"1xx\"") && !metrics.contains("status=\"100\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("method=\"POST\",route=\"route-0\",status=\"502\"} 1"),
        "{metrics}"
    );
}
