//! Fleet mode: every change under the etcd prefix becomes a reload. The watch only says
//! *that* something changed; the reload lists the whole prefix again at one revision, so a
//! batch of changes (one transaction, or several landing together) applies as one
//! snapshot, and a refused change leaves the last good one serving.
//!
//! When etcd is unreachable, the watch is cancelled or its revision compacted away, the
//! node keeps serving, reconnects with backoff, lists again (catching up on whatever
//! changed meanwhile) and watches from there.

use crate::etcd::{self, EtcdSettings};
use crate::reload::Reloader;
use async_trait::async_trait;
use etcd_client::WatchOptions;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct WatchEtcd {
    reloader: Arc<Reloader>,
    settings: EtcdSettings,
}

impl WatchEtcd {
    pub fn new(reloader: Arc<Reloader>, settings: EtcdSettings) -> Self {
        WatchEtcd { reloader, settings }
    }

    /// Lists again and applies (off the runtime: validation and DNS block); the revision
    /// the node has now seen, or an error when etcd could not be read (the session ends,
    /// and the next one lists again: a change must not be lost to a failed read).
    async fn catch_up(&self, seen: i64) -> Result<i64, String> {
        let reloader = self.reloader.clone();
        let read = tokio::task::spawn_blocking(move || reloader.reload_and_log()).await;
        if !matches!(read, Ok(true)) {
            return Err("could not list the prefix".into());
        }
        let generation = i64::try_from(self.reloader.generation()).unwrap_or(0);
        Ok(seen.max(generation))
    }

    /// One connection's worth of watching; returns why it ended.
    async fn session(&self, seen: &mut i64, backoff: &mut Duration) -> String {
        let mut client = match etcd::connect(&self.settings).await {
            Ok(c) => c,
            Err(e) => return e,
        };
        *seen = match self.catch_up(*seen).await {
            Ok(s) => s,
            Err(e) => return e,
        };
        let options = WatchOptions::new().with_prefix().with_start_revision(*seen + 1);
        let mut stream = match client.watch(self.settings.prefix.as_str(), Some(options)).await {
            Ok(s) => s,
            Err(e) => return format!("cannot watch {}: {e}", self.settings.describe()),
        };
        log::info!("watching {} from revision {}", self.settings.describe(), *seen + 1);
        *backoff = MIN_BACKOFF;
        loop {
            let response = match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => return "the watch stream ended".into(),
                Err(e) => return format!("watch failed: {e}"),
            };
            if response.compact_revision() > 0 {
                return format!("revision {} was compacted away", *seen + 1);
            }
            if response.canceled() {
                return format!("the watch was cancelled: {}", response.cancel_reason());
            }
            if response.events().is_empty() {
                continue;
            }
            let revision = response.header().map_or(*seen, |h| h.revision());
            match self.catch_up(revision).await {
                Ok(s) => *seen = s,
                Err(e) => return e,
            }
        }
    }
}

#[async_trait]
impl BackgroundService for WatchEtcd {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut seen = i64::try_from(self.reloader.generation()).unwrap_or(0);
        let mut backoff = MIN_BACKOFF;
        loop {
            let ended = tokio::select! {
                _ = shutdown.changed() => return,
                why = self.session(&mut seen, &mut backoff) => why,
            };
            log::warn!(
                "{}: {ended}; serving revision {} meanwhile, trying again in {backoff:?}",
                self.settings.describe(),
                self.reloader.generation()
            );
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
