//! Fleet mode: every change under the etcd prefix becomes a reload. A session lists the
//! whole prefix once, then applies each watch response (all the events of a revision: one
//! transaction applies as one snapshot) to that listing and reloads from it, without
//! reading etcd again: a change on a large config costs a build, not a re-list. A refused
//! change leaves the last good snapshot serving.
//!
//! When etcd is unreachable, the watch is cancelled or its revision compacted away, the
//! node keeps serving, reconnects with backoff, lists again (catching up on whatever
//! changed meanwhile) and watches from there.

use crate::etcd::{self, EtcdSettings, Listing};
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

    /// Applies `listing` (off the runtime: validation and DNS block); an error when it
    /// could not be (the session ends, and the next one lists again).
    async fn apply(&self, listing: &Listing) -> Result<(), String> {
        let (reloader, listing) = (self.reloader.clone(), listing.clone());
        let applied = tokio::task::spawn_blocking(move || reloader.reload_listing_and_log(&listing)).await;
        match applied {
            Ok(true) => Ok(()),
            _ => Err("could not apply the listing".into()),
        }
    }

    /// One connection's worth of watching; returns why it ended.
    async fn session(&self, seen: &mut i64, backoff: &mut Duration) -> String {
        let mut client = match etcd::connect(&self.settings).await {
            Ok(c) => c,
            Err(e) => return e,
        };
        let mut listing = match etcd::list(&mut client, &self.settings).await {
            Ok(l) => l,
            Err(e) => return e,
        };
        if let Err(e) = self.apply(&listing).await {
            return e;
        }
        *seen = listing.revision;
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
            listing.apply(&response, &self.settings.prefix);
            if let Err(e) = self.apply(&listing).await {
                return e;
            }
            *seen = listing.revision;
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
