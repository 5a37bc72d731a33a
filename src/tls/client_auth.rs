//! Asking for and checking client certificates during a handshake (`tls.client_auth`).
//!
//! The certificate callback calls [`ask`] on the listeners `client_auth` names, with the
//! CAs and revocation lists of the current snapshot, so a reload replaces them for the next
//! handshake. OpenSSL verifies the chain (expiry, signatures, CA constraints); [`check`]
//! then refuses a certificate that a CRL of its issuer revokes, or any certificate of an
//! issuer whose CRL has expired (a stale list cannot vouch for anything). When the
//! handshake ends, [`identify`] reads the verified certificate once for the connection.

use crate::auth::client_cert::{ClientCert, PeerCert};
use crate::config::model::{ClientAuth, ClientAuthMode};
use openssl::asn1::Asn1Time;
use openssl::ssl::{SslRef, SslVerifyMode};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{CrlStatus, X509Ref, X509StoreContextRef, X509VerifyResult};
use std::any::Any;
use std::sync::Arc;

/// Asks the client of this handshake for a certificate that chains to `auth`'s CAs.
pub fn ask(ssl: &mut SslRef, auth: &Arc<ClientAuth>) {
    let mode = match auth.mode {
        ClientAuthMode::Require => SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        ClientAuthMode::Optional => SslVerifyMode::PEER,
    };
    // Without its own store the handshake would verify against the context's (empty)
    // one: if this fails, every certificate is refused rather than any accepted.
    let trusted = install_cas(ssl, auth)
        .map_err(|e| log::error!("client certificates: cannot set up the CAs of {}: {e}", auth.ca_file))
        .is_ok();
    let auth = Arc::clone(auth);
    ssl.set_verify_callback(mode, move |preverified, ctx| trusted && check(preverified, ctx, &auth));
}

/// The CAs as this handshake's verification store and as the names sent in the
/// CertificateRequest (browsers offer only certificates from those). Built per handshake,
/// not once per snapshot: OpenSSL takes ownership of an SSL's store and `X509Store` cannot
/// be shared safely from Rust; the certificates themselves are reference-counted copies.
fn install_cas(ssl: &mut SslRef, auth: &ClientAuth) -> Result<(), openssl::error::ErrorStack> {
    let mut store = X509StoreBuilder::new()?;
    let mut names = Stack::new()?;
    for ca in &auth.cas {
        store.add_cert(ca.clone())?;
        names.push(ca.subject_name().to_owned()?)?;
    }
    ssl.set_verify_cert_store(store.build())?;
    ssl.set_client_ca_list(names);
    Ok(())
}

/// OpenSSL's verdict on one certificate of the chain, then revocation.
fn check(preverified: bool, ctx: &mut X509StoreContextRef, auth: &ClientAuth) -> bool {
    if !preverified {
        log::info!(
            "client certificate refused: {} (chain depth {})",
            ctx.error(),
            ctx.error_depth()
        );
        return false;
    }
    let Some(cert) = ctx.current_cert() else {
        return true;
    };
    match revoked(cert, auth) {
        None => true,
        Some(why) => {
            log::info!("client certificate refused: {why}");
            ctx.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
            false
        }
    }
}

/// Why `cert` may not be used, by the CRLs of its issuer; `None` when it may (or when its
/// issuer has no CRL in `crl_file`).
fn revoked(cert: &X509Ref, auth: &ClientAuth) -> Option<String> {
    let now = Asn1Time::days_from_now(0).ok()?;
    let subject = || crate::config::client_auth::name_text(cert.subject_name());
    for crl in auth
        .crls
        .iter()
        .filter(|crl| crl.issuer_name().try_cmp(cert.issuer_name()).is_ok_and(|o| o.is_eq()))
    {
        if crl.next_update().is_some_and(|next| *next < *now) {
            return Some(format!(
                "the CRL of its issuer expired on {} ({})",
                crl.next_update().map(|t| t.to_string()).unwrap_or_default(),
                subject()
            ));
        }
        if let CrlStatus::Revoked(_) = crl.get_by_serial(cert.serial_number()) {
            return Some(format!("revoked ({})", subject()));
        }
    }
    None
}

/// At the end of a handshake: the verified certificate, or the mark of a connection
/// without one on a listener that requires it. Stored with the connection by Pingora.
pub fn identify(ssl: &SslRef, required: bool) -> Option<Arc<dyn Any + Send + Sync>> {
    let verified = ssl
        .peer_certificate()
        .filter(|_| ssl.verify_result() == X509VerifyResult::OK);
    let peer = match verified {
        Some(cert) => PeerCert::Verified(ClientCert::read(&cert)),
        None if required => PeerCert::Missing,
        None => return None,
    };
    // Pingora hands out `&T` of what is stored; an Arc inside lets a request keep it.
    Some(Arc::new(Arc::new(peer)))
}
