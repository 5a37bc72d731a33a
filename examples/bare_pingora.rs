//! The baseline of the load tests: Pingora with nothing of gatehouse. One listener, one
//! upstream pool balanced round robin, no routing, no filters, no logging, no metrics:
//! what the framework alone costs per proxied request. Built with the same profile as
//! gatehouse (`cargo build --release --example bare_pingora`).
//!
//! ```sh
//! bare_pingora --listen 127.0.0.1:8081 --upstream 127.0.0.1:9000 --threads 1 --dir /tmp/bare
//! bare_pingora --listen 127.0.0.1:8443 --tls cert.pem,key.pem --upstream 127.0.0.1:9000
//! ```
//!
//! With `--tls`, the listener speaks TLS with Pingora's intermediate settings and offers h2
//! and http/1.1 by ALPN: the framework's own HTTP/2 path, the floor under gatehouse's.

use async_trait::async_trait;
use pingora::lb::{selection::RoundRobin, LoadBalancer};
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::proxy::http_proxy_service;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::{Error, ErrorType, Result};
use std::sync::Arc;

struct BareProxy {
    pool: Arc<LoadBalancer<RoundRobin>>,
}

#[async_trait]
impl ProxyHttp for BareProxy {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let target = self
            .pool
            .select(b"", 1)
            .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "no upstream"))?;
        Ok(Box::new(HttpPeer::new(target.addr, false, String::new())))
    }
}

struct Args {
    listen: String,
    upstreams: Vec<String>,
    threads: usize,
    dir: String,
    /// `CERT,KEY`: serve TLS (h2 and http/1.1 by ALPN) instead of plain HTTP.
    tls: Option<(String, String)>,
}

fn args() -> std::result::Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:8081".into(),
        upstreams: Vec::new(),
        threads: 1,
        dir: "/tmp".into(),
        tls: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => args.listen = value,
            "--upstream" => args.upstreams.push(value),
            "--threads" => args.threads = value.parse().map_err(|e| format!("--threads: {e}"))?,
            "--dir" => args.dir = value,
            "--tls" => {
                let (cert, key) = value.split_once(',').ok_or("--tls takes CERT,KEY")?;
                args.tls = Some((cert.to_string(), key.to_string()));
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.upstreams.is_empty() {
        return Err("at least one --upstream host:port".into());
    }
    Ok(args)
}

pub fn main() {
    let args = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("bare_pingora: {e}\nusage: bare_pingora --listen ADDR --upstream ADDR [--threads N] [--dir DIR] [--tls CERT,KEY]");
            std::process::exit(2);
        }
    };
    let conf = ServerConf {
        threads: args.threads,
        pid_file: format!("{}/bare_pingora.pid", args.dir),
        upgrade_sock: format!("{}/bare_pingora_upgrade.sock", args.dir),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let pool = match LoadBalancer::try_from_iter(args.upstreams.iter().map(String::as_str)) {
        Ok(pool) => Arc::new(pool),
        Err(e) => {
            eprintln!("bare_pingora: bad --upstream: {e}");
            std::process::exit(2);
        }
    };
    let mut proxy = http_proxy_service(&server.configuration, BareProxy { pool });
    match &args.tls {
        None => proxy.add_tcp(&args.listen),
        Some((cert, key)) => {
            let mut settings = match TlsSettings::intermediate(cert, key) {
                Ok(settings) => settings,
                Err(e) => {
                    eprintln!("bare_pingora: --tls: {e}");
                    std::process::exit(2);
                }
            };
            settings.enable_h2();
            proxy.add_tls_with_settings(&args.listen, None, settings);
        }
    }
    server.add_service(proxy);
    server.run_forever();
}
