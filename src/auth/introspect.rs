//! Opaque OAuth2 access tokens, validated by RFC 7662 token introspection.
//!
//! Each answer is cached for the token's remaining lifetime, bounded by `cache_ttl`
//! (inactive answers too, so a bad token cannot make gatehouse hammer the IdP), in a
//! bounded TinyUFO cache keyed by the token's SHA-256: the IdP sees one call per token.

use super::{AuthFailure, Identity};
use crate::config::model::IntrospectionConfig;
use pingora_memory_cache::MemoryCache;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone)]
struct Answer {
    /// The full digest, checked on every hit: the cache itself keys by a 64-bit hash.
    digest: [u8; 32],
    identity: Option<Identity>,
}

pub struct Introspector {
    config: IntrospectionConfig,
    client: reqwest::Client,
    cache: MemoryCache<[u8; 32], Answer>,
    roles_claim: Vec<String>,
}

impl Introspector {
    pub fn new(config: &IntrospectionConfig, roles_claim: Vec<String>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the introspection client: {e}"))?;
        Ok(Introspector {
            config: config.clone(),
            client,
            cache: MemoryCache::new(config.cache_size),
            roles_claim,
        })
    }

    /// Whether this introspector (and its cache) can serve `config` as it is.
    pub fn is_built_from(&self, config: &IntrospectionConfig, roles_claim: &[String]) -> bool {
        self.config == *config && self.roles_claim == roles_claim
    }

    pub async fn verify(&self, token: &str) -> Result<Identity, AuthFailure> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let (Some(answer), _) = self.cache.get(&digest) {
            if answer.digest == digest {
                return answer.identity.ok_or(AuthFailure::invalid("token is not active"));
            }
        }
        let claims = self.ask(token).await?;
        let active = claims.get("active").and_then(Value::as_bool).unwrap_or(false);
        let identity = active.then(|| Identity::from_claims(&claims, &self.roles_claim));
        let ttl = remaining(&claims).map_or(self.config.cache_ttl, |r| r.min(self.config.cache_ttl));
        if !ttl.is_zero() {
            self.cache.put(
                &digest,
                Answer {
                    digest,
                    identity: identity.clone(),
                },
                Some(ttl),
            );
        }
        identity.ok_or(AuthFailure::invalid("token is not active"))
    }

    async fn ask(&self, token: &str) -> Result<Map<String, Value>, AuthFailure> {
        let mut req = self
            .client
            .post(&self.config.url)
            .form(&[("token", token), ("token_type_hint", "access_token")]);
        if let Some(id) = &self.config.client_id {
            req = req.basic_auth(id, self.config.client_secret.as_deref());
        }
        let unavailable = |e: String| {
            log::warn!("introspection at {} failed: {e}", self.config.url);
            AuthFailure::unavailable("the authorization server could not be reached")
        };
        let resp = req.send().await.map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("HTTP {}", resp.status())));
        }
        resp.json::<Map<String, Value>>()
            .await
            .map_err(|e| unavailable(format!("not a JSON object: {e}")))
    }
}

/// Time left before `exp`, if the answer has one.
fn remaining(claims: &Map<String, Value>) -> Option<Duration> {
    let exp = claims.get("exp")?.as_u64()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(exp.saturating_sub(now)))
}
