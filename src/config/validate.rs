//! Raw config → validated model. Walks everything, collects every problem with its field
//! path, and never panics: a bad file is a list of messages, not a crash.

use super::error::{ConfigError, Problems};
use super::model::*;
use super::raw::{RawConfig, RawHealthCheck, RawRoute, RawUpstream};
use super::units::{parse_duration, parse_size};
use super::{cache, client, compression, security, tls, traffic, transform};
use crate::routing::{HostPattern, PathPattern, RouteMatcher};
use http::{HeaderName, Method};
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Validates `raw` from `source`. `port` (the `PORT` variable) replaces every listener's port.
pub fn validate(raw: RawConfig, source: &str, port: Option<u16>) -> Result<Config, ConfigError> {
    let mut p = Problems::default();
    let document = super::document::Document::new(serde_json::to_value(&raw).unwrap_or_default());
    let mut server = server_settings(&raw, port, &mut p);
    let mut security_warnings = Vec::new();
    let tls_settings = tls::tls(raw.tls.as_ref(), &mut p, &mut security_warnings);
    server.tls_listen = tls_settings.listen;
    let client_auth = super::client_auth::client_auth(
        raw.tls.as_ref().and_then(|t| t.client_auth.as_ref()),
        &server.tls_listen,
        &mut p,
        &mut security_warnings,
    );
    server.tls_h2 = tls_settings.h2;
    server.tls_policy = super::tls_policy::policy(raw.tls.as_ref(), &mut p);
    server.redirect_http = tls_settings.redirect_http;
    let security = security::security(&raw, &mut p, &mut security_warnings);
    let traffic = traffic::traffic(&raw, &mut p);
    let upstreams: BTreeMap<String, UpstreamConfig> = raw
        .upstreams
        .iter()
        .filter_map(|(name, u)| upstream(name, u, &mut p).map(|u| (name.clone(), u)))
        .collect();
    let routes = routes(&raw.routes, &raw, &server.cache, &mut p);
    let acme = super::acme::acme(&raw, &mut p);
    let session_tickets = super::session_tickets::session_tickets(raw.tls.as_ref(), &mut p);
    if raw.routes.is_empty() {
        p.push("routes", "at least one route is required");
    }
    let mut warnings = warnings(&raw, &routes, &upstreams);
    warnings.extend(stop_budget_warning(&server));
    warnings.extend(security_warnings);
    p.into_result(
        source,
        Config {
            source: source.to_string(),
            server,
            security,
            traffic,
            certs: tls_settings.certs,
            client_auth,
            acme,
            session_tickets,
            upstreams,
            routes,
            warnings,
            document,
            locations: Default::default(),
            revision: None,
        },
    )
}

fn server_settings(raw: &RawConfig, port: Option<u16>, p: &mut Problems) -> ServerSettings {
    let default_listen = vec![DEFAULT_LISTEN.to_string()];
    let mut listen = Vec::new();
    for (i, spec) in raw.listen.as_ref().unwrap_or(&default_listen).iter().enumerate() {
        match spec.parse::<SocketAddr>() {
            Ok(mut addr) => {
                if let Some(port) = port {
                    addr.set_port(port);
                }
                listen.push(addr);
            }
            Err(_) => p.push(
                format!("listen[{i}]"),
                format!("\"{spec}\" is not an address (ip:port)"),
            ),
        }
    }
    if raw.listen.as_ref().is_some_and(|l| l.is_empty()) {
        p.push("listen", "at least one address is required");
    }
    let threads = raw.threads.unwrap_or_else(default_threads);
    if threads == 0 {
        p.push("threads", "must be at least 1");
    }
    let upstream_keepalive_pool = raw.upstream_keepalive_pool.unwrap_or(DEFAULT_UPSTREAM_KEEPALIVE_POOL);
    if !(1..=MAX_UPSTREAM_KEEPALIVE_POOL).contains(&upstream_keepalive_pool) {
        // 0 is refused: Pingora's pool still keeps one connection at that size.
        p.push(
            "upstream_keepalive_pool",
            format!("must be between 1 and {MAX_UPSTREAM_KEEPALIVE_POOL} (idle connections per thread)"),
        );
    }
    let health_path = match raw.health_path.as_deref() {
        None => Some(DEFAULT_HEALTH_PATH.to_string()),
        Some("") => None,
        Some(path) if path.starts_with('/') => Some(path.to_string()),
        Some(path) => {
            p.push(
                "health_path",
                format!("\"{path}\" must start with / (or be \"\" to disable)"),
            );
            None
        }
    };
    ServerSettings {
        listen,
        threads,
        work_stealing: raw.work_stealing.unwrap_or(true),
        watch: raw.watch.unwrap_or(false),
        upstream_keepalive_pool,
        pid_file: raw.pid_file.clone().unwrap_or_else(|| DEFAULT_PID_FILE.into()),
        state_dir: state_dir(raw),
        upgrade_sock: raw.upgrade_sock.clone().unwrap_or_else(|| DEFAULT_UPGRADE_SOCK.into()),
        log_file: raw.log_file.clone(),
        drain_period: duration(&raw.drain_period, "drain_period", DEFAULT_DRAIN_PERIOD, p),
        grace_period: duration(&raw.grace_period, "grace_period", DEFAULT_GRACE_PERIOD, p),
        shutdown_timeout: duration(&raw.shutdown_timeout, "shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT, p),
        ready_timeout: duration(&raw.ready_timeout, "ready_timeout", DEFAULT_READY_TIMEOUT, p),
        health_path,
        access_log: raw.access_log.unwrap_or(true),
        access_log_query: raw.access_log_query.unwrap_or(false),
        redact_params: raw.redact_params.as_ref().map_or_else(
            || DEFAULT_REDACT_PARAMS.iter().map(|s| s.to_string()).collect(),
            |list| list.iter().map(|s| s.to_ascii_lowercase()).collect(),
        ),
        metrics: raw.metrics.unwrap_or(true),
        admin: admin(raw, p),
        tracing: tracing(raw, p),
        tls_listen: Vec::new(),
        tls_h2: true,
        tls_policy: Default::default(),
        redirect_http: false,
        h2c: raw.h2c.unwrap_or(false),
        reuse_port: raw.reuse_port.unwrap_or(false),
        read_buffer: read_buffer(&raw.read_buffer, "read_buffer", DEFAULT_READ_BUFFER, p),
        tls_read_buffer: read_buffer(
            &raw.tls.as_ref().and_then(|t| t.read_buffer.clone()),
            "tls.read_buffer",
            DEFAULT_TLS_READ_BUFFER,
            p,
        ),
        cache: cache::settings(raw.cache.as_ref(), p),
        client: client::limits(raw, p),
    }
}

fn admin(raw: &RawConfig, p: &mut Problems) -> Option<AdminConfig> {
    let listen = raw
        .admin
        .as_ref()
        .and_then(|a| a.listen.clone())
        .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.into());
    if listen.is_empty() {
        return None;
    }
    let token = raw
        .admin
        .as_ref()
        .and_then(|a| a.token.clone())
        .filter(|t| !t.is_empty());
    let addr = match listen.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            p.push("admin.listen", format!("\"{listen}\" is not an address (ip:port)"));
            return None;
        }
    };
    if token.is_none() && !addr.ip().is_loopback() {
        p.push(
            "admin.token",
            format!("required when admin.listen ({addr}) is not a loopback address"),
        );
    }
    Some(AdminConfig { listen: addr, token })
}

fn tracing(raw: &RawConfig, p: &mut Problems) -> Option<TracingConfig> {
    let t = raw.tracing.as_ref()?;
    let endpoint = t.otlp_endpoint.clone().filter(|e| !e.is_empty())?;
    let ok = endpoint
        .parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if !ok {
        p.push("tracing.otlp_endpoint", format!("\"{endpoint}\" is not an http(s) URL"));
    }
    Some(TracingConfig {
        otlp_endpoint: endpoint,
        service_name: t.service_name.clone().unwrap_or_else(|| "gatehouse".into()),
    })
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn upstream(name: &str, raw: &RawUpstream, p: &mut Problems) -> Option<UpstreamConfig> {
    let path = format!("upstreams.{name}");
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c)) {
        p.push(&path, "upstream names may use letters, digits and _ - . : only");
    }
    let targets_from = raw.targets_from.as_ref().and_then(|t| targets_from(t, &path, p));
    if raw.targets.is_empty() && targets_from.is_none() {
        p.push(
            format!("{path}.targets"),
            "at least one target is required (or targets_from: { etcd: /services/NAME/ })",
        );
    }
    let targets: Vec<TargetConfig> = raw
        .targets
        .iter()
        .enumerate()
        .filter_map(|(i, t)| target(t, &format!("{path}.targets[{i}]"), p))
        .collect();
    let traffic = traffic::upstream_traffic(raw, &path, p);
    let health_check = raw
        .health_check
        .as_ref()
        .map(|hc| health_check(hc, &format!("{path}.health_check"), p));
    Some(UpstreamConfig {
        targets,
        health_check,
        balance: traffic.balance,
        circuit_breaker: traffic.circuit_breaker,
        passive_health: traffic.passive_health,
        retry_backoff: traffic.retry_backoff,
        retry_non_idempotent: traffic.retry_non_idempotent,
        tls: tls::upstream_tls(raw, &path, p),
        h2: raw.h2.unwrap_or(false),
        h2_streams: match raw.h2_streams {
            None => DEFAULT_H2_STREAMS,
            Some(n) if (1..=1000).contains(&n) => n,
            Some(_) => {
                p.push(format!("{path}.h2_streams"), "must be between 1 and 1000");
                DEFAULT_H2_STREAMS
            }
        },
        targets_from,
        retries: raw.retries.unwrap_or(DEFAULT_RETRIES),
        connect_timeout: positive_duration(
            &raw.connect_timeout,
            &format!("{path}.connect_timeout"),
            DEFAULT_CONNECT_TIMEOUT,
            p,
        ),
        timeout: positive_duration(&raw.timeout, &format!("{path}.timeout"), DEFAULT_UPSTREAM_TIMEOUT, p),
        keepalive_timeout: duration(
            &raw.keepalive_timeout,
            &format!("{path}.keepalive_timeout"),
            DEFAULT_KEEPALIVE_TIMEOUT,
            p,
        ),
    })
}

fn target(value: &serde_yaml::Value, path: &str, p: &mut Problems) -> Option<TargetConfig> {
    use serde_yaml::Value;
    let (spec, weight) = match value {
        Value::String(s) => (s.clone(), 1),
        Value::Mapping(map) => {
            let mut spec = None;
            let mut weight = 1;
            for (k, v) in map {
                match (k.as_str(), v) {
                    (Some("addr"), Value::String(s)) => spec = Some(s.clone()),
                    (Some("addr"), _) => p.push(format!("{path}.addr"), "must be a string \"host:port\""),
                    (Some("weight"), Value::Number(n)) => match n.as_u64() {
                        Some(w) if (1..=MAX_WEIGHT as u64).contains(&w) => weight = w as u16,
                        _ => p.push(format!("{path}.weight"), format!("must be between 1 and {MAX_WEIGHT}")),
                    },
                    (Some("weight"), _) => p.push(
                        format!("{path}.weight"),
                        format!("must be a number between 1 and {MAX_WEIGHT}"),
                    ),
                    (Some(other), _) => p.push(format!("{path}.{other}"), "unknown key (expected addr, weight)"),
                    (None, _) => p.push(path, "keys must be strings"),
                }
            }
            let Some(spec) = spec else {
                p.push(format!("{path}.addr"), "required");
                return None;
            };
            (spec, weight)
        }
        _ => {
            p.push(path, "expected \"host:port\" or { addr: \"host:port\", weight: N }");
            return None;
        }
    };
    match resolve(&spec) {
        Ok(addr) => Some(TargetConfig {
            spec,
            addr: Some(addr),
            weight,
        }),
        // A well-formed name that does not resolve yet: served once it does.
        Err(_) if is_host_port(&spec) => Some(TargetConfig {
            spec,
            addr: None,
            weight,
        }),
        Err(e) => {
            p.push(path, e);
            None
        }
    }
}

/// `name:port` with a non-empty name and a valid port.
fn is_host_port(spec: &str) -> bool {
    spec.rsplit_once(':')
        .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok())
}

fn targets_from(raw: &super::raw::RawTargetsFrom, path: &str, p: &mut Problems) -> Option<TargetsFrom> {
    let at = format!("{path}.targets_from");
    if let Some(dns) = &raw.dns {
        if raw.etcd.is_some() {
            p.push(&at, "one of etcd or dns");
            return None;
        }
        let with_port = dns
            .rsplit_once(':')
            .and_then(|(n, port)| Some((n, Some(port.parse::<u16>().ok()?))));
        let srv = || dns.starts_with('_').then_some((dns.as_str(), None));
        let Some((name, port)) = with_port.or_else(srv).filter(|(n, _)| !n.is_empty()) else {
            p.push(
                format!("{at}.dns"),
                format!(
                    "\"{dns}\" is neither name:port (users.internal:8080) nor an SRV name (_http._tcp.users.internal)"
                ),
            );
            return None;
        };
        let resolver = match &raw.resolver {
            Some(r) => match r.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    p.push(
                        format!("{at}.resolver"),
                        format!("\"{r}\" is not ip:port (127.0.0.1:53)"),
                    );
                    return None;
                }
            },
            None => None,
        };
        let interval = positive_duration(&raw.interval, &format!("{at}.interval"), Duration::from_secs(30), p);
        return Some(TargetsFrom::Dns {
            name: name.to_string(),
            port,
            resolver,
            interval,
        });
    }
    let Some(prefix) = &raw.etcd else {
        p.push(&at, "expected { etcd: /services/NAME/ } or { dns: name:port }");
        return None;
    };
    if !prefix.starts_with('/') {
        p.push(
            format!("{path}.targets_from.etcd"),
            "an etcd prefix starts with `/` (/services/NAME/)",
        );
        return None;
    }
    let mut prefix = prefix.clone();
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    Some(TargetsFrom::Etcd {
        prefix,
        endpoints: raw.endpoints.clone().unwrap_or_default(),
    })
}

/// `ip:port` as is; `name:port` through the system resolver, once, at load time
/// (IPv4 preferred, as most backends listen on it).
pub fn resolve(spec: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = spec.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !is_host_port(spec) {
        return Err(format!("\"{spec}\" is not host:port"));
    }
    let addrs: Vec<SocketAddr> = spec
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve \"{spec}\": {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("\"{spec}\" resolves to no address"))
}

fn health_check(raw: &RawHealthCheck, path: &str, p: &mut Problems) -> HealthCheckConfig {
    let probe_path = raw.path.clone().unwrap_or_else(|| DEFAULT_HC_PATH.into());
    if !probe_path.starts_with('/') {
        p.push(format!("{path}.path"), format!("\"{probe_path}\" must start with /"));
    }
    let mut threshold = |value: Option<usize>, key: &str| {
        let v = value.unwrap_or(DEFAULT_HC_THRESHOLD);
        if v == 0 {
            p.push(format!("{path}.{key}"), "must be at least 1");
        }
        v
    };
    let healthy = threshold(raw.healthy, "healthy");
    let unhealthy = threshold(raw.unhealthy, "unhealthy");
    HealthCheckConfig {
        path: probe_path,
        interval: positive_duration(&raw.interval, &format!("{path}.interval"), DEFAULT_HC_INTERVAL, p),
        timeout: positive_duration(&raw.timeout, &format!("{path}.timeout"), DEFAULT_HC_TIMEOUT, p),
        healthy,
        unhealthy,
        host: raw.host.clone(),
        grpc: raw.grpc.clone(),
    }
}

fn routes(raw_routes: &[RawRoute], raw: &RawConfig, caching: &CacheSettings, p: &mut Problems) -> Vec<RouteConfig> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(raw_routes.len());
    let compression = compression::policy(raw.compression.as_ref(), "compression", None, p);
    let no_transform = std::sync::Arc::new(RouteTransform::default());
    for (i, r) in raw_routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        let name = r.name.clone().unwrap_or_else(|| format!("route-{i}"));
        if let Some(first) = seen.insert(name.clone(), i) {
            p.push(
                format!("{path}.name"),
                format!("duplicate route name \"{name}\" (also routes[{first}])"),
            );
        }
        let Some(matcher) = matcher(r, &path, p) else {
            continue;
        };
        let aggregate = transform::aggregate(r, &path, &matcher.path, &raw.upstreams, p);
        let upstream = match &aggregate {
            Some(agg) => {
                let mut names: Vec<String> = Vec::new();
                for part in &agg.parts {
                    if !names.contains(&part.upstream) {
                        names.push(part.upstream.clone());
                    }
                }
                RouteUpstream::Aggregate(names)
            }
            None => traffic::route_upstream(r, &path, &raw.upstreams, p),
        };
        let transform = transform::route_transform(r, &path, &matcher.path, p);
        let transform = if transform.is_empty() {
            no_transform.clone()
        } else {
            std::sync::Arc::new(transform)
        };
        let forward_auth = transform::forward_auth(r, &path, &matcher.path, &raw.upstreams, p).map(Box::new);
        let rate_limit = r.rate_limit.as_ref().map(|rl| {
            Box::new(traffic::rate_limit(
                rl,
                &format!("{path}.rate_limit"),
                raw.redis.is_some(),
                p,
            ))
        });
        if let Some(strip) = &r.strip_prefix {
            check_strip_prefix(strip, &matcher.path, &format!("{path}.strip_prefix"), p);
        }
        let timeout = r
            .timeout
            .as_ref()
            .map(|_| positive_duration(&r.timeout, &format!("{path}.timeout"), Duration::ZERO, p));
        out.push(RouteConfig {
            name,
            matcher: std::sync::Arc::new(matcher),
            upstream,
            rate_limit,
            strip_prefix: r.strip_prefix.clone(),
            timeout,
            websocket_idle_timeout: positive_duration(
                &r.websocket_idle_timeout,
                &format!("{path}.websocket_idle_timeout"),
                DEFAULT_WEBSOCKET_IDLE,
                p,
            ),
            security: security::route_security(r, &path, raw, p),
            cache: cache::route(r.cache.as_ref(), &path, caching, p),
            transform,
            compression: compression::policy(
                r.compression.as_ref(),
                &format!("{path}.compression"),
                compression.as_ref(),
                p,
            )
            .map(Box::new),
            forward_auth,
            grpc_web: r.grpc_web.unwrap_or(false),
            aggregate,
        });
    }
    out
}

fn matcher(r: &RawRoute, path: &str, p: &mut Problems) -> Option<RouteMatcher> {
    let pattern = match (&r.path, &r.prefix, &r.regex, &r.grpc) {
        (Some(s), None, None, None) => PathPattern::parse_path(s).map_err(|e| (format!("{path}.path"), e)),
        (None, Some(s), None, None) => PathPattern::parse_prefix(s).map_err(|e| (format!("{path}.prefix"), e)),
        (None, None, Some(s), None) => PathPattern::parse_regex(s).map_err(|e| (format!("{path}.regex"), e)),
        (None, None, None, Some(g)) => grpc_pattern(g).map_err(|e| (format!("{path}.grpc"), e)),
        _ => Err((
            path.to_string(),
            "exactly one of path, prefix, regex or grpc is required".to_string(),
        )),
    };
    let host = r.host.as_ref().and_then(|h| {
        HostPattern::parse(h)
            .map_err(|e| p.push(format!("{path}.host"), e))
            .ok()
    });
    let methods = r.methods.as_ref().map(|list| {
        if list.is_empty() {
            p.push(
                format!("{path}.methods"),
                "must list at least one method (or be left out for all)",
            );
        }
        list.iter()
            .enumerate()
            .filter_map(|(i, m)| method(m).map_err(|e| p.push(format!("{path}.methods[{i}]"), e)).ok())
            .collect()
    });
    let headers = r
        .headers
        .iter()
        .flatten()
        .filter_map(|(name, value)| match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => Some((h, value.clone())),
            Err(_) => {
                p.push(format!("{path}.headers.{name}"), "invalid header name");
                None
            }
        })
        .collect();
    let query = r.query.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
    match pattern {
        Ok(path) => Some(RouteMatcher {
            host,
            path,
            methods,
            headers,
            query,
        }),
        Err((field, e)) => {
            p.push(field, e);
            None
        }
    }
}

/// gRPC calls are `POST /<package>.<Service>/<Method>`: one method is an exact path, a
/// whole service a prefix.
fn grpc_pattern(g: &super::raw::RawGrpcRoute) -> Result<PathPattern, String> {
    let name_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    let service = g.service.as_deref().unwrap_or("");
    if !name_ok(service) {
        return Err(format!(
            "service \"{service}\" must be a fully qualified gRPC service name (helloworld.Greeter)"
        ));
    }
    match g.method.as_deref() {
        Some(m) if name_ok(m) && !m.contains('.') => PathPattern::parse_path(&format!("/{service}/{m}")),
        Some(m) => Err(format!("method \"{m}\" must be a gRPC method name (SayHello)")),
        None => PathPattern::parse_prefix(&format!("/{service}/")),
    }
}

fn method(name: &str) -> Result<Method, String> {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    let upper = name.to_ascii_uppercase();
    if KNOWN.contains(&upper.as_str()) {
        upper.parse().map_err(|_| format!("unknown method \"{name}\""))
    } else {
        Err(format!(
            "unknown method \"{name}\" (expected one of {})",
            KNOWN.join(", ")
        ))
    }
}

fn check_strip_prefix(strip: &str, pattern: &PathPattern, path: &str, p: &mut Problems) {
    if !strip.starts_with('/') {
        p.push(path, format!("\"{strip}\" must start with /"));
    } else if !matches!(pattern, PathPattern::Regex(_)) && !pattern.literal_prefix().starts_with(strip) {
        // Strip applies only when the request path starts with it; if the route's own
        // literal prefix does not, it would never apply.
        p.push(
            path,
            format!(
                "\"{strip}\" is not a prefix of the route's path \"{}\"",
                pattern.source()
            ),
        );
    }
}

fn duration(value: &Option<String>, path: &str, default: Duration, p: &mut Problems) -> Duration {
    match value {
        None => default,
        Some(s) => parse_duration(s).unwrap_or_else(|e| {
            p.push(path, e);
            default
        }),
    }
}

fn positive_duration(value: &Option<String>, path: &str, default: Duration, p: &mut Problems) -> Duration {
    match value.as_deref().map(parse_duration) {
        None => default,
        Some(Ok(d)) if d.is_zero() => {
            p.push(path, "must be greater than zero");
            default
        }
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            p.push(path, e);
            default
        }
    }
}

/// A buffer size of at most `MAX_READ_BUFFER` (0 allowed: no buffer).
fn read_buffer(value: &Option<String>, path: &str, default: usize, p: &mut Problems) -> usize {
    let Some(s) = value else { return default };
    match parse_size(s) {
        Ok(n) if n <= MAX_READ_BUFFER as u64 => n as usize,
        Ok(_) => {
            p.push(path, "must be at most 1MiB");
            default
        }
        Err(e) => {
            p.push(path, e);
            default
        }
    }
}

/// `state_dir`, else the pid file's directory.
pub fn state_dir(raw: &RawConfig) -> std::path::PathBuf {
    match &raw.state_dir {
        Some(dir) => dir.into(),
        None => std::path::Path::new(raw.pid_file.as_deref().unwrap_or(DEFAULT_PID_FILE))
            .parent()
            .map_or_else(|| ".".into(), |d| d.to_path_buf()),
    }
}

/// How long stopping may take, against what a container runtime waits before SIGKILL.
fn stop_budget_warning(server: &ServerSettings) -> Option<String> {
    let budget = server.drain_period + server.grace_period + server.shutdown_timeout;
    (budget > CONTAINER_STOP_TIMEOUT).then(|| {
        format!(
            "drain_period + grace_period + shutdown_timeout = {budget:?}, more than docker stop's {CONTAINER_STOP_TIMEOUT:?}: \
             run containers with a longer stop timeout (docker stop -t, compose stop_grace_period, \
             Kubernetes terminationGracePeriodSeconds above the sum), or the process is killed mid-drain"
        )
    })
}

/// Unreachable routes are found when the router is built (`Snapshot::build`).
fn warnings(raw: &RawConfig, routes: &[RouteConfig], upstreams: &BTreeMap<String, UpstreamConfig>) -> Vec<String> {
    let unused = raw
        .upstreams
        .keys()
        .filter(|name| {
            !routes.iter().any(|r| {
                r.upstream.names().contains(&name.as_str())
                    || r.forward_auth.as_ref().is_some_and(|f| f.upstream == **name)
            })
        })
        .map(|name| format!("upstreams.{name} is not used by any route"));
    let unresolved = upstreams.iter().flat_map(|(name, u)| {
        u.targets.iter().filter(|t| t.addr.is_none()).map(move |t| {
            format!(
                "upstreams.{name}: \"{}\" does not resolve now: the target is out of service and resolved again every few seconds",
                t.spec
            )
        })
    });
    unused.chain(unresolved).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_friendly_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("5").is_err());
    }

    #[test]
    fn resolve_accepts_ips_and_names() {
        assert_eq!(resolve("127.0.0.1:80").unwrap().port(), 80);
        assert!(resolve("localhost:8081").unwrap().ip().is_loopback());
        assert!(resolve("nohost").unwrap_err().contains("host:port"));
    }
}
