//! `gatehouse demo-upstream`: a tiny HTTP service to route to in the quick start and the
//! load test. It answers every request with JSON saying who it is and what it received,
//! `/health` with `{"status":"ok"}`, and `/bytes/N` with N bytes (for body-size tests).

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use serde_json::{json, Map, Value};

/// Largest `/bytes/N` answer.
const MAX_BYTES: usize = 64 * 1024 * 1024;

pub struct DemoUpstream {
    name: String,
}

#[async_trait]
impl ServeHttp for DemoUpstream {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // Read (and drop) the body so the connection can be reused.
        let mut received = 0;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            received += chunk.len();
        }
        let req = session.req_header();
        let path = req.uri.path();
        let (content_type, body) = if path == "/health" {
            ("application/json", br#"{"status":"ok"}"#.to_vec())
        } else if let Some(n) = path.strip_prefix("/bytes/").and_then(|n| n.parse::<usize>().ok()) {
            ("application/octet-stream", vec![b'x'; n.min(MAX_BYTES)])
        } else {
            let headers: Map<String, Value> = req
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        Value::from(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                    )
                })
                .collect();
            let doc = json!({
                "service": self.name,
                "method": req.method.as_str(),
                "path": path,
                "query": req.uri.query(),
                "headers": headers,
                "body_bytes": received,
            });
            ("application/json", serde_json::to_vec(&doc).unwrap_or_default())
        };
        Response::builder()
            .status(200)
            .header("content-type", content_type)
            .header("content-length", body.len())
            .header("x-served-by", self.name.as_str())
            .body(body)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}

/// Runs a demo upstream on `addr` until the process is stopped.
pub fn run(addr: &str, name: &str) {
    let conf = ServerConf {
        threads: 1,
        pid_file: format!("/tmp/gatehouse-demo-{}.pid", std::process::id()),
        // A demo has nothing to drain: stop at once on SIGTERM.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = Service::new(format!("demo upstream {name}"), DemoUpstream { name: name.to_string() });
    service.add_tcp(addr);
    server.add_service(service);
    log::info!("demo upstream {name} listening on {addr}");
    server.run(Default::default());
}
