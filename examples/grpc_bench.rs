//! The gRPC load test's two ends (`loadtest/grpc.sh`): a tonic Echo server on h2c and a
//! closed-loop unary client. The service is tests/proto/echo.proto (build.rs generates it).
//! Built with the same profile as gatehouse:
//! `cargo build --release --locked --example grpc_bench`.
//!
//! ```sh
//! grpc_bench server 127.0.0.1:50051
//! grpc_bench client http://127.0.0.1:50051 64 10 [CHANNELS]
//! ```
//!
//! `server ADDR`: `Unary` echoes the message it gets; the streaming methods answer
//! `UNIMPLEMENTED`. It prints `listening ADDR` on stdout once bound.
//!
//! `client URL CONCURRENCY SECONDS [CHANNELS]`: CONCURRENCY tasks, spread over CHANNELS
//! h2c connections (default 4, at most CONCURRENCY), each calling `Unary` in a closed loop
//! (the next call as soon as the answer is in) for SECONDS. Every answer must echo the
//! request. Prints one JSON line: `{"calls", "errors", "seconds", "rps", "p50_ms",
//! "p99_ms", "concurrency", "channels"}` (rps counts successful calls only); exits 1 when
//! no call succeeded. Both ends use as many tokio worker threads as the CPUs they may run
//! on (`taskset` limits that), or `GRPC_BENCH_THREADS`.

use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio_stream::Stream;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status, Streaming};

pub mod echo {
    tonic::include_proto!("echo");
}

use echo::echo_client::EchoClient;
use echo::echo_server::{Echo, EchoServer};
use echo::Msg;

type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

#[derive(Default)]
struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, req: Request<Msg>) -> Result<Response<Msg>, Status> {
        Ok(Response::new(req.into_inner()))
    }

    type ServerStreamStream = MsgStream;

    async fn server_stream(&self, _req: Request<Msg>) -> Result<Response<MsgStream>, Status> {
        Err(Status::unimplemented("grpc_bench: unary only"))
    }

    async fn client_stream(&self, _req: Request<Streaming<Msg>>) -> Result<Response<Msg>, Status> {
        Err(Status::unimplemented("grpc_bench: unary only"))
    }

    type BidiStream = MsgStream;

    async fn bidi(&self, _req: Request<Streaming<Msg>>) -> Result<Response<MsgStream>, Status> {
        Err(Status::unimplemented("grpc_bench: unary only"))
    }
}

async fn server(addr: &str) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening {local}");
    Server::builder()
        .add_service(EchoServer::new(EchoService))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await
        .map_err(|e| format!("server: {e}"))
}

/// What one client task measured: latencies of its successful calls (µs) and its errors.
struct Tally {
    lat_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

async fn client(url: &str, concurrency: usize, seconds: f64, channels: usize) -> Result<(), String> {
    let channels = channels.clamp(1, concurrency.max(1));
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("bad URL {url}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let mut conns: Vec<Channel> = Vec::with_capacity(channels);
    for _ in 0..channels {
        // One Channel = one HTTP/2 connection (connect() dials it now).
        conns.push(
            endpoint
                .connect()
                .await
                .map_err(|e| format!("cannot connect to {url}: {e:?}"))?,
        );
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let mut client = EchoClient::new(conns[i % channels].clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally {
                lat_us: Vec::with_capacity(1 << 16),
                errors: 0,
                first_error: None,
            };
            let mut n: i32 = 0;
            while Instant::now() < deadline {
                n = n.wrapping_add(1);
                let msg = Msg {
                    text: "grpc-bench".to_string(),
                    n,
                };
                let t0 = Instant::now();
                match client.unary(Request::new(msg)).await {
                    Ok(resp) => {
                        let us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
                        let got = resp.into_inner();
                        if got.text == "grpc-bench" && got.n == n {
                            tally.lat_us.push(us);
                        } else {
                            tally.errors += 1;
                            tally.first_error.get_or_insert_with(|| format!("wrong echo: {got:?}"));
                        }
                    }
                    Err(status) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert_with(|| format!("{status:?}"));
                    }
                }
            }
            tally
        }));
    }
    let mut lat: Vec<u32> = Vec::new();
    let mut errors = 0u64;
    let mut first_error = None;
    for t in tasks {
        let tally = t.await.map_err(|e| format!("client task: {e}"))?;
        lat.extend(tally.lat_us);
        errors += tally.errors;
        if first_error.is_none() {
            first_error = tally.first_error;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let idx = ((p / 100.0) * lat.len() as f64).ceil() as usize;
        lat[idx.clamp(1, lat.len()) - 1] as f64 / 1000.0
    };
    let calls = lat.len();
    println!(
        "{{\"calls\": {calls}, \"errors\": {errors}, \"seconds\": {elapsed:.3}, \"rps\": {:.1}, \
         \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"concurrency\": {concurrency}, \"channels\": {channels}}}",
        calls as f64 / elapsed,
        pct(50.0),
        pct(99.0)
    );
    if let Some(e) = first_error {
        eprintln!("grpc_bench client: {errors} failed call(s), the first: {e}");
    }
    if calls == 0 {
        return Err("no call succeeded".into());
    }
    Ok(())
}

fn usage() -> ! {
    eprintln!("usage: grpc_bench server ADDR\n       grpc_bench client URL CONCURRENCY SECONDS [CHANNELS]");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads = std::env::var("GRPC_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match args.first().map(String::as_str) {
        Some("server") if args.len() == 2 => rt.block_on(server(&args[1])),
        Some("client") if (4..=5).contains(&args.len()) => {
            let num = |s: &str, what: &str| -> f64 {
                s.parse::<f64>().ok().filter(|v| *v > 0.0).unwrap_or_else(|| {
                    eprintln!("grpc_bench: {what} must be a positive number, got {s:?}");
                    usage()
                })
            };
            let concurrency = num(&args[2], "CONCURRENCY") as usize;
            let seconds = num(&args[3], "SECONDS");
            let channels = args.get(4).map_or(4, |c| num(c, "CHANNELS") as usize);
            rt.block_on(client(&args[1], concurrency, seconds, channels))
        }
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("grpc_bench: {e}");
        std::process::exit(1);
    }
}
