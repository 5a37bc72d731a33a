//! `targets_from`: an upstream's targets found at runtime, one task per such upstream, off
//! the request path; the pool is rebuilt when the set changes, keeping what it knew of the
//! targets that stay (health, ejections, in-flight counts).
//!
//! - `{ etcd: /services/NAME/ }`: registered by the instances themselves (`gatehouse
//!   register`, or anything that writes `host:port` or `{ "addr", "weight" }` under the
//!   prefix with a lease). The task lists the prefix and watches it; an instance that dies
//!   stops renewing its lease, etcd deletes its key, and the target goes.
//! - `{ dns: name:port }`: every A/AAAA address of the name (a Docker network alias, a
//!   Kubernetes headless Service); `{ dns: _service._proto.name }`: its SRV records, with
//!   their ports and weights. Looked up again when the records' TTL runs out (at most
//!   `interval` apart). A lookup that fails or finds nothing keeps the last targets.

mod dns;
mod etcd;

use crate::config::model::{TargetConfig, TargetsFrom};
use crate::etcd::EtcdSettings;
use crate::reload::Reloader;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often the current snapshot is looked at for upstreams to discover.
const LOOK_EVERY: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct Discovery {
    reloader: Arc<Reloader>,
    /// Fleet mode's etcd, used when `targets_from` names no endpoints.
    fleet: Option<EtcdSettings>,
}

impl Discovery {
    pub fn new(reloader: Arc<Reloader>, fleet: Option<EtcdSettings>) -> Self {
        Discovery { reloader, fleet }
    }

    /// The etcd to read `prefix` from, or why there is none.
    fn settings(&self, prefix: &str, endpoints: &[String]) -> Result<EtcdSettings, String> {
        let base = match (&self.fleet, endpoints.is_empty()) {
            (Some(fleet), true) => fleet.clone(),
            (_, false) => EtcdSettings::new(endpoints.to_vec(), None),
            (None, true) => return Err("targets_from.etcd needs endpoints (or fleet mode's etcd)".into()),
        };
        Ok(EtcdSettings {
            prefix: prefix.to_string(),
            ..base
        })
    }

    /// The task that keeps `upstream` discovered from `from`, or why there can be none.
    fn task(&self, upstream: &str, from: &TargetsFrom) -> Result<JoinHandle<()>, String> {
        let (reloader, upstream) = (self.reloader.clone(), upstream.to_string());
        match from {
            TargetsFrom::Etcd { prefix, endpoints } => {
                let settings = self.settings(prefix, endpoints)?;
                Ok(tokio::spawn(etcd::follow(reloader, upstream, settings)))
            }
            TargetsFrom::Dns {
                name,
                port,
                resolver,
                interval,
            } => {
                let resolver = dns::resolver(*resolver)?;
                let (name, port, interval) = (name.clone(), *port, *interval);
                Ok(tokio::spawn(dns::follow(
                    reloader, upstream, resolver, name, port, interval,
                )))
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Discovery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tasks: HashMap<String, (TargetsFrom, JoinHandle<()>)> = HashMap::new();
        let mut look = tokio::time::interval(LOOK_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = look.tick() => {}
            }
            let snapshot = self.reloader.snapshot();
            let wanted: HashMap<String, TargetsFrom> = snapshot
                .upstreams
                .iter()
                .filter_map(|(name, pool)| pool.config.targets_from.clone().map(|f| (name.clone(), f)))
                .collect();
            tasks.retain(|name, (from, task)| {
                let keep = wanted.get(name) == Some(from);
                if !keep {
                    task.abort();
                }
                keep
            });
            for (name, from) in wanted {
                if tasks.contains_key(&name) {
                    continue;
                }
                let task = match self.task(&name, &from) {
                    Ok(task) => task,
                    Err(e) => {
                        // Said once per config, not once a second.
                        log::error!("upstreams.{name}: {e}");
                        tokio::spawn(async {})
                    }
                };
                tasks.insert(name, (from, task));
            }
        }
        for (_, (_, task)) in tasks {
            task.abort();
        }
    }
}

/// Hands `targets` to the reloader (off the runtime: a reload builds a snapshot), saying
/// in the log what changed and from where (`found`).
async fn install(reloader: &Arc<Reloader>, upstream: &str, targets: Vec<TargetConfig>, found: &str) {
    let (reloader, name) = (reloader.clone(), upstream.to_string());
    let count = targets.len();
    match tokio::task::spawn_blocking(move || reloader.set_discovered(&name, targets)).await {
        Ok(Ok(true)) => log::info!("upstreams.{upstream}: {count} targets {found}"),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => log::error!("upstreams.{upstream}: discovered targets refused: {e}"),
        Err(e) => log::error!("upstreams.{upstream}: {e}"),
    }
}
