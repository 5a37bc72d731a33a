//! The seeds' configuration, loaded as they describe it: no YAML file, only environment
//! variables (PORT, BACKEND_URL, BACKEND_URLS, ROUTES_CONFIG_PATH, HEALTH_CHECK_PATH,
//! JWT_SECRET, JWT_ISSUER, ALLOWED_ORIGINS) and an
//! optional `routes.json`. Both are turned into a [`RawConfig`] and validated like YAML, so
//! every rule and message is shared.

use super::error::{ConfigError, Problems};
use super::raw::{RawAdmin, RawAuth, RawConfig, RawCors, RawHealthCheck, RawJwt, RawRoute, RawUpstream};
use super::{port_override, validate, Config};
use serde::Deserialize;

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Upstream that BACKEND_URL(S) fill, and the catch-all route that points to it.
const BACKEND_UPSTREAM: &str = "backend";

pub fn environment_mode_requested(lookup: &dyn Fn(&str) -> Option<String>) -> bool {
    ["BACKEND_URL", "BACKEND_URLS", "ROUTES_CONFIG_PATH"]
        .iter()
        .any(|k| lookup(k).is_some_and(|v| !v.is_empty()))
}

/// `routes.json` as the seeds write it.
#[derive(Debug, Deserialize)]
struct RoutesFile {
    routes: Vec<SeedRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeedRoute {
    name: Option<String>,
    path: String,
    #[serde(rename = "targetURL")]
    target_url: String,
    methods: Option<Vec<String>>,
    #[serde(default)]
    require_auth: bool,
    strip_prefix: Option<String>,
    #[serde(default)]
    cacheable: bool,
    /// Seconds, as in the seeds.
    timeout: Option<f64>,
}

pub fn load(lookup: Lookup) -> Result<Config, ConfigError> {
    let routes = match lookup("ROUTES_CONFIG_PATH").filter(|v| !v.is_empty()) {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError::single(&path, "", format!("cannot read: {e}")))?;
            Some((path, text))
        }
        None => None,
    };
    build(lookup, routes)
}

/// The environment-mode config with the routes.json `text` (named `source` in messages)
/// in place of the file ROUTES_CONFIG_PATH names.
pub fn with_routes_json(text: &str, source: &str, lookup: Lookup) -> Result<Config, ConfigError> {
    build(lookup, Some((source.to_string(), text.to_string())))
}

/// `routes`: the routes.json file's path and text, if there is one.
fn build(lookup: Lookup, routes: Option<(String, String)>) -> Result<Config, ConfigError> {
    let mut problems = Problems::default();
    let mut raw = RawConfig::default();
    let source = routes
        .as_ref()
        .map_or_else(|| "environment".to_string(), |(path, _)| path.clone());
    raw.auth = jwt_from_env(lookup);
    raw.admin = Some(RawAdmin {
        listen: lookup("ADMIN_LISTEN").filter(|v| !v.is_empty()),
        token: lookup("ADMIN_TOKEN").filter(|v| !v.is_empty()),
    });
    // The seeds' default is "*": every origin may call the API from a browser.
    let origins = lookup("ALLOWED_ORIGINS")
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "*".into());
    raw.cors = Some(RawCors {
        origins: Some(origins.split(',').map(|o| o.trim().to_string()).collect()),
        ..Default::default()
    });

    if let Some((path, text)) = &routes {
        // Unknown keys are reported with every other problem, not instead of them.
        let file = parse_routes_file(text, path, &mut problems)?;
        for (i, route) in file.routes.into_iter().enumerate() {
            add_seed_route(&mut raw, route, i, &mut problems);
        }
    }
    let (variable, backends) = backend_urls(lookup);
    if !backends.is_empty() {
        let mut upstream = RawUpstream::default();
        let mut schemes = Vec::new();
        for (i, url) in backends.iter().enumerate() {
            // Named as the operator wrote it: BACKEND_URL, or BACKEND_URLS[i] of a list.
            let field = if variable == "BACKEND_URLS" {
                format!("BACKEND_URLS[{i}]")
            } else {
                variable.to_string()
            };
            match target_of(url) {
                Ok(t) => {
                    schemes.push(t.tls);
                    upstream.targets.push(serde_yaml::Value::String(t.addr));
                }
                Err(e) => problems.push(field, e),
            }
        }
        match (schemes.iter().all(|&tls| tls), schemes.iter().any(|&tls| tls)) {
            (true, true) => upstream.tls = Some(true),
            (false, true) => problems.push(
                variable,
                "mixes http:// and https:// backends: one pool speaks one protocol (use routes.json or a YAML config for both)",
            ),
            _ => {}
        }
        if let Some(path) = lookup("HEALTH_CHECK_PATH").filter(|v| !v.is_empty()) {
            upstream.health_check = Some(RawHealthCheck {
                path: Some(path),
                ..Default::default()
            });
        }
        raw.upstreams.insert(BACKEND_UPSTREAM.to_string(), upstream);
        raw.routes.push(RawRoute {
            name: Some("default".into()),
            prefix: Some("/".into()),
            upstream: Some(BACKEND_UPSTREAM.into()),
            ..Default::default()
        });
    }
    if raw.routes.is_empty() {
        problems.push(
            "ROUTES_CONFIG_PATH",
            "no routes: set BACKEND_URL(S) or list routes in routes.json",
        );
    }
    let port = port_override(lookup, &mut problems);
    super::switch_overrides(&mut raw, lookup, &mut problems);
    let validated = validate::validate(raw, &source, port);
    let result = super::finish(validated, problems, &source);
    match &routes {
        Some((_, text)) => super::located(result, text),
        None => result,
    }
}

/// The keys a routes.json route may have, for "did you mean".
const SEED_ROUTE_KEYS: [&str; 8] = [
    "name",
    "path",
    "targetURL",
    "methods",
    "requireAuth",
    "stripPrefix",
    "cacheable",
    "timeout",
];

fn parse_routes_file(text: &str, path: &str, problems: &mut Problems) -> Result<RoutesFile, ConfigError> {
    let mut unknown = Vec::new();
    let file: RoutesFile = serde_ignored::deserialize(&mut serde_json::Deserializer::from_str(text), |p| {
        unknown.push(super::field_path(&p))
    })
    .map_err(|e| ConfigError::single(path, "", format!("invalid routes.json: {e}")))?;
    let known: Vec<String> = SEED_ROUTE_KEYS.iter().map(|k| k.to_string()).collect();
    for field in unknown {
        let key = field.rsplit('.').next().unwrap_or(&field);
        let message = match super::suggest::nearest(key, &known) {
            Some(k) => format!("unknown key (did you mean `{k}`?)"),
            None => format!("unknown key (a route has: {})", SEED_ROUTE_KEYS.join(", ")),
        };
        problems.push(field, message);
    }
    Ok(file)
}

/// JWT_SECRET (+ JWT_ISSUER) → `auth.jwt`, for routes with `requireAuth`.
pub fn jwt_from_env(lookup: Lookup) -> Option<RawAuth> {
    let secret = lookup("JWT_SECRET").filter(|v| !v.is_empty())?;
    Some(RawAuth {
        jwt: Some(RawJwt {
            secret: Some(secret),
            issuer: lookup("JWT_ISSUER").filter(|v| !v.is_empty()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// BACKEND_URLS (comma-separated) wins over BACKEND_URL, as in the seeds; with the name of
/// the variable the URLs came from.
fn backend_urls(lookup: Lookup) -> (&'static str, Vec<String>) {
    let (variable, list) = match lookup("BACKEND_URLS").filter(|v| !v.trim().is_empty()) {
        Some(list) => ("BACKEND_URLS", Some(list)),
        None => ("BACKEND_URL", lookup("BACKEND_URL")),
    };
    let urls = list
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    (variable, urls)
}

fn add_seed_route(raw: &mut RawConfig, route: SeedRoute, i: usize, p: &mut Problems) {
    let path = format!("routes[{i}]");
    let upstream = match target_of(&route.target_url) {
        // One upstream per distinct target (and scheme), shared by the routes that name it.
        Ok(target) => {
            let name = if target.tls {
                format!("https://{}", target.addr)
            } else {
                target.addr.clone()
            };
            raw.upstreams.entry(name.clone()).or_insert_with(|| RawUpstream {
                targets: vec![serde_yaml::Value::String(target.addr.clone())],
                tls: target.tls.then_some(true),
                ..Default::default()
            });
            name
        }
        Err(e) => {
            p.push(format!("{path}.targetURL"), e);
            return;
        }
    };
    let jwt_configured = raw.auth.as_ref().and_then(|a| a.jwt.as_ref()).is_some();
    if route.require_auth && !jwt_configured {
        // Refusing is safer than serving a route its author meant to protect. The route
        // then asks for no auth, so that this is the only message, in env-mode words.
        p.push(
            format!("{path}.requireAuth"),
            "needs JWT_SECRET (the secret tokens are signed with): set JWT_SECRET, or set requireAuth: false; refusing to serve this route unprotected",
        );
    }
    let timeout = match route.timeout {
        Some(secs) if secs.is_finite() && secs > 0.0 => Some(format!("{}ms", (secs * 1000.0).round() as u64)),
        Some(_) => {
            p.push(format!("{path}.timeout"), "must be a positive number of seconds");
            None
        }
        None => None,
    };
    raw.routes.push(RawRoute {
        name: route.name,
        path: Some(route.path),
        methods: route.methods,
        upstream: Some(upstream),
        strip_prefix: route.strip_prefix,
        timeout,
        auth: (route.require_auth && jwt_configured).then(|| "jwt".to_string()),
        // Cached for CACHE_TTL when the backend says nothing (ENABLE_CACHING=false: off).
        cache: route.cacheable.then_some(serde_yaml::Value::Bool(true)),
        ..Default::default()
    });
}

/// A backend URL as an upstream target.
#[derive(Debug)]
struct Target {
    /// `host:port`.
    addr: String,
    /// `https://`: TLS to the upstream, SNI and verification by the host name.
    tls: bool,
}

/// `http://host:port` → `host:port`, `https://host` → `host:443` with TLS. A path is
/// refused with the reason.
fn target_of(url: &str) -> Result<Target, String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("\"{url}\" is not a URL"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("\"{url}\" must start with http:// or https://")),
    };
    if !matches!(uri.path(), "" | "/") {
        return Err(format!(
            "\"{url}\": a path in the target URL is not supported (use stripPrefix)"
        ));
    }
    let host = uri.host().ok_or_else(|| format!("\"{url}\" has no host"))?;
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok(Target {
        addr: format!("{host}:{port}"),
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls() {
        assert_eq!(target_of("http://localhost:8081").unwrap().addr, "localhost:8081");
        assert_eq!(target_of("http://10.0.0.1").unwrap().addr, "10.0.0.1:80");
        let https = target_of("https://api.example").unwrap();
        assert_eq!((https.addr.as_str(), https.tls), ("api.example:443", true));
        assert!(target_of("ftp://x:1").unwrap_err().contains("https://"));
        assert!(target_of("http://x:1/base").unwrap_err().contains("path"));
        assert!(target_of("localhost:8081").is_err());
    }

    #[test]
    fn backend_urls_prefers_the_list() {
        let env = |k: &str| match k {
            "BACKEND_URLS" => Some("http://a:1, http://b:2".to_string()),
            "BACKEND_URL" => Some("http://c:3".to_string()),
            _ => None,
        };
        assert_eq!(
            backend_urls(&env),
            ("BACKEND_URLS", vec!["http://a:1".into(), "http://b:2".into()])
        );
    }
}
