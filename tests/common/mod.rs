//! Test harness: the real `gatehouse` binary on free loopback ports, real HTTP upstreams
//! (hyper) that tests script and inspect, and a real HTTP client (reqwest).
//!
//! ```ignore
//! let up = MockUpstream::start("a").await;
//! let gw = Gateway::start(&format!("upstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, upstream: u }}]", up.addr())).await;
//! assert_eq!(gw.get("/").await.status(), 200);
//! ```
#![allow(dead_code)]

pub mod etcd;
pub mod origin;
pub mod raw;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// Fails the calling test when `command` is not installed. A test that cannot run must
/// never count as passed: `make deps` (run by `make test`) installs every tool the suite
/// needs; `package` is the Debian package that has it.
pub fn require_tool(command: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {command}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{command}` is not installed, so this test cannot run: `make deps` installs it (Debian package {package})"
    );
}

/// A port nobody listens on right now, for a server the test starts later.
///
/// Taken below the kernel's ephemeral range, so that neither the outgoing connections of
/// other tests nor their `bind(":0")` listeners can take it between this call and the
/// server's bind (CI once saw a gateway's admin port taken that way). Each call of the
/// process moves on to the next port, so two calls never return the same one.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()))
        .unwrap_or(32768);
    let (low, high) = (10_000u32, ephemeral_start.max(20_000));
    let span = high - low;
    // Test binaries run one after another; starting each at its own offset keeps a port a
    // lingering process of the previous binary still holds out of the way.
    let offset = std::process::id() * 7919 % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = low + (offset + n) % span;
        if StdListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free port below {high}")
}

/// Polls `check` every 20 ms until it is true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

// === MockUpstream ===

/// What a mock upstream saw.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body_len: usize,
}

#[derive(Debug, Clone)]
struct Behaviour {
    status: u16,
    delay: Duration,
    health_status: u16,
    extra_headers: Vec<(String, String)>,
    /// Replaces the JSON echo when set.
    body: Option<Bytes>,
}

struct MockState {
    name: String,
    behaviour: Mutex<Behaviour>,
    recorded: Mutex<Vec<Recorded>>,
    hits: AtomicUsize,
    health_hits: AtomicUsize,
    connections: AtomicUsize,
}

/// A scriptable HTTP/1.1 upstream on 127.0.0.1.
///
/// - `GET /health` → `health_status` (200 by default), not counted in `hits`;
/// - `/bytes/N` → streams N bytes of `x` in 64 KiB chunks;
/// - anything else → `status` with the `set_body` body, or else JSON `{"upstream","method","path","query","body_len"}`
///   after `delay`; the request body is consumed as a stream and counted, never buffered.
pub struct MockUpstream {
    addr: SocketAddr,
    state: Arc<MockState>,
    server: Option<JoinHandle<()>>,
}

impl MockUpstream {
    pub async fn start(name: &str) -> MockUpstream {
        Self::start_at(name, "127.0.0.1:0").await
    }

    /// On a given address (`127.0.0.2:8080`: several instances on one port, as DNS names them).
    pub async fn start_at(name: &str, addr: &str) -> MockUpstream {
        let listener = TcpListener::bind(addr).await.expect("bind mock");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(MockState {
            name: name.to_string(),
            behaviour: Mutex::new(Behaviour {
                status: 200,
                delay: Duration::ZERO,
                health_status: 200,
                extra_headers: Vec::new(),
                body: None,
            }),
            recorded: Mutex::new(Vec::new()),
            hits: AtomicUsize::new(0),
            health_hits: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        let server = Some(tokio::spawn(serve(listener, state.clone())));
        MockUpstream { addr, state, server }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far (keepalive reuse shows as few connections).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn health_hits(&self) -> usize {
        self.state.health_hits.load(Ordering::SeqCst)
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.state.recorded.lock().unwrap().clone()
    }

    pub fn last(&self) -> Recorded {
        self.recorded().pop().expect("the upstream received no request")
    }

    pub fn set_status(&self, status: u16) {
        self.state.behaviour.lock().unwrap().status = status;
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.behaviour.lock().unwrap().delay = delay;
    }

    /// Answer with exactly `body` instead of the JSON echo.
    pub fn set_body(&self, body: &'static str) {
        self.state.behaviour.lock().unwrap().body = Some(Bytes::from_static(body.as_bytes()));
    }

    pub fn set_health_status(&self, status: u16) {
        self.state.behaviour.lock().unwrap().health_status = status;
    }

    pub fn add_response_header(&self, name: &str, value: &str) {
        self.state
            .behaviour
            .lock()
            .unwrap()
            .extra_headers
            .push((name.into(), value.into()));
    }

    /// Closes the listener and every open connection: the port refuses from now on.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Listens again on the same port with the same state.
    pub async fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.server = Some(tokio::spawn(serve(listener, self.state.clone())));
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: TcpListener, state: Arc<MockState>) {
    // Connection tasks live in this set, so aborting the accept task closes them all.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        state.connections.fetch_add(1, Ordering::SeqCst);
        let state = state.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

type MockBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

async fn handle(req: Request<Incoming>, state: Arc<MockState>) -> Result<Response<MockBody>, std::io::Error> {
    let behaviour = state.behaviour.lock().unwrap().clone();
    let path = req.uri().path().to_string();
    if path == "/health" {
        state.health_hits.fetch_add(1, Ordering::SeqCst);
        return Ok(full(behaviour.health_status, "{\"status\":\"ok\"}".into()));
    }
    let (parts, mut body) = req.into_parts();
    let mut body_len = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(std::io::Error::other)?.into_data() {
            body_len += data.len();
        }
    }
    state.hits.fetch_add(1, Ordering::SeqCst);
    state.recorded.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body_len,
    });
    if !behaviour.delay.is_zero() {
        tokio::time::sleep(behaviour.delay).await;
    }
    let mut resp = if let Some(n) = path.strip_prefix("/bytes/").and_then(|n| n.parse::<usize>().ok()) {
        stream_bytes(n)
    } else if let Some(body) = behaviour.body {
        full(behaviour.status, body)
    } else {
        let doc = serde_json::json!({
            "upstream": state.name,
            "method": parts.method.as_str(),
            "path": path,
            "query": parts.uri.query(),
            "body_len": body_len,
        });
        full(behaviour.status, doc.to_string().into())
    };
    for (k, v) in &behaviour.extra_headers {
        resp.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    resp.headers_mut().insert("x-upstream", state.name.parse().unwrap());
    Ok(resp)
}

fn full(status: u16, body: Bytes) -> Response<MockBody> {
    let mut resp = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}

fn stream_bytes(n: usize) -> Response<MockBody> {
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let stream = futures_util::stream::iter((0..n.div_ceil(CHUNK)).map(move |i| {
        let len = CHUNK.min(n - i * CHUNK);
        Ok::<_, std::io::Error>(Frame::data(chunk.slice(..len)))
    }));
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    resp.headers_mut().insert("content-length", n.into());
    resp
}

// === Gateway ===

/// The real `gatehouse run` on a free port, stopped (SIGKILL) when dropped.
pub struct Gateway {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    log_path: PathBuf,
    child: Child,
}

impl Gateway {
    /// Runs `body` (a config without `listen`, which the harness adds) with `threads: 1`.
    pub async fn start(body: &str) -> Gateway {
        Self::start_with_env(body, &[]).await
    }

    pub async fn start_with_env(body: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(free_port(), dir, body, env).await
    }

    /// On a port chosen beforehand (when the config or a page must name it first).
    pub async fn start_on(port: u16, dir: tempfile::TempDir, body: &str) -> Gateway {
        Self::start_in(port, dir, body, &[]).await
    }

    async fn start_in(port: u16, dir: tempfile::TempDir, body: &str, env: &[(&str, &str)]) -> Gateway {
        let config_path = dir.path().join("gatehouse.yaml");
        std::fs::write(&config_path, Self::config_text(port, dir.path(), body)).expect("write config");
        let args = vec!["run".to_string(), "-c".to_string(), config_path.display().to_string()];
        Self::spawn(dir, port, config_path, &args, env).await
    }

    /// A fleet node: `gatehouse run --etcd URL --etcd-prefix PREFIX -c bootstrap.yaml`, the
    /// bootstrap file holding this node's addresses and files (its state file in `dir`).
    pub async fn start_fleet(etcd: &str, prefix: &str, dir: tempfile::TempDir) -> Gateway {
        let port = std::fs::read_to_string(dir.path().join("port"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                let p = free_port();
                let _ = std::fs::write(dir.path().join("port"), p.to_string());
                p
            });
        let config_path = dir.path().join("bootstrap.yaml");
        std::fs::write(&config_path, Self::config_text(port, dir.path(), "")).expect("write bootstrap");
        let args: Vec<String> = vec![
            "run".into(),
            "--etcd".into(),
            etcd.into(),
            "--etcd-prefix".into(),
            prefix.into(),
            "-c".into(),
            config_path.display().to_string(),
        ];
        Self::spawn(dir, port, config_path, &args, &[]).await
    }

    /// Stops the process (SIGKILL) and hands back its directory (state file included).
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// `gatehouse run` without `-c`, configured by the environment only (port from `PORT`).
    pub async fn start_env_mode(env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let port_s = port.to_string();
        let admin_port = free_port();
        std::fs::write(dir.path().join("admin.port"), admin_port.to_string()).expect("admin port");
        let admin_s = format!("127.0.0.1:{admin_port}");
        let mut all: Vec<(&str, &str)> = vec![("PORT", port_s.as_str()), ("ADMIN_LISTEN", admin_s.as_str())];
        all.extend_from_slice(env);
        let config_path = PathBuf::new();
        Self::spawn(dir, port, config_path, &["run".to_string()], &all).await
    }

    /// The full config file text for `body` on `port`. The admin listener gets its own
    /// free port (recorded in the directory for `admin_port`) unless `body` sets `admin:`.
    pub fn config_text(port: u16, dir: &Path, body: &str) -> String {
        let admin_file = dir.join("admin.port");
        let admin_port = std::fs::read_to_string(&admin_file)
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok())
            .unwrap_or_else(|| {
                let p = free_port();
                let _ = std::fs::write(&admin_file, p.to_string());
                p
            });
        let admin = if body.contains("admin:") {
            String::new()
        } else {
            format!("admin: {{ listen: \"127.0.0.1:{admin_port}\" }}\n")
        };
        // Tests stop gateways at once unless they ask for a drain.
        let shutdown = if body.contains("grace_period:") {
            String::new()
        } else {
            "drain_period: 0s\ngrace_period: 0s\nshutdown_timeout: 1s\n".to_string()
        };
        format!(
            "listen: [\"127.0.0.1:{port}\"]\nthreads: 1\npid_file: {pid}\nupgrade_sock: {sock}\n{shutdown}{admin}{body}\n",
            pid = dir.join("gatehouse.pid").display(),
            sock = dir.join("upgrade.sock").display(),
        )
    }

    /// The admin listener's port (as `config_text` chose it).
    pub fn admin_port(&self) -> u16 {
        std::fs::read_to_string(self.dir.path().join("admin.port"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port())
    }

    async fn spawn(
        dir: tempfile::TempDir,
        port: u16,
        config_path: PathBuf,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Gateway {
        let log_path = dir.path().join("gatehouse.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(dir.path())
            .env_remove("PORT")
            .env_remove("BACKEND_URL")
            .env_remove("BACKEND_URLS")
            .env_remove("ROUTES_CONFIG_PATH")
            .env_remove("JWT_SECRET")
            .env_remove("ALLOWED_ORIGINS")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn gatehouse");
        let mut gw = Gateway {
            port,
            dir,
            config_path,
            log_path,
            child,
        };
        gw.wait_ready().await;
        gw
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let client = client();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gatehouse exited with {status} before serving:\n{}", self.logs());
            }
            if let Ok(r) = client.get(self.url("/health")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("gatehouse did not become ready:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        client().get(self.url(path)).send().await.expect("request failed")
    }

    pub async fn health(&self) -> serde_json::Value {
        self.get("/health").await.json().await.expect("health json")
    }

    /// Healthy target count of `upstream` according to `/health`.
    pub async fn healthy_targets(&self, upstream: &str) -> u64 {
        self.health().await["services"][upstream]["healthy_instances"]
            .as_u64()
            .unwrap_or(u64::MAX)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The Prometheus text of the admin listener's `/metrics`.
    pub async fn metrics_text(&self) -> String {
        let r = client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        r.text().await.expect("metrics text")
    }

    /// /metrics once it contains every one of `lines`: requests are counted in the logging
    /// phase, after their answer went out. Panics with the text after 5 s.
    pub async fn metrics_with(&self, lines: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.metrics_text().await;
            if lines.iter().all(|l| text.contains(l)) {
                return text;
            }
            if Instant::now() > deadline {
                let missing: Vec<&&str> = lines.iter().filter(|l| !text.contains(**l)).collect();
                panic!("/metrics lacks {missing:?}:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `gateway_downstream_errors_total{kind}` now (0 before the first).
    pub async fn downstream_errors(&self, kind: &str) -> u64 {
        let prefix = format!("gateway_downstream_errors_total{{kind=\"{kind}\"}} ");
        self.metrics_text()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// The exit status, once the process has exited; `None` if it still runs at `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Access-log lines (JSON objects with a request_id) written so far.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        self.logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("request_id").is_some())
            .collect()
    }

    /// The first access-log line `matches` accepts, once the log writer has written it
    /// (within 5 s, else the test fails naming `what`).
    pub async fn access_line(&self, what: &str, matches: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let mut line = None;
        eventually(Duration::from_secs(5), what, || {
            line = self.access_log().into_iter().find(|l| matches(l));
            let found = line.is_some();
            async move { found }
        })
        .await;
        line.unwrap_or_default()
    }

    /// Peak resident memory of the gateway process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        status_field(self.pid(), "VmHWM:")
    }

    pub fn rss_kib(&self) -> u64 {
        status_field(self.pid(), "VmRSS:")
    }

    pub fn write_config(&self, body: &str) {
        std::fs::write(&self.config_path, Self::config_text(self.port, self.dir.path(), body)).expect("write config");
    }
}

fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- gatehouse log ---\n{}", self.logs());
        }
    }
}

/// Counts which upstream (by `x-upstream`) answered `n` GETs of `path`.
pub async fn distribution(gw: &Gateway, path: &str, n: usize) -> HashMap<String, usize> {
    let client = client();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = client.get(gw.url(path)).send().await.expect("request");
        assert_eq!(r.status(), 200, "request failed during distribution");
        let who = r
            .headers()
            .get("x-upstream")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        *counts.entry(who).or_insert(0) += 1;
    }
    counts
}

/// A body of `n` bytes sent as a stream (chunked), never held in memory at once.
pub fn streaming_body(n: usize) -> reqwest::Body {
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![b'y'; CHUNK]);
    let stream = futures_util::stream::iter(
        (0..n.div_ceil(CHUNK)).map(move |i| Ok::<_, std::io::Error>(chunk.slice(..CHUNK.min(n - i * CHUNK)))),
    );
    reqwest::Body::wrap_stream(stream)
}

/// Reads a response body as a stream and returns its length.
pub async fn drain(resp: reqwest::Response) -> usize {
    let mut total = 0;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        total += chunk.expect("body chunk").len();
    }
    total
}

/// A one-upstream, one-catch-all-route config body for `addrs`.
pub fn simple_config(addrs: &[SocketAddr]) -> String {
    let targets: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "upstreams:\n  u:\n    targets: [{}]\nroutes:\n  - name: all\n    prefix: /\n    upstream: u\n",
        targets.join(", ")
    )
}

// === FnServer ===

/// A loopback HTTP server answering with a closure of (method, path, body) → (status,
/// JSON body), counting its calls: a JWKS endpoint, an introspection endpoint, a page.
pub struct FnServer {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

type Handler = Arc<dyn Fn(&str, &str, &[u8]) -> (u16, String, &'static str) + Send + Sync>;

impl FnServer {
    /// `handler` returns status, body and content type.
    pub async fn start(
        handler: impl Fn(&str, &str, &[u8]) -> (u16, String, &'static str) + Send + Sync + 'static,
    ) -> FnServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let calls = Arc::new(AtomicUsize::new(0));
        let handler: Handler = Arc::new(handler);
        let counter = calls.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let handler = handler.clone();
                let counter = counter.clone();
                conns.spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let handler = handler.clone();
                        let counter = counter.clone();
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            counter.fetch_add(1, Ordering::SeqCst);
                            let (status, text, ctype) = handler(&method, &path, &body);
                            let mut resp = Response::new(Full::new(Bytes::from(text)));
                            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            resp.headers_mut().insert("content-type", ctype.parse().unwrap());
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FnServer { addr, calls, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for FnServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === tokens ===

pub fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Signs `claims` with jsonwebtoken (a real JWT library, not gatehouse's own code).
pub fn sign(
    alg: jsonwebtoken::Algorithm,
    key: &jsonwebtoken::EncodingKey,
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

pub fn hs256(secret: &str, claims: &serde_json::Value) -> String {
    sign(
        jsonwebtoken::Algorithm::HS256,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        None,
        claims,
    )
}

pub fn rsa_key(name: &str) -> jsonwebtoken::EncodingKey {
    jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(fixture(&format!("keys/{name}.key"))).unwrap()).unwrap()
}

/// The JWKS document of test key `name` (`rsa_a` has kid `key-a`, `rsa_b` `key-b`).
pub fn jwks_document(name: &str) -> String {
    std::fs::read_to_string(fixture(&format!("keys/{name}.jwks.json"))).expect("jwks fixture")
}

/// A gateway whose `/api` route needs a JWT checked against the JWKS at `jwks_url`;
/// `jwt_extra` adds keys to `auth.jwt` (`, issuer: x`).
pub async fn jwks_gateway(jwks_url: &str, jwt_extra: &str, up: &MockUpstream) -> Gateway {
    Gateway::start(&format!(
        "auth: {{ jwt: {{ jwks_url: \"{jwks_url}\"{jwt_extra} }} }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /api, auth: jwt, upstream: api }}]\n",
        up.addr()
    ))
    .await
}

/// Claims valid for an hour from now, plus `extra`.
pub fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut c = serde_json::json!({ "sub": "user-1", "iat": now(), "exp": now() + 3600 });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

// === Redis ===

/// A real `redis-server` on a free loopback port, killed when dropped (the test fails when
/// redis-server is not installed).
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        require_tool("redis-server", "redis-server");
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port, empty.
    pub async fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let port = self.port;
        eventually(Duration::from_secs(10), "redis-server answering PING", || async move {
            ping(port).await
        })
        .await;
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut buf = [0u8; 16];
    conn.write_all(b"PING\r\n").await.is_ok() && conn.read(&mut buf).await.is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// === PKI ===

/// A throwaway certificate authority and its leaf certificates, written as PEM files.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    ca_cert: openssl::x509::X509,
    ca_key: openssl::pkey::PKey<openssl::pkey::Private>,
}

fn new_rsa_key() -> openssl::pkey::PKey<openssl::pkey::Private> {
    openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap()
}

fn name(cn: &str) -> openssl::x509::X509Name {
    let mut b = openssl::x509::X509NameBuilder::new().unwrap();
    b.append_entry_by_text("CN", cn).unwrap();
    b.build()
}

impl TestPki {
    pub fn new() -> TestPki {
        use openssl::x509::extension::{BasicConstraints, KeyUsage};
        let key = new_rsa_key();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name("gatehouse test CA")).unwrap();
        b.set_issuer_name(&name("gatehouse test CA")).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        b.set_serial_number(&openssl::bn::BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(KeyUsage::new().key_cert_sign().crl_sign().build().unwrap())
            .unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256()).unwrap();
        let pki = TestPki {
            dir: tempfile::tempdir().unwrap(),
            ca_cert: b.build(),
            ca_key: key,
        };
        std::fs::write(pki.ca_path(), pki.ca_cert.to_pem().unwrap()).unwrap();
        pki
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        self.ca_cert.to_pem().unwrap()
    }

    /// A certificate for `host` signed by the CA, valid from `from_days` to `to_days`
    /// (relative to now; negative = in the past); returns (cert, key) paths.
    pub fn leaf(&self, file: &str, host: &str, from_days: i64, to_days: i64) -> (PathBuf, PathBuf) {
        self.leaf_with(file, host, from_days, to_days, None)
    }

    /// A leaf whose authorityInfoAccess names `ocsp_url` as its OCSP responder.
    pub fn leaf_with_ocsp_url(&self, file: &str, host: &str, ocsp_url: &str) -> (PathBuf, PathBuf) {
        self.leaf_with(file, host, 0, 10, Some(ocsp_url))
    }

    fn leaf_with(
        &self,
        file: &str,
        host: &str,
        from_days: i64,
        to_days: i64,
        ocsp_url: Option<&str>,
    ) -> (PathBuf, PathBuf) {
        use openssl::x509::extension::SubjectAlternativeName;
        let key = new_rsa_key();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let at = |days: i64| openssl::asn1::Asn1Time::from_unix(now + days * 86_400).unwrap();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name(host)).unwrap();
        b.set_issuer_name(self.ca_cert.subject_name()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&at(from_days)).unwrap();
        b.set_not_after(&at(to_days)).unwrap();
        let serial = openssl::bn::BigNum::from_u32(rand_serial()).unwrap();
        b.set_serial_number(&serial.to_asn1_integer().unwrap()).unwrap();
        let mut san = SubjectAlternativeName::new();
        if host.parse::<std::net::IpAddr>().is_ok() {
            san.ip(host);
        } else {
            san.dns(host);
        }
        let san = san.build(&b.x509v3_context(Some(&self.ca_cert), None)).unwrap();
        b.append_extension(san).unwrap();
        if let Some(url) = ocsp_url {
            #[allow(deprecated)]
            let aia = openssl::x509::X509Extension::new(
                None,
                Some(&b.x509v3_context(Some(&self.ca_cert), None)),
                "authorityInfoAccess",
                &format!("OCSP;URI:{url}"),
            )
            .unwrap();
            b.append_extension(aia).unwrap();
        }
        b.sign(&self.ca_key, openssl::hash::MessageDigest::sha256()).unwrap();
        let cert_path = self.dir.path().join(format!("{file}.pem"));
        let key_path = self.dir.path().join(format!("{file}.key"));
        std::fs::write(&cert_path, b.build().to_pem().unwrap()).unwrap();
        std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        (cert_path, key_path)
    }

    /// `cert` followed by the CA's certificate: the issuer an OCSP response is checked with.
    pub fn full_chain(&self, cert: &Path) -> PathBuf {
        let out = cert.with_extension("chain.pem");
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(self.ca_pem());
        std::fs::write(&out, pem).unwrap();
        out
    }

    /// A DER OCSP response from this CA for `cert` (good, or revoked), valid for a day,
    /// made by the `openssl ocsp` command as an operator would.
    pub fn ocsp_response(&self, cert: &Path, revoked: bool) -> PathBuf {
        let dir = self.dir.path();
        let serial = index_serial(cert);
        // The CA database `openssl ocsp` answers from: V(alid) or R(evoked), expiry, serial.
        let line = if revoked {
            format!("R\t301231235959Z\t250101000000Z\t{serial}\tunknown\t/CN=x\n")
        } else {
            format!("V\t301231235959Z\t\t{serial}\tunknown\t/CN=x\n")
        };
        let stem = cert.file_stem().unwrap().to_string_lossy().to_string();
        let (index, request, response) = (
            dir.join(format!("{stem}.index")),
            dir.join(format!("{stem}.ocsp-req")),
            dir.join(format!("{stem}{}.ocsp", if revoked { "-revoked" } else { "" })),
        );
        std::fs::write(&index, line).unwrap();
        let ca_key = dir.join("ca.key");
        std::fs::write(&ca_key, self.ca_key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        let run = |args: &[&std::ffi::OsStr]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl ocsp: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ca = self.ca_path();
        run(&[
            "ocsp".as_ref(),
            "-issuer".as_ref(),
            ca.as_os_str(),
            "-cert".as_ref(),
            cert.as_os_str(),
            "-no_nonce".as_ref(),
            "-reqout".as_ref(),
            request.as_os_str(),
        ]);
        run(&[
            "ocsp".as_ref(),
            "-index".as_ref(),
            index.as_os_str(),
            "-rsigner".as_ref(),
            ca.as_os_str(),
            "-rkey".as_ref(),
            ca_key.as_os_str(),
            "-CA".as_ref(),
            ca.as_os_str(),
            "-reqin".as_ref(),
            request.as_os_str(),
            "-respout".as_ref(),
            response.as_os_str(),
            "-ndays".as_ref(),
            "1".as_ref(),
        ]);
        response
    }

    /// `openssl ocsp` answering for this CA on `port` (responses valid a minute), with
    /// `certs` good or revoked.
    pub fn ocsp_responder(&self, port: u16, certs: &[(&Path, bool)]) -> Child {
        let dir = self.dir.path();
        let mut index = String::new();
        for (cert, revoked) in certs {
            let serial = index_serial(cert);
            index.push_str(&if *revoked {
                format!("R\t301231235959Z\t250101000000Z\t{serial}\tunknown\t/CN=x\n")
            } else {
                format!("V\t301231235959Z\t\t{serial}\tunknown\t/CN=x\n")
            });
        }
        let index_path = dir.join(format!("responder-{port}.index"));
        std::fs::write(&index_path, index).unwrap();
        let ca_key = dir.join("ca.key");
        std::fs::write(&ca_key, self.ca_key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        Command::new("openssl")
            .args(["ocsp", "-port", &port.to_string(), "-index"])
            .arg(&index_path)
            .arg("-rsigner")
            .arg(self.ca_path())
            .arg("-rkey")
            .arg(&ca_key)
            .arg("-CA")
            .arg(self.ca_path())
            .args(["-nmin", "1", "-ignore_err"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl ocsp")
    }

    /// A PEM CRL from this CA revoking `revoked` (certificate files), next update in
    /// `days` (negative: already expired), made by `openssl ca -gencrl` as an operator would.
    pub fn crl(&self, file: &str, revoked: &[&Path], days: i64) -> PathBuf {
        let dir = self.dir.path().join(format!("{file}.ca"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut index = String::new();
        for cert in revoked {
            let serial = index_serial(cert);
            index.push_str(&format!("R\t301231235959Z\t250101000000Z\t{serial}\tunknown\t/CN=x\n"));
        }
        std::fs::write(dir.join("index.txt"), index).unwrap();
        std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
        let ca_key = dir.join("ca.key");
        std::fs::write(&ca_key, self.ca_key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        let cnf = dir.join("ca.cnf");
        std::fs::write(
            &cnf,
            format!(
                "[ca]\ndefault_ca = d\n[d]\ndatabase = {}\ncrlnumber = {}\ndefault_md = sha256\n",
                dir.join("index.txt").display(),
                dir.join("crlnumber").display()
            ),
        )
        .unwrap();
        let out_path = self.dir.path().join(format!("{file}.crl.pem"));
        let out = std::process::Command::new("openssl")
            .args(["ca", "-gencrl", "-batch", "-config"])
            .arg(&cnf)
            .arg("-keyfile")
            .arg(&ca_key)
            .arg("-cert")
            .arg(self.ca_path())
            .args([
                "-crl_lastupdate",
                &crl_time(days.min(0) - 1),
                "-crl_nextupdate",
                &crl_time(days),
            ])
            .arg("-out")
            .arg(&out_path)
            .output()
            .expect("openssl ca");
        assert!(
            out.status.success(),
            "openssl ca -gencrl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out_path
    }

    /// A client trusting only this CA, resolving `hosts` to 127.0.0.1.
    pub fn client(&self, hosts: &[(&str, u16)]) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem()).unwrap());
        for (host, port) in hosts {
            b = b.resolve(host, SocketAddr::from(([127, 0, 0, 1], *port)));
        }
        b.build().unwrap()
    }
}

/// The serial of the certificate in `cert` as an `openssl ca` index line writes it.
fn index_serial(cert: &Path) -> String {
    let leaf = openssl::x509::X509::from_pem(&std::fs::read(cert).unwrap()).unwrap();
    let mut serial = leaf.serial_number().to_bn().unwrap().to_hex_str().unwrap().to_string();
    if serial.len() % 2 == 1 {
        serial.insert(0, '0');
    }
    serial
}

/// Headless Chromium as the browser tests run it (no network of its own, a fresh profile
/// in `profile`); add the page's arguments and URL.
pub fn headless_chromium(profile: &Path) -> Command {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// `openssl s_client` to `addr` for `servername` (stdin closed): what it printed, stdout
/// then stderr.
pub fn s_client_to(addr: &str, servername: &str, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-servername", servername])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `days` from now as `openssl ca` writes times (GeneralizedTime).
fn crl_time(days: i64) -> String {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(days * 86_400);
    at.strftime("%Y%m%d%H%M%SZ").to_string()
}

fn rand_serial() -> u32 {
    static NEXT: AtomicUsize = AtomicUsize::new(2);
    NEXT.fetch_add(1, Ordering::SeqCst) as u32
}

// === load ===

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub ok: usize,
    pub failed: usize,
    /// The first few failures, for the assertion message.
    pub samples: Vec<String>,
}

/// `concurrency` keep-alive clients sending GET `url` back to back until `stop` is set.
pub fn start_load(url: String, concurrency: usize, stop: Arc<std::sync::atomic::AtomicBool>) -> JoinHandle<LoadReport> {
    tokio::spawn(async move {
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let (url, stop) = (url.clone(), stop.clone());
            workers.push(tokio::spawn(async move {
                let client = client();
                let mut report = LoadReport::default();
                while !stop.load(Ordering::SeqCst) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => match r.bytes().await {
                            Ok(_) => report.ok += 1,
                            Err(e) => report.fail(format!("body: {e}")),
                        },
                        Ok(r) => report.fail(format!("status {}", r.status())),
                        Err(e) => report.fail(format!("{e:?}")),
                    }
                }
                report
            }));
        }
        let mut total = LoadReport::default();
        for w in workers {
            if let Ok(r) = w.await {
                total.ok += r.ok;
                total.failed += r.failed;
                total.samples.extend(r.samples.into_iter().take(3));
            }
        }
        total
    })
}

impl LoadReport {
    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.samples.len() < 3 {
            self.samples.push(what);
        }
    }
}

// === TLS upstream ===

/// `openssl s_server -www` on `port` with `cert`/`key`, killed when dropped.
pub struct TlsUpstream {
    pub port: u16,
    child: Child,
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn s_server(port: u16, cert: &Path, key: &Path) -> TlsUpstream {
    s_server_with(port, cert, key, &[]).await
}

/// `openssl s_server -www` with more arguments (`-Verify 1 -CAfile ca.pem`: mTLS).
pub async fn s_server_with(port: u16, cert: &Path, key: &Path, extra: &[&std::ffi::OsStr]) -> TlsUpstream {
    let child = Command::new("openssl")
        .args(["s_server", "-www", "-accept", &port.to_string(), "-cert"])
        .arg(cert)
        .arg("-key")
        .arg(key)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    eventually(Duration::from_secs(5), "s_server listening", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
    TlsUpstream { port, child }
}
