//! Raw sockets, for what an HTTP library would normalise away: a client that sends exact
//! bytes and reads exact answers, and an upstream that records the exact bytes it gets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One HTTP/1.x response as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Lowercased names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// A client connection that writes bytes as given.
pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    pub async fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Sends what may be refused half-way (the peer may close): errors are ignored.
    pub async fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next response (Content-Length bodies, or no body for HEAD/1xx/204/304 when
    /// `head_only`), waiting at most `within`.
    pub async fn response_within(&mut self, within: Duration, head_only: bool) -> Option<RawResponse> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(r) = self.take_response(head_only) {
                return Some(r);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    pub async fn response(&mut self) -> RawResponse {
        self.response_within(Duration::from_secs(10), false)
            .await
            .unwrap_or_else(|| panic!("no complete response; got {:?}", String::from_utf8_lossy(&self.buf)))
    }

    fn take_response(&mut self, head_only: bool) -> Option<RawResponse> {
        let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length = if head_only || status < 200 || status == 204 || status == 304 {
            0
        } else {
            headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0)
        };
        if self.buf.len() < end + 4 + length {
            return None;
        }
        let body = self.buf[end + 4..end + 4 + length].to_vec();
        self.buf.drain(..end + 4 + length);
        Some(RawResponse { status, headers, body })
    }

    /// Whether the peer closes (EOF or reset) within `within`, after any data already sent.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return false,
            }
        }
    }

    /// Bytes received and not yet taken as a response.
    pub fn unread(&self) -> &[u8] {
        &self.buf
    }
}

/// An upstream that records every byte of every connection and answers each request head
/// with `200 ok` once its Content-Length or chunked body is in (enough for these tests).
pub struct RawUpstream {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl RawUpstream {
    pub async fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_raw(conn, log.clone()));
            }
        });
        RawUpstream { addr, received, task }
    }

    /// Everything received so far, all connections.
    pub fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    pub fn received_text(&self) -> String {
        String::from_utf8_lossy(&self.received()).into_owned()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_raw(mut conn: TcpStream, log: Arc<Mutex<Vec<u8>>>) {
    let mut pending = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while let Some(used) = complete_request(&pending) {
            pending.drain(..used);
            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if conn.write_all(answer).await.is_err() {
                return;
            }
        }
        match conn.read(&mut chunk).await {
            Ok(n) if n > 0 => {
                log.lock().unwrap().extend_from_slice(&chunk[..n]);
                pending.extend_from_slice(&chunk[..n]);
            }
            _ => return,
        }
    }
}

/// The length of the first complete request in `buf` (head plus CL or chunked body).
fn complete_request(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        let body_end = buf[end..].windows(5).position(|w| w == b"0\r\n\r\n")?;
        return Some(end + body_end + 5);
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (buf.len() >= end + length).then_some(end + length)
}

/// What a [`ScriptedUpstream`] does after sending its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Closes the connection (FIN).
    Close,
    /// Resets it (RST).
    Reset,
    /// Keeps it open, reading and ignoring everything.
    Hang,
    /// Answers the next head on the connection the same way.
    Again,
}

/// An upstream that answers every request head on every connection with exactly `reply`
/// (possibly nothing, or a broken response), then does `then`. Counts connections and
/// request heads.
pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    heads: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl ScriptedUpstream {
    pub async fn start(reply: &'static [u8], then: Then) -> ScriptedUpstream {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let heads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (c, h) = (connections.clone(), heads.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let h = h.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        match conn.read(&mut chunk).await {
                            Ok(n) if n > 0 => seen.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                        let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        seen.drain(..end + 4);
                        h.fetch_add(1, Ordering::SeqCst);
                        if conn.write_all(reply).await.is_err() {
                            return;
                        }
                        match then {
                            Then::Again => continue,
                            Then::Close => return,
                            Then::Reset => {
                                // A zero linger makes close send RST; it does not block.
                                #[allow(deprecated)]
                                let _ = conn.set_linger(Some(Duration::ZERO));
                                return;
                            }
                            Then::Hang => while matches!(conn.read(&mut chunk).await, Ok(n) if n > 0) {},
                        }
                        return;
                    }
                });
            }
        });
        ScriptedUpstream {
            addr,
            connections,
            heads,
            task,
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn heads(&self) -> usize {
        self.heads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
