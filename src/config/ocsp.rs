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
    let mut problem = |msg: String| {
        p.push(field.clone(), msg);
        None
    };
    let der = match std::fs::read(file) {
        Ok(der) => der,
        Err(e) => return problem(format!("cannot read \"{file}\": {e}")),
    };
    let Ok(response) = OcspResponse::from_der(&der) else {
        return problem(format!("\"{file}\" is not a DER OCSP response"));
    };
    if response.status() != OcspResponseStatus::SUCCESSFUL {
        return problem(format!("\"{file}\": the responder did not answer successfully"));
    }
    let Some(issuer) = issuer else {
        return problem("needs the issuer's certificate after the leaf in cert (a full-chain file)".into());
    };
    let (Ok(id), Ok(basic)) = (
        OcspCertId::from_cert(MessageDigest::sha1(), cert, issuer),
        response.basic(),
    ) else {
        return problem(format!("\"{file}\" cannot be read as a basic OCSP response"));
    };
    let Some(status) = basic.find_status(&id) else {
        return problem(format!("\"{file}\" is not about this certificate"));
    };
    if status.status == OcspCertStatus::REVOKED {
        return problem(format!("\"{file}\" says the certificate is revoked"));
    }
    if status.status != OcspCertStatus::GOOD {
        return problem(format!(
            "\"{file}\": the certificate's status is unknown to the responder"
        ));
    }
    if status.check_validity(SKEW_SECS, None).is_err() {
        let until = status
            .next_update()
            .map_or_else(|| "none".to_string(), |t| t.to_string());
        warnings.push(format!(
            "{field}: \"{file}\" is not current (next update {until}); not stapled until refreshed"
        ));
        return None;
    }
    Some(Arc::new(OcspStaple { der, response, id }))
}
