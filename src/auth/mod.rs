//! Credentials: who is asking. Verifies bearer tokens (JWT with static keys or a JWKS,
//! or opaque tokens by RFC 7662 introspection) and API keys, and turns them into an
//! [`Identity`]. Knows nothing of routes: the request steps in `filters/` decide which
//! route needs what.

pub mod api_key;
pub mod client_cert;
mod identity;
pub mod introspect;
pub mod jwks;
pub mod jwt;
pub mod mint;

pub use identity::Identity;

use std::borrow::Cow;

const UNAVAILABLE: &str = "temporarily_unavailable";

/// Why a credential was refused: becomes a 401 with `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// RFC 6750 error code (`invalid_token`, `invalid_request`); `None` when no credential
    /// was presented at all (then the challenge carries no error, RFC 6750 §3.1).
    pub code: Option<&'static str>,
    pub description: Cow<'static, str>,
}

impl AuthFailure {
    pub fn missing(description: &'static str) -> Self {
        AuthFailure {
            code: None,
            description: Cow::Borrowed(description),
        }
    }

    /// The credential could not be checked (IdP down): 503, not the caller's fault.
    pub fn unavailable(description: &'static str) -> Self {
        AuthFailure {
            code: Some(UNAVAILABLE),
            description: Cow::Borrowed(description),
        }
    }

    pub fn is_unavailable(&self) -> bool {
        self.code == Some(UNAVAILABLE)
    }

    pub fn invalid(description: impl Into<Cow<'static, str>>) -> Self {
        AuthFailure {
            code: Some("invalid_token"),
            description: description.into(),
        }
    }
}
