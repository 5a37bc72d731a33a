//! `client_cert: required` on a route: only connections that presented a verified client
//! certificate (mTLS, `tls.client_auth`); others get 403 `client_certificate_required`.
//! On a listener in `optional` mode this is how a route decides.

use crate::request::{GatewayError, RequestCtx};

pub struct RequireClientCert;

impl RequireClientCert {
    pub fn check(&self, ctx: &RequestCtx) -> Result<(), GatewayError> {
        match ctx.verified_cert() {
            Some(_) => Ok(()),
            None => Err(GatewayError::ClientCertRequired),
        }
    }

    pub fn describe(&self, ctx: &RequestCtx) -> String {
        match ctx.verified_cert() {
            Some(cert) => format!("client certificate {} verified", cert.subject),
            None => "a verified client certificate is required (else 403)".to_string(),
        }
    }
}
