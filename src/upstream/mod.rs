//! Upstream pools: targets, selection, health, circuit breaking, and the peer each request
//! dials.
//!
//! A pool wraps one of Pingora's load balancers over a static target set: weighted round
//! robin, Ketama consistent hashing, or our least-connections selection. Selection skips
//! targets that are unhealthy (active checks), ejected (passive health) or already failed
//! this request; a pool whose circuit is open refuses before selecting. Active health
//! checks are not scheduled by the pool but by the one [`crate::supervisor::Supervisor`].
//!
//! A pool rebuilt because its config changed (a target added or removed, by hand or by
//! discovery) keeps what it knew of the targets that stay: their active health (the
//! pools share one Pingora `HealthRegistry` while the probe is the same), their passive
//! ejections and in-flight counts, and the circuit while its settings are the same.

mod circuit;
pub mod client;
mod grpc_health;
mod health;
mod least_conn;
mod split;
mod target;

pub use circuit::{CircuitBreaker, Permit};
pub use health::HealthSchedule;
pub use split::RouteUpstreams;
pub use target::{InFlight, TargetState};

use crate::config::model::{Balance, TargetConfig, UpstreamConfig, UpstreamTls};
use least_conn::LeastConn;
use pingora::lb::discovery::Static;
use pingora::lb::selection::consistent::KetamaHashing;
use pingora::lb::selection::{BackendIter, BackendSelection, RoundRobin};
use pingora::lb::{Backend, Backends, HealthRegistry, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr;
use pingora::upstreams::peer::HttpPeer;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The placeholder address of a target whose name does not resolve (never dialled).
const UNRESOLVED: std::net::SocketAddr =
    std::net::SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0));

/// Bound on how many candidates one selection looks at before giving up.
const MAX_SELECT_STEPS: usize = 256;

enum Balancer {
    RoundRobin(LoadBalancer<RoundRobin>),
    Ketama(LoadBalancer<KetamaHashing>),
    LeastConn(LoadBalancer<LeastConn>),
}

/// A named pool of targets, shared by the routes that use it and, when its config is
/// unchanged, carried over from one snapshot to the next (with its health, ejections,
/// circuit state and in-flight counts).
pub struct UpstreamPool {
    pub name: String,
    pub config: UpstreamConfig,
    balancer: Balancer,
    /// Same order as `config.targets`.
    targets: Arc<Vec<Arc<TargetState>>>,
    /// A pool of one resolved target (a Kubernetes Service, one host): every selection
    /// ends on it, so a pick skips the balancer, which hashes the backend twice and
    /// allocates a seen-set per request to find the same answer.
    sole: Option<Arc<TargetState>>,
    circuit: Option<Arc<CircuitBreaker>>,
    peer_template: HttpPeer,
    health: Option<Arc<HealthSchedule>>,
    /// Active health per target address; shared with the pool this one replaced when the
    /// probe is the same.
    registry: Arc<HealthRegistry>,
    /// `gateway_upstream_duration_seconds` of this pool, found without hashing its name.
    pub duration_meter: crate::metric_slots::MetricSlots<prometheus::Histogram, 1>,
}

/// Why no target was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickError {
    CircuitOpen,
    NoHealthyTarget,
}

/// A picked target: in flight until dropped, with the circuit's leave to try it.
pub struct Pick {
    pub target: InFlight,
    pub permit: Option<Permit>,
}

/// One target's state, for `/health` and logs.
pub struct TargetStatus<'a> {
    pub target: &'a TargetState,
    pub healthy: bool,
    pub ejected: bool,
}

// === impl UpstreamPool ===

impl UpstreamPool {
    /// A pool may be empty (its targets all discovered at runtime, none registered yet):
    /// every pick is then `NoHealthyTarget`. `previous` is the pool of the same name this
    /// one replaces, whose knowledge of the targets that stay is kept.
    pub fn build(name: &str, config: &UpstreamConfig, previous: Option<&UpstreamPool>) -> Result<Self, String> {
        let epoch = Instant::now();
        let kept = |t: &TargetConfig| {
            previous
                .and_then(|p| p.targets.iter().find(|s| s.config == *t))
                .cloned()
        };
        let targets: Arc<Vec<Arc<TargetState>>> = Arc::new(
            config
                .targets
                .iter()
                .map(|t| {
                    kept(t).unwrap_or_else(|| {
                        // An unresolved target gets an address no selection can reach: it is
                        // left out of the balancer (and its health checks) until it resolves.
                        let backend = Backend {
                            addr: SocketAddr::Inet(t.addr.unwrap_or(UNRESOLVED)),
                            weight: t.weight as usize,
                            ext: Default::default(),
                        };
                        Arc::new(TargetState::new(t.clone(), backend, epoch))
                    })
                })
                .collect(),
        );
        // Same probe (path, host, thresholds, TLS): the health seen so far still holds.
        let same_probe =
            previous.filter(|p| p.config.health_check == config.health_check && p.config.tls == config.tls);
        let (registry, health) = match same_probe {
            Some(p) => (p.registry.clone(), p.health.clone()),
            None => {
                let registry = HealthRegistry::with_equivalence(address_key);
                if let Some(hc) = &config.health_check {
                    registry.set_health_check(match &hc.grpc {
                        Some(service) => Box::new(grpc_health::GrpcHealthCheck::new(
                            name,
                            hc,
                            config.tls.as_ref(),
                            service,
                        )?),
                        None => health::http_check(name, hc, config.tls.as_ref())?,
                    });
                }
                let schedule = config
                    .health_check
                    .as_ref()
                    .map(|hc| Arc::new(HealthSchedule::new(hc.interval)));
                (Arc::new(registry), schedule)
            }
        };
        let balancer = match &config.balance {
            Balance::RoundRobin => Balancer::RoundRobin(load_balancer(&registry, &targets, None)?),
            Balance::ConsistentHash(_) => Balancer::Ketama(load_balancer(&registry, &targets, None)?),
            Balance::LeastConn => Balancer::LeastConn(load_balancer(&registry, &targets, Some(targets.clone()))?),
        };
        // The template's address is replaced by the picked target's on every attempt.
        let mut peer_template = peer_template(UNRESOLVED, config)?;
        peer_template.options.connection_timeout = Some(config.connect_timeout);
        peer_template.options.read_timeout = Some(config.timeout);
        peer_template.options.write_timeout = Some(config.timeout);
        peer_template.options.idle_timeout = Some(config.keepalive_timeout);
        let circuit = match previous.and_then(|p| p.circuit.as_ref()) {
            Some(c) if previous.is_some_and(|p| p.config.circuit_breaker == config.circuit_breaker) => Some(c.clone()),
            _ => config
                .circuit_breaker
                .as_ref()
                .map(|c| Arc::new(CircuitBreaker::new(name, c))),
        };
        let sole = match targets.as_slice() {
            [only] if only.config.addr.is_some() => Some(only.clone()),
            _ => None,
        };
        Ok(UpstreamPool {
            name: name.to_string(),
            config: config.clone(),
            balancer,
            sole,
            circuit,
            health,
            registry,
            targets,
            peer_template,
            duration_meter: Default::default(),
        })
    }

    /// The next target: healthy, not ejected, not among `failed` (this request's earlier
    /// attempts) unless no other is left. `hash_key` feeds consistent hashing.
    pub fn pick(&self, hash_key: &[u8], failed: &[SocketAddr]) -> Result<Pick, PickError> {
        let permit = match &self.circuit {
            Some(circuit) => Some(circuit.try_acquire().ok_or(PickError::CircuitOpen)?),
            None => None,
        };
        if let Some(sole) = &self.sole {
            // What the balancer would pick, retries included (the only target, failed or
            // not, is the fallback of every retry).
            // Without an active check nothing marks it down: no readiness lookup.
            let healthy = self.health.is_none() || self.balancer.backends().ready(&sole.backend);
            if !healthy || sole.is_ejected() {
                return Err(PickError::NoHealthyTarget);
            }
            return Ok(Pick {
                target: InFlight::start(sole.clone()),
                permit,
            });
        }
        let usable = |b: &Backend, healthy: bool| healthy && !self.state_of(b).is_some_and(|t| t.is_ejected());
        let retry = !failed.is_empty();
        let chosen = match &self.balancer {
            // A retry must not turn the round-robin wheel: it would land every next request
            // on the same (failed) target.
            Balancer::RoundRobin(_) if retry => self.retry_target(failed, &usable),
            _ => self
                .balancer
                .select_with(hash_key, |b, healthy| usable(b, healthy) && !failed.contains(&b.addr))
                .and_then(|b| self.state_of(&b).cloned()),
        };
        // Every other target failed too: one that failed may be tried again.
        let fallback = || {
            self.balancer
                .select_with(hash_key, usable)
                .and_then(|b| self.state_of(&b).cloned())
        };
        let target = chosen
            .or_else(|| retry.then(fallback).flatten())
            .ok_or(PickError::NoHealthyTarget)?;
        Ok(Pick {
            target: InFlight::start(target),
            permit,
        })
    }

    /// For a retry: the usable target, not yet failed, with the fewest requests in flight.
    fn retry_target(
        &self,
        failed: &[SocketAddr],
        usable: &impl Fn(&Backend, bool) -> bool,
    ) -> Option<Arc<TargetState>> {
        let view = self.balancer.backends();
        self.targets
            .iter()
            .filter(|t| t.config.addr.is_some())
            .filter(|t| !failed.contains(&t.backend.addr) && usable(&t.backend, view.ready(&t.backend)))
            .min_by_key(|t| t.in_flight())
            .cloned()
    }

    fn state_of(&self, backend: &Backend) -> Option<&Arc<TargetState>> {
        self.targets.iter().find(|t| t.backend.addr == backend.addr)
    }

    /// The outcome of one attempt, for passive health and the circuit breaker.
    pub fn record(&self, target: &TargetState, permit: Option<Permit>, success: bool) {
        target.record(success, self.config.passive_health.as_ref(), &self.name);
        if let Some(permit) = permit {
            permit.record(success);
        }
    }

    /// Whether an upstream answer with `status` counts as a failure.
    pub fn is_failure_status(&self, status: u16) -> bool {
        status >= 500 && self.circuit.as_ref().is_none_or(|c| c.counts_5xx())
    }

    /// The peer to dial for `target`, with the route's timeout if it has one.
    pub fn peer(&self, target: &TargetState, timeout: Option<Duration>) -> Box<HttpPeer> {
        let mut peer = Box::new(self.peer_template.clone());
        peer._address = target.backend.addr.clone();
        if let Some(t) = timeout {
            peer.options.read_timeout = Some(t);
            peer.options.write_timeout = Some(t);
        }
        peer
    }

    pub fn targets(&self) -> impl Iterator<Item = TargetStatus<'_>> {
        let view = self.balancer.backends();
        self.targets.iter().map(move |t| TargetStatus {
            target: t,
            healthy: t.config.addr.is_some() && view.ready(&t.backend),
            ejected: t.is_ejected(),
        })
    }

    /// Whether a target's name did not resolve (it waits out of service).
    pub fn has_unresolved(&self) -> bool {
        self.config.targets.iter().any(|t| t.addr.is_none())
    }

    /// `closed`, `open` or `half_open`; `None` without a circuit breaker.
    pub fn circuit_state(&self) -> Option<&'static str> {
        self.circuit.as_ref().map(|c| c.state())
    }

    pub fn health_schedule(&self) -> Option<&HealthSchedule> {
        self.health.as_deref()
    }

    /// One active check of every target; the supervisor calls this when it is due.
    pub async fn run_health_check(&self) {
        self.balancer.backends().run_health_check(true).await;
    }
}

// === impl Balancer ===

impl Balancer {
    fn select_with(&self, key: &[u8], accept: impl Fn(&Backend, bool) -> bool) -> Option<Backend> {
        match self {
            Balancer::RoundRobin(lb) => lb.select_with(key, MAX_SELECT_STEPS, accept),
            Balancer::Ketama(lb) => lb.select_with(key, MAX_SELECT_STEPS, accept),
            Balancer::LeastConn(lb) => lb.select_with(key, MAX_SELECT_STEPS, accept),
        }
    }

    fn backends(&self) -> &Backends {
        match self {
            Balancer::RoundRobin(lb) => lb.backends(),
            Balancer::Ketama(lb) => lb.backends(),
            Balancer::LeastConn(lb) => lb.backends(),
        }
    }
}

/// The peer every attempt starts from: TLS (SNI, verification, CAs) and HTTP version.
fn peer_template(addr: std::net::SocketAddr, config: &UpstreamConfig) -> Result<HttpPeer, String> {
    let tls = config.tls.as_ref();
    let mut peer = HttpPeer::new(addr, tls.is_some(), tls.map_or_else(String::new, |t| t.sni.clone()));
    if let Some(t) = tls {
        apply_tls(&mut peer, t)?;
    }
    if config.h2 {
        // Over TLS, ALPN may still settle on h1; in clear text, h2 means prior knowledge.
        let min = if tls.is_some() { 1 } else { 2 };
        peer.options.set_http_version(2, min);
        // Pingora's default is one stream per connection: a connection per concurrent call.
        peer.options.max_h2_streams = config.h2_streams;
    }
    Ok(peer)
}

/// Verification, trusted CAs and the gateway's own certificate (mTLS) of `tls` on `peer`;
/// read once per pool (at load), not per connection.
pub fn apply_tls(peer: &mut HttpPeer, tls: &UpstreamTls) -> Result<(), String> {
    peer.options.verify_cert = tls.verify;
    peer.options.verify_hostname = tls.verify;
    if let Some(ca) = &tls.ca_file {
        peer.options.ca = Some(Arc::new(load_ca(ca)?));
    }
    if let Some((cert, key)) = &tls.client_cert {
        let (chain, key) = crate::config::read_cert_key(cert, key)?;
        peer.client_cert_key = Some(Arc::new(pingora::utils::tls::CertKey::new(chain, key)));
    }
    Ok(())
}

/// A PEM bundle of trusted CA certificates.
pub fn load_ca(path: &str) -> Result<Box<[openssl::x509::X509]>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("ca_file \"{path}\": {e}"))?;
    let certs = openssl::x509::X509::stack_from_pem(&pem).map_err(|e| format!("ca_file \"{path}\": {e}"))?;
    Ok(certs.into_boxed_slice())
}

/// Health is a property of the address probed, whatever weight a config gives it.
fn address_key(backend: &Backend) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    backend.addr.hash(&mut hasher);
    hasher.finish()
}

/// A Pingora load balancer over the pool's static targets, its health in `registry`.
fn load_balancer<S>(
    registry: &Arc<HealthRegistry>,
    targets: &[Arc<TargetState>],
    selection_config: Option<S::Config>,
) -> Result<LoadBalancer<S>, String>
where
    S: BackendSelection + 'static,
    S::Iter: BackendIter,
{
    let set: BTreeSet<Backend> = targets
        .iter()
        .filter(|t| t.config.addr.is_some())
        .map(|t| t.backend.clone())
        .collect();
    let view = Backends::new_with_health_registry(Static::new(set), registry.clone());
    let balancer = LoadBalancer::from_backends_with_config(view, selection_config);
    // Static discovery answers at once; this fills the selector before the first request.
    futures::FutureExt::now_or_never(balancer.update())
        .ok_or("static discovery did not complete")?
        .map_err(|e| format!("cannot build the target set: {e}"))?;
    Ok(balancer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(upstream: &str) -> UpstreamPool {
        let yaml = format!("upstreams:\n  u: {upstream}\nroutes: [{{ prefix: /, upstream: u }}]\n");
        let config = crate::config::parse_yaml(&yaml, "test.yaml", &|_| None).expect("a valid config");
        UpstreamPool::build("u", &config.upstreams["u"], None).expect("a pool")
    }

    fn picked(pool: &UpstreamPool, failed: &[SocketAddr]) -> Result<SocketAddr, PickError> {
        pool.pick(&[], failed).map(|p| p.target.target().backend.addr.clone())
    }

    /// One attempt that picks a target and fails on it.
    fn fail_once(pool: &UpstreamPool) {
        let pick = pool.pick(&[], &[]).expect("a target to fail on");
        pool.record(pick.target.target(), pick.permit, false);
    }

    #[test]
    fn a_pool_of_one_picks_its_target_first_and_on_every_retry() {
        let p = pool("{ targets: [\"127.0.0.1:9\"] }");
        assert!(p.sole.is_some(), "one resolved target: the balancer is skipped");
        let only = picked(&p, &[]).expect("the target");
        assert_eq!(only.to_string(), "127.0.0.1:9");
        assert_eq!(
            picked(&p, std::slice::from_ref(&only)),
            Ok(only),
            "a failed sole target is retried"
        );
    }

    #[test]
    fn a_pool_of_one_counts_its_target_in_flight() {
        let p = pool("{ targets: [\"127.0.0.1:9\"] }");
        let first = p.pick(&[], &[]).expect("a pick");
        let second = p.pick(&[], &[]).expect("a pick");
        assert_eq!(first.target.target().in_flight(), 2);
        drop((first, second));
        assert_eq!(p.targets[0].in_flight(), 0);
    }

    #[test]
    fn an_ejected_sole_target_is_no_healthy_target() {
        let p = pool("{ targets: [\"127.0.0.1:9\"], passive_health: { failures: 2, eject_for: 1m } }");
        fail_once(&p);
        fail_once(&p);
        assert!(matches!(p.pick(&[], &[]), Err(PickError::NoHealthyTarget)));
    }

    #[test]
    fn a_sole_target_under_an_open_circuit_is_refused() {
        let p = pool("{ targets: [\"127.0.0.1:9\"], circuit_breaker: { failures: 1, open_for: 1m } }");
        fail_once(&p);
        assert!(matches!(p.pick(&[], &[]), Err(PickError::CircuitOpen)));
    }

    #[test]
    fn a_pool_of_several_keeps_the_balancer() {
        let two = pool("{ targets: [\"127.0.0.1:9\", \"127.0.0.1:10\"] }");
        assert!(two.sole.is_none());
        let seen: BTreeSet<String> = (0..4).map(|_| picked(&two, &[]).expect("a pick").to_string()).collect();
        assert_eq!(seen.len(), 2, "round robin over both: {seen:?}");
    }
}
