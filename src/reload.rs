//! parse → validate → build → swap. The only code that writes the shared snapshot after
//! startup. A config that fails any step is refused with every problem logged, and the
//! snapshot in service keeps serving.

use crate::config::model::ServerSettings;
use crate::config::{ConfigError, ConfigSource, Problem};
use crate::snapshot::{SharedSnapshot, Snapshot};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::{Arc, Mutex};
use tokio::signal::unix::{signal, SignalKind};

pub struct Reloader {
    source: ConfigSource,
    snapshot: SharedSnapshot,
    /// Reloads (SIGHUP, later the admin API) run one at a time.
    serialize: Mutex<()>,
}

impl Reloader {
    pub fn new(source: ConfigSource, snapshot: SharedSnapshot) -> Self {
        Reloader {
            source,
            snapshot,
            serialize: Mutex::new(()),
        }
    }

    /// Loads the source again and swaps the new snapshot in. Blocking (file and DNS I/O):
    /// call it off the request runtime.
    pub fn reload(&self) -> Result<Arc<Snapshot>, ConfigError> {
        let _one_at_a_time = self.serialize.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let config = self.source.load()?;
        let current = self.snapshot.load_full();
        check_restart_fields(&current.server, &config.server, &config.source)?;
        let next = Arc::new(Snapshot::build(config, Some(&current))?);
        self.snapshot.store(next.clone());
        Ok(next)
    }

    /// [`Self::reload`] with its outcome logged.
    pub fn reload_and_log(&self) {
        match self.reload() {
            Ok(s) => {
                log::info!(
                    "config reloaded from {}: generation {}, {} routes, {} upstreams",
                    s.source,
                    s.generation,
                    s.routes.len(),
                    s.upstreams.len()
                );
                for w in &s.warnings {
                    log::warn!("{}: {w}", s.source);
                }
            }
            Err(e) => log::error!("config reload refused, still serving the previous config: {e}"),
        }
    }
}

/// Listeners, threads and process files are fixed for the life of the process.
fn check_restart_fields(running: &ServerSettings, new: &ServerSettings, source: &str) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    let mut fixed = |field: &str, changed: bool| {
        if changed {
            problems.push(Problem {
                path: field.to_string(),
                message: "cannot change on reload; restart (or graceful upgrade) to apply it".to_string(),
            });
        }
    };
    fixed("listen", running.listen != new.listen);
    fixed("threads", running.threads != new.threads);
    fixed("pid_file", running.pid_file != new.pid_file);
    fixed("upgrade_sock", running.upgrade_sock != new.upgrade_sock);
    fixed("log_file", running.log_file != new.log_file);
    fixed("grace_period", running.grace_period != new.grace_period);
    fixed("shutdown_timeout", running.shutdown_timeout != new.shutdown_timeout);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError {
            source: source.to_string(),
            problems,
        })
    }
}

/// Background service: SIGHUP → reload.
pub struct ReloadOnSighup {
    reloader: Arc<Reloader>,
}

impl ReloadOnSighup {
    pub fn new(reloader: Arc<Reloader>) -> Self {
        ReloadOnSighup { reloader }
    }
}

#[async_trait]
impl BackgroundService for ReloadOnSighup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot listen for SIGHUP, reload by signal disabled: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = hangups.recv() => {
                    log::info!("SIGHUP: reloading {}", self.reloader.source.describe());
                    let reloader = self.reloader.clone();
                    if let Err(e) = tokio::task::spawn_blocking(move || reloader.reload_and_log()).await {
                        log::error!("reload task failed: {e}");
                    }
                }
            }
        }
    }
}
