//! The immutable runtime world built from one validated config: the router, each route's
//! filter chains, the upstream pools, the credential verifiers. Everything that can fail
//! fails here, before the swap; the request path only reads it.

use crate::auth::api_key::ApiKeyStore;
use crate::auth::introspect::Introspector;
use crate::auth::jwks::JwksStore;
use crate::auth::jwt::{roles_path, TokenVerifier};
use crate::config::document::Document;
use crate::config::model::{
    JwtKeySource, RateLimitConfig, RouteConfig, RouteUpstream, SecurityConfig, ServerSettings, DEFAULT_ROLES_CLAIM,
};
use crate::config::{Config, ConfigError, Problem};
use crate::filters::cors::CorsPolicy;
use crate::filters::{self, RequestStep, UpstreamStep};
use crate::limits::global::RedisStore;
use crate::limits::RateLimit;
use crate::routing::{shadowed_routes, Router};
use crate::upstream::{RouteUpstreams, UpstreamPool};
use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// The one handle through which requests see the current snapshot and reloads replace it.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

pub struct Snapshot {
    /// Counts builds in this process: 1 for the first config, +1 per successful reload.
    pub generation: u64,
    pub source: String,
    pub server: ServerSettings,
    pub edge: EdgeSecurity,
    /// Shared by every global rate limit; carried over a reload when unchanged.
    pub redis: Option<Arc<RedisStore>>,
    /// The top-level `rate_limit`, applied on every route.
    pub rate_limit: Option<Arc<RateLimit>>,
    pub router: Router,
    /// In config order (the router's indices point here).
    pub routes: Vec<Route>,
    pub upstreams: BTreeMap<String, Arc<UpstreamPool>>,
    pub warnings: Vec<String>,
    /// Certificates of the HTTPS listener, chosen by SNI at each handshake.
    pub certs: Vec<crate::config::model::LoadedCert>,
    /// Client certificates asked for on the HTTPS listeners (`tls.client_auth`).
    pub client_auth: Option<Arc<crate::config::model::ClientAuth>>,
    /// Certificates obtained from an ACME CA (`tls.acme`).
    pub acme: Option<Arc<crate::config::model::AcmeSettings>>,
    pub session_tickets: crate::config::model::SessionTickets,
    /// The loaded config with secrets redacted, for /admin/config.
    pub document: Document,
    /// SHA-256 of the loaded config (secrets included), hex.
    pub config_hash: String,
}

/// A route, ready to serve.
pub struct Route {
    pub name: String,
    pub upstreams: RouteUpstreams,
    /// The route's own limit (its buckets carried over a reload when unchanged).
    pub rate_limit: Option<Arc<RateLimit>>,
    pub auth: crate::config::model::AuthKind,
    /// Read/write timeout towards the upstream; `None` = the upstream's own.
    pub timeout: Option<Duration>,
    /// Idle timeout of upgraded (WebSocket) connections.
    pub websocket_idle_timeout: Duration,
    /// GET requests may carry a body.
    pub allow_get_body: bool,
    /// How the route caches, when it does (and caching is on).
    pub cache: Option<crate::config::model::RouteCache>,
    /// The route's CORS policy (its own, else the global one).
    pub cors: Option<Arc<CorsPolicy>>,
    /// Run in order in `request_filter`.
    pub request_chain: Box<[RequestStep]>,
    /// Applied in order to the request sent upstream.
    pub upstream_chain: Box<[UpstreamStep]>,
    /// `response_headers`, applied to upstream responses after the gateway's own headers.
    /// The parts most routes do without are boxed: a route costs its size in every
    /// snapshot, however many routes there are (`loadtest/routes_scale.sh`).
    pub response_edits: Option<Box<filters::header_edits::HeaderEdits>>,
    /// `json`: body edits of JSON responses.
    pub json: Option<Box<crate::config::model::JsonEdits>>,
    /// gRPC-Web requests are bridged to the (gRPC) upstream.
    pub grpc_web: bool,
    /// Response compression, when the route (or the top level) has it.
    pub compression: Option<Box<filters::compression::Compression>>,
    /// Set on aggregate routes, which answer in `request_filter` and never proxy.
    pub aggregate: Option<Arc<crate::aggregate::Aggregate>>,
    /// The route's request metrics, found without hashing labels.
    pub meters: crate::metric_slots::RouteMeters,
}

/// The credential verifiers and response policy shared by all routes.
pub struct EdgeSecurity {
    pub config: SecurityConfig,
    pub tokens: Option<Arc<TokenVerifier>>,
    pub api_keys: Option<Arc<ApiKeyStore>>,
    /// Refreshed by the supervisor; carried over a reload when its config is unchanged.
    pub jwks: Option<Arc<JwksStore>>,
    /// Carried over a reload (with its cache) when its config is unchanged.
    pub introspector: Option<Arc<Introspector>>,
}

impl Snapshot {
    /// Tells Pingora how many fields the gateway adds at most to an upstream response on
    /// this snapshot's routes, so that each response's header maps are made once with
    /// room for them (a vendored patch, vendor/README.md). Called when a snapshot starts
    /// serving: at start and after each reload.
    pub fn size_upstream_responses(&self) {
        let fields = crate::filters::response_headers::most_fields_added(self);
        pingora::protocols::http::v1::client::set_response_header_headroom(fields);
    }

    /// Builds the runtime world from `config`. Parts whose config equals the one in
    /// `previous` are reused as they are: upstream pools keep their health state, the JWKS
    /// its keys, introspection its cache.
    pub fn build(config: Config, previous: Option<&Snapshot>) -> Result<Snapshot, ConfigError> {
        let mut problems = Vec::new();
        let mut upstreams = BTreeMap::new();
        for (name, cfg) in &config.upstreams {
            let before = previous.and_then(|p| p.upstreams.get(name));
            let reused = before.filter(|pool| pool.config == *cfg).cloned();
            match reused
                .map(Ok)
                .unwrap_or_else(|| UpstreamPool::build(name, cfg, before.map(|p| p.as_ref())).map(Arc::new))
            {
                Ok(pool) => {
                    upstreams.insert(name.clone(), pool);
                }
                Err(message) => problems.push(Problem::new(format!("upstreams.{name}"), message)),
            }
        }
        let edge = EdgeSecurity::build(config.security.clone(), previous.map(|p| &p.edge)).unwrap_or_else(|p| {
            problems.push(p);
            EdgeSecurity::empty()
        });
        let global_cors = match config.security.cors.as_ref().map(CorsPolicy::new).transpose() {
            Ok(policy) => policy.map(Arc::new),
            Err(message) => {
                problems.push(Problem::new("cors", message));
                None
            }
        };
        let redis = match &config.traffic.redis {
            Some(cfg) => previous
                .and_then(|p| p.redis.clone())
                .filter(|r| r.config == *cfg)
                .map(Ok)
                .unwrap_or_else(|| RedisStore::new(cfg).map(Arc::new))
                .map_err(|message| problems.push(Problem::new("redis", message)))
                .ok(),
            None => None,
        };
        let previous_global = previous.and_then(|p| p.rate_limit.as_ref());
        let rate_limit = config.traffic.rate_limit.as_ref().and_then(|rl| {
            limit("*", rl, previous_global, redis.as_ref())
                .map_err(|message| problems.push(Problem::new("rate_limit", message)))
                .ok()
        });
        // The previous routes' own limits by name, looked up once each (a scan per route
        // made a reload quadratic in the number of routes).
        let previous_limits: HashMap<&str, &Arc<RateLimit>> = previous
            .into_iter()
            .flat_map(|p| &p.routes)
            .filter_map(|old| Some((old.name.as_str(), old.rate_limit.as_ref()?)))
            .collect();
        let mut routes = Vec::with_capacity(config.routes.len());
        for (i, r) in config.routes.iter().enumerate() {
            let previous_limit = previous_limits.get(r.name.as_str()).copied();
            let parts = RouteParts {
                edge: &edge,
                global_cors: global_cors.as_ref(),
                global_limit: rate_limit.as_ref(),
                redis: redis.as_ref(),
                previous_limit,
            };
            match build_route(r, &upstreams, &parts) {
                Ok(route) => routes.push(route),
                Err(message) => problems.push(Problem::new(format!("routes[{i}]"), message)),
            }
        }
        if !problems.is_empty() {
            let error = ConfigError {
                source: config.source,
                problems,
                unavailable: false,
            };
            return Err(error.locate(&config.locations));
        }
        let config_hash = hex::encode(Sha256::digest(config.document.text().as_bytes()));
        let loaded = config.document.value();
        let redacted = redact(loaded.clone());
        // Most configs hold no secret: then the loaded document's text is shared.
        let document = if redacted == loaded {
            config.document
        } else {
            Document::new(redacted)
        };
        let names: Vec<String> = config.routes.iter().map(|r| r.name.clone()).collect();
        let router = Router::new(config.routes.into_iter().map(|r| r.matcher).collect());
        let mut warnings = config.warnings;
        warnings.extend(shadowed_routes(&router, &names));
        Ok(Snapshot {
            // Fleet mode: the etcd revision, the same on every node.
            generation: config
                .revision
                .unwrap_or_else(|| previous.map_or(1, |p| p.generation + 1)),
            source: config.source,
            server: config.server,
            edge,
            redis,
            rate_limit,
            router,
            routes,
            upstreams,
            warnings,
            certs: config.certs,
            client_auth: config.client_auth,
            acme: config.acme,
            session_tickets: config.session_tickets,
            document,
            config_hash,
        })
    }
}

/// Keys whose values never leave the process.
const SECRET_KEYS: [&str; 4] = ["secret", "client_secret", "token", "password"];

/// The config document with secrets replaced by `"[redacted]"` (and passwords in URLs),
/// and without the keys left unset: every route of the model has some forty optional keys,
/// and kept as `null`s they made most of a simple route's memory (≈ 3.7 KB of a snapshot
/// with 10,000 routes).
fn redact(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let hidden = SECRET_KEYS.contains(&k.as_str()) && !v.is_null();
                    (k, if hidden { Value::from("[redacted]") } else { redact(v) })
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::String(s) => Value::String(redact_url_password(&s)),
        other => other,
    }
}

/// `redis://user:pass@host` → `redis://user:[redacted]@host`.
fn redact_url_password(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return s.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:[redacted]@{host}"),
        None => s.to_string(),
    }
}

/// What a route is built from besides its own config.
struct RouteParts<'a> {
    edge: &'a EdgeSecurity,
    global_cors: Option<&'a Arc<CorsPolicy>>,
    global_limit: Option<&'a Arc<RateLimit>>,
    redis: Option<&'a Arc<RedisStore>>,
    /// The same route's limit in the previous snapshot, reused when unchanged.
    previous_limit: Option<&'a Arc<RateLimit>>,
}

fn build_route(
    config: &RouteConfig,
    pools: &BTreeMap<String, Arc<UpstreamPool>>,
    parts: &RouteParts,
) -> Result<Route, String> {
    let pool = |name: &str| {
        pools
            .get(name)
            .cloned()
            .ok_or_else(|| format!("upstream {name} was not built"))
    };
    let upstreams = match &config.upstream {
        RouteUpstream::Single(name) => RouteUpstreams::single(pool(name)?),
        RouteUpstream::Split(split) => RouteUpstreams::split(
            split
                .iter()
                .map(|(name, weight)| pool(name).map(|p| (p, *weight)))
                .collect::<Result<_, _>>()?,
        ),
        RouteUpstream::Aggregate(names) => {
            RouteUpstreams::parts(names.iter().map(|n| pool(n)).collect::<Result<_, _>>()?)
        }
    };
    let cors = match &config.security.cors {
        Some(own) => Some(Arc::new(CorsPolicy::new(own).map_err(|e| format!("cors: {e}"))?)),
        None => parts.global_cors.cloned(),
    };
    let rate_limit = match &config.rate_limit {
        Some(rl) => Some(limit(&config.name, rl, parts.previous_limit, parts.redis)?),
        None => None,
    };
    let limits: Vec<Arc<RateLimit>> = parts.global_limit.iter().copied().chain(&rate_limit).cloned().collect();
    Ok(Route {
        name: config.name.clone(),
        upstreams,
        auth: config.security.auth,
        timeout: config.timeout,
        websocket_idle_timeout: config.websocket_idle_timeout,
        allow_get_body: config.security.allow_get_body,
        cache: config.cache.clone(),
        request_chain: filters::request_chain(
            config,
            parts.edge,
            cors.as_ref(),
            limits,
            match &config.forward_auth {
                Some(f) => Some(filters::forward_auth::ForwardAuth::new(f, pool(&f.upstream)?)),
                None => None,
            },
        )
        .into_boxed_slice(),
        cors,
        rate_limit,
        upstream_chain: filters::upstream_chain(config).into_boxed_slice(),
        response_edits: Some(filters::header_edits::HeaderEdits::new(
            &config.transform.response_headers,
        ))
        .filter(|e| !e.is_empty())
        .map(Box::new),
        json: config.transform.json.clone().map(Box::new),
        compression: config
            .compression
            .as_ref()
            .map(|c| Box::new(filters::compression::Compression::new(c))),
        grpc_web: config.grpc_web,
        aggregate: match &config.aggregate {
            Some(agg) => Some(Arc::new(crate::aggregate::Aggregate::build(
                agg,
                config.timeout,
                pools,
            )?)),
            None => None,
        },
        meters: Default::default(),
    })
}

/// A rate limit, reusing `previous` (and its buckets) when its config is unchanged.
fn limit(
    name: &str,
    config: &RateLimitConfig,
    previous: Option<&Arc<RateLimit>>,
    redis: Option<&Arc<RedisStore>>,
) -> Result<Arc<RateLimit>, String> {
    if let Some(old) = previous.filter(|old| old.config == *config && old.counts_in(redis)) {
        return Ok(old.clone());
    }
    RateLimit::new(name, config, redis).map(Arc::new)
}

// === impl EdgeSecurity ===

impl EdgeSecurity {
    fn build(config: SecurityConfig, previous: Option<&EdgeSecurity>) -> Result<Self, Problem> {
        let problem = |path: &str, message: String| Problem::new(path, message);
        let jwks = match config.jwt.as_ref().map(|j| &j.key) {
            Some(JwtKeySource::Jwks {
                url,
                refresh,
                min_refresh,
            }) => Some(
                previous
                    .filter(|p| p.config.jwt.as_ref().map(|j| &j.key) == config.jwt.as_ref().map(|j| &j.key))
                    .and_then(|p| p.jwks.clone())
                    .map(Ok)
                    .unwrap_or_else(|| JwksStore::new(url, *refresh, *min_refresh).map(Arc::new))
                    .map_err(|e| problem("auth.jwt.jwks_url", e))?,
            ),
            _ => None,
        };
        let roles = roles_path(
            config
                .jwt
                .as_ref()
                .map_or(DEFAULT_ROLES_CLAIM, |j| j.roles_claim.as_str()),
        );
        let introspector = match &config.introspection {
            Some(cfg) => Some(
                previous
                    .and_then(|p| p.introspector.clone())
                    .filter(|i| i.is_built_from(cfg, &roles))
                    .map(Ok)
                    .unwrap_or_else(|| Introspector::new(cfg, roles).map(Arc::new))
                    .map_err(|e| problem("auth.introspection", e))?,
            ),
            None => None,
        };
        let tokens = if config.jwt.is_some() || introspector.is_some() {
            let verifier = TokenVerifier::new(config.jwt.as_ref(), jwks.clone(), introspector.clone())
                .map_err(|e| problem("auth.jwt", e))?;
            Some(Arc::new(verifier))
        } else {
            None
        };
        Ok(EdgeSecurity {
            tokens,
            api_keys: config.api_keys.as_ref().map(|k| Arc::new(ApiKeyStore::new(k))),
            jwks,
            introspector,
            config,
        })
    }

    fn empty() -> Self {
        EdgeSecurity {
            config: SecurityConfig::default(),
            tokens: None,
            api_keys: None,
            jwks: None,
            introspector: None,
        }
    }
}

#[cfg(test)]
impl Snapshot {
    /// A snapshot with one upstream and one route, for unit tests of request steps.
    pub fn empty_for_tests() -> Snapshot {
        let yaml = "listen: [\"127.0.0.1:1\"]\nupstreams: { u: { targets: [\"127.0.0.1:1\"] } }\nroutes: [{ name: r, prefix: /, upstream: u }]\n";
        let config = crate::config::parse_yaml(yaml, "test", &|_| None).expect("test config");
        Snapshot::build(config, None).expect("test snapshot")
    }
}

#[cfg(test)]
mod tests {
    use super::Snapshot;
    use crate::heap_count;

    /// What a node holds for a config of `n` routes `/svc<i>/:id/items`: the loaded
    /// config (kept for rebuilds) and the snapshot built from it.
    fn held_for(n: usize) -> isize {
        let mut yaml =
            String::from("listen: [\"127.0.0.1:1\"]\nupstreams: { origin: { targets: [\"127.0.0.1:1\"] } }\nroutes:\n");
        for i in 0..n {
            yaml.push_str(&format!(
                "  - {{ name: svc{i}, path: /svc{i}/:id/items, upstream: origin }}\n"
            ));
        }
        let before = heap_count::held();
        let config = crate::config::parse_yaml(&yaml, "test", &|_| None).expect("config");
        let snapshot = Snapshot::build(config.clone(), None).expect("snapshot");
        let held = heap_count::held() - before;
        drop((config, snapshot, yaml));
        held
    }

    /// #21 item 7: a simple route costs at most 2 KiB while it is configured (heap bytes
    /// as asked for; RSS per route is measured by `loadtest/routes_scale.sh`). It was
    /// ≈ 9.6 KB: documents as `Value`s full of nulls, the router keeping the route
    /// configs' allocation, unboxed rarely used parts.
    #[test]
    fn a_simple_route_holds_at_most_2_kib() {
        let per_route = (held_for(2010) - held_for(10)) / 2000;
        assert!(per_route <= 2048, "{per_route} heap bytes per route");
        eprintln!("{per_route} heap bytes per route");
    }
}
