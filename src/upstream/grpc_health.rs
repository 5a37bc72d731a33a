//! `health_check: { grpc: "service" }`: the standard gRPC health-checking protocol
//! (`grpc.health.v1.Health/Check`). A target is up when it answers `SERVING` for the
//! service (`""`: the server as a whole) with `grpc-status: 0`; `NOT_SERVING`, an unknown
//! service (`NOT_FOUND`), a refused connection or a timeout count as failures.

use crate::config::model::{HealthCheckConfig, UpstreamTls};
use bytes::{BufMut, Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::lb::health_check::HealthCheck;
use pingora::lb::Backend;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use prost::Message;

const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: i32 = 1;

#[derive(Clone, PartialEq, Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

pub struct GrpcHealthCheck {
    peer_template: HttpPeer,
    /// The length-prefixed request message, built once.
    body: Bytes,
    host: String,
    healthy: usize,
    unhealthy: usize,
    summary: String,
    connector: Connector,
}

impl GrpcHealthCheck {
    pub fn new(
        upstream: &str,
        hc: &HealthCheckConfig,
        tls: Option<&UpstreamTls>,
        service: &str,
    ) -> Result<Self, String> {
        let mut peer = HttpPeer::new(
            "0.0.0.0:1",
            tls.is_some(),
            tls.map_or_else(String::new, |t| t.sni.clone()),
        );
        if let Some(t) = tls {
            super::apply_tls(&mut peer, t)?;
        }
        // gRPC is HTTP/2 only: ALPN h2 over TLS, prior knowledge in clear text.
        peer.options.set_http_version(2, 2);
        peer.options.connection_timeout = Some(hc.timeout);
        peer.options.read_timeout = Some(hc.timeout);
        peer.options.write_timeout = Some(hc.timeout);
        let message = HealthCheckRequest {
            service: service.to_string(),
        }
        .encode_to_vec();
        let mut body = BytesMut::with_capacity(5 + message.len());
        body.put_u8(0);
        body.put_u32(u32::try_from(message.len()).map_err(|_| "grpc health service name too long")?);
        body.put_slice(&message);
        Ok(GrpcHealthCheck {
            peer_template: peer,
            body: body.freeze(),
            host: hc.host.clone().unwrap_or_else(|| "localhost".into()),
            healthy: hc.healthy,
            unhealthy: hc.unhealthy,
            summary: format!("upstream {upstream}"),
            connector: Connector::new(None),
        })
    }

    fn request(&self) -> Result<RequestHeader> {
        let mut req = RequestHeader::build("POST", CHECK_PATH.as_bytes(), Some(4))?;
        req.insert_header(http::header::HOST, self.host.as_str())?;
        req.insert_header(http::header::CONTENT_TYPE, "application/grpc")?;
        req.insert_header(http::header::TE, "trailers")?;
        req.insert_header(
            http::header::USER_AGENT,
            concat!("gatehouse-health/", env!("CARGO_PKG_VERSION")),
        )?;
        Ok(req)
    }
}

fn fail(why: String) -> Box<Error> {
    Error::explain(ErrorType::Custom("grpc health check"), why)
}

#[async_trait::async_trait]
impl HealthCheck for GrpcHealthCheck {
    async fn check(&self, target: &Backend) -> Result<()> {
        let mut peer = self.peer_template.clone();
        peer._address = target.addr.clone();
        let (mut session, _) = self.connector.get_http_session(&peer).await?;
        session.write_request_header(Box::new(self.request()?)).await?;
        session.write_request_body(self.body.clone(), true).await?;
        session.read_response_header().await?;
        let status = session.response_header().map(|h| h.status.as_u16());
        if status != Some(200) {
            return Err(fail(format!("HTTP status {status:?}")));
        }
        // Trailers-only (an unknown service): the status is in the headers.
        let header_status = session
            .response_header()
            .and_then(|h| h.headers.get("grpc-status"))
            .map(|v| v.as_bytes().to_vec());
        let mut body = BytesMut::new();
        while let Some(chunk) = session.read_response_body().await? {
            body.extend_from_slice(&chunk);
        }
        let trailer_status = match &mut session {
            pingora::protocols::http::client::HttpSession::H2(h2) => h2
                .read_trailers()
                .await?
                .and_then(|t| t.get("grpc-status").map(|v| v.as_bytes().to_vec())),
            _ => None,
        };
        match trailer_status.or(header_status).as_deref() {
            Some(b"0") => {}
            other => {
                return Err(fail(format!(
                    "grpc-status {}",
                    other.map_or("missing".into(), |s| String::from_utf8_lossy(s).into_owned())
                )))
            }
        }
        if body.len() < 5 {
            return Err(fail("no health answer".into()));
        }
        let answer = HealthCheckResponse::decode(&body[5..]).map_err(|e| fail(format!("bad answer: {e}")))?;
        if answer.status != SERVING {
            return Err(fail(format!("serving status {}", answer.status)));
        }
        Ok(())
    }

    fn backend_summary(&self, target: &Backend) -> String {
        format!("{} target {}", self.summary, target.addr)
    }

    fn health_threshold(&self, success: bool) -> usize {
        if success {
            self.healthy
        } else {
            self.unhealthy
        }
    }
}
