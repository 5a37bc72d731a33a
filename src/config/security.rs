//! Validation of the edge-security sections: `auth`, `cors`, `security_headers`, IP lists,
//! body limits, and the per-route keys that use them.

use super::error::Problems;
use super::model::*;
use super::raw::{RawApiKeys, RawConfig, RawCors, RawIntrospection, RawJwt, RawRoute, RawSecurityHeaders};
use super::units::{parse_duration, parse_size};
use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;
use jsonwebtoken::{Algorithm, DecodingKey};
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

/// HMAC secrets shorter than this are accepted with a warning (RFC 7518 §3.2: at least the
/// hash size).
const MIN_SECRET_LEN: usize = 32;

pub fn security(raw: &RawConfig, p: &mut Problems, warnings: &mut Vec<String>) -> SecurityConfig {
    let auth = raw.auth.as_ref();
    SecurityConfig {
        jwt: auth.and_then(|a| a.jwt.as_ref()).map(|j| jwt(j, p, warnings)),
        api_keys: auth.and_then(|a| a.api_keys.as_ref()).map(|k| api_keys(k, p)),
        introspection: auth.and_then(|a| a.introspection.as_ref()).map(|i| introspection(i, p)),
        cors: raw.cors.as_ref().map(|c| cors(c, "cors", p)),
        headers: security_headers(raw.security_headers.as_ref(), p),
        ip: IpRules {
            allow: cidrs(&raw.ip_allow, "ip_allow", p),
            deny: cidrs(&raw.ip_deny, "ip_deny", p),
        },
        trusted_proxies: cidrs(&raw.trusted_proxies, "trusted_proxies", p),
        max_body: size(&raw.max_body, "max_body", p),
    }
}

/// The security keys of one route, checked against what the global config provides.
pub fn route_security(r: &RawRoute, path: &str, raw: &RawConfig, p: &mut Problems) -> RouteSecurity {
    let raw_auth = raw.auth.as_ref();
    let has_jwt = raw_auth.is_some_and(|a| a.jwt.is_some() || a.introspection.is_some());
    let has_keys = raw_auth.is_some_and(|a| a.api_keys.is_some());
    let auth = match r.auth.as_deref() {
        None | Some("none") => AuthKind::None,
        Some("jwt") => {
            if !has_jwt {
                p.push(
                    format!("{path}.auth"),
                    "jwt needs auth.jwt (or auth.introspection) configured",
                );
            }
            AuthKind::Jwt
        }
        Some("api_key") => {
            if !has_keys {
                p.push(format!("{path}.auth"), "api_key needs auth.api_keys configured");
            }
            AuthKind::ApiKey
        }
        Some("forward") => {
            if r.forward_auth.is_none() {
                p.push(
                    format!("{path}.forward_auth"),
                    "auth: forward needs forward_auth: { upstream, path, headers_to_auth, headers_from_auth }",
                );
            }
            AuthKind::Forward
        }
        Some(other) => {
            p.push(
                format!("{path}.auth"),
                format!("unknown auth \"{other}\" (expected none, jwt, api_key or forward)"),
            );
            AuthKind::None
        }
    };
    if r.forward_auth.is_some() && auth != AuthKind::Forward {
        p.push(format!("{path}.forward_auth"), "is used only with auth: forward");
    }
    let scopes = r.scopes.clone().unwrap_or_default();
    let roles = r.roles.clone().unwrap_or_default();
    if (!scopes.is_empty() || !roles.is_empty()) && auth != AuthKind::Jwt {
        let key = if scopes.is_empty() { "roles" } else { "scopes" };
        p.push(
            format!("{path}.{key}"),
            "needs auth: jwt (scopes and roles come from the token)",
        );
    }
    let client_cert_required = match r.client_cert.as_deref() {
        None | Some("optional") => false,
        Some("required") => {
            if raw.tls.as_ref().is_none_or(|t| t.client_auth.is_none()) {
                p.push(
                    format!("{path}.client_cert"),
                    "required needs tls.client_auth (ca_file, mode: optional or require)",
                );
            }
            true
        }
        Some(other) => {
            p.push(
                format!("{path}.client_cert"),
                format!("unknown value \"{other}\" (expected required or optional)"),
            );
            false
        }
    };
    RouteSecurity {
        client_cert_required,
        auth,
        scopes,
        roles,
        max_body: size(&r.max_body, &format!("{path}.max_body"), p),
        ip: IpRules {
            allow: cidrs(&r.ip_allow, &format!("{path}.ip_allow"), p),
            deny: cidrs(&r.ip_deny, &format!("{path}.ip_deny"), p),
        },
        cors: r.cors.as_ref().map(|c| Box::new(cors(c, &format!("{path}.cors"), p))),
        allow_get_body: r.allow_get_body.unwrap_or(false),
    }
}

fn jwt(raw: &RawJwt, p: &mut Problems, warnings: &mut Vec<String>) -> JwtConfig {
    let key = match (&raw.secret, &raw.public_key, &raw.jwks_url) {
        (Some(secret), None, None) => {
            if secret.is_empty() {
                p.push("auth.jwt.secret", "must not be empty");
            } else if secret.len() < MIN_SECRET_LEN {
                warnings.push(format!(
                    "auth.jwt.secret is {} bytes; use at least {MIN_SECRET_LEN} random bytes for HS256",
                    secret.len()
                ));
            }
            JwtKeySource::Secret(secret.as_bytes().to_vec())
        }
        (None, Some(path), None) => public_key(path, p),
        (None, None, Some(url)) => {
            check_url(url, "auth.jwt.jwks_url", p);
            JwtKeySource::Jwks {
                url: url.clone(),
                refresh: positive(&raw.jwks_refresh, "auth.jwt.jwks_refresh", DEFAULT_JWKS_REFRESH, p),
                min_refresh: duration_or(
                    &raw.jwks_min_refresh,
                    "auth.jwt.jwks_min_refresh",
                    DEFAULT_JWKS_MIN_REFRESH,
                    p,
                ),
            }
        }
        _ => {
            p.push("auth.jwt", "exactly one of secret, public_key or jwks_url is required");
            JwtKeySource::Secret(Vec::new())
        }
    };
    let algorithms = algorithms(raw.algorithms.as_deref(), &key, p);
    if let Some(cookie) = &raw.cookie {
        if cookie.is_empty() || !cookie.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            p.push("auth.jwt.cookie", format!("\"{cookie}\" is not a cookie name"));
        }
    }
    let roles_claim = raw.roles_claim.clone().unwrap_or_else(|| DEFAULT_ROLES_CLAIM.into());
    if roles_claim.is_empty() {
        p.push("auth.jwt.roles_claim", "must not be empty");
    }
    JwtConfig {
        key,
        algorithms,
        issuer: raw.issuer.clone(),
        audience: raw.audience.clone(),
        leeway: duration_or(&raw.leeway, "auth.jwt.leeway", DEFAULT_LEEWAY, p),
        cookie: raw.cookie.clone(),
        roles_claim,
    }
}

fn public_key(path: &str, p: &mut Problems) -> JwtKeySource {
    let pem = match std::fs::read(path) {
        Ok(pem) => pem,
        Err(e) => {
            p.push("auth.jwt.public_key", format!("cannot read \"{path}\": {e}"));
            Vec::new()
        }
    };
    let rsa = DecodingKey::from_rsa_pem(&pem).is_ok();
    if !pem.is_empty() && !rsa && DecodingKey::from_ec_pem(&pem).is_err() {
        p.push(
            "auth.jwt.public_key",
            format!("\"{path}\" holds no RSA or EC public key in PEM"),
        );
    }
    JwtKeySource::PublicKey {
        path: path.to_string(),
        pem,
        rsa,
    }
}

/// The accepted algorithms, each of the key's family, so that no token can make an RSA
/// public key serve as an HMAC secret (or the reverse).
fn algorithms(names: Option<&[String]>, key: &JwtKeySource, p: &mut Problems) -> Vec<Algorithm> {
    use Algorithm::*;
    let (family, default): (&[Algorithm], &[Algorithm]) = match key {
        JwtKeySource::Secret(_) => (&[HS256, HS384, HS512], &[HS256]),
        JwtKeySource::PublicKey { rsa: true, .. } => (&[RS256, RS384, RS512, PS256, PS384, PS512], &[RS256]),
        JwtKeySource::PublicKey { rsa: false, .. } => (&[ES256, ES384], &[ES256]),
        JwtKeySource::Jwks { .. } => (
            &[RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384],
            &[RS256, ES256],
        ),
    };
    let Some(names) = names else {
        return default.to_vec();
    };
    if names.is_empty() {
        p.push("auth.jwt.algorithms", "must list at least one algorithm");
    }
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match Algorithm::from_str(name) {
            Ok(alg) if family.contains(&alg) => out.push(alg),
            Ok(_) => p.push(
                format!("auth.jwt.algorithms[{i}]"),
                format!("{name} does not fit this key (accepted: {})", names_of(family)),
            ),
            Err(_) => p.push(
                format!("auth.jwt.algorithms[{i}]"),
                format!("unknown algorithm \"{name}\" (accepted: {})", names_of(family)),
            ),
        }
    }
    out
}

fn names_of(algs: &[Algorithm]) -> String {
    algs.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ")
}

fn api_keys(raw: &RawApiKeys, p: &mut Problems) -> ApiKeysConfig {
    let header_name = raw.header.as_deref().unwrap_or(DEFAULT_API_KEY_HEADER);
    let header = HeaderName::from_bytes(header_name.as_bytes()).unwrap_or_else(|_| {
        p.push(
            "auth.api_keys.header",
            format!("\"{header_name}\" is not a header name"),
        );
        HeaderName::from_static(DEFAULT_API_KEY_HEADER)
    });
    if raw.keys.is_empty() {
        p.push("auth.api_keys.keys", "at least one key is required");
    }
    let mut keys: Vec<([u8; 32], String)> = Vec::new();
    for (i, k) in raw.keys.iter().enumerate() {
        let path = format!("auth.api_keys.keys[{i}]");
        let consumer = k.consumer.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| {
            p.push(format!("{path}.consumer"), "required");
            String::new()
        });
        let Some(hash) = &k.sha256 else {
            p.push(format!("{path}.sha256"), "required (gatehouse hash-key KEY prints it)");
            continue;
        };
        let mut digest = [0u8; 32];
        if hex::decode_to_slice(hash, &mut digest).is_err() {
            p.push(
                format!("{path}.sha256"),
                "must be 64 hex digits (gatehouse hash-key KEY prints it)",
            );
        } else if let Some(j) = keys.iter().position(|(d, _)| *d == digest) {
            p.push(format!("{path}.sha256"), format!("same key as auth.api_keys.keys[{j}]"));
        } else {
            keys.push((digest, consumer));
        }
    }
    ApiKeysConfig {
        header,
        query: raw.query.clone(),
        keys,
    }
}

fn introspection(raw: &RawIntrospection, p: &mut Problems) -> IntrospectionConfig {
    let url = raw.url.clone().unwrap_or_default();
    if raw.url.is_none() {
        p.push("auth.introspection.url", "required");
    } else {
        check_url(&url, "auth.introspection.url", p);
    }
    let cache_size = raw.cache_size.unwrap_or(DEFAULT_INTROSPECTION_CACHE_SIZE);
    if cache_size == 0 {
        p.push("auth.introspection.cache_size", "must be at least 1");
    }
    IntrospectionConfig {
        url,
        client_id: raw.client_id.clone(),
        client_secret: raw.client_secret.clone(),
        timeout: positive(
            &raw.timeout,
            "auth.introspection.timeout",
            DEFAULT_INTROSPECTION_TIMEOUT,
            p,
        ),
        cache_ttl: positive(
            &raw.cache_ttl,
            "auth.introspection.cache_ttl",
            DEFAULT_INTROSPECTION_CACHE_TTL,
            p,
        ),
        cache_size,
    }
}

fn check_url(url: &str, path: &str, p: &mut Problems) {
    let ok = url
        .parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if !ok {
        p.push(path, format!("\"{url}\" is not an http(s) URL"));
    }
}

fn cors(raw: &RawCors, path: &str, p: &mut Problems) -> CorsConfig {
    let origins = match raw.origins.as_deref() {
        None | Some([]) => {
            p.push(format!("{path}.origins"), "at least one origin (or \"*\") is required");
            Some(Vec::new())
        }
        Some([any]) if any == "*" => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .filter_map(|(i, o)| origin(o).map_err(|e| p.push(format!("{path}.origins[{i}]"), e)).ok())
                .collect(),
        ),
    };
    let credentials = raw.credentials.unwrap_or(false);
    if credentials && origins.is_none() {
        p.push(
            format!("{path}.credentials"),
            "cannot be true with origins \"*\"; list the origins",
        );
    }
    let methods = match &raw.methods {
        None => ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .filter_map(|m| m.parse().ok())
            .collect(),
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| p.push(format!("{path}.methods[{i}]"), format!("\"{m}\" is not a method")))
                    .ok()
            })
            .collect(),
    };
    let headers = match raw.headers.as_deref() {
        None => None,
        Some([any]) if any == "*" => None,
        Some(list) => Some(header_names(list, &format!("{path}.headers"), p)),
    };
    CorsConfig {
        origins,
        methods,
        headers,
        expose_headers: header_names(
            raw.expose_headers.as_deref().unwrap_or_default(),
            &format!("{path}.expose_headers"),
            p,
        ),
        credentials,
        max_age: Some(duration_or(
            &raw.max_age,
            &format!("{path}.max_age"),
            DEFAULT_CORS_MAX_AGE,
            p,
        )),
    }
}

/// `https://app.example.com[:port]`, as browsers send it in `Origin`.
fn origin(o: &str) -> Result<String, String> {
    let bad = || format!("\"{o}\" is not an origin (scheme://host[:port], no path)");
    let uri: http::Uri = o.parse().map_err(|_| bad())?;
    let well_formed = uri.scheme().is_some()
        && uri.host().is_some()
        && matches!(uri.path(), "" | "/")
        && !o.ends_with('/')
        && uri.query().is_none();
    if well_formed {
        Ok(o.to_ascii_lowercase())
    } else {
        Err(bad())
    }
}

fn header_names(list: &[String], path: &str, p: &mut Problems) -> Vec<HeaderName> {
    list.iter()
        .enumerate()
        .filter_map(|(i, h)| {
            HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| p.push(format!("{path}[{i}]"), format!("\"{h}\" is not a header name")))
                .ok()
        })
        .collect()
}

fn security_headers(raw: Option<&RawSecurityHeaders>, p: &mut Problems) -> SecurityHeadersConfig {
    let default = RawSecurityHeaders::default();
    let raw = raw.unwrap_or(&default);
    let mut add = Vec::new();
    let mut header = |name: &'static str, key: &str, value: Option<&str>| {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return;
        };
        match HeaderValue::from_str(value) {
            Ok(v) => add.push((pingora::http::KnownHeaderName::new(HeaderName::from_static(name)), v)),
            Err(_) => p.push(
                format!("security_headers.{key}"),
                format!("\"{value}\" is not a valid header value"),
            ),
        }
    };
    if raw.content_type_options.unwrap_or(true) {
        header("x-content-type-options", "content_type_options", Some("nosniff"));
    }
    header(
        "x-frame-options",
        "frame_options",
        Some(raw.frame_options.as_deref().unwrap_or("DENY")),
    );
    header(
        "referrer-policy",
        "referrer_policy",
        Some(
            raw.referrer_policy
                .as_deref()
                .unwrap_or("strict-origin-when-cross-origin"),
        ),
    );
    header(
        "content-security-policy",
        "content_security_policy",
        raw.content_security_policy.as_deref(),
    );
    SecurityHeadersConfig {
        add,
        hsts: hsts(raw.hsts.as_deref(), p),
        remove: header_names(raw.remove.as_deref().unwrap_or_default(), "security_headers.remove", p),
    }
}

/// Two years, what the HSTS preload list asks for and scanners expect.
pub const DEFAULT_HSTS: &str = "max-age=63072000";

fn hsts(value: Option<&str>, p: &mut Problems) -> Option<HeaderValue> {
    let value = value.map_or(DEFAULT_HSTS, str::trim);
    if value.is_empty() || value.eq_ignore_ascii_case("off") || value.eq_ignore_ascii_case("none") {
        return None;
    }
    let max_age_ok = value
        .split(';')
        .filter_map(|d| d.trim().split_once('='))
        .any(|(k, v)| k.trim().eq_ignore_ascii_case("max-age") && v.trim().trim_matches('"').parse::<u64>().is_ok());
    if !max_age_ok {
        p.push(
            "security_headers.hsts",
            format!("\"{value}\" has no max-age=<seconds> (use \"{DEFAULT_HSTS}\", add \"; includeSubDomains\" if every subdomain is HTTPS, or off)"),
        );
        return None;
    }
    HeaderValue::from_str(value)
        .map_err(|_| {
            p.push(
                "security_headers.hsts",
                format!("\"{value}\" is not a valid header value"),
            )
        })
        .ok()
}

fn cidrs(list: &Option<Vec<String>>, path: &str, p: &mut Problems) -> Vec<IpNet> {
    list.iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, s)| {
            let parsed = IpNet::from_str(s).or_else(|_| IpAddr::from_str(s).map(IpNet::from));
            parsed
                .map_err(|_| p.push(format!("{path}[{i}]"), format!("\"{s}\" is not an IP address or CIDR")))
                .ok()
        })
        .collect()
}

/// `1MiB`, `64KiB`, `1000` (bytes).
fn size(value: &Option<String>, path: &str, p: &mut Problems) -> Option<u64> {
    let s = value.as_ref()?;
    match parse_size(s) {
        Ok(n) if n > 0 => Some(n),
        Ok(_) => {
            p.push(path, "must be greater than zero");
            None
        }
        Err(e) => {
            p.push(path, e);
            None
        }
    }
}

fn duration_or(value: &Option<String>, path: &str, default: Duration, p: &mut Problems) -> Duration {
    match value.as_deref().map(parse_duration) {
        None => default,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            p.push(path, e);
            default
        }
    }
}

fn positive(value: &Option<String>, path: &str, default: Duration, p: &mut Problems) -> Duration {
    let d = duration_or(value, path, default, p);
    if d.is_zero() {
        p.push(path, "must be greater than zero");
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_bare_scheme_host_port() {
        assert_eq!(origin("https://App.example.com").unwrap(), "https://app.example.com");
        assert!(origin("http://localhost:3000").is_ok());
        assert!(origin("https://app.example.com/").is_err());
        assert!(origin("https://app.example.com/path").is_err());
        assert!(origin("app.example.com").is_err());
    }

    #[test]
    fn algorithms_are_pinned_to_the_key_family() {
        let mut p = Problems::default();
        let secret = JwtKeySource::Secret(b"k".to_vec());
        assert_eq!(algorithms(None, &secret, &mut p), vec![Algorithm::HS256]);
        let asked = vec!["HS384".to_string(), "RS256".to_string(), "none".to_string()];
        assert_eq!(algorithms(Some(&asked), &secret, &mut p), vec![Algorithm::HS384]);
        let err = p.into_error("t");
        assert!(err.problems[0].message.contains("RS256 does not fit this key"));
        assert!(err.problems[1].message.contains("unknown algorithm \"none\""));
    }

    #[test]
    fn sizes_and_cidrs_parse() {
        let mut p = Problems::default();
        assert_eq!(size(&Some("1MiB".into()), "x", &mut p), Some(1024 * 1024));
        assert_eq!(size(&Some("64KiB".into()), "x", &mut p), Some(65536));
        assert_eq!(size(&Some("100".into()), "x", &mut p), Some(100));
        let nets = cidrs(
            &Some(vec!["10.0.0.0/8".into(), "::1".into(), "192.168.1.7".into()]),
            "x",
            &mut p,
        );
        assert_eq!(nets.len(), 3);
        assert!(p.is_empty());
        assert_eq!(size(&Some("lots".into()), "x", &mut p), None);
        assert!(cidrs(&Some(vec!["10.0.0.0/33".into()]), "x", &mut p).is_empty());
        assert_eq!(p.into_error("t").problems.len(), 2);
    }
}
