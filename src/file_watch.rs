//! `watch: true` (or `run --watch`): the config file and the files it names (certificates,
//! keys, CAs, OCSP responses) are looked at a few times a second, and a change becomes a
//! reload through the same validate-then-swap path as SIGHUP: a bad file is refused and
//! the running config keeps serving.
//!
//! Looking (a `stat` per file) rather than subscribing to inotify, because what a mounted
//! Kubernetes ConfigMap does is swap a symlink two levels up (`..data`): the file's own
//! inode never sees an event, but its metadata, followed through the links, changes. A
//! change is applied once the files have stopped changing for one look (an editor's or a
//! deploy tool's several writes make one reload).

use crate::reload::Reloader;
use crate::snapshot::Snapshot;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the files are looked at; a change is applied one look after the last write.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// The config keys whose values are files the loader reads.
const FILE_KEYS: [&str; 10] = [
    "cert",
    "key",
    "ocsp",
    "ca_file",
    "cert_file",
    "key_file",
    "crl_file",
    "client_cert",
    "client_key",
    "secret_file",
];

pub struct WatchFiles {
    reloader: Arc<Reloader>,
    config: PathBuf,
    /// `--watch`: on whatever the config's `watch` says.
    always: bool,
}

/// What tells a file changed: where the path leads (inode), when it was written, its size;
/// `None` while it does not exist.
type Stamp = Option<(u64, u64, SystemTime, u64)>;

impl WatchFiles {
    pub fn new(reloader: Arc<Reloader>, config: PathBuf, always: bool) -> Self {
        WatchFiles {
            reloader,
            config,
            always,
        }
    }

    /// The config file and every file `snapshot`'s config names.
    fn files(&self, snapshot: &Snapshot) -> Vec<PathBuf> {
        let mut files = vec![self.config.clone()];
        named_files(&snapshot.document.value(), &mut files);
        files.sort();
        files.dedup();
        files
    }
}

/// Each file with its stamp now.
fn stamps(files: &[PathBuf]) -> Vec<(PathBuf, Stamp)> {
    files
        .iter()
        .map(|path| {
            let stamp = std::fs::metadata(path).ok().map(|m| {
                (
                    m.dev(),
                    m.ino(),
                    m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    m.len(),
                )
            });
            (path.clone(), stamp)
        })
        .collect()
}

/// Every string under a [`FILE_KEYS`] key of the config document.
fn named_files(value: &serde_json::Value, files: &mut Vec<PathBuf>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match v {
                    // A route's `client_cert: required` shares the name of an upstream's file.
                    serde_json::Value::String(word)
                        if key == "client_cert" && matches!(word.as_str(), "required" | "optional") => {}
                    serde_json::Value::String(path) if FILE_KEYS.contains(&key.as_str()) => files.push(path.into()),
                    _ => named_files(v, files),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| named_files(v, files)),
        _ => {}
    }
}

#[async_trait]
impl BackgroundService for WatchFiles {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // The files to look at, found again only when the config changed (not every look).
        let first = self.reloader.snapshot();
        let (mut generation, mut files) = (first.generation, self.files(&first));
        let mut seen = stamps(&files);
        // Files changed since the last reload, applied once they stop changing.
        let mut pending = std::collections::BTreeSet::new();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(LOOK_EVERY) => {}
            }
            let snapshot = self.reloader.snapshot();
            if snapshot.generation != generation {
                (generation, files) = (snapshot.generation, self.files(&snapshot));
            }
            let now = stamps(&files);
            if !(self.always || snapshot.server.watch) {
                // Off: what is on disk now is the baseline if it is switched on.
                (seen, pending) = (now, Default::default());
                continue;
            }
            if now != seen {
                pending.extend(
                    now.iter()
                        .filter(|f| !seen.contains(f))
                        .map(|(p, _)| p.display().to_string()),
                );
                seen = now;
                continue;
            }
            if pending.is_empty() {
                continue;
            }
            let changed = std::mem::take(&mut pending).into_iter().collect::<Vec<_>>().join(", ");
            log::info!("{changed} changed: reloading");
            let reloader = self.reloader.clone();
            let _ = tokio::task::spawn_blocking(move || reloader.reload_and_log()).await;
            // The new config may name other files.
            let snapshot = self.reloader.snapshot();
            (generation, files) = (snapshot.generation, self.files(&snapshot));
            seen = stamps(&files);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_a_config_names_are_found_wherever_they_are() {
        let doc = serde_json::json!({
            "tls": { "certs": [{ "cert": "a.pem", "key": "a.key", "ocsp": "a.ocsp", "sni": ["x"] }] },
            "upstreams": { "u": { "tls": { "ca_file": "ca.pem" } } },
            "config_source": { "etcd": { "tls": { "cert_file": "c.pem", "key_file": "c.key" } } },
            "routes": [{ "path": "/cert" }],
        });
        let mut files = Vec::new();
        named_files(&doc, &mut files);
        files.sort();
        let names: Vec<_> = files.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(names, ["a.key", "a.ocsp", "a.pem", "c.key", "c.pem", "ca.pem"]);
    }
}
