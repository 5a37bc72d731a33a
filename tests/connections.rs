//! What a held client connection costs, that the HTTP/1.1 framing still holds with the
//! default of no user-space read buffer on the plain listener (`read_buffer`, #8), and how
//! many idle upstream connections are kept for reuse (`upstream_keepalive_pool`).

mod common;

use common::*;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections held open at once (well under the usual 1024 open-files limit, since the
/// test process holds the client ends and the origin's).
const HELD: usize = 300;

/// Reads one response with a Content-Length body; returns (status line, body).
async fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> (String, Vec<u8>) {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("a Content-Length");
            while pending.len() < end + 4 + length {
                read_more(stream, pending).await;
            }
            let body = pending[end + 4..end + 4 + length].to_vec();
            pending.drain(..end + 4 + length);
            return (head.lines().next().unwrap_or_default().to_string(), body);
        }
        read_more(stream, pending).await;
    }
}

async fn read_more(stream: &mut TcpStream, pending: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).await.expect("read");
    assert!(
        n > 0,
        "connection closed mid-response; got so far: {:?}",
        String::from_utf8_lossy(pending)
    );
    pending.extend_from_slice(&buf[..n]);
}

/// Opens `HELD` connections, one request each (so each has been through the whole HTTP
/// path), and returns them still open with the RSS growth per connection in KiB.
async fn kib_per_held_connection(gw: &Gateway) -> (Vec<TcpStream>, u64) {
    // Warm up the allocator and the upstream pool first, so that they are not counted.
    let (mut warm, _) = open_with_one_request(gw, 20).await;
    warm.clear();
    let before = gw.rss_kib();
    let (held, _) = open_with_one_request(gw, HELD).await;
    let after = gw.rss_kib();
    (held, after.saturating_sub(before) / HELD as u64)
}

async fn open_with_one_request(gw: &Gateway, n: usize) -> (Vec<TcpStream>, usize) {
    let mut held = Vec::with_capacity(n);
    let mut ok = 0;
    for _ in 0..n {
        let mut s = TcpStream::connect(("127.0.0.1", gw.port)).await.expect("connect");
        s.write_all(b"GET /held HTTP/1.1\r\nHost: gw\r\n\r\n")
            .await
            .expect("write");
        let (status, _) = read_response(&mut s, &mut Vec::new()).await;
        ok += usize::from(status.contains(" 200 "));
        held.push(s);
    }
    assert_eq!(ok, n, "every request answered 200");
    (held, ok)
}

#[tokio::test]
async fn a_held_connection_costs_well_under_pingoras_64_kib_read_buffer() {
    let up = MockUpstream::start("a").await;
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;
    let (_held, kib) = kib_per_held_connection(&gw).await;
    // Measured ≈ 20 KiB (tokio task, HTTP session, 4 KiB header buffer, socket state); with
    // Pingora's default 64 KiB read buffer it was over 64.
    assert!(kib < 48, "each held connection grew RSS by {kib} KiB");

    // The knob is applied: the same with `read_buffer: 64KiB` costs the buffer on top.
    let big = Gateway::start(&format!("read_buffer: 64KiB\n{}", simple_config(&[up.addr()]))).await;
    let (_held_big, kib_big) = kib_per_held_connection(&big).await;
    eprintln!("RSS per held connection: {kib} KiB; with read_buffer 64KiB: {kib_big} KiB");
    assert!(
        kib_big >= kib + 48,
        "read_buffer: 64KiB should add ≈ 64 KiB per connection: {kib_big} KiB vs {kib} KiB"
    );
}

#[tokio::test]
async fn pipelined_requests_and_split_headers_are_framed_without_a_read_buffer() {
    let up = MockUpstream::start("a").await;
    up.set_body("pong");
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).await.expect("connect");
    // Three requests in one write: the parser must keep the bytes after the first.
    s.write_all(
        b"GET /1 HTTP/1.1\r\nHost: gw\r\n\r\nGET /2 HTTP/1.1\r\nHost: gw\r\n\r\nGET /3 HTTP/1.1\r\nHost: gw\r\n\r\n",
    )
    .await
    .expect("write");
    let mut pending = Vec::new();
    for _ in 0..3 {
        let (status, body) = read_response(&mut s, &mut pending).await;
        assert!(status.contains(" 200 "), "{status}");
        assert_eq!(body, b"pong");
    }
    // A request whose header arrives in small pieces, then a body split from its header.
    for piece in [
        &b"POST /4 HTTP/1.1\r\nHo"[..],
        b"st: gw\r\nContent-Le",
        b"ngth: 5\r\n\r\n",
    ] {
        s.write_all(piece).await.expect("write");
        s.flush().await.expect("flush");
        // Not a synchronisation: a pause so that each piece leaves as its own segment.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    s.write_all(b"hello").await.expect("write body");
    let (status, body) = read_response(&mut s, &mut pending).await;
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, b"pong");
    assert_eq!(up.hits(), 4);
    assert_eq!(up.last().body_len, 5, "the split body reached the origin whole");
}

/// Sends `n` requests at once (each on its own client connection) and waits for all of
/// them; every one must be answered 200.
async fn wave(gw: &Gateway, n: usize) {
    let statuses = futures::future::join_all((0..n).map(|i| async move {
        let mut s = TcpStream::connect(("127.0.0.1", gw.port)).await.expect("connect");
        let request = format!("GET /wave/{i} HTTP/1.1\r\nHost: gw\r\n\r\n");
        s.write_all(request.as_bytes()).await.expect("write");
        read_response(&mut s, &mut Vec::new()).await.0
    }))
    .await;
    for status in statuses {
        assert!(status.contains(" 200 "), "{status}");
    }
}

#[tokio::test]
async fn the_upstream_keepalive_pool_bounds_the_idle_upstream_connections_kept() {
    let up = MockUpstream::start("a").await;
    // Long enough that the requests of a wave overlap: each needs its own upstream connection.
    up.set_delay(std::time::Duration::from_millis(300));
    let opened_by = |before: usize| up.connections() - before;

    // The default keeps all six: the second wave reuses them.
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;
    let before = up.connections();
    wave(&gw, 6).await;
    assert_eq!(
        opened_by(before),
        6,
        "six overlapping requests, six upstream connections"
    );
    wave(&gw, 6).await;
    assert_eq!(opened_by(before), 6, "the second wave reused the six idle connections");

    // A pool of 2 (per thread; `threads: 1` here) keeps two: the second wave opens four more.
    let small = Gateway::start(&format!("upstream_keepalive_pool: 2\n{}", simple_config(&[up.addr()]))).await;
    let before = up.connections();
    wave(&small, 6).await;
    wave(&small, 6).await;
    assert!(
        opened_by(before) >= 10,
        "with a pool of 2, at most 2 of 6 connections are reused: {} opened for 12 requests",
        opened_by(before)
    );
}

#[tokio::test]
async fn without_work_stealing_the_gateway_serves_on_its_per_thread_runtimes() {
    let up = MockUpstream::start("a").await;
    up.set_delay(std::time::Duration::from_millis(50));
    let gw = Gateway::start(&format!("work_stealing: false\n{}", simple_config(&[up.addr()]))).await;
    wave(&gw, 8).await;
    assert_eq!(up.hits(), 8);
    // A reload may not switch the runtime: it is built once, at start.
    gw.write_config(&format!("work_stealing: true\n{}", simple_config(&[up.addr()])));
    gw.signal("HUP");
    eventually(std::time::Duration::from_secs(5), "the reload refused", || async {
        gw.logs().contains("work_stealing: cannot change on reload")
    })
    .await;
    assert_eq!(gw.get("/after").await.status(), 200, "still serving the running config");
}

/// An upstream that answers one request per connection with a keep-alive `200` after
/// `delay`, then, if `close_after` is some, closes its sending side that long after (once
/// the gateway has put the connection in its pool). `closed` gets the time the gateway
/// closed each connection (the read after the answer ended).
struct OneAnswerUpstream {
    addr: std::net::SocketAddr,
    closed: tokio::sync::mpsc::UnboundedReceiver<std::time::Instant>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Connections whose sending side the upstream has closed.
    shut: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl OneAnswerUpstream {
    async fn start(delay: Duration, close_after: Option<Duration>) -> OneAnswerUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
        let connections = std::sync::Arc::new(AtomicUsize::new(0));
        let shut = std::sync::Arc::new(AtomicUsize::new(0));
        let (count, shut_count) = (connections.clone(), shut.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                count.fetch_add(1, SeqCst);
                let (closed_tx, shut_count) = (closed_tx.clone(), shut_count.clone());
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk).await {
                            Ok(n) if n > 0 => seen.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    tokio::time::sleep(delay).await;
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if conn.write_all(answer).await.is_err() {
                        return;
                    }
                    if let Some(after) = close_after {
                        tokio::time::sleep(after).await;
                        let _ = conn.shutdown().await;
                        shut_count.fetch_add(1, SeqCst);
                    }
                    // Nothing more is sent on an idle connection: the next read ends when
                    // the gateway closes it.
                    while matches!(conn.read(&mut chunk).await, Ok(n) if n > 0) {}
                    let _ = closed_tx.send(Instant::now());
                });
            }
        });
        OneAnswerUpstream {
            addr,
            closed,
            connections,
            shut,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(SeqCst)
    }

    /// When the gateway next closes a connection to this upstream.
    async fn next_close(&mut self, within: Duration, what: &str) -> Instant {
        tokio::time::timeout(within, self.closed.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: still open after {within:?}"))
            .expect("the upstream stopped")
    }
}

#[tokio::test]
async fn an_idle_upstream_connection_is_closed_at_the_pools_keepalive_timeout() {
    let mut up = OneAnswerUpstream::start(Duration::ZERO, None).await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  u:\n    targets: [\"{}\"]\n    keepalive_timeout: 1s\nroutes:\n  - prefix: /\n    upstream: u\n",
        up.addr
    ))
    .await;
    assert_eq!(gw.get("/first").await.status(), 200);
    let answered = Instant::now();
    let idle = up
        .next_close(
            Duration::from_secs(6),
            "an idle connection with a 1 s keepalive_timeout",
        )
        .await
        - answered;
    // Kept for its timeout, then closed within the pool's check interval (1 s) of it.
    assert!(
        idle >= Duration::from_millis(900) && idle <= Duration::from_millis(3500),
        "closed after {idle:?} idle"
    );
    assert_eq!(gw.get("/second").await.status(), 200);
    assert_eq!(up.connections(), 2, "a new connection");
}

/// How long the upstream of the tests below keeps an answered connection open before
/// closing it: long enough that the gateway has pooled it.
const CLOSE_AFTER: Duration = Duration::from_millis(300);

#[tokio::test]
async fn an_idle_connection_the_upstream_closes_is_closed_and_never_reused() {
    let mut up = OneAnswerUpstream::start(Duration::ZERO, Some(CLOSE_AFTER)).await;
    // The default keepalive_timeout (far longer than this test) would keep it otherwise.
    let gw = Gateway::start(&simple_config(&[up.addr])).await;
    assert_eq!(gw.get("/first").await.status(), 200);
    let answered = Instant::now();
    let closed = up
        .next_close(Duration::from_secs(5), "an idle connection the upstream closed")
        .await;
    // The upstream closes 300 ms after answering; the pool checks once a second.
    assert!(
        closed - answered <= Duration::from_millis(2500),
        "closed after {:?}",
        closed - answered
    );
    assert_eq!(gw.get("/second").await.status(), 200, "no 502 from a dead connection");
    assert_eq!(up.connections(), 2);
}

#[tokio::test]
async fn a_request_skips_idle_connections_the_upstream_closed_for_a_new_one() {
    // Four idle connections, all closed by the upstream while idle: a request may take them
    // before the pool's own check does. Each is tested when taken, and skipped. Answers
    // overlap (300 ms each), so four requests at once open four connections.
    let mut up = OneAnswerUpstream::start(Duration::from_millis(300), Some(CLOSE_AFTER)).await;
    let gw = Gateway::start(&simple_config(&[up.addr])).await;
    let paths: Vec<String> = (0..4).map(|i| format!("/first/{i}")).collect();
    let first = futures::future::join_all(paths.iter().map(|path| gw.get(path))).await;
    let first: Vec<u16> = first.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(first, [200; 4]);
    assert_eq!(up.connections(), 4);
    // (This upstream answers one request per connection: each request comes once the
    // upstream has closed every connection the gateway holds.)
    for shut in 4..7 {
        eventually(
            Duration::from_secs(5),
            "the upstream closed its connections",
            || async { up.shut.load(SeqCst) == shut },
        )
        .await;
        assert_eq!(
            gw.get("/again").await.status(),
            200,
            "no 502 or 504 from a dead connection"
        );
    }
    assert_eq!(up.connections(), 7, "one new connection per request");
    // And the gateway closed every connection the upstream closed.
    for _ in 0..7 {
        up.next_close(Duration::from_secs(5), "a connection the upstream closed")
            .await;
    }
}

/// Requests on one client connection, each reusing the one idle upstream connection, while
/// `strace` counts the gateway's getpeername calls. Pingora asked the kernel for the peer
/// of an idle upstream connection on every reuse, a syscall per request (≈ 0.85 µs here);
/// the patched pool asks once per connection (vendor/README.md).
#[tokio::test]
async fn a_reused_upstream_connection_is_not_asked_for_its_peer_on_every_request() {
    require_tool("strace", "strace");
    const REQUESTS: usize = 40;
    let up = MockUpstream::start("a").await;
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;
    let http = client();
    let get = || async {
        let resp = http.get(gw.url("/")).send().await.expect("request");
        assert_eq!(resp.status(), 200);
        drain(resp).await;
    };
    get().await; // the upstream connection is opened and goes idle

    let dir = tempfile::tempdir().expect("tempdir");
    let (trace, said) = (dir.path().join("trace"), dir.path().join("strace.err"));
    let mut strace = std::process::Command::new("strace")
        .args(["-f", "-e", "trace=getpeername", "-o"])
        .arg(&trace)
        .args(["-p", &gw.pid().to_string()])
        .stderr(std::fs::File::create(&said).expect("strace stderr file"))
        .spawn()
        .expect("start strace");
    eventually(Duration::from_secs(10), "strace attached to the gateway", || async {
        std::fs::read_to_string(&said).is_ok_and(|s| s.contains("attached"))
    })
    .await;
    let opened = up.connections();
    for _ in 0..REQUESTS {
        get().await;
    }
    assert_eq!(
        up.connections(),
        opened,
        "every traced request reused the idle upstream connection"
    );
    let _ = std::process::Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    let _ = strace.wait();

    let calls = std::fs::read_to_string(&trace)
        .expect("strace output")
        .lines()
        .filter(|l| l.contains("getpeername("))
        .count();
    assert!(
        calls <= 2,
        "{calls} getpeername calls for {REQUESTS} requests on reused connections (Pingora's pool made one per request)"
    );
}
