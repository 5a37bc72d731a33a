//! Request framing at the edge, byte for byte (#14): every head an upstream could read
//! differently is answered by gatehouse (JSON, security headers, `Connection: close`),
//! logged, counted and never forwarded; what is forwarded is re-serialized canonically.

mod common;

use common::raw::{RawClient, RawUpstream};
use common::*;
use std::time::Duration;

async fn gateway(up: &RawUpstream, top: &str) -> Gateway {
    Gateway::start(&format!(
        "{top}\nupstreams: {{ u: {{ targets: [\"{}\"], retries: 0 }} }}\nroutes:\n  - {{ prefix: /getbody, allow_get_body: true, upstream: u }}\n  - {{ prefix: /, upstream: u }}\n",
        up.addr
    ))
    .await
}

/// Sends `raw` on a new connection; the answer must be gatehouse's own JSON error with
/// `status` and `reason`, and the connection must then close.
async fn assert_refused(gw: &Gateway, raw: &[u8], status: u16, reason: &str) {
    let what = String::from_utf8_lossy(raw).into_owned();
    let mut c = RawClient::connect(gw.port).await;
    c.send_lossy(raw).await;
    let head_only = raw.starts_with(b"HEAD ");
    let r = c
        .response_within(Duration::from_secs(5), head_only)
        .await
        .unwrap_or_else(|| panic!("no answer to {what:?}"));
    assert_eq!(r.status, status, "{what:?}");
    assert_eq!(r.header("connection"), Some("close"), "{what:?}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{what:?}");
    assert!(r.header("server").is_none(), "not Pingora's own answer: {what:?}");
    assert!(r.header("x-request-id").is_some(), "{what:?}");
    if !head_only {
        let body = r.json();
        assert_eq!(body["error"], reason, "{what:?}");
        assert_eq!(body["status"], status, "{what:?}");
    }
    assert!(
        c.closed_within(Duration::from_secs(5)).await,
        "still open after {what:?}"
    );
}

/// (request, status, JSON error) for every kind of head that must not be forwarded.
const REFUSED: &[(&[u8], u16, &str)] = &[
    (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3,3\r\n\r\nabc",
        400,
        "invalid Content-Length",
    ),
    (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabc",
        400,
        "invalid Content-Length",
    ),
    (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
        "several Content-Length fields",
    ),
    (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
        400,
        "invalid Content-Length",
    ),
    (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        400,
        "both Transfer-Encoding and Content-Length",
    ),
    (
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "several Transfer-Encoding fields",
    ),
    (
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        400,
        "Transfer-Encoding does not end with chunked",
    ),
    (
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo, chunked\r\n\r\n0\r\n\r\n",
        400,
        "unknown transfer coding",
    ),
    (
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
        "only the chunked transfer coding is supported",
    ),
    (
        b"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "Transfer-Encoding in an HTTP/1.0 request",
    ),
    (
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer_Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
        400,
        "header field name resembles a framing field",
    ),
    (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent_Length: 3\r\n\r\nabc",
        400,
        "header field name resembles a framing field",
    ),
    (
        b"GET /a HTTP/1.1\r\nHost: x\r\nTransfer---Encoding: chunked\r\n\r\n",
        400,
        "header field name resembles a framing field",
    ),
    (
        b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n",
        400,
        "malformed header field name",
    ),
    (
        b"GET /a HTTP/1.1\r\nHost: x\r\nX(y): 1\r\n\r\n",
        400,
        "malformed header field name",
    ),
    (
        b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        400,
        "control character in a header field value",
    ),
    (
        b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
        400,
        "control character in a header field value",
    ),
    (
        b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
        400,
        "control character in a header field value",
    ),
    (
        b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n",
        400,
        "control character in a header field value",
    ),
    (
        b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n",
        400,
        "malformed header field name",
    ),
    (
        b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        "control character in the request target",
    ),
    (
        b"GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        "control character in the request target",
    ),
    (
        b"GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        "control character in the request target",
    ),
    (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed request line"),
    (b"GET /a HTTP/1.1\r\n\r\n", 400, "HTTP/1.1 request without Host"),
    (
        b"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        400,
        "several Host fields",
    ),
    (
        b"HEAD /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        400,
        "HEAD request with a body",
    ),
    (
        b"HEAD /getbody HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        400,
        "HEAD request with a body",
    ),
    (
        b"GET /a HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n",
        417,
        "only Expect: 100-continue is supported",
    ),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "HTTP version not supported"),
    (
        b"GET http://evil/a HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        "Host differs from the request target",
    ),
    (
        b"GET http://u@x/a HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        "invalid authority in the request target",
    ),
    (b"GET /a HTTP/1.1\r\nHost: user@x\r\n\r\n", 400, "invalid Host"),
    (b"GET /a HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host"),
    (b"GET a HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed request target"),
    (
        b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
        405,
        "CONNECT is not supported",
    ),
    (b"GARBAGE\r\n\r\n", 400, "malformed request line"),
    (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        400,
        "malformed request line",
    ),
];

/// A refused head is logged with its path, and its query only as a served request's is
/// (with `access_log_query`, credentials redacted): a client whose head is too large or
/// malformed may still carry a token in its target.
#[tokio::test]
async fn a_refused_heads_query_is_logged_like_a_served_ones() {
    const RAW: &[u8] = b"GET /a?access_token=SECRET-REFUSED&page=2 HTTP/1.1\r\nHost: a b\r\n\r\n";
    for (top, query) in [
        ("", None),
        ("access_log_query: true", Some("access_token=[redacted]&page=2")),
    ] {
        let up = RawUpstream::start().await;
        let gw = gateway(&up, top).await;
        assert_refused(&gw, RAW, 400, "invalid Host").await;
        let line = gw
            .access_line("the refusal in the access log", |l| l["rejected"] == "malformed")
            .await;
        assert_eq!(line["path"], "/a", "{top:?}");
        assert_eq!(line["query"].as_str(), query, "{top:?}");
        assert!(
            !gw.logs().contains("SECRET-REFUSED"),
            "{top:?}: the token leaked into the log"
        );
    }
}

#[tokio::test]
async fn ambiguous_or_malformed_heads_get_a_json_answer_and_a_closed_connection() {
    let up = RawUpstream::start().await;
    let gw = gateway(&up, "").await;
    for (raw, status, reason) in REFUSED {
        assert_refused(&gw, raw, *status, reason).await;
    }
    assert_eq!(up.received_text(), "", "nothing refused reached the upstream");

    // Every refusal is in the access log and counted.
    let refused = REFUSED.len();
    eventually(Duration::from_secs(5), "every refusal in the access log", || {
        let logged = gw.access_log().iter().filter(|l| l["rejected"] == "malformed").count();
        async move { logged == refused }
    })
    .await;
    let garbage = gw
        .access_log()
        .into_iter()
        .find(|l| l["method"] == "GARBAGE")
        .expect("the GARBAGE line");
    assert_eq!(garbage["status"], 400);
    assert_eq!(garbage["error"], "malformed request line");
    assert!(garbage["request_id"].as_str().is_some_and(|id| id.len() == 36));
    let nul = gw
        .access_log()
        .into_iter()
        .find(|l| l["path"] == "/a\\x00b")
        .expect("the NUL target, escaped in the log");
    assert_eq!(nul["status"], 400);
    assert_eq!(gw.downstream_errors("bad_request").await, refused as u64);
}

#[tokio::test]
async fn what_goes_upstream_is_framed_once_and_canonically() {
    let up = RawUpstream::start().await;
    let gw = gateway(&up, "").await;
    let mut c = RawClient::connect(gw.port).await;
    c.send(b"POST /chunked HTTP/1.1\r\nHost: x\r\ntransfer-encoding: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        .await;
    assert_eq!(c.response().await.status, 200);
    c.send(b"POST /length HTTP/1.1\r\nHost: x\r\nContent-Length: 003\r\n\r\nabc")
        .await;
    assert_eq!(c.response().await.status, 200);
    let seen = up.received_text().to_ascii_lowercase();
    let chunked = &seen[seen.find("post /chunked").unwrap()..seen.find("post /length").unwrap()];
    assert_eq!(chunked.matches("transfer-encoding:").count(), 1, "{chunked}");
    assert!(!chunked.contains("content-length"), "{chunked}");
    assert!(chunked.contains("3\r\nabc\r\n0\r\n\r\n"), "{chunked}");
    let length = &seen[seen.find("post /length").unwrap()..];
    assert_eq!(length.matches("content-length:").count(), 1, "{length}");
    assert!(!length.contains("transfer-encoding"), "{length}");
    assert!(length.ends_with("\r\n\r\nabc"), "{length}");
}

#[tokio::test]
async fn a_get_body_is_refused_unless_the_route_allows_it() {
    let up = RawUpstream::start().await;
    let gw = gateway(&up, "").await;
    assert_refused(
        &gw,
        b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        400,
        "GET request with a body",
    )
    .await;
    assert_refused(
        &gw,
        b"GET /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        400,
        "GET request with a body",
    )
    .await;
    assert_eq!(up.received_text(), "");
    let mut c = RawClient::connect(gw.port).await;
    c.send(b"GET /getbody/search HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{\"q\":\"a\"}")
        .await;
    assert_eq!(c.response().await.status, 200);
    assert!(
        up.received_text().ends_with("\r\n\r\n{\"q\":\"a\"}"),
        "{}",
        up.received_text()
    );
    // Content-Length: 0 is no body.
    c.send(b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(c.response().await.status, 200);
}

#[tokio::test]
async fn pipelined_heads_are_each_checked() {
    let up = RawUpstream::start().await;
    let gw = gateway(&up, "").await;
    let mut c = RawClient::connect(gw.port).await;
    c.send(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nContent-Length: 1,1\r\n\r\nz")
        .await;
    assert_eq!(c.response().await.status, 200);
    let second = c.response().await;
    assert_eq!(second.status, 400);
    assert_eq!(second.json()["error"], "invalid Content-Length");
    assert!(c.closed_within(Duration::from_secs(5)).await);
    let seen = up.received_text();
    assert!(seen.contains("GET /one") && !seen.contains("/two"), "{seen}");
}

#[tokio::test]
async fn oversized_heads_get_414_and_431_within_the_configured_limits() {
    let up = RawUpstream::start().await;
    let gw = gateway(&up, "max_request_line: 1KiB\nmax_header_size: 2KiB\nmax_headers: 10").await;
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(1100));
    assert_refused(&gw, long_line.as_bytes(), 414, "request line too long").await;
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(2100));
    assert_refused(&gw, big.as_bytes(), 431, "request header section too large").await;
    let many: String = (0..10).map(|i| format!("X-{i}: {i}\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    assert_refused(&gw, many.as_bytes(), 431, "too many request header fields").await;
    // Just under every limit passes.
    let fits = format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1000),
        "b".repeat(1900)
    );
    let mut c = RawClient::connect(gw.port).await;
    c.send(fits.as_bytes()).await;
    assert_eq!(c.response().await.status, 200);

    // The defaults: 8 KiB request line, like nginx.
    let default = gateway(&up, "").await;
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    assert_refused(&default, long_line.as_bytes(), 414, "request line too long").await;
}

#[tokio::test]
async fn over_h2_a_get_body_is_refused_too_unless_the_route_allows_it() {
    let up = RawUpstream::start().await;
    let gw = gateway(&up, "h2c: true").await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(gw.url("/a")).body("abc").send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "GET request with a body");
    assert_eq!(up.received_text(), "");
    let r = h2.get(gw.url("/getbody/q")).body("abc").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        h2.get(gw.url("/a")).send().await.unwrap().status(),
        200,
        "no body, no refusal"
    );
}
