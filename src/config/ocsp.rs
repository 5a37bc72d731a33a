//! OCSP stapling: a certificate's `ocsp:` file is a DER OCSP response (as written by
//! `openssl ocsp ... -respout`, refreshed by the operator, e.g. from cron, then reloaded).
//! It is checked at load: it must parse, be successful, be about this certificate (the
//! issuer must follow the leaf in `cert`) and say "good". A response past its next update
//! is never stapled: not at load, and not at a handshake after it expires.

use super::error::Problems;
use openssl::hash::MessageDigest;
use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspResponse, OcspResponseStatus};
use openssl::x509::X509;
use std::sync::Arc;

/// Clock skew allowed when checking the response's validity window, in seconds.
const SKEW_SECS: u32 = 300;

pub struct OcspStaple {
    der: Vec<u8>,
    response: OcspResponse,
    id: OcspCertId,
}

impl std::fmt::Debug for OcspStaple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OcspStaple({} bytes)", self.der.len())
    }
}

impl OcspStaple {
    /// The response to staple now, unless it has expired. Only runs for clients that ask
    /// for the certificate status.
    pub fn current(&self) -> Option<&[u8]> {
        let basic = self.response.basic().ok()?;
        let status = basic.find_status(&self.id)?;
        status.check_validity(SKEW_SECS, None).ok()?;
        Some(&self.der)
    }
}

/// Why an OCSP response cannot be stapled for a certificate.
pub enum Refused {
    Invalid(String),
    /// Valid, but past its next update (or not yet valid).
    NotCurrent(String),
}

impl OcspStaple {
    /// Checks a DER response for `cert`: successful, about this certificate (by `issuer`),
    /// "good", and current.
    pub fn check(der: Vec<u8>, cert: &X509, issuer: &X509) -> Result<OcspStaple, Refused> {
        let Ok(response) = OcspResponse::from_der(&der) else {
            return Err(Refused::Invalid("is not a DER OCSP response".into()));
        };
        if response.status() != OcspResponseStatus::SUCCESSFUL {
            return Err(Refused::Invalid("the responder did not answer successfully".into()));
        }
        let (Ok(id), Ok(basic)) = (
            OcspCertId::from_cert(MessageDigest::sha1(), cert, issuer),
            response.basic(),
        ) else {
            return Err(Refused::Invalid("cannot be read as a basic OCSP response".into()));
        };
        let Some(status) = basic.find_status(&id) else {
            return Err(Refused::Invalid("is not about this certificate".into()));
        };
        if status.status == OcspCertStatus::REVOKED {
            return Err(Refused::Invalid("says the certificate is revoked".into()));
        }
        if status.status != OcspCertStatus::GOOD {
            return Err(Refused::Invalid(
                "the certificate's status is unknown to the responder".into(),
            ));
        }
        if status.check_validity(SKEW_SECS, None).is_err() {
            let until = status
                .next_update()
                .map_or_else(|| "none".to_string(), |t| t.to_string());
            return Err(Refused::NotCurrent(until));
        }
        Ok(OcspStaple { der, response, id })
    }
}

/// Reads and checks `file` for `cert`; problems go to `p` under `{path}.ocsp`.
pub fn load(
    file: &str,
    cert: &X509,
    issuer: Option<&X509>,
    path: &str,
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<Arc<OcspStaple>> {
    let field = format!("{path}.ocsp");
    let der = match std::fs::read(file) {
        Ok(der) => der,
        Err(e) => {
            p.push(field, format!("cannot read \"{file}\": {e}"));
            return None;
        }
    };
    let Some(issuer) = issuer else {
        p.push(
            field,
            "needs the issuer's certificate after the leaf in cert (a full-chain file)",
        );
        return None;
    };
    match OcspStaple::check(der, cert, issuer) {
        Ok(staple) => Some(Arc::new(staple)),
        Err(Refused::Invalid(why)) => {
            p.push(field, format!("\"{file}\": {why}"));
            None
        }
        Err(Refused::NotCurrent(until)) => {
            warnings.push(format!(
                "{field}: \"{file}\" is not current (next update {until}); not stapled until refreshed"
            ));
            None
        }
    }
}
