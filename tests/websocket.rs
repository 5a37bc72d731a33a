//! WebSocket through the gateway with a real client and server (tokio-tungstenite): frames
//! both ways, many sockets at once, close frames, the route's idle timeout, a reload that
//! leaves open sockets alone, and authentication of the handshake.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// An echo WebSocket server: every text or binary frame comes back; a close is answered.
async fn echo_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    // tungstenite answers a close frame itself (flushed on the next poll,
                    // after which the stream ends); data frames are echoed.
                    let echo = matches!(msg, Message::Text(_) | Message::Binary(_));
                    if echo && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

async fn gateway(echo: SocketAddr, route_extra: &str, top: &str) -> Gateway {
    Gateway::start(&format!(
        "{top}upstreams: {{ ws: {{ targets: [\"{echo}\"] }} }}\nroutes: [{{ name: ws, prefix: /ws, upstream: ws{route_extra} }}]\n"
    ))
    .await
}

async fn connect(
    gw: &Gateway,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (ws, resp) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws/chat", gw.port))
        .await
        .expect("handshake");
    assert_eq!(resp.status(), 101);
    ws
}

#[tokio::test]
async fn frames_travel_both_ways_and_close_frames_pass_through() {
    let (echo, task) = echo_server().await;
    let gw = gateway(echo, "", "").await;
    let mut ws = connect(&gw).await;
    for i in 0..20 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(format!("hello {i}")));
    }
    let blob = vec![7u8; 200_000];
    ws.send(Message::binary(blob.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(blob));

    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    match ws.next().await {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::Away);
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("expected the echoed close frame, got {other:?}"),
    }
    task.abort();
}

#[tokio::test]
async fn many_sockets_at_once() {
    let (echo, task) = echo_server().await;
    let gw = gateway(echo, "", "").await;
    let mut sockets = Vec::new();
    for _ in 0..100 {
        sockets.push(connect(&gw).await);
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        ws.send(Message::text(format!("socket {i}"))).await.unwrap();
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(format!("socket {i}")));
    }
    task.abort();
}

#[tokio::test]
async fn an_idle_socket_is_closed_after_the_route_idle_timeout() {
    let (echo, task) = echo_server().await;
    let gw = gateway(echo, ", websocket_idle_timeout: 700ms", "").await;
    let mut ws = connect(&gw).await;
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ping"));
    let idle_from = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("closed by the gateway");
    let idle = idle_from.elapsed();
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    assert!(
        idle >= Duration::from_millis(600) && idle < Duration::from_secs(5),
        "closed after {idle:?}"
    );
    task.abort();
}

#[tokio::test]
async fn a_reload_leaves_open_sockets_alone() {
    let (echo, task) = echo_server().await;
    let gw = gateway(echo, "", "").await;
    let mut ws = connect(&gw).await;
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));
    gw.write_config(&format!(
        "upstreams: {{ ws: {{ targets: [\"{echo}\"] }} }}\nroutes: [{{ name: ws, prefix: /ws, upstream: ws }}, {{ name: other, path: /other, upstream: ws }}]\n"
    ));
    gw.signal("HUP");
    eventually(Duration::from_secs(5), "reloaded", || async {
        gw.health().await["config_generation"] == 2
    })
    .await;
    for i in 0..5 {
        ws.send(Message::text(format!("after {i}"))).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(format!("after {i}")));
    }
    task.abort();
}

#[tokio::test]
async fn the_handshake_is_authenticated_and_rate_limited() {
    let (echo, task) = echo_server().await;
    let hash = {
        let out = std::process::Command::new(BIN)
            .args(["hash-key", "ws-key"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let gw = gateway(
        echo,
        ", auth: api_key, rate_limit: { requests: 2, per: 1m, key: api_key }",
        &format!("auth: {{ api_keys: {{ keys: [{{ consumer: ws-client, sha256: \"{hash}\" }}] }} }}\n"),
    )
    .await;
    let url = format!("ws://127.0.0.1:{}/ws/chat", gw.port);
    let err = tokio_tungstenite::connect_async(url.as_str()).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    let request = |key: &str| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut().insert("x-api-key", key.parse().unwrap());
        req
    };
    for _ in 0..2 {
        let (mut ws, _) = tokio_tungstenite::connect_async(request("ws-key"))
            .await
            .expect("authenticated handshake");
        ws.send(Message::text("hi")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
    }
    let err = tokio_tungstenite::connect_async(request("ws-key")).await.unwrap_err();
    assert!(err.to_string().contains("429"), "{err}");
    task.abort();
}

/// A handshake is a GET, but never a cache lookup: on a caching route concurrent
/// handshakes neither wait on one another nor get a stored answer.
#[tokio::test]
async fn sockets_on_a_caching_route_bypass_the_cache() {
    let (echo, task) = echo_server().await;
    let gw = gateway(echo, ", cache: true", "").await;
    let mut sockets = futures_util::future::join_all((0..3).map(|_| connect(&gw))).await;
    for (i, ws) in sockets.iter_mut().enumerate() {
        ws.send(Message::text(format!("cached route {i}"))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("cached route {i}"))
        );
    }
    let mut again = connect(&gw).await;
    again.send(Message::text("again")).await.unwrap();
    assert_eq!(again.next().await.unwrap().unwrap(), Message::text("again"));
    task.abort();
}
