//! The HTTPS listener's certificates, chosen per connection by SNI from the current
//! snapshot, so a reload (SIGHUP or admin) replaces them without a restart (Pingora has no
//! built-in certificate reload; this uses its certificate callback).
//!
//! A name matches a certificate listing it exactly, else one listing `*.parent`; any other
//! name (or none) gets the first certificate.
//!
//! On the listeners `tls.client_auth` names, the same callback asks for a client
//! certificate ([`client_auth`]).

pub mod client_auth;

use crate::config::model::{ClientAuth, ClientAuthMode, LoadedCert, TlsPolicy};
use crate::snapshot::SharedSnapshot;
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::tls::error::ErrorStack;
use pingora::tls::ext;
use pingora::tls::ssl::{NameType, SslRef, SslVersion};
use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct CertResolver {
    snapshot: SharedSnapshot,
    /// The listener this resolver serves: `tls.client_auth.listen` may name only some.
    listener: SocketAddr,
}

impl CertResolver {
    /// Settings for one TLS listener: the protocol versions, suites and groups of
    /// `policy` (`tls.profile`: Mozilla's intermediate by default), h2 and http/1.1 by
    /// ALPN when `h2`.
    pub fn settings(
        snapshot: SharedSnapshot,
        listener: SocketAddr,
        h2: bool,
        policy: &TlsPolicy,
    ) -> pingora::Result<TlsSettings> {
        let status_snapshot = snapshot.clone();
        let mut settings = TlsSettings::with_callbacks(Box::new(CertResolver { snapshot, listener }))?;
        let failed = |what: &'static str| move |e| pingora::Error::because(pingora::ErrorType::InternalError, what, e);
        let min = if policy.min_tls13 {
            SslVersion::TLS1_3
        } else {
            SslVersion::TLS1_2
        };
        settings
            .set_min_proto_version(Some(min))
            .map_err(failed("tls.min_version"))?;
        // The lists were tried on an OpenSSL context at load; these cannot fail unless
        // the library changed under the process.
        if let Some(ciphers) = &policy.ciphers {
            settings.set_cipher_list(ciphers).map_err(failed("tls.ciphers"))?;
        }
        if let Some(suites) = &policy.ciphersuites {
            settings.set_ciphersuites(suites).map_err(failed("tls.ciphersuites"))?;
        }
        if let Some(groups) = &policy.groups {
            settings.set_groups_list(groups).map_err(failed("tls.groups"))?;
        }
        if h2 {
            settings.enable_h2();
        }
        // Sessions (and tickets) are only resumed in the context that made them; OpenSSL
        // refuses to resume any when client certificates are asked for without one.
        settings
            .set_session_id_context(b"gatehouse")
            .map_err(failed("TLS session id context"))?;
        settings
            .set_status_callback(move |ssl| staple(&status_snapshot, ssl))
            .map_err(|e| pingora::Error::because(pingora::ErrorType::InternalError, "OCSP callback", e))?;
        Ok(settings)
    }
}

/// OpenSSL's status callback, run only for clients that ask for the certificate status:
/// staples the OCSP response of the certificate the handshake uses, if it has a current one.
fn staple(snapshot: &SharedSnapshot, ssl: &mut SslRef) -> Result<bool, ErrorStack> {
    let snapshot = snapshot.load();
    let chosen = choose(&snapshot.certs, ssl.servername(NameType::HOST_NAME))
        // The same certificate the certificate callback installed (a reload may fall between).
        .filter(|c| ssl.certificate().is_some_and(|used| *used == *c.cert));
    match chosen.and_then(|c| c.ocsp.as_ref()).and_then(|s| s.current()) {
        Some(der) => ssl.set_ocsp_status(der).map(|_| true),
        None => Ok(false),
    }
}

/// The certificate for `server_name` among `certs`.
pub fn choose<'a>(certs: &'a [LoadedCert], server_name: Option<&str>) -> Option<&'a LoadedCert> {
    let name = server_name.map(str::to_ascii_lowercase);
    let by_name = name.as_deref().and_then(|name| {
        certs.iter().find(|c| c.names.iter().any(|n| n == name)).or_else(|| {
            let parent = name.split_once('.')?.1;
            certs
                .iter()
                .find(|c| c.names.iter().any(|n| n.strip_prefix("*.") == Some(parent)))
        })
    });
    by_name.or_else(|| certs.first())
}

#[async_trait]
impl TlsAccept for CertResolver {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let snapshot = self.snapshot.load();
        let server_name = ssl.servername(NameType::HOST_NAME).map(str::to_string);
        let Some(cert) = choose(&snapshot.certs, server_name.as_deref()) else {
            log::warn!("TLS handshake for {server_name:?}: no certificate configured");
            return;
        };
        let installed = ext::ssl_use_certificate(ssl, &cert.cert)
            .and_then(|_| ext::ssl_use_private_key(ssl, &cert.key))
            .and_then(|_| cert.chain.iter().try_for_each(|c| ext::ssl_add_chain_cert(ssl, c)));
        if let Err(e) = installed {
            log::warn!("TLS handshake for {server_name:?}: cannot use {}: {e}", cert.cert_path);
        }
        if let Some(auth) = client_auth_on(snapshot.client_auth.as_ref(), self.listener) {
            client_auth::ask(ssl, auth);
        }
    }

    async fn handshake_complete_callback(&self, ssl: &TlsRef) -> Option<Arc<dyn Any + Send + Sync>> {
        let snapshot = self.snapshot.load();
        let required = client_auth_on(snapshot.client_auth.as_ref(), self.listener)
            .is_some_and(|auth| auth.mode == ClientAuthMode::Require);
        client_auth::identify(ssl, required)
    }
}

/// `tls.client_auth`, if it applies to `listener`.
fn client_auth_on(auth: Option<&Arc<ClientAuth>>, listener: SocketAddr) -> Option<&Arc<ClientAuth>> {
    auth.filter(|auth| auth.applies_to(listener))
}
