//! Who a verified credential says the caller is.

use http::HeaderValue;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `sub` of a token.
    pub subject: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    /// API-key consumer name.
    pub consumer: Option<String>,
    /// The verified token's claims, for `{claims.<name>}` in templates (empty for API keys).
    pub claims: Map<String, Value>,
    /// What the backend is told, made by [`Identity::with_header_values`].
    pub header_values: IdentityHeaderValues,
}

/// The identity as the values of X-User-ID, X-User-Roles, X-User-Scopes and X-Consumer,
/// made once per verified credential rather than per request: a cached token's identity
/// serves every request that presents it. `None` when the field is absent, or cannot be a
/// header value (a newline in `sub`) and is left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityHeaderValues {
    pub user_id: Option<HeaderValue>,
    pub roles: Option<HeaderValue>,
    pub scopes: Option<HeaderValue>,
    pub consumer: Option<HeaderValue>,
}

impl Identity {
    /// From verified token claims (or an introspection answer): `sub`; scopes from `scope`
    /// (space-separated) or `scp` (list or string); roles from the claim at `roles_claim`
    /// (a dotted path such as `realm_access.roles`), a list or a space-separated string.
    pub fn from_claims(claims: &Map<String, Value>, roles_claim: &[String]) -> Self {
        let scopes = claims
            .get("scope")
            .or_else(|| claims.get("scp"))
            .map(strings)
            .unwrap_or_default();
        let mut at = claims.get(roles_claim.first().map_or("", String::as_str));
        for part in roles_claim.iter().skip(1) {
            at = at.and_then(|v| v.get(part));
        }
        Identity {
            subject: claims.get("sub").and_then(Value::as_str).map(String::from),
            scopes,
            roles: at.map(strings).unwrap_or_default(),
            consumer: None,
            claims: claims.clone(),
            header_values: IdentityHeaderValues::default(),
        }
        .with_header_values()
    }

    pub fn consumer(name: &str) -> Self {
        Identity {
            consumer: Some(name.to_string()),
            ..Default::default()
        }
        .with_header_values()
    }

    /// The identity with `header_values` made from its fields.
    pub fn with_header_values(mut self) -> Self {
        let joined = |items: &[String], separator| (!items.is_empty()).then(|| items.join(separator));
        self.header_values = IdentityHeaderValues {
            user_id: self.subject.as_deref().and_then(|v| header_value("sub", v)),
            roles: joined(&self.roles, ",").and_then(|v| header_value("roles", &v)),
            scopes: joined(&self.scopes, " ").and_then(|v| header_value("scopes", &v)),
            consumer: self.consumer.as_deref().and_then(|v| header_value("consumer", v)),
        };
        self
    }
}

/// A claim that cannot be a header value is left out, not fatal.
fn header_value(field: &str, value: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(value)
        .inspect_err(|e| log::debug!("identity's {field} left out of its header: {e}"))
        .ok()
}

/// `"a b"` or `["a", "b"]` → `[a, b]`.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => s.split_whitespace().map(String::from).collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(String::from).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let a = Identity::from_claims(&claims(json!({"sub": "u1", "scope": "read write"})), &["roles".into()]);
        assert_eq!(a.subject.as_deref(), Some("u1"));
        assert_eq!(a.scopes, ["read", "write"]);
        let b = Identity::from_claims(&claims(json!({"scp": ["x", "y"]})), &["roles".into()]);
        assert_eq!(b.scopes, ["x", "y"]);
    }

    #[test]
    fn header_values_are_made_with_the_identity() {
        let c = claims(json!({"sub": "u1", "scope": "read write", "roles": ["admin", "dev"]}));
        let id = Identity::from_claims(&c, &["roles".into()]);
        let values = &id.header_values;
        assert_eq!(values.user_id.as_ref().map(|v| v.as_bytes()), Some(&b"u1"[..]));
        assert_eq!(values.roles.as_ref().map(|v| v.as_bytes()), Some(&b"admin,dev"[..]));
        assert_eq!(values.scopes.as_ref().map(|v| v.as_bytes()), Some(&b"read write"[..]));
        assert_eq!(values.consumer, None);
        let bad = Identity::from_claims(&claims(json!({"sub": "u\n1"})), &["roles".into()]);
        assert_eq!(bad.header_values.user_id, None, "a newline cannot be sent");
        let key = Identity::consumer("mobile-app");
        assert_eq!(
            key.header_values.consumer.as_ref().map(|v| v.as_bytes()),
            Some(&b"mobile-app"[..])
        );
        assert_eq!(key.header_values.user_id, None);
    }

    #[test]
    fn roles_follow_a_dotted_claim_path() {
        let path: Vec<String> = vec!["realm_access".into(), "roles".into()];
        let c = claims(json!({"realm_access": {"roles": ["admin", "dev"]}}));
        assert_eq!(Identity::from_claims(&c, &path).roles, ["admin", "dev"]);
        assert!(Identity::from_claims(&claims(json!({})), &path).roles.is_empty());
    }
}
