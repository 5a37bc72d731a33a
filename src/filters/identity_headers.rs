//! The verified identity, for the backend: X-User-ID (`sub`), X-User-Roles, X-User-Scopes,
//! X-Consumer, and from a verified client certificate X-Client-Cert-Subject, -SAN,
//! -Fingerprint and Client-Cert (RFC 9440). Client-sent copies are removed on every route,
//! authenticated or not, so a backend can trust them.

use crate::auth::client_cert;
use crate::request::RequestCtx;
use pingora::http::{KnownHeaderName, RequestHeader};

pub const USER_ID: &str = "x-user-id";
pub const USER_ROLES: &str = "x-user-roles";
pub const USER_SCOPES: &str = "x-user-scopes";
pub const CONSUMER: &str = "x-consumer";
const IDENTITY: [&str; 4] = [USER_ID, USER_ROLES, USER_SCOPES, CONSUMER];
/// At most how many fields an authenticated request gets (the upstream map's reserve).
pub const ADDED: usize = IDENTITY.len();
// For inserting: checked once, no parse or allocation per request.
const USER_ID_NAME: KnownHeaderName = KnownHeaderName::from_static(USER_ID);
const USER_ROLES_NAME: KnownHeaderName = KnownHeaderName::from_static(USER_ROLES);
const USER_SCOPES_NAME: KnownHeaderName = KnownHeaderName::from_static(USER_SCOPES);
const CONSUMER_NAME: KnownHeaderName = KnownHeaderName::from_static(CONSUMER);

pub struct IdentityHeaders;

impl IdentityHeaders {
    pub fn apply(&self, req: &mut RequestHeader, ctx: &RequestCtx) -> pingora::Result<()> {
        // One pass over the names the client sent (a handful) instead of four removals,
        // each of which parses the name and looks in two maps: clients rarely send these.
        if req.headers.keys().any(|n| {
            let n = n.as_str();
            IDENTITY.contains(&n) || client_cert::HEADERS.contains(&n)
        }) {
            for name in IDENTITY.iter().chain(&client_cert::HEADERS) {
                req.remove_header(*name);
            }
        }
        if let Some(cert) = ctx.verified_cert() {
            for (name, value) in client_cert::HEADERS.iter().zip(&cert.header_values) {
                if let Some(value) = value {
                    let _ = req.insert_header(*name, value.clone());
                }
            }
        }
        let Some(id) = &ctx.identity else {
            return Ok(());
        };
        // Made when the credential was verified: a cheap copy of shared bytes here.
        let values = &id.header_values;
        let fields = [
            (&USER_ID_NAME, &values.user_id),
            (&USER_ROLES_NAME, &values.roles),
            (&USER_SCOPES_NAME, &values.scopes),
            (&CONSUMER_NAME, &values.consumer),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                req.insert_known_header(name, value.clone());
            }
        }
        Ok(())
    }
}
