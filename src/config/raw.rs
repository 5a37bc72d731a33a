//! The external config schema: serde structs that mirror `gatehouse.yaml` key for key.
//!
//! Nothing here is trusted: values stay as the user wrote them (durations as `"5s"`,
//! addresses as strings) and `validate.rs` turns them into the internal model, collecting
//! every problem with its path. Unknown keys are not silently dropped: the loader records
//! them with `serde_ignored` and reports each one as a problem.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawConfig {
    /// Response compression on every route (a route's own `compression` replaces it).
    pub compression: Option<serde_yaml::Value>,
    /// Plain-HTTP listen addresses. `PORT` overrides their port.
    pub listen: Option<Vec<String>>,
    /// Worker threads for the proxy service.
    pub threads: Option<usize>,
    /// Whether idle worker threads take tasks queued on busy ones (default true).
    pub work_stealing: Option<bool>,
    /// Reload when the config file, or a certificate/key/CA/OCSP file it names, changes
    /// (what a mounted Kubernetes ConfigMap needs); as SIGHUP does, a bad file is refused.
    pub watch: Option<bool>,
    /// Idle upstream connections kept open for reuse, per worker thread (default 1024).
    pub upstream_keepalive_pool: Option<usize>,
    /// Pid file used by daemon mode and graceful upgrade.
    pub pid_file: Option<String>,
    /// Unix socket through which a new binary takes over the listeners (`-u`).
    pub upgrade_sock: Option<String>,
    /// In daemon mode (`-d`), the file that receives the log (stderr); appended to.
    pub log_file: Option<String>,
    /// Fleet mode: where the config lives (`{ etcd: { endpoints, prefix, ... } }`); the
    /// file holding it is the node's bootstrap file (node-local keys only).
    pub config_source: Option<RawConfigSource>,
    /// Where a fleet node keeps its last good config (default: the pid file's directory).
    pub state_dir: Option<String>,
    /// After SIGTERM, how long the process keeps accepting while it closes its keep-alive
    /// connections politely (`Connection: close`), before it stops accepting.
    pub drain_period: Option<String>,
    /// Once it stops accepting, how long in-flight requests and open WebSockets get.
    pub grace_period: Option<String>,
    /// Then how long the runtime gets to stop.
    pub shutdown_timeout: Option<String>,
    /// The longest `/ready` waits at start for first health checks, the Redis connection
    /// and the first JWKS fetch; after it the node reports ready, naming what is missing.
    pub ready_timeout: Option<String>,
    /// Path of the built-in health endpoint on the main listener; `""` disables it.
    pub health_path: Option<String>,
    /// Whether every request writes a JSON access-log line.
    pub access_log: Option<bool>,
    /// Also log the query string, its sensitive parameters redacted (default false).
    pub access_log_query: Option<bool>,
    /// Query parameters whose values the access log never shows (case-insensitive).
    pub redact_params: Option<Vec<String>>,
    /// Prometheus metrics (default true; `ENABLE_METRICS=false` turns them off).
    pub metrics: Option<bool>,
    /// The admin listener: metrics, health, readiness, config, reload, upstream targets.
    pub admin: Option<RawAdmin>,
    /// OpenTelemetry span export (off unless an endpoint is set).
    pub tracing: Option<RawTracing>,
    /// The HTTPS listener and its certificates.
    pub tls: Option<RawTls>,
    /// Accept HTTP/2 with prior knowledge (h2c) on the plain listener (default false).
    pub h2c: Option<bool>,
    /// SO_REUSEPORT on the listeners, so several gatehouse processes can share a port.
    pub reuse_port: Option<bool>,
    /// User-space read buffer per plain-HTTP client connection (default 0: none; the HTTP
    /// parser reads into its own 4 KiB header buffer anyway).
    pub read_buffer: Option<String>,
    /// A client has this long from a head's first byte to its end (default 10s): 408.
    pub client_header_timeout: Option<String>,
    /// How long a client connection may sit idle before a request (default 60s).
    pub client_keepalive_timeout: Option<String>,
    /// Longest request line (default 8KiB): 414 beyond.
    pub max_request_line: Option<String>,
    /// Largest request header section (default 32KiB): 431 beyond.
    pub max_header_size: Option<String>,
    /// Most request header fields (default 100, at most 256): 431 beyond.
    pub max_headers: Option<usize>,
    /// The shared response cache; routes opt in with their own `cache:`.
    pub cache: Option<RawCache>,
    /// Credentials the routes' `auth:` can ask for.
    pub auth: Option<RawAuth>,
    /// Default CORS policy of every route (a route's own `cors:` replaces it).
    pub cors: Option<RawCors>,
    pub security_headers: Option<RawSecurityHeaders>,
    /// CIDRs (or addresses) allowed / denied on every route, before the route's own lists.
    pub ip_allow: Option<Vec<String>>,
    pub ip_deny: Option<Vec<String>>,
    /// Proxies in front of gatehouse whose X-Forwarded-For entries are believed.
    pub trusted_proxies: Option<Vec<String>>,
    /// Largest request body of every route (`1MiB`); a route's `max_body` replaces it.
    pub max_body: Option<String>,
    /// The Redis that `scope: global` rate limits share between gatehouse nodes.
    pub redis: Option<RawRedis>,
    /// A limit every route applies (before its own `rate_limit`).
    pub rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawCache {
    /// `false` turns caching off on every route (`ENABLE_CACHING=false`).
    pub enabled: Option<bool>,
    /// Hard bound on the bytes stored (default 128MiB); fixed for the life of the process.
    pub max_size: Option<String>,
    /// Larger responses are not stored (default 8MiB, at most 64MiB).
    pub max_object_size: Option<String>,
    /// Freshness of a response whose origin says nothing (default 5m; `CACHE_TTL` seconds).
    pub default_ttl: Option<String>,
    /// How long concurrent misses for one key wait for the one request that fetches it.
    pub lock_timeout: Option<String>,
    /// Freshness of 10 % of the time since Last-Modified when the origin gives none
    /// (default false: the route's ttl applies).
    pub heuristic: Option<bool>,
    /// Upper bound of that heuristic freshness (default 1d).
    pub heuristic_max: Option<String>,
    /// The targeted cache-control field meant for gatehouse (default
    /// Gatehouse-Cache-Control; `none` turns it off).
    pub targeted_header: Option<String>,
    /// Obey CDN-Cache-Control (RFC 9213; default true).
    pub cdn_cache_control: Option<bool>,
    /// Remove the targeted fields from answers sent downstream (default true).
    pub strip_targeted: Option<bool>,
    /// Response fields that tag an answer for purges by tag (default [Cache-Tag,
    /// Surrogate-Key]; [] turns tagging off).
    pub tag_headers: Option<Vec<String>>,
    /// Remove the tag fields from answers sent downstream (default true).
    pub strip_tags: Option<bool>,
    /// A disk tier beside the memory one.
    pub disk: Option<RawDiskCache>,
    /// A range request on a miss: `whole` (fetch the whole object once, serve the range
    /// from it; default) or `pass` (forward the range, keep the 206 for covered ranges).
    pub range_miss: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawDiskCache {
    /// Directory of the entries' files (created if missing).
    pub path: Option<String>,
    /// Bound on the bytes on disk (default 1GiB).
    pub max_size: Option<String>,
    /// Larger answers are not stored on disk (default 64MiB, at most 256MiB).
    pub max_object_size: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawTls {
    pub listen: Option<Vec<String>>,
    #[serde(default)]
    pub certs: Vec<RawCert>,
    /// The plain listener answers 308 to the https URL (the health path excepted).
    pub redirect_http: Option<bool>,
    /// Offer HTTP/2 through ALPN (default true).
    pub h2: Option<bool>,
    /// User-space read buffer per TLS client connection (default 64KiB, Pingora's: OpenSSL
    /// reads a record header, then the record, and the buffer saves a syscall for each).
    pub read_buffer: Option<String>,
    /// Lowest protocol version: "1.2" (default) or "1.3".
    pub min_version: Option<String>,
    /// intermediate (default), modern (TLS 1.3 only) or custom.
    pub profile: Option<String>,
    /// With profile custom: TLS 1.2 suites (OpenSSL cipher string).
    pub ciphers: Option<String>,
    /// With profile custom: TLS 1.3 suites.
    pub ciphersuites: Option<String>,
    /// With profile custom: key exchange groups, most preferred first.
    pub groups: Option<Vec<String>>,
    /// Ask clients for a certificate (mTLS).
    pub client_auth: Option<RawClientAuth>,
    /// Obtain and renew certificates from an ACME CA (RFC 8555).
    pub acme: Option<RawAcme>,
    /// Session resumption by tickets: keys rotated on a schedule, shared by the nodes that
    /// share the secret.
    pub session_tickets: Option<RawSessionTickets>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawSessionTickets {
    /// Issue tickets (default true).
    pub enabled: Option<bool>,
    /// At least 32 bytes, the same on every node (default: random, this process only).
    pub secret: Option<String>,
    /// A file holding the secret instead.
    pub secret_file: Option<String>,
    /// A new key every `rotate` (default 12h); tickets are accepted for two periods.
    pub rotate: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawAcme {
    /// The CA's directory URL (Let's Encrypt: https://acme-v02.api.letsencrypt.org/directory).
    pub directory: Option<String>,
    /// Contact for the account (expiry notices).
    pub email: Option<String>,
    /// Names to certify (default: every exact `host` of the routes).
    pub domains: Option<Vec<String>>,
    /// `http-01` (default: answered on the plain listener) or `tls-alpn-01`.
    pub challenge: Option<String>,
    /// Directory for the account, certificates and keys (default: `<state_dir>/acme`).
    pub storage: Option<String>,
    /// Renew this long before expiry (default 30d).
    pub renew_before: Option<String>,
    /// How often certificates are checked for renewal and re-read from storage (default 1h).
    pub check_interval: Option<String>,
    /// PEM CA that signs the directory's HTTPS certificate (a private or test CA).
    pub ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawClientAuth {
    /// PEM bundle of the CAs client certificates must chain to.
    pub ca_file: Option<String>,
    /// `require` (default: no certificate, no connection) or `optional` (routes decide).
    pub mode: Option<String>,
    /// PEM file of revocation lists (one per CA that issues client certificates).
    pub crl_file: Option<String>,
    /// The TLS listeners that ask for a certificate (default: all of `tls.listen`).
    pub listen: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawCert {
    /// PEM certificate chain (leaf first).
    pub cert: Option<String>,
    /// PEM private key.
    pub key: Option<String>,
    /// Host names this certificate answers for (default: its DNS names); the first
    /// certificate is the default for other names.
    pub sni: Option<Vec<String>>,
    /// DER OCSP response to staple (`openssl ocsp ... -respout`), re-read on reload; or
    /// `auto`: fetched from the certificate's responder and refreshed in the background.
    pub ocsp: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawTracing {
    /// OTLP/HTTP traces endpoint, e.g. `http://collector:4318/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans (default `gatehouse`).
    pub service_name: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawAdmin {
    /// Default `127.0.0.1:9901`; `""` disables the admin listener.
    pub listen: Option<String>,
    /// Bearer token every admin call but /health and /ready must carry; required when
    /// `listen` is not a loopback address.
    pub token: Option<String>,
}

/// A named pool of backend servers.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawUpstream {
    /// `"host:port"` or `{ addr: "host:port", weight: N }`; kept loose so that each
    /// wrong entry gets its own message.
    #[serde(default)]
    pub targets: Vec<serde_yaml::Value>,
    pub balance: Option<String>,
    pub health_check: Option<RawHealthCheck>,
    pub retries: Option<u32>,
    pub connect_timeout: Option<String>,
    /// Default time to wait for the upstream between reads/writes, when the route sets none.
    pub timeout: Option<String>,
    /// How long an idle upstream connection is kept in the keepalive pool.
    pub keepalive_timeout: Option<String>,
    /// `consistent_hash` key: `ip`, `header:NAME` or `cookie:NAME`.
    pub hash_key: Option<String>,
    pub circuit_breaker: Option<RawCircuitBreaker>,
    /// Ejects a target that fails repeatedly in live traffic, between active checks.
    pub passive_health: Option<RawPassiveHealth>,
    /// First wait before a retry; doubled for each further one (default 0: none).
    pub retry_backoff: Option<String>,
    /// Also retry non-idempotent requests whose connection was lost before a response.
    pub retry_non_idempotent: Option<bool>,
    /// Connect to the targets over TLS.
    pub tls: Option<bool>,
    /// Server name sent (SNI) and verified (default: the first target's host).
    pub sni: Option<String>,
    /// Verify the upstream certificate (default true).
    pub verify: Option<bool>,
    /// PEM bundle of CAs trusted for the upstream (default: the system store).
    pub ca_file: Option<String>,
    /// The gateway's certificate (PEM, leaf first) for upstreams that ask for one (mTLS).
    pub client_cert: Option<String>,
    /// Its private key (PEM).
    pub client_key: Option<String>,
    /// Speak HTTP/2 to the upstream (ALPN h2 over TLS; prior knowledge over plain TCP).
    pub h2: Option<bool>,
    /// With h2: concurrent requests (streams) one upstream connection carries (default 100).
    pub h2_streams: Option<usize>,
    /// Targets discovered at runtime, added to `targets`: `{ etcd: "/services/users/" }`.
    pub targets_from: Option<RawTargetsFrom>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct RawTargetsFrom {
    /// An etcd prefix where instances register (`gatehouse register`) under a lease.
    pub etcd: Option<String>,
    /// `name:port`: every A/AAAA address of the name is a target; `_service._proto.name`:
    /// every SRV record (its target's addresses, port and weight). Looked up again on the
    /// records' TTL (bounded by `interval`).
    pub dns: Option<String>,
    /// The DNS server to ask (`ip:port`; default: the system's, /etc/resolv.conf).
    pub resolver: Option<String>,
    /// Longest time between two lookups (default 30s).
    pub interval: Option<String>,
    /// etcd members to read it from (default: the fleet's own).
    pub endpoints: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawCircuitBreaker {
    /// Consecutive failures that open the circuit.
    pub failures: Option<u32>,
    /// How long it stays open before letting probes through.
    pub open_for: Option<String>,
    /// Probes allowed while half-open.
    pub half_open_requests: Option<u32>,
    /// Whether upstream 5xx answers count as failures (default true).
    pub count_5xx: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawPassiveHealth {
    /// Consecutive failures (connect errors, timeouts, 5xx) that eject a target.
    pub failures: Option<u32>,
    /// How long an ejected target gets no traffic.
    pub eject_for: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawRedis {
    pub url: Option<String>,
    /// Longest a limit decision may wait for Redis (default 5ms).
    pub timeout: Option<String>,
    /// Namespace of every key, shared by the nodes that share limits (default `gatehouse`).
    pub key_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawRateLimit {
    pub requests: Option<u64>,
    pub per: Option<String>,
    /// `ip` (default), `api_key`, `sub`, `route` or `header:NAME`.
    pub key: Option<String>,
    /// `local` (default, this process) or `global` (all nodes, through Redis).
    pub scope: Option<String>,
    /// `scope: global` only: `allow` (default) or `deny` when Redis is slow or down.
    pub on_redis_error: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawSplit {
    pub upstream: Option<String>,
    pub weight: Option<u32>,
}

/// Active HTTP health check of an upstream's targets.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawHealthCheck {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    /// Consecutive successes that bring an unhealthy target back.
    pub healthy: Option<usize>,
    /// Consecutive failures that take a healthy target out.
    pub unhealthy: Option<usize>,
    /// `Host` header sent with the probe (default: the target address).
    pub host: Option<String>,
    /// Probe with the gRPC health-checking protocol for this service (`""`: the server).
    pub grpc: Option<String>,
}

/// One route: what it matches and where it goes.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawRoute {
    pub name: Option<String>,
    /// `/exact`, `/users/:id` or `/files/*rest`.
    pub path: Option<String>,
    /// Any path starting with this.
    pub prefix: Option<String>,
    /// A regular expression matched against the path.
    pub regex: Option<String>,
    /// `api.example.com` or `*.example.com`.
    pub host: Option<String>,
    pub methods: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub query: Option<BTreeMap<String, String>>,
    pub upstream: Option<String>,
    pub strip_prefix: Option<String>,
    pub timeout: Option<String>,
    /// Idle timeout of upgraded (WebSocket) connections on this route (default 10m).
    pub websocket_idle_timeout: Option<String>,
    /// `true`, or `{ ttl: 60s, authorized: false }`: cache this route's responses.
    pub cache: Option<serde_yaml::Value>,
    /// `none` (default), `jwt` or `api_key`.
    pub auth: Option<String>,
    /// OAuth2 scopes the token must all carry.
    pub scopes: Option<Vec<String>>,
    /// Roles of which the token must carry at least one.
    pub roles: Option<Vec<String>>,
    pub max_body: Option<String>,
    pub ip_allow: Option<Vec<String>>,
    pub ip_deny: Option<Vec<String>>,
    /// Replaces the global CORS policy for this route.
    pub cors: Option<RawCors>,
    pub rate_limit: Option<RawRateLimit>,
    /// Instead of `upstream`: weighted split between pools (canary).
    pub split: Option<Vec<RawSplit>>,
    /// Let GET requests carry a body (default false: 400), for APIs that need it.
    pub allow_get_body: Option<bool>,
    /// `required`: only connections with a verified client certificate (else 403).
    pub client_cert: Option<String>,
    /// Instead of `upstream`: answer by calling these parts in parallel and merging
    /// their JSON.
    pub aggregate: Option<Vec<RawPart>>,
    /// Largest answer of one aggregate part (default 1MiB); larger is a failed part.
    pub max_part_size: Option<String>,
    /// Path rewrite by regex: `{ regex: "^/v1/(.*)", to: "/api/$1" }`.
    pub rewrite: Option<RawRewrite>,
    /// Headers changed on the request sent upstream (values are `{…}` templates).
    pub request_headers: Option<RawHeaderEdits>,
    /// Query parameters changed on the request sent upstream.
    pub request_query: Option<RawQueryEdits>,
    /// The Host sent upstream: `preserve` (default), `target`, or a literal host.
    pub upstream_host: Option<String>,
    /// Headers changed on the upstream's response.
    pub response_headers: Option<RawHeaderEdits>,
    /// Fields removed or masked in JSON response bodies.
    pub json: Option<RawJsonEdits>,
    /// `true`, `false` or `{ encodings, types, min_size, level }`: replaces the top level's.
    pub compression: Option<serde_yaml::Value>,
    /// With `auth: forward`: the service that decides.
    pub forward_auth: Option<RawForwardAuth>,
    /// Instead of `path`: a gRPC service (and method): `{ service: pkg.Svc, method: Get }`.
    pub grpc: Option<RawGrpcRoute>,
    /// Accept gRPC-Web (browsers) and call the gRPC upstream in gRPC.
    pub grpc_web: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawGrpcRoute {
    /// Fully qualified: `helloworld.Greeter`.
    pub service: Option<String>,
    /// One method; without it, every method of the service.
    pub method: Option<String>,
}

/// Delegated authentication: an auth service answers 2xx (go on) or anything else (the
/// answer the client gets).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawForwardAuth {
    pub upstream: Option<String>,
    /// Path (template) asked on the auth service (default `/`).
    pub path: Option<String>,
    /// Client headers sent to the auth service (default `[Authorization, Cookie]`).
    pub headers_to_auth: Option<Vec<String>>,
    /// Headers of the auth service's 2xx answer copied onto the request sent upstream.
    pub headers_from_auth: Option<Vec<String>>,
    /// Default 2s.
    pub timeout: Option<String>,
    /// Keep decisions per credential for this long (default: not kept).
    pub cache_ttl: Option<String>,
}

/// One part of an aggregate route.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawPart {
    /// The key of its answer under `data`.
    pub name: Option<String>,
    pub upstream: Option<String>,
    /// `{…}` template of the path (and query) sent.
    pub path: Option<String>,
    /// Default GET.
    pub method: Option<String>,
    /// Query parameters added, values `{…}` templates.
    pub query: Option<BTreeMap<String, String>>,
    /// Client request headers forwarded to the part (besides the request id and trace).
    pub headers: Option<Vec<String>>,
    pub timeout: Option<String>,
    /// A failed required part fails the whole answer (502).
    pub required: Option<bool>,
    /// Keep this part's answer for a while: `30s`.
    pub cache: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawRewrite {
    pub regex: Option<String>,
    /// Replacement with `$1` / `${name}` captures.
    pub to: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawHeaderEdits {
    /// Appended (beside any value already there).
    pub add: Option<BTreeMap<String, String>>,
    /// Replacing any value already there.
    pub set: Option<BTreeMap<String, String>>,
    pub remove: Option<Vec<String>>,
    /// `{ From: To }`: the values of From move to To (requests only).
    pub rename: Option<BTreeMap<String, String>>,
    /// Allow changing the headers gatehouse sets itself (X-Forwarded-*, X-Request-ID, …).
    #[serde(rename = "override")]
    pub override_gateway: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawQueryEdits {
    pub add: Option<BTreeMap<String, String>>,
    pub set: Option<BTreeMap<String, String>>,
    pub remove: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawJsonEdits {
    /// JSONPath (RFC 9535) expressions whose matches are removed: `$.password`.
    pub remove: Option<Vec<String>>,
    /// JSONPath expressions whose matches are replaced by `mask_with`.
    pub mask: Option<Vec<String>>,
    /// Default `"****"`.
    pub mask_with: Option<String>,
    /// Larger bodies pass untouched (default 1MiB).
    pub max_size: Option<String>,
}

/// `auth:` at the top level.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawAuth {
    pub jwt: Option<RawJwt>,
    pub api_keys: Option<RawApiKeys>,
    /// RFC 7662 introspection for opaque (non-JWT) bearer tokens on `auth: jwt` routes.
    pub introspection: Option<RawIntrospection>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawJwt {
    /// HMAC secret (HS256/384/512).
    pub secret: Option<String>,
    /// PEM file with an RSA or EC public key (RS*/PS*/ES*).
    pub public_key: Option<String>,
    /// JSON Web Key Set URL, fetched in the background.
    pub jwks_url: Option<String>,
    /// How often the JWKS is fetched again (default 5m).
    pub jwks_refresh: Option<String>,
    /// Least time between two fetches triggered by unknown `kid`s or a failed fetch
    /// (default 1s; `jwks_cooldown` is its former name).
    #[serde(alias = "jwks_cooldown")]
    pub jwks_min_refresh: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway: Option<String>,
    /// Cookie carrying the token when there is no Authorization header.
    pub cookie: Option<String>,
    /// Claim holding the roles, dotted for nested objects (`realm_access.roles`).
    pub roles_claim: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawApiKeys {
    /// Header carrying the key (default X-API-Key).
    pub header: Option<String>,
    /// Query parameter carrying the key, when the header is absent.
    pub query: Option<String>,
    #[serde(default)]
    pub keys: Vec<RawApiKey>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawApiKey {
    pub consumer: Option<String>,
    /// Hex SHA-256 of the key (`gatehouse hash-key KEY`).
    pub sha256: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawIntrospection {
    pub url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub timeout: Option<String>,
    /// Upper bound on how long an answer is cached (default 5m).
    pub cache_ttl: Option<String>,
    /// Most tokens cached (default 10000).
    pub cache_size: Option<usize>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawCors {
    /// Allowed origins (`https://app.example.com`), or `["*"]` for any.
    pub origins: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    /// Request headers allowed in preflights; `["*"]` mirrors what the browser asks for.
    pub headers: Option<Vec<String>>,
    pub expose_headers: Option<Vec<String>>,
    pub credentials: Option<bool>,
    pub max_age: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawSecurityHeaders {
    /// Strict-Transport-Security value on HTTPS answers (default max-age=63072000, two
    /// years); `off` turns it off.
    pub hsts: Option<String>,
    /// `X-Content-Type-Options: nosniff` (default true).
    pub content_type_options: Option<bool>,
    /// X-Frame-Options (default `DENY`; `""` for none).
    pub frame_options: Option<String>,
    /// Referrer-Policy (default `strict-origin-when-cross-origin`; `""` for none).
    pub referrer_policy: Option<String>,
    pub content_security_policy: Option<String>,
    /// Upstream response headers to remove (`[Server, X-Powered-By]`).
    pub remove: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct RawConfigSource {
    pub etcd: Option<RawEtcd>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct RawEtcd {
    /// `http://host:2379`, one per member.
    pub endpoints: Option<Vec<String>>,
    /// Default `/gatehouse/`.
    pub prefix: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// For `https://` endpoints: `{ ca_file, cert_file, key_file }` (PEM).
    pub tls: Option<RawEtcdTls>,
    /// Connect and request timeout (default 3s).
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct RawEtcdTls {
    /// CAs that sign the members' certificates (default: the system's).
    pub ca_file: Option<String>,
    /// A client certificate, for etcd run with `--client-cert-auth`.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}
