//! A failing upstream gets a clear 502/503/504 JSON answer, never a hang.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_slow_upstream_is_cut_by_the_route_timeout_with_504() {
    let slow = MockUpstream::start("slow").await;
    slow.set_delay(Duration::from_secs(3));
    let gw = Gateway::start(&format!(
        "upstreams: {{ u: {{ targets: [\"{}\"], retries: 0 }} }}\nroutes:\n  - {{ prefix: /, upstream: u, timeout: 300ms }}\n",
        slow.addr()
    ))
    .await;
    let started = Instant::now();
    let r = gw.get("/slow").await;
    let took = started.elapsed();
    assert_eq!(r.status(), 504);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], 504);
    assert_eq!(body["error"], "the upstream did not answer in time");
}

#[tokio::test]
async fn a_connect_timeout_is_a_504() {
    // A listener whose accept queue is full drops further SYNs: connects hang until timeout.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await
        {
            fillers.push(c);
        }
    }
    let gw = Gateway::start(&format!(
        "upstreams: {{ u: {{ targets: [\"{addr}\"], retries: 0, connect_timeout: 300ms }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n"
    ))
    .await;
    let started = Instant::now();
    let r = gw.get("/").await;
    assert_eq!(r.status(), 504, "{:?}", r.text().await);
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(listener);
}

#[tokio::test]
async fn upstream_statuses_and_bodies_pass_through() {
    let up = MockUpstream::start("u").await;
    up.set_status(503);
    up.set_body("upstream says: down for maintenance");
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;
    let r = gw.get("/x").await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.text().await.unwrap(),
        "upstream says: down for maintenance",
        "the upstream's own body is relayed"
    );
}

/// An upstream that reads the request and closes the connection without answering.
async fn hang_up_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let _ = conn.shutdown().await;
        }
    });
    (addr, task)
}

#[tokio::test]
async fn an_upstream_that_hangs_up_is_a_502_and_idempotent_requests_retry_elsewhere() {
    let (bad, task) = hang_up_upstream().await;
    let good = MockUpstream::start("good").await;
    let gw = Gateway::start(&format!(
        "upstreams: {{ u: {{ targets: [\"{bad}\", \"{}\"], retries: 1 }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
        good.addr()
    ))
    .await;
    // GET is idempotent: a connection lost before any response byte is retried on `good`.
    let counts = distribution(&gw, "/", 20).await;
    assert_eq!(counts.get("good"), Some(&20));
    // POST is not: whichever request lands on `bad` fails with 502.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            client()
                .post(gw.url("/"))
                .body("x")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert!(statuses.contains(&502), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    task.abort();
}

#[tokio::test]
async fn a_client_that_hangs_up_is_not_retried_upstream() {
    let a = MockUpstream::start("a").await;
    let b = MockUpstream::start("b").await;
    a.set_delay(Duration::from_millis(800));
    b.set_delay(Duration::from_millis(800));
    let gw = Gateway::start(&format!(
        "upstreams: {{ u: {{ targets: [\"{}\", \"{}\"], retries: 3 }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
        a.addr(),
        b.addr()
    ))
    .await;
    let quick = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert!(
        quick.get(gw.url("/slow")).send().await.is_err(),
        "the client gives up first"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        a.hits() + b.hits(),
        1,
        "the request went upstream once, and was not retried"
    );
    assert!(
        !gw.logs().contains("\"level\":\"ERROR\""),
        "a client hang-up is not an error:\n{}",
        gw.logs()
    );
}
