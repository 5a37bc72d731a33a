//! A scripted origin for cache tests: a closure of (request, how many times this path was
//! asked before) chooses each reply, and every request is recorded.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the origin answers.
#[derive(Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

pub fn reply(headers: &[(&'static str, &str)], body: impl Into<Vec<u8>>) -> Reply {
    Reply {
        status: 200,
        headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        body: body.into(),
        delay: Duration::ZERO,
    }
}

/// One request as the origin saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
}

pub type Script = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

/// An origin scripted by a closure of (request, how many times this path was asked
/// before) → reply, recording every request.
pub struct Origin {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Origin {
    pub async fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Script = Arc::new(script);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (script, log) = (script.clone(), log.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (script, log) = (script.clone(), log.clone());
                        async move {
                            let request = Seen {
                                method: req.method().to_string(),
                                path: req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                                headers: req.headers().clone(),
                            };
                            let _ = req.into_body().collect().await;
                            let before = {
                                let mut log = log.lock().unwrap();
                                let n = log.iter().filter(|s| s.path == request.path).count();
                                log.push(request.clone());
                                n
                            };
                            let r = script(&request, before);
                            if !r.delay.is_zero() {
                                tokio::time::sleep(r.delay).await;
                            }
                            let mut resp = Response::new(Full::new(Bytes::from(r.body)));
                            *resp.status_mut() = http::StatusCode::from_u16(r.status).unwrap();
                            for (k, v) in r.headers {
                                resp.headers_mut().append(k, v.parse().unwrap());
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Origin { addr, seen, task }
    }

    /// Requests the origin received for `path` (with its query).
    pub fn hits(&self, path: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|s| s.path == path).count()
    }

    pub fn last(&self, path: &str) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|s| s.path == path)
            .cloned()
            .expect("origin never saw the path")
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
