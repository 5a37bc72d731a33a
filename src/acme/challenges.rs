//! Challenge answers waiting for the CA to look: HTTP-01 key authorizations by token
//! (RFC 8555 §8.3), TLS-ALPN-01 certificates by name (RFC 8737). Written by the ordering
//! task, read by the plain listener and the TLS handshake; both look only when asked for
//! one (a `/.well-known/acme-challenge/` path, ALPN `acme-tls/1`), so a lock is no cost.

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub const HTTP_PATH: &str = "/.well-known/acme-challenge/";
/// RFC 8737 §6.2: the ALPN protocol id of a TLS-ALPN-01 validation.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Default)]
pub struct Challenges {
    http: RwLock<HashMap<String, String>>,
    tls_alpn: RwLock<HashMap<String, Arc<ChallengeCert>>>,
}

/// The self-signed certificate that proves control of a name over TLS-ALPN-01.
pub struct ChallengeCert {
    pub cert: X509,
    pub key: PKey<Private>,
}

impl Challenges {
    /// The key authorization for `token`, if an order waits on it.
    pub fn http_answer(&self, token: &str) -> Option<String> {
        self.http.read().ok()?.get(token).cloned()
    }

    pub fn tls_alpn_cert(&self, name: &str) -> Option<Arc<ChallengeCert>> {
        self.tls_alpn.read().ok()?.get(name).cloned()
    }

    pub fn has_tls_alpn(&self) -> bool {
        self.tls_alpn.read().is_ok_and(|m| !m.is_empty())
    }

    pub(super) fn set_http(&self, token: &str, answer: &str) {
        if let Ok(mut map) = self.http.write() {
            map.insert(token.to_string(), answer.to_string());
        }
    }

    pub(super) fn set_tls_alpn(&self, name: &str, cert: ChallengeCert) {
        if let Ok(mut map) = self.tls_alpn.write() {
            map.insert(name.to_string(), Arc::new(cert));
        }
    }

    /// Everything an order published, once it is over (whatever its outcome).
    pub(super) fn clear(&self, tokens: &[String], names: &[String]) {
        if let Ok(mut map) = self.http.write() {
            tokens.iter().for_each(|t| drop(map.remove(t)));
        }
        if let Ok(mut map) = self.tls_alpn.write() {
            names.iter().for_each(|n| drop(map.remove(n)));
        }
    }
}
