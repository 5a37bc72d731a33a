//! parse → validate → build → swap. The only code that writes the shared snapshot after
//! startup. A config that fails any step is refused with every problem logged, and the
//! snapshot in service keeps serving.

use crate::config::model::{ServerSettings, TargetConfig};
use crate::config::{fleet, resolve, Config, ConfigError, ConfigSource, Problem};
use crate::observe::metrics::Metrics;
use crate::snapshot::{SharedSnapshot, Snapshot};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::signal::unix::{signal, SignalKind};

/// Targets registered or deregistered at runtime (admin API), kept across reloads.
#[derive(Debug, Default, Clone)]
struct TargetChanges {
    added: Vec<TargetConfig>,
    removed: Vec<SocketAddr>,
    /// What `targets_from` found last (replaced as a whole at each discovery).
    discovered: Vec<TargetConfig>,
}

struct State {
    /// The last config that loaded, before runtime target changes.
    config: Config,
    changes: BTreeMap<String, TargetChanges>,
}

pub struct Reloader {
    source: ConfigSource,
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
    /// One change at a time (SIGHUP, admin reload, target registration).
    state: Mutex<State>,
    /// The last config refused, for `/admin/config` (fleet mode: a bad change in etcd).
    refused: Mutex<Option<Refusal>>,
}

/// A config that was read and refused.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Where it came from (with the etcd revision in fleet mode).
    pub source: String,
    pub problems: Vec<String>,
    pub at: jiff::Timestamp,
}

impl Reloader {
    /// `config` is the one the running snapshot was built from.
    pub fn new(source: ConfigSource, config: Config, snapshot: SharedSnapshot, metrics: Arc<Metrics>) -> Self {
        Reloader {
            source,
            snapshot,
            metrics,
            state: Mutex::new(State {
                config,
                changes: BTreeMap::new(),
            }),
            refused: Mutex::new(None),
        }
    }

    /// The snapshot serving now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The generation of the snapshot serving now (the etcd revision in fleet mode).
    pub fn generation(&self) -> u64 {
        self.snapshot.load().generation
    }

    /// The last refused config since the last one that was applied.
    pub fn last_refused(&self) -> Option<Refusal> {
        self.refused.lock().ok().and_then(|r| r.clone())
    }

    pub fn source(&self) -> &ConfigSource {
        &self.source
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Loads the source again and swaps the new snapshot in. Blocking (file and DNS I/O):
    /// call it off the request runtime.
    pub fn reload(&self) -> Result<Arc<Snapshot>, ConfigError> {
        self.reload_from(|| self.source.load())
    }

    /// Fleet mode's watch: the prefix it just listed, applied (no second read of etcd).
    pub fn reload_listing(&self, listing: &crate::etcd::Listing) -> Result<Arc<Snapshot>, ConfigError> {
        self.reload_from(|| self.source.load_listing(listing))
    }

    fn reload_from(&self, load: impl FnOnce() -> Result<Config, ConfigError>) -> Result<Arc<Snapshot>, ConfigError> {
        let mut state = self.lock();
        let outcome = load().and_then(|config| {
            let next = self.install(&config, &state.changes)?;
            state.config = config;
            Ok(next)
        });
        let result = match &outcome {
            Ok(_) => "ok",
            Err(e) if e.unavailable => "unavailable",
            Err(_) => "invalid",
        };
        self.metrics.reloaded(result);
        if let Ok(mut refused) = self.refused.lock() {
            *refused = match &outcome {
                Ok(_) => None,
                Err(e) if e.unavailable => refused.take(),
                Err(e) => Some(Refusal {
                    source: e.source.clone(),
                    problems: e.problems.iter().map(|p| p.to_string()).collect(),
                    at: jiff::Timestamp::now(),
                }),
            };
        }
        outcome
    }

    /// Adds `spec` (host:port) to `upstream` at runtime; kept across reloads. Fleet mode:
    /// written to the upstream's etcd key, so every node gets it.
    pub fn register_target(&self, upstream: &str, spec: &str, weight: u16) -> Result<Arc<Snapshot>, ConfigError> {
        let addr = resolve(spec).map_err(|e| ConfigError::single("admin", "addr", e))?;
        if let ConfigSource::Etcd { settings, .. } = &self.source {
            return self.edit_targets_in_etcd(settings, upstream, &|targets| {
                targets.retain(|t| !same_target(t, spec, addr));
                targets.push(serde_json::json!({ "addr": spec, "weight": weight }));
                true
            });
        }
        let target = TargetConfig {
            spec: spec.to_string(),
            addr: Some(addr),
            weight,
        };
        self.change_targets(upstream, |c| {
            c.removed.retain(|a| *a != addr);
            c.added.retain(|t| t.addr != Some(addr));
            c.added.push(target);
        })
    }

    /// Removes the target at `spec` from `upstream` at runtime; kept across reloads.
    pub fn deregister_target(&self, upstream: &str, spec: &str) -> Result<Arc<Snapshot>, ConfigError> {
        let addr = resolve(spec).map_err(|e| ConfigError::single("admin", "addr", e))?;
        if let ConfigSource::Etcd { settings, .. } = &self.source {
            return self.edit_targets_in_etcd(settings, upstream, &|targets| {
                let before = targets.len();
                targets.retain(|t| !same_target(t, spec, addr));
                targets.len() < before
            });
        }
        self.change_targets(upstream, |c| {
            c.added.retain(|t| t.addr != Some(addr));
            if !c.removed.contains(&addr) {
                c.removed.push(addr);
            }
        })
    }

    /// The targets `targets_from` found for `upstream` now; rebuilds when they changed.
    pub fn set_discovered(&self, upstream: &str, targets: Vec<TargetConfig>) -> Result<bool, ConfigError> {
        let mut state = self.lock();
        let mut changes = state.changes.clone();
        let entry = changes.entry(upstream.to_string()).or_default();
        if entry.discovered == targets {
            return Ok(false);
        }
        entry.discovered = targets;
        self.install(&state.config, &changes)?;
        state.changes = changes;
        Ok(true)
    }

    /// Fleet mode's target registration: the upstream's `targets` in etcd edited by `edit`
    /// (false: nothing to change), written with a compare-and-swap, tried again when
    /// another writer changed the upstream in between.
    fn edit_targets_in_etcd(
        &self,
        settings: &crate::etcd::EtcdSettings,
        upstream: &str,
        edit: &dyn Fn(&mut Vec<serde_json::Value>) -> bool,
    ) -> Result<Arc<Snapshot>, ConfigError> {
        let key = format!("upstreams/{upstream}");
        let describe = |e: ChangeError| match e {
            ChangeError::Invalid(e) => e,
            ChangeError::Unavailable(why) => ConfigError::unavailable(settings.describe(), why),
            ChangeError::NotFound => ConfigError::single("admin", "upstream", format!("no {key}")),
            ChangeError::Conflict { .. } => ConfigError::single("admin", &key, "changed by another writer: try again"),
        };
        let mut last = ChangeError::NotFound;
        for _ in 0..3 {
            let listing =
                crate::etcd::list_blocking(settings).map_err(|e| ConfigError::unavailable(settings.describe(), e))?;
            let Some(entry) = listing.get(&key) else {
                return Err(ConfigError::single(
                    "admin",
                    "upstream",
                    format!("unknown upstream \"{upstream}\""),
                ));
            };
            let mut value: serde_json::Value = serde_yaml::from_slice(&entry.value)
                .map_err(|e| ConfigError::single(settings.describe(), &key, format!("is not JSON or YAML: {e}")))?;
            let mut targets = value["targets"].as_array().cloned().unwrap_or_default();
            if !edit(&mut targets) {
                return Err(ConfigError::single("admin", "addr", format!("not a target of {key}")));
            }
            value["targets"] = serde_json::Value::Array(targets);
            match self.change_in_etcd(
                settings,
                ResourceKind::Upstream,
                upstream,
                Some(value),
                Some(entry.mod_revision),
            ) {
                Ok(_) => return Ok(self.snapshot.load_full()),
                Err(e @ ChangeError::Conflict { .. }) => last = e,
                Err(e) => return Err(describe(e)),
            }
        }
        Err(describe(last))
    }

    fn change_targets(
        &self,
        upstream: &str,
        change: impl FnOnce(&mut TargetChanges),
    ) -> Result<Arc<Snapshot>, ConfigError> {
        let mut state = self.lock();
        if !state.config.upstreams.contains_key(upstream) {
            return Err(ConfigError::single(
                "admin",
                "upstream",
                format!("unknown upstream \"{upstream}\""),
            ));
        }
        let mut changes = state.changes.clone();
        change(changes.entry(upstream.to_string()).or_default());
        let next = self.install(&state.config, &changes)?;
        state.changes = changes;
        Ok(next)
    }

    /// Builds `config` with the runtime target changes and swaps it in.
    fn install(
        &self,
        config: &Config,
        changes: &BTreeMap<String, TargetChanges>,
    ) -> Result<Arc<Snapshot>, ConfigError> {
        let mut config = config.clone();
        for (name, c) in changes {
            let Some(upstream) = config.upstreams.get_mut(name) else {
                continue;
            };
            upstream.targets.retain(|t| {
                !t.addr.is_some_and(|addr| c.removed.contains(&addr)) && !c.added.iter().any(|a| a.addr == t.addr)
            });
            upstream.targets.extend(c.added.iter().cloned());
            for found in &c.discovered {
                if !upstream.targets.iter().any(|t| t.addr == found.addr) {
                    upstream.targets.push(found.clone());
                }
            }
            if upstream.targets.is_empty() && upstream.targets_from.is_none() {
                return Err(ConfigError::single(
                    "admin",
                    format!("upstreams.{name}.targets"),
                    "the last target cannot be removed",
                ));
            }
        }
        let current = self.snapshot.load_full();
        check_restart_fields(&current.server, &config.server, &config.source)?;
        // Fleet mode keeps the applied config as the node's last good one.
        let state = matches!(self.source, ConfigSource::Etcd { .. })
            .then(|| (config.server.state_dir.clone(), fleet::state_text(&config)));
        let next = Arc::new(Snapshot::build(config, Some(&current))?);
        next.size_upstream_responses();
        self.snapshot.store(next.clone());
        crate::memory::release_after_load();
        if let Some((dir, text)) = state {
            if let Err(e) = text.and_then(|t| fleet::write_state(&dir, &t)) {
                log::warn!("fleet state not saved (a restart while etcd is down would not find it): {e}");
            }
        }
        Ok(next)
    }

    /// [`Self::reload`] with its outcome logged.
    /// Resolves again the target names that did not resolve; when one now does, rebuilds
    /// the last loaded config with its address (the file is not read again: an edit not
    /// yet reloaded stays unapplied). Blocking (DNS): call it off the request runtime.
    pub fn resolve_pending(&self) {
        let mut state = self.lock();
        let mut config = state.config.clone();
        let mut resolved = Vec::new();
        for (name, upstream) in &mut config.upstreams {
            for target in upstream.targets.iter_mut().filter(|t| t.addr.is_none()) {
                if let Ok(addr) = resolve(&target.spec) {
                    target.addr = Some(addr);
                    resolved.push(format!("upstreams.{name}: \"{}\" resolved to {addr}", target.spec));
                }
            }
        }
        if resolved.is_empty() {
            return;
        }
        match self.install(&config, &state.changes) {
            Ok(s) => {
                state.config = config;
                for r in resolved {
                    log::info!("{r}: in service (generation {})", s.generation);
                }
            }
            Err(e) => log::error!("cannot serve newly resolved targets: {e}"),
        }
    }

    /// [`Self::reload`] with its outcome logged; false when the source could not be read
    /// (the caller may try again), true when it was applied or refused.
    pub fn reload_and_log(&self) -> bool {
        let started = std::time::Instant::now();
        log_reload(self.reload(), started)
    }

    /// [`Self::reload_listing`] with its outcome logged.
    pub fn reload_listing_and_log(&self, listing: &crate::etcd::Listing) -> bool {
        let started = std::time::Instant::now();
        log_reload(self.reload_listing(listing), started)
    }
}

/// Logs a reload's outcome; false when the source could not be read (the caller may try
/// again), true when it was applied or refused.
fn log_reload(outcome: Result<Arc<Snapshot>, ConfigError>, started: std::time::Instant) -> bool {
    match outcome {
        Ok(s) => {
            log::info!(
                "config reloaded from {}: generation {}, {} routes, {} upstreams, in {} ms",
                s.source,
                s.generation,
                s.routes.len(),
                s.upstreams.len(),
                started.elapsed().as_millis()
            );
            for w in &s.warnings {
                log::warn!("{}: {w}", s.source);
            }
            true
        }
        Err(e) if e.unavailable => {
            log::warn!("config source unreadable, still serving the previous config: {e}");
            false
        }
        Err(e) => {
            log::error!("config reload refused, still serving the previous config: {e}");
            true
        }
    }
}

/// The resources the admin API edits one at a time (fleet mode: one etcd key each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Route,
    Upstream,
    Consumer,
}

impl ResourceKind {
    pub fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "routes" => Some(ResourceKind::Route),
            "upstreams" => Some(ResourceKind::Upstream),
            "consumers" => Some(ResourceKind::Consumer),
            _ => None,
        }
    }

    /// The etcd key's first segment, and the admin path's.
    pub fn plural(self) -> &'static str {
        match self {
            ResourceKind::Route => "routes",
            ResourceKind::Upstream => "upstreams",
            ResourceKind::Consumer => "consumers",
        }
    }
}

/// Why an admin change was not made.
#[derive(Debug)]
pub enum ChangeError {
    /// The config it would make is refused: nothing was written.
    Invalid(ConfigError),
    /// Someone changed it since the revision the writer knew (`If-Match`, or a race).
    Conflict { current: i64 },
    /// Deleting what is not there.
    NotFound,
    /// The store could not be read or written.
    Unavailable(String),
}

impl Reloader {
    /// Sets (or, with `value` `None`, removes) one resource. The whole resulting config is
    /// validated first. Fleet mode: written to etcd with a compare-and-swap on the key's
    /// revision (`if_match`, else the one just read), so that of two racing writers one
    /// gets a conflict instead of losing an update; every node then applies it. Otherwise
    /// the running config is edited in memory (this node only; a reload from the file
    /// or a restart drops it). The new revision (fleet) or generation.
    pub fn change_resource(
        &self,
        kind: ResourceKind,
        name: &str,
        value: Option<serde_json::Value>,
        if_match: Option<i64>,
    ) -> Result<i64, ChangeError> {
        if name.is_empty() || name.contains('/') {
            let e = ConfigError::single("admin", kind.plural(), "a name must be non-empty and hold no `/`");
            return Err(ChangeError::Invalid(e));
        }
        match &self.source {
            ConfigSource::Etcd { settings, .. } => self.change_in_etcd(settings, kind, name, value, if_match),
            _ => self.change_in_memory(kind, name, value, if_match),
        }
    }

    fn change_in_etcd(
        &self,
        settings: &crate::etcd::EtcdSettings,
        kind: ResourceKind,
        name: &str,
        value: Option<serde_json::Value>,
        if_match: Option<i64>,
    ) -> Result<i64, ChangeError> {
        let key = format!("{}/{name}", kind.plural());
        let listing = crate::etcd::list_blocking(settings).map_err(ChangeError::Unavailable)?;
        let current = listing.get(&key).map_or(0, |e| e.mod_revision);
        if value.is_none() && current == 0 {
            return Err(ChangeError::NotFound);
        }
        if if_match.is_some_and(|m| m != current) {
            return Err(ChangeError::Conflict { current });
        }
        let bytes = value
            .map(|v| serde_json::to_vec(&v))
            .transpose()
            .map_err(|e| ChangeError::Unavailable(e.to_string()))?;
        let local = self.source.node_local().map_err(ChangeError::Invalid)?;
        let lookup = |k: &str| std::env::var(k).ok();
        let next = listing.with(&key, bytes.clone());
        let source = format!("{} + the change to {key}", settings.describe());
        fleet::load(&next, &local, &source, &lookup).map_err(ChangeError::Invalid)?;
        let written = crate::etcd::write_if_unchanged_blocking(settings, &key, bytes, current)
            .map_err(ChangeError::Unavailable)?;
        let revision = written.map_err(|now| ChangeError::Conflict { current: now })?;
        // Applied here at once (the watch would do it a moment later, as on other nodes).
        self.reload_and_log();
        Ok(revision)
    }

    fn change_in_memory(
        &self,
        kind: ResourceKind,
        name: &str,
        value: Option<serde_json::Value>,
        if_match: Option<i64>,
    ) -> Result<i64, ChangeError> {
        let mut state = self.lock();
        let generation = i64::try_from(self.generation()).unwrap_or(i64::MAX);
        if if_match.is_some_and(|m| m != generation) {
            return Err(ChangeError::Conflict { current: generation });
        }
        let mut document = state.config.document.value();
        if !edit_document(&mut document, kind, name, value) {
            return Err(ChangeError::NotFound);
        }
        let text = serde_json::to_string(&document).map_err(|e| ChangeError::Unavailable(e.to_string()))?;
        let source = format!("{} + admin changes", self.source.describe());
        let lookup = |k: &str| std::env::var(k).ok();
        let config = crate::config::parse_yaml(&text, &source, &lookup).map_err(ChangeError::Invalid)?;
        let next = self.install(&config, &state.changes).map_err(ChangeError::Invalid)?;
        state.config = config;
        self.metrics.reloaded("ok");
        Ok(i64::try_from(next.generation).unwrap_or(i64::MAX))
    }
}

/// Whether a target entry (`"host:port"` or `{ addr, weight }`) is `spec` or its address.
fn same_target(t: &serde_json::Value, spec: &str, addr: SocketAddr) -> bool {
    let written = t.as_str().or_else(|| t["addr"].as_str()).unwrap_or_default();
    written == spec || resolve(written).is_ok_and(|a| a == addr)
}

/// Sets or removes one resource in a config document (the raw config as JSON); false when
/// removing what is not there.
fn edit_document(
    doc: &mut serde_json::Value,
    kind: ResourceKind,
    name: &str,
    value: Option<serde_json::Value>,
) -> bool {
    use serde_json::{json, Value};
    let named = |mut v: Value, field: &str| {
        if let Some(m) = v.as_object_mut() {
            m.insert(field.to_string(), json!(name));
        }
        v
    };
    match kind {
        ResourceKind::Upstream => {
            if !doc["upstreams"].is_object() {
                doc["upstreams"] = json!({});
            }
            let Some(map) = doc["upstreams"].as_object_mut() else {
                return false;
            };
            match value {
                Some(v) => {
                    map.insert(name.to_string(), v);
                    true
                }
                None => map.remove(name).is_some(),
            }
        }
        ResourceKind::Route | ResourceKind::Consumer => {
            let (list, field) = match kind {
                ResourceKind::Route => (&mut doc["routes"], "name"),
                _ => (&mut doc["auth"]["api_keys"]["keys"], "consumer"),
            };
            if !list.is_array() {
                *list = json!([]);
            }
            let Some(items) = list.as_array_mut() else {
                return false;
            };
            // An unnamed route is called route-<index>, as validation names it.
            let position = items.iter().enumerate().position(|(i, item)| {
                item[field].as_str() == Some(name)
                    || (kind == ResourceKind::Route && item[field].is_null() && format!("route-{i}") == name)
            });
            match (value, position) {
                (Some(v), Some(i)) => items[i] = named(v, field),
                (Some(v), None) => items.push(named(v, field)),
                (None, Some(i)) => {
                    items.remove(i);
                }
                (None, None) => return false,
            }
            true
        }
    }
}

/// Listeners, threads and process files are fixed for the life of the process.
fn check_restart_fields(running: &ServerSettings, new: &ServerSettings, source: &str) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    let mut fixed = |field: &str, changed: bool| {
        if changed {
            problems.push(Problem::new(
                field,
                "cannot change on reload; restart (or graceful upgrade) to apply it",
            ));
        }
    };
    fixed("listen", running.listen != new.listen);
    fixed("threads", running.threads != new.threads);
    fixed("work_stealing", running.work_stealing != new.work_stealing);
    fixed(
        "upstream_keepalive_pool",
        running.upstream_keepalive_pool != new.upstream_keepalive_pool,
    );
    fixed("pid_file", running.pid_file != new.pid_file);
    fixed("upgrade_sock", running.upgrade_sock != new.upgrade_sock);
    fixed("log_file", running.log_file != new.log_file);
    fixed("drain_period", running.drain_period != new.drain_period);
    fixed("grace_period", running.grace_period != new.grace_period);
    fixed("shutdown_timeout", running.shutdown_timeout != new.shutdown_timeout);
    fixed(
        "admin.listen",
        running.admin.as_ref().map(|a| a.listen) != new.admin.as_ref().map(|a| a.listen),
    );
    fixed("tracing", running.tracing != new.tracing);
    fixed("tls.listen", running.tls_listen != new.tls_listen);
    fixed("tls.h2", running.tls_h2 != new.tls_h2);
    fixed("h2c", running.h2c != new.h2c);
    fixed("reuse_port", running.reuse_port != new.reuse_port);
    fixed("state_dir", running.state_dir != new.state_dir);
    fixed("read_buffer", running.read_buffer != new.read_buffer);
    fixed("tls.read_buffer", running.tls_read_buffer != new.tls_read_buffer);
    fixed("cache.max_size", running.cache.max_size != new.cache.max_size);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError {
            source: source.to_string(),
            problems,
            unavailable: false,
        })
    }
}

/// How often names that did not resolve are tried again.
const RESOLVE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Background service: SIGHUP → reload; and target names that did not resolve are tried
/// again every few seconds.
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
        let mut resolve = tokio::time::interval(RESOLVE_EVERY);
        resolve.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = resolve.tick() => {
                    let pending = self.reloader.snapshot.load().upstreams.values().any(|u| u.has_unresolved());
                    if pending {
                        let reloader = self.reloader.clone();
                        let _ = tokio::task::spawn_blocking(move || reloader.resolve_pending()).await;
                    }
                }
                _ = hangups.recv() => {
                    log::info!("SIGHUP: reloading {}", self.reloader.source().describe());
                    let reloader = self.reloader.clone();
                    if let Err(e) = tokio::task::spawn_blocking(move || reloader.reload_and_log()).await {
                        log::error!("reload task failed: {e}");
                    }
                }
            }
        }
    }
}
