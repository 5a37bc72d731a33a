//! A JSON Web Key Set fetched from the IdP off the request path and kept in memory.
//!
//! - The supervisor refreshes it every `refresh` (first fetch at startup); after a failed
//!   fetch it tries again every `min_refresh` until one succeeds (an IdP that comes up a
//!   second after the gateway is picked up a second later, not a `refresh` later).
//! - A token naming an unknown `kid` triggers one refetch, at most once per `min_refresh`
//!   and one at a time (concurrent requests wait for the same fetch): keys rotated at the
//!   IdP are picked up without hammering it.
//! - A failed fetch keeps the last good set. A `kid` that cannot be looked up because the
//!   IdP is unreachable is the IdP's fault, not the token's: 503, not 401.

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One key of the set.
pub struct JwkKey {
    pub key: DecodingKey,
    /// The `alg` the JWK pins, if it names one.
    pub alg: Option<Algorithm>,
    /// Whether the key is RSA (else EC): which algorithm family it may verify.
    pub rsa: bool,
}

/// Why no key was found for a `kid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMiss {
    /// The IdP's current set has no such key.
    Unknown,
    /// The set could not be fetched (the last attempt failed).
    Unreachable,
}

pub struct JwksStore {
    url: String,
    refresh: Duration,
    min_refresh: Duration,
    client: reqwest::Client,
    keys: ArcSwap<HashMap<String, Arc<JwkKey>>>,
    /// Bumped whenever `keys` is replaced: tokens verified against an older set are
    /// verified again.
    generation: AtomicU64,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    last_fetch: Mutex<Option<Instant>>,
    next_refresh: Mutex<Instant>,
    /// Whether the last fetch succeeded, and whether any ever did (readiness).
    last_fetch_ok: AtomicBool,
    loaded: AtomicBool,
}

impl JwksStore {
    pub fn new(url: &str, refresh: Duration, min_refresh: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the JWKS client: {e}"))?;
        Ok(JwksStore {
            url: url.to_string(),
            refresh,
            min_refresh,
            client,
            keys: ArcSwap::from_pointee(HashMap::new()),
            generation: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(()),
            last_fetch: Mutex::new(None),
            next_refresh: Mutex::new(Instant::now()),
            last_fetch_ok: AtomicBool::new(false),
            loaded: AtomicBool::new(false),
        })
    }

    /// Whether a key set has been fetched at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The key named `kid`, refetching the set once (rate-limited) if it is unknown.
    pub async fn key(&self, kid: &str) -> Result<Arc<JwkKey>, KeyMiss> {
        if let Some(k) = self.keys.load().get(kid) {
            return Ok(k.clone());
        }
        let _one_fetch = self.fetching.lock().await;
        // Someone else's fetch may have brought it while we waited.
        if let Some(k) = self.keys.load().get(kid) {
            return Ok(k.clone());
        }
        if !self.cooling_down() {
            if let Err(e) = self.fetch().await {
                log::warn!(
                    "JWKS {}: refetch for unknown kid failed, keeping the last set: {e}",
                    self.url
                );
            }
        }
        match self.keys.load().get(kid) {
            Some(k) => Ok(k.clone()),
            None if self.last_fetch_ok.load(Ordering::Acquire) => Err(KeyMiss::Unknown),
            None => Err(KeyMiss::Unreachable),
        }
    }

    /// Whether the periodic refresh is due; claims it when it is.
    pub fn claim_refresh(&self, now: Instant) -> bool {
        match self.next_refresh.lock() {
            Ok(mut next) if now >= *next => {
                *next = now + self.refresh;
                true
            }
            _ => false,
        }
    }

    /// Periodic refresh; failures keep the last good set and bring the next try forward
    /// to `min_refresh` from now.
    pub async fn refresh(&self) {
        let _one_fetch = self.fetching.lock().await;
        match self.fetch().await {
            Ok(n) => log::debug!("JWKS {}: {n} keys", self.url),
            Err(e) => {
                log::warn!(
                    "JWKS {}: fetch failed, keeping the last set, next try in {:?}: {e}",
                    self.url,
                    self.min_refresh
                );
                if let Ok(mut next) = self.next_refresh.lock() {
                    *next = (*next).min(Instant::now() + self.min_refresh);
                }
            }
        }
    }

    fn cooling_down(&self) -> bool {
        let last = self.last_fetch.lock().ok().and_then(|l| *l);
        last.is_some_and(|t| t.elapsed() < self.min_refresh)
    }

    async fn fetch(&self) -> Result<usize, String> {
        if let Ok(mut last) = self.last_fetch.lock() {
            *last = Some(Instant::now());
        }
        let fetched = self.fetch_set().await;
        self.last_fetch_ok.store(fetched.is_ok(), Ordering::Release);
        fetched
    }

    async fn fetch_set(&self) -> Result<usize, String> {
        let resp = self.client.get(&self.url).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        let keys = parse_document(&body)?;
        let n = keys.len();
        self.keys.store(Arc::new(keys));
        // Every fetched set counts as new (a kid may be reused for another key): tokens
        // remembered as verified are checked again, at worst once per refresh.
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.loaded.store(true, Ordering::Release);
        Ok(n)
    }
}

/// The usable keys of a JWKS document (an IdP's answer: untrusted bytes).
pub fn parse_document(body: &[u8]) -> Result<HashMap<String, Arc<JwkKey>>, String> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|e| format!("not a JWK set: {e}"))?;
    let keys = parse_set(&set);
    if keys.is_empty() {
        return Err("the set has no usable key (each needs a kid and an RSA or EC key)".into());
    }
    Ok(keys)
}

/// Keys with a `kid` and an RSA or EC public key; others (symmetric `oct` keys among
/// them) are ignored, so that a JWKS can never make an HMAC key.
fn parse_set(set: &JwkSet) -> HashMap<String, Arc<JwkKey>> {
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let rsa = match jwk.algorithm {
            AlgorithmParameters::RSA(_) => true,
            AlgorithmParameters::EllipticCurve(_) => false,
            _ => continue,
        };
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let alg = jwk.common.key_algorithm.and_then(jwt_algorithm);
        keys.insert(kid, Arc::new(JwkKey { key, alg, rsa }));
    }
    keys
}

fn jwt_algorithm(k: KeyAlgorithm) -> Option<Algorithm> {
    Algorithm::from_str(&k.to_string()).ok()
}
