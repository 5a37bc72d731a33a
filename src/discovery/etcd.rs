//! Targets registered under an etcd prefix: listed, then watched; each change re-lists.

use super::{install, MAX_BACKOFF};
use crate::config::model::TargetConfig;
use crate::config::resolve;
use crate::etcd::{self, EtcdSettings, Listing};
use crate::reload::Reloader;
use etcd_client::WatchOptions;
use std::sync::Arc;
use std::time::Duration;

/// Keeps `upstream`'s discovered targets equal to what is under `s.prefix`.
pub(super) async fn follow(reloader: Arc<Reloader>, upstream: String, s: EtcdSettings) {
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
    install(reloader, upstream, targets, &format!("registered under {}", s.prefix)).await;
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
