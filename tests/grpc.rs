//! gRPC through the real gateway: a tonic server behind it and tonic clients in front,
//! over h2c and over TLS (ALPN h2). All four call kinds, metadata and trailers (binary ones
//! too), the client's deadline, every status the gateway makes up itself, ejection by the
//! standard gRPC health check, and gRPC-Web from a raw HTTP/1.1 client.

mod common;

use common::raw::{RawClient, ScriptedUpstream, Then};
use common::*;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::{BinaryMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};

pub mod echo {
    tonic::include_proto!("echo");
}

use echo::echo_client::EchoClient;
use echo::echo_server::{Echo, EchoServer};
use echo::Msg;

const SECRET: &str = "a-test-secret-that-is-32-bytes-long!";

/// The service: `Unary` echoes (with the caller's `authorization` and `x-request-id` in
/// the answer), sleeps on `sleep:<ms>`, fails with binary metadata on `fail`;
/// `ServerStream` sends `n` messages then, on `fail`, an error in the trailers;
/// `ClientStream` joins the texts; `Bidi` echoes each message.
#[derive(Default)]
struct EchoService;

type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

fn failure() -> Status {
    let mut status = Status::not_found("no such thing: é");
    status
        .metadata_mut()
        .insert_bin("x-detail-bin", BinaryMetadataValue::from_bytes(&[0, 1, 2, 255]));
    status
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, req: Request<Msg>) -> Result<Response<Msg>, Status> {
        let meta = req.metadata().clone();
        let msg = req.into_inner();
        if msg.text == "fail" {
            return Err(failure());
        }
        if let Some(ms) = msg.text.strip_prefix("sleep:") {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        }
        let seen = |k: &str| meta.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let mut resp = Response::new(Msg {
            text: format!("{}|{}|{}", msg.text, seen("authorization"), seen("x-request-id")),
            n: msg.n,
        });
        resp.metadata_mut()
            .insert("x-served-by", MetadataValue::from_static("echo"));
        Ok(resp)
    }

    type ServerStreamStream = MsgStream;

    async fn server_stream(&self, req: Request<Msg>) -> Result<Response<MsgStream>, Status> {
        let msg = req.into_inner();
        let fail = msg.text == "fail";
        let items: Vec<Result<Msg, Status>> = (0..msg.n)
            .map(|i| {
                Ok(Msg {
                    text: format!("{}#{i}", msg.text),
                    n: i,
                })
            })
            .chain(fail.then(failure).map(Err))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn client_stream(&self, req: Request<Streaming<Msg>>) -> Result<Response<Msg>, Status> {
        let mut stream = req.into_inner();
        let mut texts = Vec::new();
        while let Some(msg) = stream.next().await {
            texts.push(msg?.text);
        }
        Ok(Response::new(Msg {
            text: texts.join("+"),
            n: texts.len() as i32,
        }))
    }

    type BidiStream = MsgStream;

    async fn bidi(&self, req: Request<Streaming<Msg>>) -> Result<Response<MsgStream>, Status> {
        let stream = req.into_inner().map(|m| {
            m.map(|m| Msg {
                text: m.text.to_uppercase(),
                n: m.n * 2,
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The tonic server on a free port (h2c), with the standard health service.
struct Backend {
    addr: std::net::SocketAddr,
    health: tonic_health::server::HealthReporter,
    /// TCP connections accepted.
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    async fn start() -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<EchoServer<EchoService>>().await;
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = connections.clone();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(move |conn| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            conn
        });
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(EchoServer::new(EchoService))
                .serve_with_incoming(incoming)
                .await;
        });
        Backend {
            addr,
            health,
            connections,
            task,
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn config(backend: &Backend, extra_upstream: &str, tls: &str) -> String {
    format!(
        r#"
h2c: true
{tls}
auth: {{ jwt: {{ secret: "{SECRET}" }} }}
upstreams:
  echo:
    targets: ["{}"]
    h2: true
    {extra_upstream}
routes:
  - {{ name: unary, grpc: {{ service: echo.Echo, method: Unary }}, upstream: echo }}
  - {{ name: streams, grpc: {{ service: echo.Echo, method: ClientStream }}, upstream: echo }}
  - {{ name: bidi, grpc: {{ service: echo.Echo, method: Bidi }}, upstream: echo, grpc_web: true }}
  - name: server-stream
    grpc: {{ service: echo.Echo, method: ServerStream }}
    upstream: echo
    grpc_web: true
  - name: secure
    prefix: /secure.
    auth: jwt
    scopes: [echo:write]
    upstream: echo
  - name: limited
    prefix: /limited.
    rate_limit: {{ requests: 1, per: 1m, key: ip }}
    upstream: echo
"#,
        backend.addr
    )
}

async fn h2c_client(gw: &Gateway) -> EchoClient<Channel> {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{}", gw.port))
        .unwrap()
        .connect()
        .await
        .expect("h2c connect");
    EchoClient::new(channel)
}

/// A channel over TLS made by openssl (ALPN h2, the test CA): tonic's own TLS features
/// are left off, since enabling them changes how the etcd client connects in the binary.
async fn tls_channel(port: u16, ca: &std::path::Path) -> Channel {
    use openssl::ssl::{SslConnector, SslMethod};
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_ca_file(ca).unwrap();
    builder.set_alpn_protos(b"\x02h2").unwrap();
    let connector = builder.build();
    let connect = tower::service_fn(move |_: http::Uri| {
        let connector = connector.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            let ssl = connector.configure()?.into_ssl("localhost")?;
            let mut stream = tokio_openssl::SslStream::new(ssl, tcp)?;
            std::pin::Pin::new(&mut stream)
                .connect()
                .await
                .map_err(std::io::Error::other)?;
            assert_eq!(stream.ssl().selected_alpn_protocol(), Some(&b"h2"[..]), "ALPN chose h2");
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    Endpoint::from_static("http://localhost")
        .connect_with_connector(connect)
        .await
        .expect("TLS connect")
}

async fn all_call_kinds(client: &mut EchoClient<Channel>) {
    // Unary, with metadata both ways.
    let mut req = Request::new(Msg {
        text: "hi".into(),
        n: 7,
    });
    req.metadata_mut()
        .insert("x-request-id", MetadataValue::from_static("rid-9"));
    let resp = client.unary(req).await.expect("unary");
    assert_eq!(resp.metadata().get("x-served-by").unwrap(), "echo");
    assert_eq!(resp.get_ref().text, "hi||rid-9");
    assert_eq!(resp.get_ref().n, 7);

    // An upstream error keeps its code, message and binary metadata.
    let err = client
        .unary(Msg {
            text: "fail".into(),
            n: 0,
        })
        .await
        .expect_err("fails");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "no such thing: é");
    assert_eq!(
        err.metadata()
            .get_bin("x-detail-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        &[0, 1, 2, 255]
    );

    // Server streaming, ending with an error in the trailers after the messages.
    let mut stream = client
        .server_stream(Msg { text: "s".into(), n: 3 })
        .await
        .expect("server stream")
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = stream.next().await {
        got.push(m.expect("message").text);
    }
    assert_eq!(got, ["s#0", "s#1", "s#2"]);
    let mut stream = client
        .server_stream(Msg {
            text: "fail".into(),
            n: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.next().await.unwrap().unwrap().text, "fail#0");
    assert_eq!(stream.next().await.unwrap().unwrap().text, "fail#1");
    let err = stream.next().await.unwrap().expect_err("the trailers carry the error");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        err.metadata()
            .get_bin("x-detail-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        &[0, 1, 2, 255]
    );

    // Client streaming.
    let msgs = tokio_stream::iter(["a", "b", "c"].map(|t| Msg { text: t.into(), n: 0 }));
    let resp = client.client_stream(msgs).await.expect("client stream");
    assert_eq!(resp.get_ref().text, "a+b+c");
    assert_eq!(resp.get_ref().n, 3);

    // Bidirectional: each answer comes back before the next message is sent.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut answers = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("bidi")
        .into_inner();
    for (i, word) in ["ping", "pong", "done"].iter().enumerate() {
        tx.send(Msg {
            text: word.to_string(),
            n: i as i32,
        })
        .await
        .unwrap();
        let answer = answers.next().await.unwrap().unwrap();
        assert_eq!(
            (answer.text.as_str(), answer.n),
            (word.to_uppercase().as_str(), 2 * i as i32)
        );
    }
    drop(tx);
    assert!(
        answers.next().await.is_none(),
        "the call ends when the client's stream does"
    );
}

#[tokio::test]
async fn every_call_kind_with_its_trailers_over_h2c_and_tls() {
    let backend = Backend::start().await;
    let pki = TestPki::new();
    let (cert, key) = pki.leaf("gw", "localhost", 0, 10);
    let tls_port = free_port();
    let tls = format!(
        "tls: {{ listen: [\"127.0.0.1:{tls_port}\"], certs: [{{ cert: \"{}\", key: \"{}\" }}] }}",
        cert.display(),
        key.display()
    );
    let gw = Gateway::start(&config(&backend, "", &tls)).await;

    all_call_kinds(&mut h2c_client(&gw).await).await;

    let channel = tls_channel(tls_port, &pki.ca_path()).await;
    all_call_kinds(&mut EchoClient::new(channel)).await;

    gw.metrics_with(&[
        "gateway_grpc_requests_total{grpc_status=\"0\",route=\"unary\"} 2",
        "gateway_grpc_requests_total{grpc_status=\"5\",route=\"unary\"} 2",
        "gateway_grpc_requests_total{grpc_status=\"5\",route=\"server-stream\"} 2",
        "gateway_grpc_requests_total{grpc_status=\"0\",route=\"bidi\"} 2",
    ])
    .await;
}

#[tokio::test]
async fn concurrent_calls_share_upstream_h2_connections() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&config(&backend, "h2_streams: 50", "")).await;
    let client = h2c_client(&gw).await;
    // One call first: a connection the 20 concurrent ones can join (calls that start at
    // the same instant with no connection yet each open one).
    client.clone().unary(Msg::default()).await.expect("first call");
    let calls = (0..20).map(|i| {
        let mut client = client.clone();
        async move {
            client
                .unary(Msg {
                    text: "sleep:300".into(),
                    n: i,
                })
                .await
                .map(|r| r.into_inner().n)
        }
    });
    let started = Instant::now();
    let answers = futures_util::future::join_all(calls).await;
    assert!(answers.iter().all(|a| a.is_ok()), "{answers:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "the 20 calls overlapped");
    let opened = backend.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(opened <= 4, "20 concurrent calls over {opened} upstream connections");
}

/// A raw gRPC call over h2c: the status the gateway answers with, from the headers of a
/// trailers-only answer.
async fn raw_call(
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Option<String>, Duration) {
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap();
    let mut req = client
        .post(gw.url(path))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8, 0, 0, 0, 0]);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let started = Instant::now();
    let r = req.send().await.expect("an answer");
    let header = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    (
        r.status().as_u16(),
        header("grpc-status"),
        header("grpc-message"),
        started.elapsed(),
    )
}

#[tokio::test]
async fn the_gateway_answers_in_grpc_with_the_status_of_its_own_errors() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&config(&backend, "", "")).await;
    let mut client = h2c_client(&gw).await;

    // No route: a method nothing routes.
    let (http, grpc, message, _) = raw_call(&gw, "/echo.Other/Nope", &[]).await;
    assert_eq!(
        (http, grpc.as_deref()),
        (200, Some("12")),
        "UNIMPLEMENTED over HTTP 200"
    );
    assert_eq!(message.as_deref(), Some("no route matches this request"));

    // Auth: no token, then a token without the scope.
    let (_, grpc, _, _) = raw_call(&gw, "/secure.Svc/Get", &[]).await;
    assert_eq!(grpc.as_deref(), Some("16"), "UNAUTHENTICATED");
    let token = hs256(SECRET, &claims(serde_json::json!({ "scope": "echo:read" })));
    let (_, grpc, _, _) = raw_call(&gw, "/secure.Svc/Get", &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(grpc.as_deref(), Some("7"), "PERMISSION_DENIED");

    // Rate limit: the second call in the minute.
    let (_, first, _, _) = raw_call(&gw, "/limited.Svc/Get", &[]).await;
    assert_ne!(first.as_deref(), Some("8"));
    let (_, grpc, _, _) = raw_call(&gw, "/limited.Svc/Get", &[]).await;
    assert_eq!(grpc.as_deref(), Some("8"), "RESOURCE_EXHAUSTED");

    // The client's deadline, on a route whose upstream never answers (and so cannot
    // enforce the deadline itself, as the tonic server does).
    let hang = ScriptedUpstream::start(b"", Then::Hang).await;
    let gw2 = Gateway::start(&format!(
        "h2c: true\nupstreams: {{ hang: {{ targets: [\"{}\"], retries: 0 }}, dead: {{ targets: [\"127.0.0.1:{}\"], retries: 0 }} }}\nroutes: [{{ name: hang, grpc: {{ service: slow.Svc }}, upstream: hang, timeout: 30s }}, {{ name: dead, grpc: {{ service: dead.Svc }}, upstream: dead }}]\n",
        hang.addr,
        free_port()
    ))
    .await;
    let (http, grpc, message, took) = raw_call(&gw2, "/slow.Svc/Get", &[("grpc-timeout", "300m")]).await;
    assert_eq!(
        (http, grpc.as_deref()),
        (200, Some("4")),
        "DEADLINE_EXCEEDED: {message:?}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // An upstream that refuses connections: UNAVAILABLE, as tonic sees it too.
    assert!(client.unary(Msg::default()).await.is_ok());
    let (_, grpc, _, _) = raw_call(&gw2, "/dead.Svc/Get", &[]).await;
    assert_eq!(grpc.as_deref(), Some("14"), "UNAVAILABLE");
    let channel = Channel::from_shared(format!("http://127.0.0.1:{}", gw2.port))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut dead = EchoClient::new(channel);
    let err = dead.unary(Msg::default()).await.expect_err("no upstream");
    assert_eq!(
        err.code(),
        Code::Unimplemented,
        "no route for echo.Echo on this gateway: {err:?}"
    );
}

#[tokio::test]
async fn the_grpc_health_check_ejects_a_not_serving_target_and_brings_it_back() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&config(
        &backend,
        "health_check: { grpc: echo.Echo, interval: 200ms, timeout: 1s, healthy: 1, unhealthy: 1 }",
        "",
    ))
    .await;
    eventually(Duration::from_secs(5), "the target is healthy", || async {
        gw.healthy_targets("echo").await == 1
    })
    .await;
    let mut client = h2c_client(&gw).await;
    assert!(client.unary(Msg::default()).await.is_ok());

    backend.health.set_not_serving::<EchoServer<EchoService>>().await;
    eventually(Duration::from_secs(5), "NOT_SERVING ejects the target", || async {
        gw.healthy_targets("echo").await == 0
    })
    .await;
    let err = client.unary(Msg::default()).await.expect_err("no healthy target");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("no healthy target"), "{}", err.message());

    backend.health.set_serving::<EchoServer<EchoService>>().await;
    eventually(Duration::from_secs(5), "SERVING brings it back", || async {
        gw.healthy_targets("echo").await == 1
    })
    .await;
    assert!(client.unary(Msg::default()).await.is_ok());
}

#[tokio::test]
async fn grpc_web_from_a_raw_http1_client_reaches_the_grpc_upstream() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&config(&backend, "", "")).await;
    // Msg { text: "web", n: 2 } as a length-prefixed gRPC frame.
    let msg = b"\x0a\x03web\x10\x02";
    let mut frame = vec![0u8, 0, 0, 0, msg.len() as u8];
    frame.extend_from_slice(msg);
    let mut head = format!(
        "POST /echo.Echo/ServerStream HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        frame.len()
    )
    .into_bytes();
    head.extend_from_slice(&frame);
    let (status, headers, body) = exchange_chunked(gw.port, &head).await;
    assert_eq!(status, 200);
    let content_type = headers
        .iter()
        .find(|(n, _)| n == "content-type")
        .map(|(_, v)| v.as_str());
    assert!(
        content_type.unwrap_or("").starts_with("application/grpc-web"),
        "{headers:?}"
    );
    // Two data frames (web#0, web#1), then the trailer frame (flag 0x80) with grpc-status.
    let mut at = 0;
    let mut texts = Vec::new();
    let mut trailers = String::new();
    while at + 5 <= body.len() {
        let flag = body[at];
        let len = u32::from_be_bytes([body[at + 1], body[at + 2], body[at + 3], body[at + 4]]) as usize;
        let payload = &body[at + 5..at + 5 + len];
        if flag == 0x80 {
            trailers = String::from_utf8_lossy(payload).to_string();
        } else {
            // field 1 (text): 0x0a, length, bytes
            texts.push(String::from_utf8_lossy(&payload[2..2 + payload[1] as usize]).to_string());
        }
        at += 5 + len;
    }
    assert_eq!(texts, ["web#0", "web#1"]);
    assert!(trailers.to_ascii_lowercase().contains("grpc-status:0"), "{trailers:?}");

    // A route without grpc_web refuses gRPC-Web, in gRPC-Web.
    let mut head = format!(
        "POST /echo.Echo/Unary HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/grpc-web+proto\r\nContent-Length: {}\r\n\r\n",
        frame.len()
    )
    .into_bytes();
    head.extend_from_slice(&frame);
    let mut conn = RawClient::connect(gw.port).await;
    conn.send(&head).await;
    let resp = conn.response().await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("grpc-status"), Some("3"), "{:?}", resp.headers);
}

/// Sends `request` on a new connection that the server closes after answering, and reads
/// the answer: status, lowercased headers, and the body with any chunked framing removed.
async fn exchange_chunked(port: u16, request: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("the gateway closes the connection")
        .unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if !chunked {
        return (status, headers, rest.to_vec());
    }
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
    (status, headers, body)
}
