//! HTTP/1.x client connections before Pingora: each request head is read under the
//! configured limits and timeouts and checked strictly ([`framing`]); a head that passes
//! goes to the proxy, one that does not gets gatehouse's own JSON answer and the
//! connection is closed.

pub mod framing;
mod head;
mod refuse;

use crate::drain::OpenConnections;
use crate::observe::metrics::Metrics;
use crate::proxy::Gateway;
use crate::snapshot::SharedSnapshot;
use async_trait::async_trait;
use bytes::BytesMut;
use head::Outcome;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use std::net::IpAddr;
use std::sync::Arc;

/// What an HTTP/2 client sends first on a cleartext connection (prior knowledge).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The listeners' application: HTTP/1.x connections are served here, request by request,
/// each checked head handed to the proxy; HTTP/2 connections go to the proxy directly
/// (the h2 library frames them, and refuses what is malformed).
pub struct Intake {
    proxy: Arc<HttpProxy<Gateway>>,
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
    h2c: bool,
    /// Counted so that an ending process can leave as soon as the last one closes.
    open: Arc<OpenConnections>,
}

impl Intake {
    pub fn new(
        proxy: HttpProxy<Gateway>,
        snapshot: SharedSnapshot,
        metrics: Arc<Metrics>,
        h2c: bool,
        open: Arc<OpenConnections>,
    ) -> Self {
        Intake {
            proxy: Arc::new(proxy),
            snapshot,
            metrics,
            h2c,
            open,
        }
    }

    /// HTTP/2 by ALPN, or (with h2c) by its preface; `None` when a cleartext client said
    /// nothing within the keep-alive timeout (the peek would wait for ever).
    async fn speaks_h2(&self, stream: &mut Stream) -> Option<bool> {
        if stream.get_ssl_digest().is_some() {
            return Some(matches!(stream.selected_alpn_proto(), Some(ALPN::H2)));
        }
        if !self.h2c {
            return Some(false);
        }
        let mut preface = [0u8; H2_PREFACE.len()];
        let idle = self.snapshot.load().server.client.keepalive_timeout;
        let peeked = pingora::time::timeout(idle, stream.try_peek(&mut preface)).await.ok()?;
        Some(matches!(peeked, Ok(true)) && preface == H2_PREFACE)
    }

    /// One HTTP/1.x connection: read and check a head, let the proxy serve that request,
    /// and again while the proxy hands the connection back for keep-alive.
    async fn serve_http1(&self, mut stream: Stream, shutdown: &ShutdownWatch) {
        let client_ip = peer_ip(&stream);
        // Bytes read past the end of the previous request (pipelined requests).
        let mut pending = BytesMut::new();
        let mut kept: Option<HttpPersistentSettings> = None;
        // Read once per connection: a reload's new limits apply to new connections.
        let limits = self.snapshot.load().server.client.clone();
        loop {
            let bytes = match head::read(&mut stream, &mut pending, &limits, shutdown).await {
                Outcome::Head(bytes) => bytes,
                Outcome::Idle => return,
                Outcome::Broken => {
                    if self.snapshot.load().server.metrics {
                        self.metrics.downstream_error("incomplete_head");
                    }
                    return;
                }
                Outcome::Refused(refusal, waited) => {
                    let refused = refuse::Refused {
                        refusal,
                        received: &pending,
                        waited,
                        client_ip,
                    };
                    // Boxed: its future is the largest of this loop's, and every connection's
                    // task would be that size for a path few take (≈ 4.5 KiB per held
                    // connection).
                    let answer = refuse::answer(&mut stream, refused, self.snapshot.load_full(), &self.metrics);
                    return Box::pin(answer).await;
                }
            };
            let mut session = ServerSession::new_http1(stream);
            match kept.take() {
                Some(settings) => settings.apply_to_session(&mut session),
                None => session.set_keepalive(Some(limits.keepalive_timeout.as_secs().max(1))),
            }
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            session.set_pipelined_prefix(bytes);
            let Some(reused) = self.proxy.process_new_http(session, shutdown).await else {
                return;
            };
            (stream, kept) = reused.consume();
        }
    }
}

#[async_trait]
impl ServerApp for Intake {
    async fn process_new(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let _open = self.open.enter();
        if self.speaks_h2(&mut stream).await? {
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        self.serve_http1(stream, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    Some(digest.peer_addr()?.as_inet()?.ip())
}
