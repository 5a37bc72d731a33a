//! Prometheus metrics. One `Metrics` owns every collector in its own registry (no global
//! registry, so tests and reloads cannot leak into each other); it lives for the whole
//! process, across config reloads. Route labels are route names, never raw paths, so the
//! label sets stay bounded.
//!
//! Request metrics are recorded in the `logging` phase; the state of upstreams (health,
//! circuits) is read from the current snapshot when `/metrics` is scraped.

use crate::cache::storage::StoreStats;
use crate::snapshot::Snapshot;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// `grpc-status` labels, by code (0 OK .. 16 UNAUTHENTICATED).
const GRPC_STATUS: [&str; 17] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
];

/// Seconds; from 1 ms to 30 s, the range of a gateway hop.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream_duration: HistogramVec,
    rejections: IntCounterVec,
    downstream_errors: IntCounterVec,
    reloads: IntCounterVec,
    upstream_healthy: IntGaugeVec,
    circuit_state: IntGaugeVec,
    rate_limit_redis_errors: IntGaugeVec,
    config_info: IntGaugeVec,
    cache: IntCounterVec,
    cache_bytes: IntGauge,
    cache_entries: IntGauge,
    /// The disk tier's bytes and entries; left at zero without one.
    cache_disk_bytes: IntGauge,
    cache_disk_entries: IntGauge,
    json_transform: IntCounterVec,
    aggregate_parts: IntCounterVec,
    grpc: IntCounterVec,
    cert_expiry: IntGaugeVec,
    acme_orders: IntCounterVec,
}

/// What one finished request contributes.
pub struct RequestRecord<'a> {
    pub route: &'a str,
    /// The route's kept children, when the request had a route.
    pub meters: Option<&'a crate::metric_slots::RouteMeters>,
    pub method: &'a str,
    pub status: u16,
    pub seconds: f64,
    /// Time spent waiting on the upstream, when the request went upstream.
    pub upstream: Option<(&'a crate::upstream::UpstreamPool, f64)>,
    /// `auth`, `forbidden`, `rate_limit`, `body_limit`, `ip`, `cors`.
    pub rejected: Option<&'static str>,
    /// How the response cache took part (`hit`, `miss`, ...), on caching routes.
    pub cache: Option<&'static str>,
    /// What the route's `json` edits did with the body.
    pub json: Option<&'static str>,
    /// An aggregate answer's parts.
    pub parts: &'a [crate::request::PartReport],
    /// A gRPC call's `grpc-status`.
    pub grpc_status: Option<u8>,
}

impl<'a> RequestRecord<'a> {
    /// What the finished request in `session` contributes; `elapsed` since it started (the
    /// clock is read once for the log and the metrics: ≈ 90 instructions a read).
    pub fn of(
        session: &'a pingora::proxy::Session,
        ctx: &'a crate::request::RequestCtx,
        elapsed: std::time::Duration,
    ) -> Self {
        let pool = ctx.pool();
        RequestRecord {
            route: ctx.route().map_or(NO_ROUTE, |r| r.name.as_str()),
            method: method_label(&session.req_header().method),
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            seconds: elapsed.as_secs_f64(),
            meters: ctx.route().map(|r| &r.meters),
            upstream: pool.zip(ctx.upstream_started).map(|(p, t)| {
                (
                    p.as_ref(),
                    elapsed
                        .saturating_sub(t.saturating_duration_since(ctx.started))
                        .as_secs_f64(),
                )
            }),
            rejected: ctx.error.as_ref().and_then(|e| e.rejection()),
            cache: ctx.cache.map(|c| c.label()),
            json: ctx.json_outcome.map(|o| o.label()),
            parts: &ctx.parts,
            grpc_status: ctx.grpc_status,
        }
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "gateway_requests_total",
                "Requests answered, by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_request_duration_seconds",
                "Time from request to the end of the response",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_upstream_duration_seconds",
                "Time from the request leaving for the upstream to the end of its response",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["upstream"],
        )?;
        let rejections = IntCounterVec::new(
            Opts::new(
                "gateway_rejections_total",
                "Requests the gateway refused, by route and reason",
            ),
            &["route", "reason"],
        )?;
        let downstream_errors = IntCounterVec::new(
            Opts::new(
                "gateway_downstream_errors_total",
                "Client-side failures: refused request heads, header timeouts, connections cut mid-request, HTTP/2 stream resets and protocol errors",
            ),
            &["kind"],
        )?;
        let access_log_dropped = prometheus::IntCounter::new(
            "gateway_access_log_dropped_total",
            "Log lines (access lines and other records) dropped because the log writer's buffer was full (stderr not keeping up)",
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("gateway_config_reloads_total", "Config reloads, by result (ok; invalid: refused, the running config stays; unavailable: the source could not be read)"),
            &["result"],
        )?;
        let upstream_healthy = IntGaugeVec::new(
            Opts::new(
                "gateway_upstream_healthy",
                "1 when the target takes traffic (healthy, not ejected)",
            ),
            &["upstream", "target"],
        )?;
        let circuit_state = IntGaugeVec::new(
            Opts::new(
                "gateway_circuit_state",
                "Circuit breaker state: 0 closed, 1 open, 2 half-open",
            ),
            &["upstream"],
        )?;
        let rate_limit_redis_errors = IntGaugeVec::new(
            Opts::new(
                "gateway_rate_limit_redis_errors_total",
                "Global rate-limit decisions taken by on_redis_error because Redis could not answer",
            ),
            &["decision"],
        )?;
        let config_info = IntGaugeVec::new(
            Opts::new(
                "gateway_config_info",
                "The active config: its hash and generation (value 1)",
            ),
            &["hash", "generation", "source"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new(
                "gateway_cache_total",
                "Requests on caching routes, by how the cache answered (hit, miss, stale, revalidated, bypass)",
            ),
            &["route", "result"],
        )?;
        let cache_bytes = IntGauge::new("gateway_cache_bytes", "Bytes held by the response cache")?;
        let cache_entries = IntGauge::new("gateway_cache_entries", "Responses held by the response cache")?;
        let cache_disk_bytes = IntGauge::new("gateway_cache_disk_bytes", "Bytes held by the cache's disk tier")?;
        let cache_disk_entries =
            IntGauge::new("gateway_cache_disk_entries", "Responses held by the cache's disk tier")?;
        let json_transform = IntCounterVec::new(
            Opts::new(
                "gateway_json_transform_total",
                "Response bodies on routes with json edits, by what was done (applied, not_json, encoded, too_large, invalid)",
            ),
            &["route", "result"],
        )?;
        let aggregate_parts = IntCounterVec::new(
            Opts::new(
                "gateway_aggregate_parts_total",
                "Aggregate parts called, by route, part and result (ok, cached, timeout, status, not_json, too_large, circuit_open, unavailable, error)",
            ),
            &["route", "part", "result"],
        )?;
        let grpc = IntCounterVec::new(
            Opts::new(
                "gateway_grpc_requests_total",
                "gRPC calls answered, by route and grpc-status (the upstream's, or the gateway's own)",
            ),
            &["route", "grpc_status"],
        )?;
        let cert_expiry = IntGaugeVec::new(
            Opts::new(
                "gateway_cert_expiry_seconds",
                "Seconds until each served certificate expires (configured and ACME), by its first name",
            ),
            &["name"],
        )?;
        let acme_orders = IntCounterVec::new(
            Opts::new(
                "gateway_acme_orders_total",
                "Certificates ordered from the ACME CA, by result (success, failure)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(cert_expiry.clone()))?;
        registry.register(Box::new(acme_orders.clone()))?;
        registry.register(Box::new(grpc.clone()))?;
        registry.register(Box::new(json_transform.clone()))?;
        registry.register(Box::new(aggregate_parts.clone()))?;
        registry.register(Box::new(cache.clone()))?;
        registry.register(Box::new(cache_bytes.clone()))?;
        registry.register(Box::new(cache_entries.clone()))?;
        registry.register(Box::new(cache_disk_bytes.clone()))?;
        registry.register(Box::new(cache_disk_entries.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(rejections.clone()))?;
        registry.register(Box::new(downstream_errors.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(access_log_dropped.clone()))?;
        crate::observe::log_writer::count_drops_in(access_log_dropped);
        registry.register(Box::new(upstream_healthy.clone()))?;
        registry.register(Box::new(circuit_state.clone()))?;
        registry.register(Box::new(rate_limit_redis_errors.clone()))?;
        registry.register(Box::new(config_info.clone()))?;
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(Metrics {
            cert_expiry,
            acme_orders,
            registry,
            requests,
            duration,
            upstream_duration,
            rejections,
            downstream_errors,
            reloads,
            upstream_healthy,
            circuit_state,
            rate_limit_redis_errors,
            config_info,
            cache,
            cache_bytes,
            cache_entries,
            cache_disk_bytes,
            cache_disk_entries,
            json_transform,
            aggregate_parts,
            grpc,
        })
    }

    pub fn record(&self, r: &RequestRecord) {
        let status = status_label(r.status);
        let requests = || self.requests.with_label_values(&[r.route, r.method, status]);
        let duration = || self.duration.with_label_values(&[r.route, r.method]);
        match r.meters {
            Some(meters) => {
                let method = method_key(r.method);
                meters.requests.get(method << 16 | u32::from(r.status), requests).inc();
                meters.duration.get(method, duration).observe(r.seconds);
            }
            None => {
                requests().inc();
                duration().observe(r.seconds);
            }
        }
        if let Some((pool, seconds)) = r.upstream {
            let resolve = || self.upstream_duration.with_label_values(&[pool.name.as_str()]);
            pool.duration_meter.get(0, resolve).observe(seconds);
        }
        if let Some(reason) = r.rejected {
            self.rejections.with_label_values(&[r.route, reason]).inc();
        }
        if let Some(result) = r.cache {
            self.cache.with_label_values(&[r.route, result]).inc();
        }
        if let Some(result) = r.json {
            self.json_transform.with_label_values(&[r.route, result]).inc();
        }
        if let Some(status) = r.grpc_status {
            let label = GRPC_STATUS.get(usize::from(status)).copied().unwrap_or("other");
            self.grpc.with_label_values(&[r.route, label]).inc();
        }
        for part in r.parts {
            self.aggregate_parts
                .with_label_values(&[r.route, part.name.as_str(), part.result])
                .inc();
        }
    }

    /// The counter of client-side failures, for the failures only the log sees.
    pub fn downstream_errors(&self) -> IntCounterVec {
        self.downstream_errors.clone()
    }

    /// One client-side failure of `kind` (a static, bounded label).
    pub fn downstream_error(&self, kind: &'static str) {
        self.downstream_errors.with_label_values(&[kind]).inc();
    }

    /// `ok`, `invalid` (refused: the running config stays) or `unavailable` (the source
    /// could not be read).
    /// The served certificates' remaining lifetimes (names no longer served disappear).
    pub fn cert_expiry(&self, certs: &[(String, i64)]) {
        self.cert_expiry.reset();
        for (name, seconds) in certs {
            self.cert_expiry.with_label_values(&[name.as_str()]).set(*seconds);
        }
    }

    pub fn acme_order(&self, result: &'static str) {
        self.acme_orders.with_label_values(&[result]).inc();
    }

    pub fn reloaded(&self, result: &str) {
        self.reloads.with_label_values(&[result]).inc();
    }

    /// The text exposition, with the snapshot's upstream state read now.
    pub fn render(&self, snapshot: &Snapshot, config_hash: &str, cache: StoreStats) -> Vec<u8> {
        self.cache_bytes.set(i64::try_from(cache.bytes).unwrap_or(i64::MAX));
        self.cache_entries.set(i64::try_from(cache.entries).unwrap_or(i64::MAX));
        if let Some(disk) = cache.disk {
            self.cache_disk_bytes.set(i64::try_from(disk.bytes).unwrap_or(i64::MAX));
            self.cache_disk_entries
                .set(i64::try_from(disk.entries).unwrap_or(i64::MAX));
        }
        self.upstream_healthy.reset();
        self.circuit_state.reset();
        for (name, pool) in &snapshot.upstreams {
            for t in pool.targets() {
                let up = t.healthy && !t.ejected;
                self.upstream_healthy
                    .with_label_values(&[name.as_str(), t.target.config.spec.as_str()])
                    .set(i64::from(up));
            }
            if let Some(state) = pool.circuit_state() {
                let value = match state {
                    "closed" => 0,
                    "open" => 1,
                    _ => 2,
                };
                self.circuit_state.with_label_values(&[name.as_str()]).set(value);
            }
        }
        let (allowed, denied) = snapshot.redis.as_ref().map_or((0, 0), |r| {
            (
                r.policy_allowed.load(std::sync::atomic::Ordering::Relaxed),
                r.policy_denied.load(std::sync::atomic::Ordering::Relaxed),
            )
        });
        for (decision, n) in [("allow", allowed), ("deny", denied)] {
            self.rate_limit_redis_errors
                .with_label_values(&[decision])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.config_info.reset();
        self.config_info
            .with_label_values(&[config_hash, &snapshot.generation.to_string(), &snapshot.source])
            .set(1);
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::warn!("metrics encoding failed: {e}");
        }
        out
    }
}

/// Statuses as static labels, without formatting a number per request.
fn status_label(status: u16) -> &'static str {
    const COMMON: [(u16, &str); 24] = [
        (0, "0"),
        (101, "101"),
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (206, "206"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (409, "409"),
        (413, "413"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
        (499, "499"),
    ];
    COMMON.iter().find(|(s, _)| *s == status).map_or(
        match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
        |(_, label)| label,
    )
}

/// Requests and p99 of one route, from the histogram.
pub struct RouteStats {
    pub route: String,
    pub requests: u64,
    pub p99_seconds: Option<f64>,
}

impl Metrics {
    /// Per route (all methods together): request count and the p99 latency, estimated by
    /// linear interpolation inside the histogram bucket that holds it.
    pub fn route_stats(&self) -> Vec<RouteStats> {
        use std::collections::BTreeMap;
        let mut per_route: BTreeMap<String, (u64, Vec<(f64, u64)>)> = BTreeMap::new();
        for family in prometheus::core::Collector::collect(&self.duration) {
            for m in family.get_metric() {
                let Some(route) = m.get_label().iter().find(|l| l.name() == "route") else {
                    continue;
                };
                let h = m.get_histogram();
                let entry = per_route.entry(route.value().to_string()).or_default();
                entry.0 += h.get_sample_count();
                for (i, b) in h.get_bucket().iter().enumerate() {
                    match entry.1.get_mut(i) {
                        Some(slot) => slot.1 += b.cumulative_count(),
                        None => entry.1.push((b.upper_bound(), b.cumulative_count())),
                    }
                }
            }
        }
        per_route
            .into_iter()
            .map(|(route, (count, buckets))| RouteStats {
                route,
                requests: count,
                p99_seconds: quantile(0.99, count, &buckets),
            })
            .collect()
    }
}

fn quantile(q: f64, count: u64, buckets: &[(f64, u64)]) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, cumulative) in buckets {
        if cumulative as f64 >= rank {
            let in_bucket = (cumulative - lower.1).max(1) as f64;
            return Some(lower.0 + (bound - lower.0) * ((rank - lower.1 as f64) / in_bucket));
        }
        lower = (bound, cumulative);
    }
    Some(lower.0)
}

/// Method label: the standard methods as they are, anything else `OTHER` (bounded labels).
/// A small number per method label, for the keys of kept children.
fn method_key(label: &str) -> u32 {
    METHOD_LABELS
        .iter()
        .position(|m| *m == label)
        .map_or(u32::MAX >> 16, |i| i as u32)
}

const METHOD_LABELS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::PATCH => "PATCH",
        M::OPTIONS => "OPTIONS",
        M::CONNECT => "CONNECT",
        M::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Route label of requests no route took (404, 405, the health endpoint, refusals before
/// routing).
pub const NO_ROUTE: &str = "unmatched";
