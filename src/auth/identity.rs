//! Who a verified credential says the caller is.

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
        }
    }

    pub fn consumer(name: &str) -> Self {
        Identity {
            consumer: Some(name.to_string()),
            ..Default::default()
        }
    }
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
    fn roles_follow_a_dotted_claim_path() {
        let path: Vec<String> = vec!["realm_access".into(), "roles".into()];
        let c = claims(json!({"realm_access": {"roles": ["admin", "dev"]}}));
        assert_eq!(Identity::from_claims(&c, &path).roles, ["admin", "dev"]);
        assert!(Identity::from_claims(&claims(json!({})), &path).roles.is_empty());
    }
}
