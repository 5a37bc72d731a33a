//! `gatehouse token`: development JWTs signed with the configured secret or a private key,
//! so that a quick start can show an authenticated request. Not an identity provider.

use crate::config::model::{JwtConfig, JwtKeySource};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What to put in the token and how to sign it.
#[derive(Debug, Default)]
pub struct MintOptions {
    pub subject: String,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub ttl: Duration,
    /// PEM private key (RSA or EC); else the configured HMAC secret.
    pub private_key: Option<Vec<u8>>,
    /// Overrides the configured first algorithm.
    pub algorithm: Option<Algorithm>,
    pub kid: Option<String>,
}

pub fn mint(config: Option<&JwtConfig>, opts: &MintOptions) -> Result<String, String> {
    let (key, default_alg) = match (&opts.private_key, config.map(|c| &c.key)) {
        (Some(pem), _) => match EncodingKey::from_rsa_pem(pem) {
            Ok(k) => (k, Algorithm::RS256),
            Err(_) => (
                EncodingKey::from_ec_pem(pem).map_err(|_| "the key file holds no RSA or EC private key in PEM")?,
                Algorithm::ES256,
            ),
        },
        (None, Some(JwtKeySource::Secret(secret))) => (EncodingKey::from_secret(secret), Algorithm::HS256),
        _ => return Err("no signing key: configure auth.jwt.secret (or JWT_SECRET), or pass --key private.pem".into()),
    };
    let alg = opts
        .algorithm
        .or_else(|| {
            config
                .and_then(|c| c.algorithms.first().copied())
                .filter(|_| opts.private_key.is_none())
        })
        .unwrap_or(default_alg);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let mut claims = json!({
        "sub": opts.subject,
        "iat": now,
        "nbf": now,
        "exp": now + opts.ttl.as_secs(),
    });
    if let Some(iss) = config.and_then(|c| c.issuer.as_ref()) {
        claims["iss"] = json!(iss);
    }
    if let Some(aud) = config.and_then(|c| c.audience.as_ref()) {
        claims["aud"] = json!(aud);
    }
    if !opts.scopes.is_empty() {
        claims["scope"] = json!(opts.scopes.join(" "));
    }
    if !opts.roles.is_empty() {
        let claim = config.map_or("roles", |c| c.roles_claim.as_str());
        claims[claim] = json!(opts.roles);
    }
    let mut header = Header::new(alg);
    header.kid = opts.kid.clone();
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| format!("cannot sign: {e}"))
}
