//! `scopes` (all required) and `roles` (any one required) of a route, checked against the
//! verified identity: 403 when missing.

use crate::request::{GatewayError, RequestCtx};
use std::borrow::Cow;

pub struct Authorize {
    scopes: Vec<String>,
    roles: Vec<String>,
}

impl Authorize {
    /// `None` when the route asks for neither.
    pub fn new(scopes: &[String], roles: &[String]) -> Option<Self> {
        (!scopes.is_empty() || !roles.is_empty()).then(|| Authorize {
            scopes: scopes.to_vec(),
            roles: roles.to_vec(),
        })
    }

    /// What the route asks of the identity (explain).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.scopes.is_empty() {
            parts.push(format!("scopes {} (all)", self.scopes.join(", ")));
        }
        if !self.roles.is_empty() {
            parts.push(format!("roles {} (any)", self.roles.join(", ")));
        }
        parts.join(" and ")
    }

    pub fn check(&self, ctx: &RequestCtx) -> Result<(), GatewayError> {
        let Some(id) = &ctx.identity else {
            return Err(GatewayError::Internal);
        };
        let missing: Vec<&str> = self
            .scopes
            .iter()
            .filter(|s| !id.scopes.contains(s))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            let needed = missing.join(" ");
            return Err(GatewayError::Forbidden {
                reason: Cow::Owned(format!("insufficient scope: needs {needed}")),
                challenge: Some(format!(
                    "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"{needed}\""
                )),
            });
        }
        if !self.roles.is_empty() && !self.roles.iter().any(|r| id.roles.contains(r)) {
            return Err(GatewayError::Forbidden {
                reason: Cow::Owned(format!("needs one of the roles: {}", self.roles.join(", "))),
                challenge: None,
            });
        }
        Ok(())
    }
}
