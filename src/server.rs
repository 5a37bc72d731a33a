//! Assembles the Pingora server from a config: the proxy service on its listeners, the
//! health supervisor, and the reload trigger. Used by `gatehouse run` (and nothing else
//! needs to know how the parts are wired).

use crate::acme::{AcmeService, AcmeState};
use crate::admin::AdminApi;
use crate::cache::ResponseCache;
use crate::config::{fleet, Config, ConfigError, ConfigSource, Problem};
use crate::discovery::Discovery;
use crate::drain::{Drain, DrainingSignals, ExitWhenIdle, OpenConnections};
use crate::file_watch::WatchFiles;
use crate::intake::Intake;
use crate::observe::log_writer::StartWriter;
use crate::observe::metrics::Metrics;
use crate::observe::otel::SpanExport;
use crate::ports;
use crate::proxy::Gateway;
use crate::reload::{ReloadOnSighup, Reloader};
use crate::snapshot::{SharedSnapshot, Snapshot};
use crate::supervisor::Supervisor;
use crate::tls::ocsp_fetch::{FetchedStaples, OcspRefresh};
use crate::tls::session_tickets::{self, TicketKeyRotation};
use crate::tls::CertResolver;
use crate::watch::WatchEtcd;
use arc_swap::ArcSwap;
use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig, TcpSocketOptions};
use pingora::proxy::HttpProxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::sync::Arc;

/// Timeouts longer than this (seconds) use tokio's timers rather than Pingora's fast ones.
/// A fast timer lives until it fires, even when the read it guards is long done: a
/// WebSocket relay (10 min idle timeout) registered one per read, and RSS grew by ≈ 15 %
/// (≈ 8 MB) over the first 10 minutes of the soak test before it levelled off. Tokio's go
/// away with the read. Pingora's default threshold is 15 min.
const FAST_TIMER_LIMIT_SECS: u64 = 60;

/// Pingora's process flags, passed through from the command line.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessOptions {
    /// `-d`: detach and write the pid file.
    pub daemon: bool,
    /// `-u`: take the listeners over from a running gatehouse (graceful upgrade).
    pub upgrade: bool,
    /// `--watch`: reload on file changes whatever the config's `watch` says.
    pub watch: bool,
}

/// What `run` keeps after the server stops.
pub struct Running {
    pub snapshot: SharedSnapshot,
    /// Flushed at exit.
    pub spans: Option<Arc<SpanExport>>,
    /// What `Server::run` listens to: the shutdown signals, with a drain in front.
    pub signals: DrainingSignals,
}

/// Loads `source` and builds a ready-to-run server.
pub fn build(source: ConfigSource, options: ProcessOptions) -> Result<(Server, Running), ConfigError> {
    let watch_files = options.watch;
    let config = initial_config(&source)?;
    // During an upgrade the old process holds every address until it hands them over.
    if !options.upgrade {
        let busy = ports::unavailable(&ports::listeners(&config.server), config.server.reuse_port);
        if !busy.is_empty() {
            return Err(ConfigError {
                source: config.source.clone(),
                problems: busy
                    .iter()
                    .map(|b| {
                        Problem::new(
                            b.listener.role,
                            format!("{b} (stop the other process or choose another address; `gatehouse run -u` takes the addresses over from a running gatehouse)"),
                        )
                    })
                    .collect(),
                unavailable: false,
            });
        }
    }
    let listen = config.server.listen.clone();
    let (tls_listen, tls_h2, h2c) = (
        config.server.tls_listen.clone(),
        config.server.tls_h2,
        config.server.h2c,
    );
    let mut socket = TcpSocketOptions::default();
    socket.so_reuseport = config.server.reuse_port.then_some(true);
    let admin = config.server.admin.clone();
    let snapshot = Snapshot::build(config.clone(), None)?;
    crate::memory::release_after_load();
    for w in &snapshot.warnings {
        log::warn!("{}: {w}", snapshot.source);
    }
    let metrics = Arc::new(
        Metrics::new()
            .map_err(|e| ConfigError::single(&snapshot.source, "metrics", format!("cannot register: {e}")))?,
    );
    crate::observe::logging::count_client_errors_in(metrics.downstream_errors());
    let spans = match &snapshot.server.tracing {
        Some(t) => Some(Arc::new(
            SpanExport::new(t).map_err(|e| ConfigError::single(&snapshot.source, "tracing", e))?,
        )),
        None => None,
    };
    let conf = server_conf(&snapshot);
    snapshot.size_upstream_responses();
    let shared: SharedSnapshot = Arc::new(ArcSwap::from_pointee(snapshot));

    let opt = Opt {
        daemon: options.daemon,
        upgrade: options.upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    // Bootstrap (taking the listeners over with -u) runs after the daemon fork, and the
    // listening services wait for it: `run -d -u` returns at once and the daemon waits on
    // the upgrade socket for the old process's SIGQUIT. (Pingora's `daemon_wait_for_ready`
    // is not used: its parent can get SIGUSR1 before it installs the handler, and die.)
    let bootstrap = server.bootstrap_as_a_service();

    let drain = Arc::new(Drain::default());
    let signals = DrainingSignals {
        drain: drain.clone(),
        drain_period: config.server.drain_period,
    };
    let cache = Arc::new(ResponseCache::new(&config.server.cache));
    let acme = Arc::new(AcmeState::default());
    let staples = Arc::new(FetchedStaples::default());
    session_tickets::prime(&config.session_tickets);
    let gateway = Gateway::new(
        shared.clone(),
        metrics.clone(),
        spans.clone(),
        drain,
        cache.clone(),
        acme.clone(),
    );
    let mut options = HttpServerOptions::default();
    options.h2c = h2c;
    let mut http = HttpProxy::new(gateway, server.configuration.clone());
    http.server_options = Some(options);
    http.handle_init_modules();
    let open = Arc::new(OpenConnections::default());
    let intake = Intake::new(http, shared.clone(), metrics.clone(), h2c, open.clone());
    let mut proxy = Service::new("gatehouse proxy".into(), intake);
    for addr in &listen {
        proxy.add_listener(
            ListenerConfig::tcp(addr.to_string())
                .tcp_socket_options(socket.clone())
                .l4_buffer(L4BufferSettings::default().read(config.server.read_buffer)),
        );
    }
    for addr in &tls_listen {
        let settings = CertResolver::settings(
            shared.clone(),
            acme.clone(),
            staples.clone(),
            *addr,
            tls_h2,
            config.session_tickets.enabled,
            &config.server.tls_policy,
        )
        .map_err(|e| ConfigError::single("tls", "tls.listen", format!("cannot set up TLS: {e}")))?;
        proxy.add_listener(
            ListenerConfig::tcp(addr.to_string())
                .tcp_socket_options(socket.clone())
                .tls(settings)
                .l4_buffer(L4BufferSettings::default().read(config.server.tls_read_buffer)),
        );
    }
    server.add_service(proxy).add_dependency(&bootstrap);
    server
        .add_service(background_service("log writer", StartWriter))
        .add_dependency(&bootstrap);
    let flush_spans = spans.clone();
    server.add_service(background_service(
        "exit when idle",
        ExitWhenIdle {
            open,
            before_exit: Box::new(move || {
                if let Some(spans) = &flush_spans {
                    spans.shutdown();
                }
            }),
        },
    ));
    server.add_service(background_service(
        "ACME certificates and expiry",
        AcmeService::new(acme, shared.clone(), metrics.clone()),
    ));
    server.add_service(background_service(
        "session ticket keys",
        TicketKeyRotation::new(shared.clone()),
    ));
    server.add_service(background_service(
        "OCSP responses",
        OcspRefresh::new(staples, shared.clone()),
    ));
    let supervisor = Supervisor::new(shared.clone());
    server.add_service(background_service("health checks and key refresh", supervisor));
    let reloader = Arc::new(Reloader::new(source, config, shared.clone(), metrics.clone()));
    server.add_service(background_service(
        "reload on SIGHUP",
        ReloadOnSighup::new(reloader.clone()),
    ));
    let fleet = match reloader.source() {
        ConfigSource::Etcd { settings, .. } => Some(settings.clone()),
        _ => None,
    };
    match (&fleet, reloader.source()) {
        (Some(settings), _) => {
            let watch = WatchEtcd::new(reloader.clone(), settings.clone());
            server.add_service(background_service("watch etcd", watch));
        }
        (None, ConfigSource::File(path)) => {
            let watch = WatchFiles::new(reloader.clone(), path.clone(), watch_files);
            server.add_service(background_service("reload on file change", watch));
        }
        _ => {}
    }
    server.add_service(background_service(
        "service discovery",
        Discovery::new(reloader.clone(), fleet),
    ));
    if let Some(admin) = admin {
        let mut service = Service::new(
            "gatehouse admin".into(),
            AdminApi::new(shared.clone(), metrics, reloader, cache.store()),
        );
        service.add_tcp(&admin.listen.to_string());
        server.add_service(service).add_dependency(&bootstrap);
    }
    Ok((
        server,
        Running {
            snapshot: shared,
            spans,
            signals,
        },
    ))
}

/// The config to start with. A fleet node whose etcd does not answer starts on its last
/// good config (the state file), rather than on nothing; one that reads etcd keeps what it
/// read as the new last good config.
fn initial_config(source: &ConfigSource) -> Result<Config, ConfigError> {
    let ConfigSource::Etcd { .. } = source else {
        return source.load();
    };
    let dir = source.state_dir();
    match source.load() {
        Ok(config) => {
            if let Err(e) = fleet::save_state(&config.server.state_dir, &config) {
                log::warn!("fleet state not saved: {e}");
            }
            Ok(config)
        }
        Err(e) if e.unavailable => {
            let lookup = |k: &str| std::env::var(k).ok();
            match fleet::load_state(&dir, &lookup) {
                Ok(config) => {
                    log::warn!(
                        "{e}; serving the last good config from {} (revision {}) until etcd answers",
                        fleet::state_file(&dir).display(),
                        config.revision.unwrap_or(0)
                    );
                    Ok(config)
                }
                Err(state) => {
                    let mut e = e;
                    e.problems.extend(state.problems.into_iter().map(|mut p| {
                        p.message = format!("and no last good config to start from: {}", p.message);
                        p
                    }));
                    Err(e)
                }
            }
        }
        Err(e) => Err(e),
    }
}

fn server_conf(snapshot: &Snapshot) -> ServerConf {
    let s = &snapshot.server;
    ServerConf {
        threads: s.threads,
        work_stealing: s.work_stealing,
        upstream_keepalive_pool_size: s.upstream_keepalive_pool,
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        error_log: s.log_file.clone(),
        grace_period_seconds: Some(s.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(s.shutdown_timeout.as_secs()),
        fast_timeout_to_tokio_threshold_seconds: Some(FAST_TIMER_LIMIT_SECS),
        ..Default::default()
    }
}
