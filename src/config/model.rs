//! The validated internal model: what `validate.rs` produces and `Snapshot::build` consumes.
//!
//! Unlike `raw.rs` this is never deserialized: every value here has been checked, every
//! reference resolves, every duration is a `Duration`. It may change shape freely; the
//! YAML keys in `raw.rs` are the stable contract.

use crate::routing::RouteMatcher;
pub use crate::template::ClientCertField;
use crate::template::Template;
use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// A whole validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from, for messages (`conf/gatehouse.yaml`, `environment`).
    pub source: String,
    pub server: ServerSettings,
    pub security: SecurityConfig,
    pub traffic: TrafficConfig,
    /// Certificates of the HTTPS listener (hot: a reload replaces them).
    pub certs: Vec<LoadedCert>,
    /// `tls.client_auth`: client certificates asked for on the HTTPS listeners (hot).
    pub client_auth: Option<std::sync::Arc<ClientAuth>>,
    /// `tls.acme` (hot: new domains are ordered at the next check).
    pub acme: Option<std::sync::Arc<AcmeSettings>>,
    /// `tls.session_tickets` (hot: a new secret or period applies within a second).
    pub session_tickets: SessionTickets,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// In config order; the router sorts them by specificity.
    pub routes: Vec<RouteConfig>,
    /// Things that load but deserve a look: unreachable routes, unused upstreams.
    pub warnings: Vec<String>,
    /// The config as loaded (after `${VAR}` expansion), for /admin/config and its hash.
    pub document: super::document::Document,
    /// Where each field is in the file, for problems found after validation (empty for
    /// the environment).
    pub locations: std::sync::Arc<super::locate::Locations>,
    /// Fleet mode: the etcd revision the config was read at (the snapshot's generation).
    pub revision: Option<u64>,
}

/// Process-level settings. Listeners and threads cannot change on reload.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub listen: Vec<SocketAddr>,
    pub threads: usize,
    /// One multi-threaded runtime whose idle threads steal queued tasks (true), or one
    /// single-threaded runtime per thread, each connection staying on the thread that
    /// accepted it (false).
    pub work_stealing: bool,
    /// Reload when the config file or a file it names changes.
    pub watch: bool,
    /// Idle upstream connections kept for reuse, per worker thread; beyond it the least
    /// recently used is closed.
    pub upstream_keepalive_pool: usize,
    pub pid_file: String,
    pub upgrade_sock: String,
    /// Fleet mode's last good config is kept here.
    pub state_dir: std::path::PathBuf,
    /// Daemon mode's log file (stderr is redirected there).
    pub log_file: Option<String>,
    pub drain_period: Duration,
    pub grace_period: Duration,
    pub shutdown_timeout: Duration,
    /// The longest `/ready` waits for the node's dependencies at start.
    pub ready_timeout: Duration,
    /// Built-in health endpoint on the main listener, answered before routing.
    pub health_path: Option<String>,
    pub access_log: bool,
    /// Log the query string too, with `redact_params` values replaced.
    pub access_log_query: bool,
    /// Lowercase names of query parameters never logged.
    pub redact_params: Vec<String>,
    pub metrics: bool,
    pub admin: Option<AdminConfig>,
    pub tracing: Option<TracingConfig>,
    /// HTTPS listen addresses (empty: no TLS listener).
    pub tls_listen: Vec<SocketAddr>,
    /// ALPN offers h2 on the TLS listener.
    pub tls_h2: bool,
    /// Protocol versions, suites and groups of the TLS listener (fixed for the process).
    pub tls_policy: TlsPolicy,
    /// The plain listener answers 308 to https (health path excepted).
    pub redirect_http: bool,
    /// HTTP/2 with prior knowledge on the plain listener.
    pub h2c: bool,
    /// SO_REUSEPORT on every listener.
    pub reuse_port: bool,
    /// User-space read buffer of each plain-listener connection, in bytes (0: none).
    pub read_buffer: usize,
    /// The same for TLS-listener connections.
    pub tls_read_buffer: usize,
    pub cache: CacheSettings,
    pub client: ClientLimits,
}

/// What the HTTPS listener offers. `None` lists: OpenSSL's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    /// TLS 1.3 only (else 1.2 and 1.3).
    pub min_tls13: bool,
    /// TLS 1.2 suites (OpenSSL cipher string).
    pub ciphers: Option<String>,
    /// TLS 1.3 suites.
    pub ciphersuites: Option<String>,
    /// Key exchange groups, colon-separated.
    pub groups: Option<String>,
}

/// What an HTTP/1.x client may send in a request head, and how long it may take.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientLimits {
    /// From the first byte of a request head to its blank line; a client slower than that
    /// gets a 408 and is closed.
    pub header_timeout: Duration,
    /// How long a connection may sit idle before a request (and between two).
    pub keepalive_timeout: Duration,
    /// Longest request line (414 beyond).
    pub max_request_line: usize,
    /// Largest header section, request line excluded (431 beyond).
    pub max_header_size: usize,
    /// Most header fields (431 beyond).
    pub max_headers: usize,
}

/// The shared response cache. `max_size` is fixed for the life of the process.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    pub enabled: bool,
    pub max_size: u64,
    pub max_object_size: u64,
    /// Freshness when the origin says nothing (a route's `ttl` replaces it).
    pub default_ttl: Duration,
    pub lock_timeout: Duration,
    /// Heuristic freshness (RFC 9111 §4.2.2) from Last-Modified, at most `heuristic_max`.
    pub heuristic: bool,
    pub heuristic_max: Duration,
    /// Targeted cache-control fields (RFC 9213) this cache obeys, most specific first.
    pub targeted: Vec<http::HeaderName>,
    /// Remove those fields from answers sent downstream.
    pub strip_targeted: bool,
    /// Fields whose values tag a response for purges by tag (Cache-Tag, Surrogate-Key).
    pub tag_headers: Vec<http::HeaderName>,
    /// Remove the tag fields from answers sent downstream.
    pub strip_tags: bool,
    /// The disk tier; fixed for the life of the process.
    pub disk: Option<DiskCache>,
    /// A range request on a miss: fetch the whole object (`false`) or forward the range
    /// and keep the 206 for the ranges it covers (`true`, `range_miss: pass`).
    pub range_pass: bool,
}

/// `cache.disk`: answers also kept in files under `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCache {
    pub path: std::path::PathBuf,
    pub max_size: u64,
    pub max_object_size: u64,
}

/// A route that caches its responses.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteCache {
    /// Freshness when the origin says nothing.
    pub ttl: Duration,
    /// Responses to authenticated requests may be stored and shared without the origin
    /// saying `public` or `s-maxage`.
    pub authorized: bool,
}

/// `tls.session_tickets`.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionTickets {
    pub enabled: bool,
    /// Keys derive from it and the time: nodes with the same secret have the same keys.
    /// `None`: a random secret of this process.
    pub secret: Option<Vec<u8>>,
    pub rotate: Duration,
}

impl std::fmt::Debug for SessionTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTickets")
            .field("enabled", &self.enabled)
            .field("secret", &self.secret.as_ref().map(|_| "(set)"))
            .field("rotate", &self.rotate)
            .finish()
    }
}

/// `tls.acme`: certificates obtained and renewed from an ACME CA, in the background.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    pub directory: String,
    pub email: Option<String>,
    /// Lowercase names, one certificate each.
    pub domains: Vec<String>,
    pub challenge: AcmeChallenge,
    pub storage: std::path::PathBuf,
    pub renew_before: Duration,
    pub check_interval: Duration,
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// A file under `/.well-known/acme-challenge/` on the plain listener.
    Http01,
    /// A self-signed certificate offered for ALPN `acme-tls/1` on the TLS listener.
    TlsAlpn01,
}

impl AcmeChallenge {
    pub fn name(self) -> &'static str {
        match self {
            AcmeChallenge::Http01 => "http-01",
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// `tls.client_auth`: which CAs a client certificate must chain to, which are revoked, and
/// on which listeners a certificate is asked for.
pub struct ClientAuth {
    pub mode: ClientAuthMode,
    /// The TLS listeners that ask (empty: all).
    pub listen: Vec<std::net::SocketAddr>,
    pub ca_file: String,
    /// The trusted CAs (a client's chain must end at one).
    pub cas: Vec<openssl::x509::X509>,
    /// Revocation lists, each signature-checked against the CA that issued it.
    pub crls: Vec<openssl::x509::X509Crl>,
}

impl ClientAuth {
    pub fn applies_to(&self, listener: std::net::SocketAddr) -> bool {
        self.listen.is_empty() || self.listen.contains(&listener)
    }
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("mode", &self.mode)
            .field("listen", &self.listen)
            .field("ca_file", &self.ca_file)
            .field("cas", &self.cas.len())
            .field("crls", &self.crls.len())
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMode {
    /// No certificate, no handshake.
    Require,
    /// A certificate is asked for; without one the connection is made and routes decide
    /// (`client_cert: required`). A certificate that does not verify still fails.
    Optional,
}

/// A certificate and key read and checked at load.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub cert_path: String,
    /// Lowercase host names (`*.example.com` allowed); the first certificate is the default.
    pub names: Vec<String>,
    pub cert: openssl::x509::X509,
    /// Intermediates, in order.
    pub chain: Vec<openssl::x509::X509>,
    pub key: openssl::pkey::PKey<openssl::pkey::Private>,
    /// The OCSP response to staple, when configured and current at load.
    pub ocsp: Option<std::sync::Arc<super::ocsp::OcspStaple>>,
    /// `ocsp: auto`: responses fetched from the certificate's responder (`tls::ocsp_fetch`).
    pub ocsp_auto: bool,
}

/// OTLP span export; fixed for the life of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingConfig {
    pub otlp_endpoint: String,
    pub service_name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token: Option<String>,
}

/// A pool of targets. Compared on reload: an unchanged pool keeps its health state.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub targets: Vec<TargetConfig>,
    pub health_check: Option<HealthCheckConfig>,
    /// Further targets tried after a failed connection (or, for idempotent requests,
    /// a connection lost before any response byte).
    pub retries: u32,
    pub connect_timeout: Duration,
    /// Read/write timeout towards the upstream when the route sets none.
    pub timeout: Duration,
    pub keepalive_timeout: Duration,
    pub balance: Balance,
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    pub passive_health: Option<PassiveHealthConfig>,
    /// Wait before the first retry, doubled for each further one.
    pub retry_backoff: Duration,
    pub retry_non_idempotent: bool,
    pub tls: Option<UpstreamTls>,
    pub h2: bool,
    /// With h2: streams one upstream connection carries at once.
    pub h2_streams: usize,
    /// Where more targets are discovered at runtime.
    pub targets_from: Option<TargetsFrom>,
}

/// Runtime discovery of an upstream's targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetsFrom {
    Etcd {
        /// The etcd prefix instances register under (ends with `/`).
        prefix: String,
        /// etcd members; empty: the fleet's own.
        endpoints: Vec<String>,
    },
    Dns {
        /// The name whose addresses are the targets, and their port; without a port, an
        /// SRV name (`_http._tcp.users.example`) whose records give ports and weights.
        name: String,
        port: Option<u16>,
        /// `None`: the system's resolver.
        resolver: Option<std::net::SocketAddr>,
        /// Longest time between two lookups.
        interval: Duration,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    pub sni: String,
    pub verify: bool,
    pub ca_file: Option<String>,
    /// The gateway's own certificate and key for upstreams that ask for one (mTLS).
    pub client_cert: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    ConsistentHash(HashKey),
}

/// What `consistent_hash` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    Header(HeaderName),
    Cookie(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitBreakerConfig {
    pub failures: u32,
    pub open_for: Duration,
    pub half_open_requests: u32,
    pub count_5xx: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassiveHealthConfig {
    pub failures: u32,
    pub eject_for: Duration,
}

/// Rate limiting that is not per route.
#[derive(Debug, Clone, Default)]
pub struct TrafficConfig {
    pub redis: Option<RedisConfig>,
    /// Applied on every route, before the route's own.
    pub rate_limit: Option<RateLimitConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    pub url: String,
    pub timeout: Duration,
    pub key_prefix: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    pub requests: u64,
    pub per: Duration,
    pub key: RateKey,
    pub scope: RateScope,
    /// `true` = deny when Redis cannot answer in time (global scope only).
    pub deny_on_redis_error: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    ClientIp,
    ApiKey,
    Subject,
    Route,
    Header(HeaderName),
    /// A verified client certificate's subject, SANs or SHA-256 fingerprint.
    ClientCert(ClientCertField),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    Local,
    Global,
}

/// Where a route sends its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteUpstream {
    Single(String),
    /// Weighted split between pools (canary).
    Split(Vec<(String, u32)>),
    /// An aggregate route's part pools (distinct, in part order); it never proxies.
    Aggregate(Vec<String>),
}

impl RouteUpstream {
    pub fn names(&self) -> Vec<&str> {
        match self {
            RouteUpstream::Single(name) => vec![name.as_str()],
            RouteUpstream::Split(parts) => parts.iter().map(|(n, _)| n.as_str()).collect(),
            RouteUpstream::Aggregate(names) => names.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    /// As written (`users.internal:8080`), for health output and logs.
    pub spec: String,
    /// Resolved at load; `None` while the name does not resolve (a compose stack starting
    /// in any order): the target is out of service and resolved again in the background.
    pub addr: Option<SocketAddr>,
    pub weight: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy: usize,
    pub unhealthy: usize,
    pub host: Option<String>,
    /// gRPC health checking (`grpc.health.v1.Health/Check`) of this service, instead of
    /// an HTTP GET.
    pub grpc: Option<String>,
}

#[derive(Debug, Clone)]
///
/// The loaded config is kept for rebuilds (runtime target changes), so every route costs
/// this struct's size for as long as it is configured: the parts most routes do without
/// are boxed, and routes without transforms share one empty [`RouteTransform`].
pub struct RouteConfig {
    pub name: String,
    /// Shared with the router of the snapshot built from this config.
    pub matcher: std::sync::Arc<RouteMatcher>,
    pub upstream: RouteUpstream,
    pub rate_limit: Option<Box<RateLimitConfig>>,
    pub strip_prefix: Option<String>,
    /// Overrides the upstream's read/write timeout.
    pub timeout: Option<Duration>,
    /// Idle timeout of upgraded (WebSocket) connections.
    pub websocket_idle_timeout: Duration,
    pub security: RouteSecurity,
    pub cache: Option<RouteCache>,
    pub transform: std::sync::Arc<RouteTransform>,
    /// The route's own policy, else the top level's (`None`: off).
    pub compression: Option<Box<CompressionConfig>>,
    /// Set with `auth: forward`.
    pub forward_auth: Option<Box<ForwardAuthConfig>>,
    /// gRPC-Web requests are bridged to gRPC.
    pub grpc_web: bool,
    /// Set for aggregate routes (then `upstream` lists the parts' pools).
    pub aggregate: Option<AggregateConfig>,
}

/// Response compression negotiated by `Accept-Encoding`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressionConfig {
    /// In the gateway's order of preference (ties in the client's q-values).
    pub encodings: Vec<Encoding>,
    /// Lowercase media types, `text/*` and `application/*+json` patterns allowed.
    pub types: Vec<String>,
    /// Bodies declared smaller are sent as they are.
    pub min_size: u64,
    /// 1 (fastest) to 9 (smallest), gzip's scale; brotli and zstd use the same number.
    pub level: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    Brotli,
    Zstd,
}

impl Encoding {
    /// The `Accept-Encoding` / `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }
}

/// What a route changes between client and upstream, compiled at load.
#[derive(Debug, Clone, Default)]
pub struct RouteTransform {
    pub rewrite: Option<PathRewrite>,
    pub request_headers: HeaderEdits,
    pub request_query: QueryEdits,
    pub upstream_host: UpstreamHost,
    pub response_headers: HeaderEdits,
    pub json: Option<JsonEdits>,
}

#[derive(Debug, Clone)]
pub struct PathRewrite {
    pub regex: regex::Regex,
    /// With `$1` / `${name}` references to the regex's groups.
    pub to: String,
}

/// Header changes, applied in the order remove → rename → set → add.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    pub remove: Vec<HeaderName>,
    pub rename: Vec<(HeaderName, HeaderName)>,
    pub set: Vec<(HeaderName, Template)>,
    pub add: Vec<(HeaderName, Template)>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.rename.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// At most how many fields these edits add (renamed, set or added).
    pub fn fields_added(&self) -> usize {
        self.rename.len() + self.set.len() + self.add.len()
    }
}

/// Query parameter changes, applied in the order remove → set → add.
#[derive(Debug, Clone, Default)]
pub struct QueryEdits {
    pub remove: Vec<String>,
    pub set: Vec<(String, Template)>,
    pub add: Vec<(String, Template)>,
}

impl RouteTransform {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.rewrite.is_none()
            && self.request_headers.is_empty()
            && self.request_query.is_empty()
            && matches!(self.upstream_host, UpstreamHost::Preserve)
            && self.response_headers.is_empty()
            && self.json.is_none()
    }
}

impl QueryEdits {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}

/// The `Host` header sent upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UpstreamHost {
    /// The client's.
    #[default]
    Preserve,
    /// The target's address as written in the pool (`users.internal:8080`).
    Target,
    Literal(HeaderValue),
}

/// JSON response body edits.
#[derive(Debug, Clone)]
pub struct JsonEdits {
    pub remove: Vec<serde_json_path::JsonPath>,
    pub mask: Vec<serde_json_path::JsonPath>,
    pub mask_with: String,
    /// Larger bodies pass untouched.
    pub max_size: usize,
}

/// An aggregate route: its parts, called in parallel, and how big an answer may be.
#[derive(Debug, Clone)]
pub struct AggregateConfig {
    pub parts: Vec<PartConfig>,
    pub max_part_size: usize,
}

#[derive(Debug, Clone)]
pub struct PartConfig {
    pub name: String,
    pub upstream: String,
    pub method: Method,
    /// Path and query, with the `query:` map already appended.
    pub path: Template,
    pub query: Vec<(String, Template)>,
    /// Client request headers passed on.
    pub headers: Vec<HeaderName>,
    pub timeout: Option<Duration>,
    pub required: bool,
    /// How long this part's answer is reused.
    pub cache: Option<Duration>,
}

/// The edge-security keys of one route.
#[derive(Debug, Clone)]
pub struct RouteSecurity {
    pub auth: AuthKind,
    /// All required.
    pub scopes: Vec<String>,
    /// Any one required.
    pub roles: Vec<String>,
    /// The route's own limit, else the global one.
    pub max_body: Option<u64>,
    /// The route's own lists, checked after the global ones.
    pub ip: IpRules,
    /// The route's own policy, else the global one.
    pub cors: Option<Box<CorsConfig>>,
    /// GET requests may carry a body (HEAD never may).
    pub allow_get_body: bool,
    /// `client_cert: required`: a verified client certificate, else 403.
    pub client_cert_required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    None,
    Jwt,
    ApiKey,
    /// An auth service decides (`forward_auth`).
    Forward,
}

impl AuthKind {
    pub fn name(self) -> &'static str {
        match self {
            AuthKind::None => "none",
            AuthKind::Jwt => "jwt",
            AuthKind::ApiKey => "api_key",
            AuthKind::Forward => "forward",
        }
    }
}

/// `auth: forward`: where the decision is asked and what travels each way.
#[derive(Debug, Clone)]
pub struct ForwardAuthConfig {
    pub upstream: String,
    pub path: crate::template::Template,
    pub headers_to_auth: Vec<HeaderName>,
    pub headers_from_auth: Vec<HeaderName>,
    pub timeout: Duration,
    pub cache_ttl: Option<Duration>,
}

/// Everything the edge-security filters need, global part.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    pub jwt: Option<JwtConfig>,
    pub api_keys: Option<ApiKeysConfig>,
    pub introspection: Option<IntrospectionConfig>,
    pub cors: Option<CorsConfig>,
    pub headers: SecurityHeadersConfig,
    pub ip: IpRules,
    pub trusted_proxies: Vec<IpNet>,
    pub max_body: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwtConfig {
    pub key: JwtKeySource,
    /// Pinned: a token whose `alg` is not listed is refused.
    pub algorithms: Vec<Algorithm>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway: Duration,
    pub cookie: Option<String>,
    /// Dotted path of the roles claim.
    pub roles_claim: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JwtKeySource {
    Secret(Vec<u8>),
    /// PEM bytes read at load, with the algorithm family they serve.
    PublicKey {
        path: String,
        pem: Vec<u8>,
        rsa: bool,
    },
    Jwks {
        url: String,
        refresh: Duration,
        /// Least time between two fetches beyond the periodic ones (an unknown `kid`, a
        /// retry after a failure).
        min_refresh: Duration,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeysConfig {
    pub header: HeaderName,
    pub query: Option<String>,
    /// SHA-256 of each key, and the consumer it names.
    pub keys: Vec<([u8; 32], String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntrospectionConfig {
    pub url: String,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub timeout: Duration,
    pub cache_ttl: Duration,
    pub cache_size: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CorsConfig {
    /// `None` = any origin (`*`).
    pub origins: Option<Vec<String>>,
    pub methods: Vec<Method>,
    /// `None` = mirror the preflight's Access-Control-Request-Headers.
    pub headers: Option<Vec<HeaderName>>,
    pub expose_headers: Vec<HeaderName>,
    pub credentials: bool,
    pub max_age: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SecurityHeadersConfig {
    /// Added to every response that does not already carry them (names checked once, for
    /// Pingora's cheapest insert).
    pub add: Vec<(pingora::http::KnownHeaderName, HeaderValue)>,
    /// `Strict-Transport-Security`, added to answers over TLS only (RFC 6797 §7.2: never
    /// over plain HTTP); on by default.
    pub hsts: Option<HeaderValue>,
    /// Removed from every upstream response.
    pub remove: Vec<HeaderName>,
}

/// Deny wins; a non-empty allow list admits only its members.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IpRules {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

// Defaults, in one place so that docs and code agree.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_PID_FILE: &str = "/tmp/gatehouse.pid";
pub const DEFAULT_UPGRADE_SOCK: &str = "/tmp/gatehouse_upgrade.sock";
// Stopping takes at most drain + grace + shutdown timeout (an idle gateway leaves right after
// the drain): 9 s by default, inside `docker stop`'s 10 s and Kubernetes' 30 s
// terminationGracePeriodSeconds, which must exceed the sum (plus any preStop hook).
pub const DEFAULT_DRAIN_PERIOD: Duration = Duration::from_secs(1);
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(7);
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);
/// Long enough for a first health check round, a Redis connection and a JWKS fetch on a
/// slow network; short enough that an IdP down at start does not keep a fleet unready.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// What a container runtime waits between SIGTERM and SIGKILL (`docker stop`'s default):
/// `check` warns when the stop budget above exceeds it.
pub const CONTAINER_STOP_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_HEALTH_PATH: &str = "/health";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
pub const DEFAULT_WEBSOCKET_IDLE: Duration = Duration::from_secs(600);
/// Plain HTTP: none. Pingora's 64 KiB buffer only adds a copy there (the HTTP parser reads
/// into its own buffer) and was 64 of the ≈100 KiB each held connection cost (#8).
pub const DEFAULT_READ_BUFFER: usize = 0;
/// TLS: Pingora's default, so that OpenSSL's record-header-then-record reads hit the buffer.
pub const DEFAULT_TLS_READ_BUFFER: usize = 64 * 1024;
pub const MAX_READ_BUFFER: usize = 1 << 20;
/// Idle upstream connections kept per worker thread. Pingora's 128 churned them as soon as
/// more client connections were in flight (256 clients, 1 thread: ≈ 1,400 upstream
/// reconnects in 5 s, ≈ 30 with 1024; p99 13–30% lower, req/s 1.01–1.06×; #8).
pub const DEFAULT_UPSTREAM_KEEPALIVE_POOL: usize = 1024;
/// Each idle connection holds a socket (a file descriptor) and its buffers.
pub const MAX_UPSTREAM_KEEPALIVE_POOL: usize = 65_536;
/// Query parameters that carry credentials in the wild.
pub const DEFAULT_REDACT_PARAMS: [&str; 10] = [
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "secret",
    "code",
];
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_RETRIES: u32 = 1;
/// Streams per upstream h2 connection (the usual SETTINGS_MAX_CONCURRENT_STREAMS floor).
pub const DEFAULT_H2_STREAMS: usize = 100;
pub const DEFAULT_HC_PATH: &str = "/health";
pub const DEFAULT_HC_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_HC_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_HC_THRESHOLD: usize = 2;
pub const MAX_WEIGHT: u16 = 100;
pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";
pub const DEFAULT_ROLES_CLAIM: &str = "roles";
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);
pub const DEFAULT_JWKS_MIN_REFRESH: Duration = Duration::from_secs(1);
pub const DEFAULT_INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_INTROSPECTION_CACHE_TTL: Duration = Duration::from_secs(300);
pub const DEFAULT_INTROSPECTION_CACHE_SIZE: usize = 10_000;
pub const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(600);
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(5);
pub const DEFAULT_REDIS_PREFIX: &str = "gatehouse";
pub const DEFAULT_CB_FAILURES: u32 = 5;
pub const DEFAULT_CB_OPEN_FOR: Duration = Duration::from_secs(10);
pub const DEFAULT_CB_HALF_OPEN: u32 = 1;
pub const DEFAULT_PASSIVE_FAILURES: u32 = 3;
pub const DEFAULT_PASSIVE_EJECT: Duration = Duration::from_secs(10);
