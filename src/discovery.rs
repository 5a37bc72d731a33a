//! `targets_from`: an upstream's targets found at runtime, one task per such upstream, off
//! the request path; the pool is rebuilt when the set changes (its health state starts
//! over).
//!
//! - `{ etcd: /services/NAME/ }`: registered by the instances themselves (`gatehouse
//!   register`, or anything that writes `host:port` or `{ "addr", "weight" }` under the
//!   prefix with a lease). The task lists the prefix and watches it; an instance that dies
//!   stops renewing its lease, etcd deletes its key, and the target goes.
//! - `{ dns: name:port }`: every A/AAAA address of the name (a Docker network alias, a
//!   Kubernetes headless Service), looked up again when the records' TTL runs out (at
//!   most `interval` apart). A lookup that fails or finds nothing keeps the last targets.

use crate::config::model::{TargetConfig, TargetsFrom};
use crate::config::resolve;
use crate::etcd::{self, EtcdSettings, Listing};
use crate::reload::Reloader;
use async_trait::async_trait;
use etcd_client::WatchOptions;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
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
                Ok(tokio::spawn(follow(reloader, upstream, settings)))
            }
            TargetsFrom::Dns {
                name,
                port,
                resolver,
                interval,
            } => {
                let resolver = dns_resolver(*resolver)?;
                let (name, port, interval) = (name.clone(), *port, *interval);
                Ok(tokio::spawn(follow_dns(
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

/// Keeps `upstream`'s discovered targets equal to what is under `s.prefix`.
async fn follow(reloader: Arc<Reloader>, upstream: String, s: EtcdSettings) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let why = session(&reloader, &upstream, &s, &mut backoff).await;
        log::warn!(
            "upstreams.{upstream}: discovery from {}: {why}; retrying in {backoff:?}",
            s.describe()
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn session(reloader: &Arc<Reloader>, upstream: &str, s: &EtcdSettings, backoff: &mut Duration) -> String {
    let mut client = match etcd::connect(s).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let mut revision = match apply(&mut client, reloader, upstream, s).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    let mut stream = match client.watch(s.prefix.as_str(), Some(options)).await {
        Ok(w) => w,
        Err(e) => return format!("cannot watch: {e}"),
    };
    *backoff = Duration::from_millis(200);
    loop {
        match stream.message().await {
            Ok(Some(r)) if r.canceled() || r.compact_revision() > 0 => return "the watch was cancelled".into(),
            Ok(Some(r)) if r.events().is_empty() => continue,
            Ok(Some(_)) => match apply(&mut client, reloader, upstream, s).await {
                Ok(r) => revision = r.max(revision),
                Err(e) => return e,
            },
            Ok(None) => return "the watch ended".into(),
            Err(e) => return format!("watch failed: {e}"),
        }
    }
}

/// Lists the prefix and hands its targets to the reloader; the revision read.
async fn apply(
    client: &mut etcd_client::Client,
    reloader: &Arc<Reloader>,
    upstream: &str,
    s: &EtcdSettings,
) -> Result<i64, String> {
    let listing = etcd::list(client, s).await?;
    let targets = targets_of(&listing, upstream);
    let (reloader, name) = (reloader.clone(), upstream.to_string());
    let count = targets.len();
    let applied = tokio::task::spawn_blocking(move || reloader.set_discovered(&name, targets))
        .await
        .map_err(|e| e.to_string())?;
    match applied {
        Ok(true) => log::info!("upstreams.{upstream}: {count} targets registered under {}", s.prefix),
        Ok(false) => {}
        Err(e) => log::error!("upstreams.{upstream}: discovered targets refused: {e}"),
    }
    Ok(listing.revision)
}

/// Each key's value: `"host:port"` or `{ "addr": "host:port", "weight": N }`.
fn targets_of(listing: &Listing, upstream: &str) -> Vec<TargetConfig> {
    let mut targets = Vec::new();
    for entry in &listing.entries {
        let value: serde_json::Value = match serde_json::from_slice(&entry.value) {
            Ok(v) => v,
            Err(_) => serde_json::Value::String(String::from_utf8_lossy(&entry.value).trim().to_string()),
        };
        let spec = value
            .as_str()
            .or_else(|| value["addr"].as_str())
            .unwrap_or_default()
            .to_string();
        let weight = value["weight"]
            .as_u64()
            .and_then(|w| u16::try_from(w).ok())
            .unwrap_or(1)
            .clamp(1, 100);
        match resolve(&spec) {
            Ok(addr) => targets.push(TargetConfig {
                spec,
                addr: Some(addr),
                weight,
            }),
            Err(e) => log::warn!("upstreams.{upstream}: {}: {e}", entry.key),
        }
    }
    targets.sort_by(|a, b| a.spec.cmp(&b.spec));
    targets
}

/// A resolver asking `server`, or the system's (/etc/resolv.conf).
fn dns_resolver(server: Option<std::net::SocketAddr>) -> Result<TokioResolver, String> {
    let builder = match server {
        Some(addr) => {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio().map_err(|e| format!("no system resolver: {e}"))?,
    };
    builder.build().map_err(|e| format!("cannot build the resolver: {e}"))
}

/// Shortest wait between two lookups, whatever the TTL says.
const MIN_DNS_WAIT: Duration = Duration::from_millis(500);

/// Keeps `upstream`'s discovered targets equal to `name`'s addresses.
async fn follow_dns(
    reloader: Arc<Reloader>,
    upstream: String,
    resolver: TokioResolver,
    name: String,
    port: u16,
    interval: Duration,
) {
    loop {
        let wait = match resolver.lookup_ip(name.as_str()).await {
            Ok(found) => {
                let mut addrs: Vec<std::net::SocketAddr> =
                    found.iter().map(|ip| std::net::SocketAddr::new(ip, port)).collect();
                addrs.sort();
                addrs.dedup();
                if addrs.is_empty() {
                    log::warn!("upstreams.{upstream}: {name} has no address; keeping the last targets");
                } else {
                    let targets = addrs
                        .iter()
                        .map(|a| TargetConfig {
                            spec: a.to_string(),
                            addr: Some(*a),
                            weight: 1,
                        })
                        .collect();
                    let (r, u) = (reloader.clone(), upstream.clone());
                    let count = addrs.len();
                    match tokio::task::spawn_blocking(move || r.set_discovered(&u, targets)).await {
                        Ok(Ok(true)) => log::info!("upstreams.{upstream}: {name} → {count} targets"),
                        Ok(Ok(false)) => {}
                        Ok(Err(e)) => log::error!("upstreams.{upstream}: discovered targets refused: {e}"),
                        Err(e) => log::error!("upstreams.{upstream}: {e}"),
                    }
                }
                found
                    .valid_until()
                    .saturating_duration_since(std::time::Instant::now())
                    .clamp(MIN_DNS_WAIT, interval)
            }
            Err(e) => {
                log::warn!("upstreams.{upstream}: cannot resolve {name} ({e}); keeping the last targets");
                interval.min(Duration::from_secs(5))
            }
        };
        // The resolver caches answers for their TTL; the next lookup must ask again.
        resolver.clear_cache();
        tokio::time::sleep(wait).await;
    }
}
