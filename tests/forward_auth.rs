//! `auth: forward` through the real gateway with a real auth service: allowed (its headers
//! reach the upstream, forged copies do not), denied (its answer reaches the client as
//! sent), unreachable (503), and decisions cached per credential.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// An auth service: `Bearer good` → 200 with identity headers; `Bearer login` → 302 to a
/// login page; anything else → 401 with a challenge and a JSON body.
struct AuthService {
    addr: std::net::SocketAddr,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<http::HeaderMap>>>,
    task: tokio::task::JoinHandle<()>,
}

impl AuthService {
    async fn start() -> AuthService {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, s) = (calls.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (c, s) = (c.clone(), s.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        c.fetch_add(1, Ordering::SeqCst);
                        s.lock().unwrap().push(req.headers().clone());
                        let auth = req
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string());
                        let resp = match auth.as_deref() {
                            Some("Bearer good") => Response::builder()
                                .status(200)
                                .header("X-User-Id", "alice")
                                .header("X-Scopes", "read")
                                .header("X-Other", "not copied")
                                .body(Full::new(Bytes::new())),
                            Some("Bearer login") => Response::builder()
                                .status(302)
                                .header("Location", "https://login.example/?next=/app")
                                .body(Full::new(Bytes::new())),
                            _ => Response::builder()
                                .status(401)
                                .header("WWW-Authenticate", "Basic realm=\"corp\"")
                                .header("Content-Type", "application/json")
                                .body(Full::new(Bytes::from_static(b"{\"error\":\"who are you\"}"))),
                        };
                        async move { resp }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        AuthService {
            addr,
            calls,
            seen,
            task,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn last(&self) -> http::HeaderMap {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the auth service was asked")
    }
}

impl Drop for AuthService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn config(auth: &str, api: &MockUpstream, extra: &str) -> String {
    format!(
        r#"
upstreams:
  auth: {{ targets: ["{auth}"] }}
  api: {{ targets: ["{}"] }}
routes:
  - name: app
    prefix: /app
    upstream: api
    auth: forward
    forward_auth:
      upstream: auth
      path: /verify
      headers_to_auth: [Authorization]
      headers_from_auth: [X-User-Id, X-Scopes]
      timeout: 1s
      {extra}
"#,
        api.addr()
    )
}

async fn call(gw: &Gateway, token: &str) -> reqwest::Response {
    // Redirects are answers to check here, not to follow.
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(gw.url("/app/orders?x=1"))
        .header("Authorization", format!("Bearer {token}"))
        .header("X-User-Id", "forged")
        .header("Cookie", "session=secret")
        .header("Host", "shop.example")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_allowed_request_carries_the_auth_service_headers_and_a_refusal_is_relayed() {
    let auth = AuthService::start().await;
    let api = MockUpstream::start("api").await;
    let gw = Gateway::start(&config(&auth.addr.to_string(), &api, "")).await;

    let r = call(&gw, "good").await;
    assert_eq!(r.status(), 200);
    let seen = api.last().headers;
    assert_eq!(
        seen["x-user-id"], "alice",
        "the auth service's header, not the forged one"
    );
    assert_eq!(seen.get_all("x-user-id").iter().count(), 1);
    assert_eq!(seen["x-scopes"], "read");
    assert!(!seen.contains_key("x-other"), "only headers_from_auth are copied");
    let asked = auth.last();
    assert_eq!(asked["authorization"], "Bearer good");
    assert!(!asked.contains_key("cookie"), "only headers_to_auth are sent");
    assert_eq!(asked["x-forwarded-method"], "GET");
    assert_eq!(asked["x-forwarded-uri"], "/app/orders?x=1");
    assert_eq!(asked["x-forwarded-host"], "shop.example");
    assert_eq!(asked["x-request-id"], r.headers()["x-request-id"].to_str().unwrap());

    let hits = api.hits();
    let r = call(&gw, "bad").await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"corp\"");
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.text().await.unwrap(), "{\"error\":\"who are you\"}");
    let r = call(&gw, "login").await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://login.example/?next=/app");
    assert_eq!(api.hits(), hits, "refused requests never reach the upstream");
    gw.metrics_with(&["reason=\"auth\""]).await;
}

#[tokio::test]
async fn an_unreachable_auth_service_is_a_503_and_decisions_are_cached_per_credential() {
    let api = MockUpstream::start("api").await;
    let closed = free_port();
    let gw = Gateway::start(&config(&format!("127.0.0.1:{closed}"), &api, "")).await;
    let r = call(&gw, "good").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "the authorization service could not be reached");
    assert_eq!(api.hits(), 0);

    let auth = AuthService::start().await;
    let gw = Gateway::start(&config(&auth.addr.to_string(), &api, "cache_ttl: 30s")).await;
    for _ in 0..3 {
        assert_eq!(call(&gw, "good").await.status(), 200);
    }
    assert_eq!(auth.calls(), 1, "one decision per credential within cache_ttl");
    assert_eq!(
        api.last().headers["x-user-id"],
        "alice",
        "a cached allow still carries its headers"
    );
    for _ in 0..2 {
        assert_eq!(call(&gw, "bad").await.status(), 401);
    }
    assert_eq!(auth.calls(), 2, "another credential is asked once too");
}
