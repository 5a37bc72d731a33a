//! Certificates from an ACME CA (`tls.acme`, RFC 8555), obtained and renewed in the
//! background, never on the request path.
//!
//! [`AcmeService`] wakes every `check_interval` (sooner after a reload, or while a name has
//! no certificate yet): it loads what `storage` holds (another node may have renewed),
//! publishes it to the TLS listeners ([`AcmeState::issued`], chosen by SNI like the
//! configured certificates), and orders a certificate for each name that has none or
//! expires within `renew_before`. Ordering takes the storage's lock, so the nodes sharing a
//! `storage` order once and the others load the result. A failed order keeps the current
//! certificate, is logged and counted (`gateway_acme_orders_total{result="failure"}`), and is
//! retried with a growing delay. `gateway_cert_expiry_seconds` follows every served
//! certificate, configured ones included.

pub mod challenges;
mod order;
pub mod storage;

use crate::config::model::{AcmeSettings, LoadedCert};
use crate::observe::metrics::Metrics;
use crate::snapshot::SharedSnapshot;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use challenges::Challenges;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use storage::Storage;

/// Without `tls.acme`, how often the expiry gauges of configured certificates are updated.
const IDLE_INTERVAL: Duration = Duration::from_secs(60);
/// While a name has no certificate: how soon storage is looked at again (another node may
/// be ordering it).
const MISSING_INTERVAL: Duration = Duration::from_secs(2);
/// Failed orders are retried after this, doubled each time, up to `check_interval`.
const FIRST_RETRY: Duration = Duration::from_secs(10);

/// What the TLS listeners and the plain listener read.
#[derive(Default)]
pub struct AcmeState {
    pub challenges: Challenges,
    /// The certificates obtained, one per name.
    pub issued: ArcSwap<Vec<LoadedCert>>,
}

pub struct AcmeService {
    state: Arc<AcmeState>,
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
}

impl AcmeService {
    pub fn new(state: Arc<AcmeState>, snapshot: SharedSnapshot, metrics: Arc<Metrics>) -> Self {
        AcmeService {
            state,
            snapshot,
            metrics,
        }
    }
}

/// The service's memory between checks.
#[derive(Default)]
struct Progress {
    /// When each served certificate's files last changed, to reload only what did.
    loaded: HashMap<String, SystemTime>,
    /// Failed orders: how many in a row, and not before when to try again.
    failures: HashMap<String, (u32, Instant)>,
    account: Option<(Arc<AcmeSettings>, instant_acme::Account)>,
}

#[async_trait]
impl BackgroundService for AcmeService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut progress = Progress::default();
        loop {
            let snapshot = self.snapshot.load_full();
            let wait = match &snapshot.acme {
                Some(settings) => self.check(settings, &mut progress).await,
                None => IDLE_INTERVAL,
            };
            self.report_expiry(&snapshot.certs);
            let deadline = Instant::now() + wait;
            // Wake early when a reload brings other settings or names.
            while Instant::now() < deadline {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                if self.snapshot.load().generation != snapshot.generation {
                    break;
                }
            }
        }
    }
}

impl AcmeService {
    /// One pass over the names; returns how long to wait before the next.
    async fn check(&self, settings: &Arc<AcmeSettings>, progress: &mut Progress) -> Duration {
        let storage = Storage::new(&settings.storage);
        self.load_stored(settings, &storage, progress);
        let due: Vec<String> = settings
            .domains
            .iter()
            .filter(|name| self.due(name, settings))
            .filter(|name| {
                progress
                    .failures
                    .get(*name)
                    .is_none_or(|(_, next)| Instant::now() >= *next)
            })
            .cloned()
            .collect();
        if !due.is_empty() {
            match storage.try_lock() {
                Ok(Some(_lock)) => {
                    // Another node may have renewed between our look and the lock.
                    self.load_stored(settings, &storage, progress);
                    for name in due.iter().filter(|name| self.due(name, settings)) {
                        self.renew(name, settings, &storage, progress).await;
                    }
                }
                Ok(None) => log::info!(
                    "acme: another node is ordering; its certificates will be loaded from {}",
                    settings.storage.display()
                ),
                Err(e) => log::warn!("acme: cannot lock {}: {e}", settings.storage.display()),
            }
        }
        let missing = settings.domains.iter().any(|name| self.served(name).is_none());
        if missing {
            settings.check_interval.min(MISSING_INTERVAL)
        } else {
            settings.check_interval
        }
    }

    fn served(&self, name: &str) -> Option<LoadedCert> {
        self.state
            .issued
            .load()
            .iter()
            .find(|c| c.names.iter().any(|n| n == name))
            .cloned()
    }

    fn due(&self, name: &str, settings: &AcmeSettings) -> bool {
        match self.served(name) {
            Some(cert) => storage::seconds_left(&cert.cert) < settings.renew_before.as_secs() as i64,
            None => true,
        }
    }

    /// Publishes the stored certificate of each name whose files changed since last time.
    fn load_stored(&self, settings: &AcmeSettings, storage: &Storage, progress: &mut Progress) {
        let mut issued: Vec<LoadedCert> = self
            .state
            .issued
            .load()
            .iter()
            .filter(|c| c.names.iter().any(|n| settings.domains.contains(n)))
            .cloned()
            .collect();
        let mut changed = issued.len() != self.state.issued.load().len();
        for name in &settings.domains {
            let on_disk = storage.changed(name);
            if on_disk.is_none() || on_disk == progress.loaded.get(name).copied() {
                continue;
            }
            if let Some((cert, at)) = storage.load(name) {
                log::info!(
                    "acme: serving the certificate for {name} from {} (expires {})",
                    cert.cert_path,
                    cert.cert.not_after()
                );
                issued.retain(|c| !c.names.iter().any(|n| n == name));
                issued.push(cert);
                progress.loaded.insert(name.clone(), at);
                changed = true;
            }
        }
        if changed {
            self.state.issued.store(Arc::new(issued));
        }
    }

    async fn renew(&self, name: &str, settings: &Arc<AcmeSettings>, storage: &Storage, progress: &mut Progress) {
        log::info!(
            "acme: ordering a certificate for {name} from {} ({})",
            settings.directory,
            settings.challenge.name()
        );
        let result = async {
            let account = match &progress.account {
                Some((for_settings, account)) if for_settings.directory == settings.directory => account.clone(),
                _ => {
                    let account = order::account(settings, storage).await?;
                    progress.account = Some((settings.clone(), account.clone()));
                    account
                }
            };
            let (chain, key) =
                order::order(&account, name, settings.challenge, &self.state.challenges, storage).await?;
            storage::parse(name, std::path::Path::new(name), chain.as_bytes(), key.as_bytes())?;
            storage
                .save(name, &chain, &key)
                .map_err(|e| format!("storing in {}: {e}", settings.storage.display()))
        }
        .await;
        match result {
            Ok(()) => {
                self.metrics.acme_order("success");
                progress.failures.remove(name);
                log::info!("acme: obtained a certificate for {name}");
                self.load_stored(settings, storage, progress);
            }
            Err(e) => {
                self.metrics.acme_order("failure");
                let failures = progress.failures.get(name).map_or(1, |(n, _)| n + 1);
                let delay = FIRST_RETRY
                    .saturating_mul(1 << failures.min(16))
                    .min(settings.check_interval.max(FIRST_RETRY));
                progress
                    .failures
                    .insert(name.to_string(), (failures, Instant::now() + delay));
                let keeping = if self.served(name).is_some() {
                    "keeping the current certificate"
                } else {
                    "no certificate for it yet"
                };
                log::error!("acme: ordering a certificate for {name} failed ({keeping}; next try in {delay:?}): {e}");
            }
        }
    }

    fn report_expiry(&self, configured: &[LoadedCert]) {
        let issued = self.state.issued.load();
        let certs: Vec<(String, i64)> = configured
            .iter()
            .chain(issued.iter())
            .map(|c| {
                let name = c.names.first().cloned().unwrap_or_else(|| c.cert_path.clone());
                (name, storage::seconds_left(&c.cert))
            })
            .collect();
        self.metrics.cert_expiry(&certs);
    }
}
