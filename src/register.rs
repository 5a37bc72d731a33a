//! `gatehouse register`: the sidecar that keeps one service instance registered in etcd
//! for `targets_from: { etcd: ... }`. The key lives under a lease renewed every third of
//! its TTL: if the instance (and its sidecar) dies, etcd deletes the key when the lease
//! expires; on SIGTERM or SIGINT the lease is revoked, removing the key at once.

use crate::etcd::{self, EtcdSettings};
use etcd_client::PutOptions;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// What to register, and where.
pub struct Registration {
    /// The services' prefix (`/services/`) is in `etcd.prefix`.
    pub etcd: EtcdSettings,
    pub service: String,
    pub addr: String,
    pub weight: u16,
    pub ttl: Duration,
}

impl Registration {
    fn key(&self) -> String {
        format!("{}{}/{}", self.etcd.prefix, self.service, self.addr)
    }
}

/// Registers until a stop signal; re-registers after losing etcd.
pub async fn run(r: Registration) -> Result<(), String> {
    let (mut term, mut int) = (
        signal(SignalKind::terminate()).map_err(|e| e.to_string())?,
        signal(SignalKind::interrupt()).map_err(|e| e.to_string())?,
    );
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut lease = None;
        let outcome = tokio::select! {
            _ = term.recv() => None,
            _ = int.recv() => None,
            why = keep(&r, &mut lease) => Some(why),
        };
        match outcome {
            None => {
                if let Some(id) = lease {
                    revoke(&r, id).await;
                }
                log::info!("{} deregistered", r.key());
                return Ok(());
            }
            Some(why) => {
                log::warn!("{}: {why}; registering again in {backoff:?}", r.key());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Grants a lease, puts the key under it and renews it until something fails.
async fn keep(r: &Registration, lease: &mut Option<i64>) -> String {
    let mut client = match etcd::connect(&r.etcd).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let ttl = i64::try_from(r.ttl.as_secs().max(1)).unwrap_or(i64::MAX);
    let id = match client.lease_grant(ttl, None).await {
        Ok(g) => g.id(),
        Err(e) => return format!("cannot get a lease: {e}"),
    };
    *lease = Some(id);
    let value = serde_json::json!({ "addr": r.addr, "weight": r.weight }).to_string();
    if let Err(e) = client.put(r.key(), value, Some(PutOptions::new().with_lease(id))).await {
        return format!("cannot register: {e}");
    }
    log::info!("{} registered (lease {id:x}, ttl {ttl}s)", r.key());
    let (mut keeper, mut answers) = match client.lease_keep_alive(id).await {
        Ok(k) => k,
        Err(e) => return format!("cannot renew the lease: {e}"),
    };
    let mut renew = tokio::time::interval((r.ttl / 3).max(Duration::from_millis(100)));
    loop {
        renew.tick().await;
        if let Err(e) = keeper.keep_alive().await {
            return format!("renewal failed: {e}");
        }
        match answers.message().await {
            Ok(Some(a)) if a.ttl() > 0 => {}
            Ok(Some(_)) => return "the lease expired".into(),
            Ok(None) => return "the renewal stream ended".into(),
            Err(e) => return format!("renewal failed: {e}"),
        }
    }
}

async fn revoke(r: &Registration, id: i64) {
    match etcd::connect(&r.etcd).await {
        Ok(mut client) => {
            if let Err(e) = client.lease_revoke(id).await {
                log::warn!(
                    "{}: the lease was not revoked ({e}); the key goes when it expires",
                    r.key()
                );
            }
        }
        Err(e) => log::warn!("{}: {e}; the key goes when its lease expires", r.key()),
    }
}
