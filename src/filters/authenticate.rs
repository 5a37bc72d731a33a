//! `auth: jwt | api_key`: the credential is verified and becomes `ctx.identity`; no valid
//! credential is a 401 with a `WWW-Authenticate` challenge (RFC 6750 for bearer tokens).

use crate::auth::api_key::ApiKeyStore;
use crate::auth::jwt::TokenVerifier;
use crate::auth::AuthFailure;
use crate::request::{GatewayError, RequestCtx};
use http::header::AUTHORIZATION;
use pingora::http::RequestHeader;
use std::sync::Arc;

pub enum Authenticate {
    Bearer(Arc<TokenVerifier>),
    ApiKey(Arc<ApiKeyStore>),
}

impl Authenticate {
    /// What credential the step wants and whether `req` carries one (explain; nothing is
    /// verified).
    pub fn describe(&self, req: &RequestHeader) -> String {
        match self {
            Authenticate::Bearer(_) => match bearer_token(req) {
                Some(_) => {
                    "bearer token (JWT or introspected): present, verified when the request is sent; invalid → 401"
                        .into()
                }
                None => "bearer token (JWT or introspected): missing → 401".into(),
            },
            Authenticate::ApiKey(store) => match store.authenticate(req) {
                Ok(identity) => format!(
                    "API key: valid, consumer {}",
                    identity.consumer.as_deref().unwrap_or("?")
                ),
                Err(f) => format!("API key: {} → 401", f.description),
            },
        }
    }

    pub async fn run(&self, req: &RequestHeader, ctx: &mut RequestCtx) -> Result<(), GatewayError> {
        let identity = match self {
            Authenticate::Bearer(verifier) => match bearer_token(req) {
                Some(token) => verifier.verify(token).await.map_err(|f| bearer_error(&f))?,
                None => return Err(bearer_error(&AuthFailure::missing("missing bearer token"))),
            },
            Authenticate::ApiKey(store) => store.authenticate(req).map_err(|f| api_key_error(&f, store))?,
        };
        ctx.identity = Some(identity);
        Ok(())
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive). The bytes are
/// checked as UTF-8 (word at a time) rather than with `HeaderValue::to_str` (byte at a
/// time, ≈ 600 instructions for a JWT); a token with other bytes fails verification.
fn bearer_token(req: &RequestHeader) -> Option<&str> {
    let value = req.headers.get(AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, token) = (&value[..space], value[space + 1..].trim_ascii());
    if !scheme.eq_ignore_ascii_case(b"bearer") || token.is_empty() {
        return None;
    }
    std::str::from_utf8(token).ok()
}

fn bearer_error(f: &AuthFailure) -> GatewayError {
    if f.is_unavailable() {
        return GatewayError::Unavailable("the authorization server could not be reached");
    }
    let challenge = match f.code {
        // No credential presented: no error code (RFC 6750 §3.1).
        None => "Bearer realm=\"gatehouse\"".to_string(),
        Some(code) => format!(
            "Bearer realm=\"gatehouse\", error=\"{code}\", error_description=\"{}\"",
            f.description
        ),
    };
    GatewayError::Unauthorized {
        description: f.description.clone(),
        challenge,
    }
}

fn api_key_error(f: &AuthFailure, store: &ApiKeyStore) -> GatewayError {
    GatewayError::Unauthorized {
        description: f.description.clone(),
        challenge: format!("ApiKey realm=\"gatehouse\", header=\"{}\"", store.header()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.insert_header("authorization", "bearer abc").unwrap();
        assert_eq!(bearer_token(&r), Some("abc"));
        r.insert_header("authorization", "Basic abc").unwrap();
        assert_eq!(bearer_token(&r), None);
        r.insert_header("authorization", "Bearer ").unwrap();
        assert_eq!(bearer_token(&r), None);
    }
}
