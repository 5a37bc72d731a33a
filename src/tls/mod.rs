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
pub mod ocsp_fetch;
#[allow(unsafe_code)]
pub mod session_tickets;

use crate::acme::challenges::{ChallengeCert, ACME_TLS_ALPN};
use crate::acme::AcmeState;
use crate::config::model::{ClientAuth, ClientAuthMode, LoadedCert, TlsPolicy};
use crate::snapshot::SharedSnapshot;
use async_trait::async_trait;
use ocsp_fetch::FetchedStaples;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::tls::error::ErrorStack;
use pingora::tls::ext;
use pingora::tls::ssl::{select_next_proto, AlpnError, NameType, SslRef, SslVersion};
use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct CertResolver {
    snapshot: SharedSnapshot,
    /// Certificates from `tls.acme`, and TLS-ALPN-01 challenge certificates.
    acme: Arc<AcmeState>,
    /// The listener this resolver serves: `tls.client_auth.listen` may name only some.
    listener: SocketAddr,
}

impl CertResolver {
    /// Settings for one TLS listener: the protocol versions, suites and groups of
    /// `policy` (`tls.profile`: Mozilla's intermediate by default), h2 and http/1.1 by
    /// ALPN when `h2`.
    pub fn settings(
        snapshot: SharedSnapshot,
        acme: Arc<AcmeState>,
        staples: Arc<FetchedStaples>,
        listener: SocketAddr,
        h2: bool,
        tickets: bool,
        policy: &TlsPolicy,
    ) -> pingora::Result<TlsSettings> {
        let (status_snapshot, status_acme, alpn_acme) = (snapshot.clone(), acme.clone(), acme.clone());
        let mut settings = TlsSettings::with_callbacks(Box::new(CertResolver {
            snapshot,
            acme,
            listener,
        }))?;
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
        // Pingora's h2/h1 choice, plus `acme-tls/1` while a TLS-ALPN-01 validation waits.
        settings.set_alpn_select_callback(move |ssl, offered| select_alpn(ssl, offered, h2, &alpn_acme));
        // Sessions (and tickets) resume only on a listener with the same port (so not on an
        // mTLS listener after a public one; across nodes, ports match); OpenSSL also refuses
        // to resume any when client certificates are asked for without a context.
        settings
            .set_session_id_context(format!("gatehouse:{}", listener.port()).as_bytes())
            .map_err(failed("TLS session id context"))?;
        session_tickets::install(&mut settings, tickets);
        settings
            .set_status_callback(move |ssl| staple(&status_snapshot, &status_acme, &staples, ssl))
            .map_err(|e| pingora::Error::because(pingora::ErrorType::InternalError, "OCSP callback", e))?;
        Ok(settings)
    }
}

/// OpenSSL's status callback, run only for clients that ask for the certificate status:
/// staples the OCSP response of the certificate the handshake uses, if it has a current one.
fn staple(
    snapshot: &SharedSnapshot,
    acme: &AcmeState,
    fetched: &FetchedStaples,
    ssl: &mut SslRef,
) -> Result<bool, ErrorStack> {
    let snapshot = snapshot.load();
    let issued = acme.issued.load();
    let chosen = choose(&snapshot.certs, &issued, ssl.servername(NameType::HOST_NAME))
        // The same certificate the certificate callback installed (a reload may fall between).
        .filter(|c| ssl.certificate().is_some_and(|used| *used == *c.cert));
    let Some(chosen) = chosen else {
        return Ok(false);
    };
    let staple = match &chosen.ocsp {
        Some(from_file) => Some(from_file.clone()),
        None if chosen.ocsp_auto => fetched.get(&chosen.cert),
        None => None,
    };
    match staple.as_deref().and_then(|s| s.current()) {
        Some(der) => ssl.set_ocsp_status(der).map(|_| true),
        None => Ok(false),
    }
}

/// The certificate for `server_name`: a configured one naming it, else one obtained by
/// ACME, else the first configured (or obtained) one.
pub fn choose<'a>(
    configured: &'a [LoadedCert],
    issued: &'a [LoadedCert],
    server_name: Option<&str>,
) -> Option<&'a LoadedCert> {
    let name = server_name.map(str::to_ascii_lowercase);
    let by_name = name
        .as_deref()
        .and_then(|name| by_name(configured, name).or_else(|| by_name(issued, name)));
    by_name.or_else(|| configured.first()).or_else(|| issued.first())
}

fn by_name<'a>(certs: &'a [LoadedCert], name: &str) -> Option<&'a LoadedCert> {
    certs.iter().find(|c| c.names.iter().any(|n| n == name)).or_else(|| {
        let parent = name.split_once('.')?.1;
        certs
            .iter()
            .find(|c| c.names.iter().any(|n| n.strip_prefix("*.") == Some(parent)))
    })
}

const H2_H1: &[u8] = b"\x02h2\x08http/1.1";
const H1: &[u8] = b"\x08http/1.1";

/// ALPN: `acme-tls/1` for a TLS-ALPN-01 validation of a name the gateway is proving
/// (RFC 8737 §3: the challenge certificate, nothing else, on that connection), else h2
/// when enabled, else http/1.1; an unknown list gets no ALPN (clients fall back to h1).
fn select_alpn<'a>(ssl: &mut SslRef, offered: &'a [u8], h2: bool, acme: &AcmeState) -> Result<&'a [u8], AlpnError> {
    if acme.challenges.has_tls_alpn() {
        if let Some(acme_tls) = select_next_proto(&ACME_TLS_WIRE, offered) {
            let name = ssl.servername(NameType::HOST_NAME).map(str::to_ascii_lowercase);
            if let Some(challenge) = name.and_then(|n| acme.challenges.tls_alpn_cert(&n)) {
                // TLS 1.2 chooses ALPN after the certificate callback: replace its choice.
                use_challenge_cert(ssl, &challenge);
                return Ok(acme_tls);
            }
        }
    }
    select_next_proto(if h2 { H2_H1 } else { H1 }, offered).ok_or(AlpnError::NOACK)
}

/// `acme-tls/1` in ALPN wire format.
const ACME_TLS_WIRE: [u8; 11] = *b"\x0aacme-tls/1";

fn use_challenge_cert(ssl: &mut SslRef, challenge: &ChallengeCert) {
    let installed =
        ext::ssl_use_certificate(ssl, &challenge.cert).and_then(|_| ext::ssl_use_private_key(ssl, &challenge.key));
    if let Err(e) = installed {
        log::warn!("acme: cannot offer the TLS-ALPN-01 certificate: {e}");
    }
}

#[async_trait]
impl TlsAccept for CertResolver {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        // TLS 1.3 chose ALPN already: a TLS-ALPN-01 validation gets the challenge certificate.
        if ssl.selected_alpn_protocol() == Some(ACME_TLS_ALPN) {
            let name = ssl.servername(NameType::HOST_NAME).map(str::to_ascii_lowercase);
            if let Some(challenge) = name.and_then(|n| self.acme.challenges.tls_alpn_cert(&n)) {
                use_challenge_cert(ssl, &challenge);
                return;
            }
        }
        let snapshot = self.snapshot.load();
        let issued = self.acme.issued.load();
        let server_name = ssl.servername(NameType::HOST_NAME).map(str::to_string);
        let Some(cert) = choose(&snapshot.certs, &issued, server_name.as_deref()) else {
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
