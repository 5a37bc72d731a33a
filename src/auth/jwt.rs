//! Bearer tokens: JWTs verified against a static key or a JWKS with jsonwebtoken (no crypto
//! of our own), opaque tokens handed to introspection.
//!
//! Algorithms are pinned per key: the config's list (all of the key's family, see
//! `config/security.rs`), narrowed by a JWK's own `alg`. So `alg: none`, an HS256 token
//! against an RSA key, or an RS256 token against an HMAC secret are all refused before
//! any signature is checked.

use super::introspect::Introspector;
use super::jwks::{JwksStore, KeyMiss};
use super::{AuthFailure, Identity};
use crate::config::model::{JwtConfig, JwtKeySource};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use pingora_memory_cache::MemoryCache;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most verified tokens remembered.
const VERIFIED_CACHE_SIZE: usize = 10_000;
/// Longest a verified token is remembered (its `exp` permitting).
const VERIFIED_CACHE_TTL: Duration = Duration::from_secs(300);

/// A token that passed verification. Remembered with the token itself, compared on every
/// hit (the cache keys by a 64-bit hash): a SHA-256 of the token cost ≈ 10,000
/// instructions per request, the cache's own hash and this comparison a few hundred.
#[derive(Clone)]
struct Verified {
    token: Arc<str>,
    identity: Arc<Identity>,
    exp: u64,
    /// The key set it was verified against: a JWKS rotation forgets it.
    keys_generation: u64,
}

enum Keys {
    Static(DecodingKey),
    Jwks(Arc<JwksStore>),
}

struct JwtCheck {
    keys: Keys,
    /// One validation per accepted algorithm: jsonwebtoken wants every algorithm of a
    /// validation to fit the key, and a JWKS may hold RSA and EC keys side by side.
    validations: Vec<(Algorithm, Validation)>,
}

/// Verifies the bearer tokens of `auth: jwt` routes.
///
/// A JWT that passed is remembered until its `exp` (at most 5 minutes): clients send the
/// same token many times, and an RS256 verification costs about 25 µs where the lookup costs
/// one SHA-256. Refusals are never remembered.
pub struct TokenVerifier {
    jwt: Option<JwtCheck>,
    introspector: Option<Arc<Introspector>>,
    roles_claim: Vec<String>,
    verified: MemoryCache<String, Verified>,
}

impl TokenVerifier {
    /// `jwks` is the store for `JwtKeySource::Jwks` (built, or reused, by the snapshot).
    pub fn new(
        config: Option<&JwtConfig>,
        jwks: Option<Arc<JwksStore>>,
        introspector: Option<Arc<Introspector>>,
    ) -> Result<Self, String> {
        let jwt = match config {
            Some(c) => Some(JwtCheck {
                keys: keys(&c.key, jwks)?,
                validations: c.algorithms.iter().map(|&alg| (alg, validation(c, alg))).collect(),
            }),
            None => None,
        };
        Ok(TokenVerifier {
            jwt,
            introspector,
            roles_claim: roles_path(config.map_or(crate::config::model::DEFAULT_ROLES_CLAIM, |c| &c.roles_claim)),
            verified: MemoryCache::new(VERIFIED_CACHE_SIZE),
        })
    }

    pub async fn verify(&self, token: &str) -> Result<Arc<Identity>, AuthFailure> {
        if let Some(identity) = self.jwt.as_ref().and_then(|check| self.remembered(check, token)) {
            return Ok(identity);
        }
        let header = jsonwebtoken::decode_header(token);
        match (&self.jwt, header, &self.introspector) {
            (Some(check), Ok(header), _) => self.verify_jwt(check, token, header).await,
            (_, _, Some(introspector)) => introspector.verify(token).await.map(Arc::new),
            (Some(_), Err(_), None) => Err(AuthFailure::invalid("malformed token")),
            (None, _, None) => Err(AuthFailure::invalid("no way to verify this token")),
        }
    }

    async fn verify_jwt(
        &self,
        check: &JwtCheck,
        token: &str,
        header: jsonwebtoken::Header,
    ) -> Result<Arc<Identity>, AuthFailure> {
        let now = unix_now();
        let generation = check.keys_generation();
        let (identity, exp) = check.verify(token, header, &self.roles_claim).await?;
        let identity = Arc::new(identity);
        let ttl = Duration::from_secs(exp.saturating_sub(now)).min(VERIFIED_CACHE_TTL);
        if !ttl.is_zero() {
            let entry = Verified {
                token: token.into(),
                identity: identity.clone(),
                exp,
                keys_generation: generation,
            };
            self.verified.put(token, entry, Some(ttl));
        }
        Ok(identity)
    }
}

impl TokenVerifier {
    /// The identity of `token` when it was verified before, has not expired since, and its
    /// key set has not changed: checked before the token's header is even decoded.
    fn remembered(&self, check: &JwtCheck, token: &str) -> Option<Arc<Identity>> {
        let hit = self.verified.get(token).0?;
        (*hit.token == *token && hit.exp > unix_now() && hit.keys_generation == check.keys_generation())
            .then_some(hit.identity)
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl JwtCheck {
    fn keys_generation(&self) -> u64 {
        match &self.keys {
            Keys::Static(_) => 0,
            Keys::Jwks(store) => store.generation(),
        }
    }

    /// The identity and `exp` of a valid token.
    async fn verify(
        &self,
        token: &str,
        header: jsonwebtoken::Header,
        roles: &[String],
    ) -> Result<(Identity, u64), AuthFailure> {
        let Some((_, validation)) = self.validations.iter().find(|(alg, _)| *alg == header.alg) else {
            return Err(AuthFailure::invalid("token algorithm not accepted"));
        };
        let jwk;
        let key = match &self.keys {
            Keys::Static(key) => key,
            Keys::Jwks(store) => {
                let kid = header.kid.as_deref().ok_or(AuthFailure::invalid("token has no kid"))?;
                jwk = store.key(kid).await.map_err(|miss| match miss {
                    KeyMiss::Unknown => AuthFailure::invalid("token kid is unknown"),
                    KeyMiss::Unreachable => {
                        AuthFailure::unavailable("the identity provider's keys could not be fetched")
                    }
                })?;
                let family_ok = if jwk.rsa { is_rsa(header.alg) } else { is_ec(header.alg) };
                if !family_ok || jwk.alg.is_some_and(|a| a != header.alg) {
                    return Err(AuthFailure::invalid("token algorithm does not match its key"));
                }
                &jwk.key
            }
        };
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, key, validation).map_err(|e| describe(e.kind()))?;
        // `exp` is a required claim, checked by decode.
        let exp = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        Ok((Identity::from_claims(&data.claims, roles), exp))
    }
}

fn keys(source: &JwtKeySource, jwks: Option<Arc<JwksStore>>) -> Result<Keys, String> {
    Ok(match source {
        JwtKeySource::Secret(secret) => Keys::Static(DecodingKey::from_secret(secret)),
        JwtKeySource::PublicKey { pem, rsa: true, path } => {
            Keys::Static(DecodingKey::from_rsa_pem(pem).map_err(|e| format!("{path}: {e}"))?)
        }
        JwtKeySource::PublicKey { pem, rsa: false, path } => {
            Keys::Static(DecodingKey::from_ec_pem(pem).map_err(|e| format!("{path}: {e}"))?)
        }
        JwtKeySource::Jwks { url, .. } => Keys::Jwks(jwks.ok_or_else(|| format!("no key store for {url}"))?),
    })
}

fn validation(c: &JwtConfig, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = c.leeway.as_secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    // A configured issuer or audience is a claim the token must carry (RFC 8725 §3.8,
    // §3.9): jsonwebtoken only compares the claims that are present, unless required.
    let mut required = vec!["exp"];
    required.extend(c.issuer.as_ref().map(|_| "iss"));
    required.extend(c.audience.as_ref().map(|_| "aud"));
    v.set_required_spec_claims(&required);
    match &c.issuer {
        Some(iss) => v.set_issuer(&[iss]),
        None => v.iss = None,
    }
    match &c.audience {
        Some(aud) => v.set_audience(&[aud]),
        // Without a configured audience a token's `aud` is not checked.
        None => v.validate_aud = false,
    }
    v
}

fn describe(kind: &ErrorKind) -> AuthFailure {
    AuthFailure::invalid(match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidIssuer => "token issuer not accepted",
        ErrorKind::InvalidAudience => "token audience not accepted",
        ErrorKind::InvalidSignature => "token signature is invalid",
        ErrorKind::InvalidAlgorithm => "token algorithm not accepted",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => "token lacks a required claim (iss)",
            "aud" => "token lacks a required claim (aud)",
            _ => "token lacks a required claim (exp)",
        },
        _ => "malformed token",
    })
}

fn is_rsa(a: Algorithm) -> bool {
    use Algorithm::*;
    matches!(a, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
}

fn is_ec(a: Algorithm) -> bool {
    matches!(a, Algorithm::ES256 | Algorithm::ES384)
}

/// `realm_access.roles` → `[realm_access, roles]`.
pub fn roles_path(claim: &str) -> Vec<String> {
    claim.split('.').map(String::from).collect()
}
