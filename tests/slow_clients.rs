//! Slow and silent clients (#14): a head that trickles in is cut at
//! `client_header_timeout` with a 408 and does not hold up anyone else; silent and idle
//! connections are closed without an answer.

mod common;

use common::raw::{RawClient, RawUpstream};
use common::*;
use std::time::{Duration, Instant};

async fn gateway(up: &RawUpstream) -> Gateway {
    Gateway::start(&format!(
        "client_header_timeout: 1s\nclient_keepalive_timeout: 1s\nupstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
        up.addr
    ))
    .await
}

#[tokio::test]
async fn slowloris_clients_are_cut_at_the_header_timeout_and_block_nobody() {
    let up = RawUpstream::start().await;
    let gw = gateway(&up).await;
    const HEAD: &[u8] = b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    // 30 clients sending their head one byte every 100 ms (it would take 8 s), on a
    // gateway with one worker thread.
    let started = Instant::now();
    let slow = (0..30).map(|_| {
        let port = gw.port;
        tokio::spawn(async move {
            let mut c = RawClient::connect(port).await;
            for byte in HEAD {
                c.send_lossy(&[*byte]).await;
                if let Some(r) = c.response_within(Duration::from_millis(100), false).await {
                    return Some((r, c.closed_within(Duration::from_secs(5)).await));
                }
            }
            None
        })
    });
    let slow: Vec<_> = slow.collect();
    // Meanwhile the gateway answers others at once.
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(gw.get("/fast").await.status(), 200);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "a normal request took {:?}",
            t.elapsed()
        );
    }
    for task in slow {
        let (r, closed) = task
            .await
            .unwrap()
            .expect("the slow client got an answer before its head was complete");
        assert_eq!(r.status, 408);
        assert_eq!(r.json()["error"], "request header not received in time");
        assert!(closed, "closed after the 408");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "cut after {took:?}, the timeout is 1s");
    assert!(!up.received_text().contains("/slow"), "{}", up.received_text());
    assert_eq!(gw.downstream_errors("header_timeout").await, 30);
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed_without_an_answer() {
    let up = RawUpstream::start().await;
    let gw = gateway(&up).await;
    // Connects and says nothing: closed after the header timeout, no 408 (nothing asked).
    let started = Instant::now();
    let mut silent = RawClient::connect(gw.port).await;
    assert!(silent.closed_within(Duration::from_secs(5)).await);
    assert!(
        silent.unread().is_empty(),
        "{:?}",
        String::from_utf8_lossy(silent.unread())
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // A keep-alive connection idle past client_keepalive_timeout is closed, quietly.
    let mut c = RawClient::connect(gw.port).await;
    c.send(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(c.response().await.status, 200);
    let idle = Instant::now();
    assert!(c.closed_within(Duration::from_secs(5)).await);
    assert!(idle.elapsed() >= Duration::from_millis(900), "{:?}", idle.elapsed());
    assert!(c.unread().is_empty());

    // A keep-alive connection used within the timeout stays usable.
    let mut c = RawClient::connect(gw.port).await;
    for _ in 0..3 {
        c.send(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(c.response().await.status, 200);
        // Idle for less than the keep-alive timeout: that is what is being tested.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

#[tokio::test]
async fn a_head_left_unfinished_gets_408_and_a_client_that_leaves_is_counted() {
    let up = RawUpstream::start().await;
    let gw = gateway(&up).await;
    let mut c = RawClient::connect(gw.port).await;
    c.send(b"GET /half HTTP/1.1\r\nHost: x\r\n").await;
    let r = c.response_within(Duration::from_secs(5), false).await.expect("a 408");
    assert_eq!(r.status, 408);
    assert!(c.closed_within(Duration::from_secs(5)).await);

    let mut gone = RawClient::connect(gw.port).await;
    gone.send(b"GET /gone HTTP/1.1\r\nHo").await;
    drop(gone);
    eventually(Duration::from_secs(5), "the cut head counted", || async {
        gw.downstream_errors("incomplete_head").await == 1
    })
    .await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_on_an_h2c_listener_too() {
    let up = RawUpstream::start().await;
    let gw = Gateway::start(&format!(
        "h2c: true\nclient_keepalive_timeout: 1s\nupstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
        up.addr
    ))
    .await;
    // Deciding between h2c and HTTP/1.1 needs the client's first bytes: not for ever.
    let mut silent = RawClient::connect(gw.port).await;
    assert!(silent.closed_within(Duration::from_secs(5)).await);
    let mut c = RawClient::connect(gw.port).await;
    c.send(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(c.response().await.status, 200, "HTTP/1.1 still served beside h2c");
}
