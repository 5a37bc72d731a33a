//! Upstream pools: targets, weighted selection, health, and the peer each request dials.
//!
//! A pool wraps Pingora's `LoadBalancer<RoundRobin>` (weighted round robin over a static
//! target set) and keeps the `HttpPeer` template built once from config (timeouts,
//! keepalive). Active health checks are not scheduled by the pool itself but by the one
//! [`crate::supervisor::Supervisor`], which checks whatever pools the current snapshot holds.

mod health;

use crate::config::model::{TargetConfig, UpstreamConfig};
use pingora::lb::discovery::Static;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr;
use pingora::upstreams::peer::HttpPeer;
use std::collections::BTreeSet;
use std::time::Duration;

pub use health::HealthSchedule;

/// Bound on how many candidates one selection looks at before giving up.
const MAX_SELECT_STEPS: usize = 256;

/// A named pool of targets, shared by the routes that use it and, when its config is
/// unchanged, carried over from one snapshot to the next (with its health state).
pub struct UpstreamPool {
    pub name: String,
    pub config: UpstreamConfig,
    balancer: LoadBalancer<RoundRobin>,
    /// Same order as `config.targets`, for health reporting.
    backends: Vec<Backend>,
    peer_template: HttpPeer,
    health: Option<HealthSchedule>,
}

/// One target's state, for `/health` and logs.
pub struct TargetStatus<'a> {
    pub target: &'a TargetConfig,
    pub healthy: bool,
}

// === impl UpstreamPool ===

impl UpstreamPool {
    pub fn build(name: &str, config: &UpstreamConfig) -> Result<Self, String> {
        let backends: Vec<Backend> = config
            .targets
            .iter()
            .map(|t| Backend {
                addr: SocketAddr::Inet(t.addr),
                weight: t.weight as usize,
                ext: Default::default(),
            })
            .collect();
        let first = config.targets.first().ok_or("at least one target is required")?;
        let mut view = Backends::new(Static::new(backends.iter().cloned().collect::<BTreeSet<_>>()));
        let health = match &config.health_check {
            Some(hc) => {
                view.set_health_check(health::http_check(name, hc)?);
                Some(HealthSchedule::new(hc.interval))
            }
            None => None,
        };
        let balancer = LoadBalancer::from_backends(view);
        // Static discovery answers at once; this fills the selector before the first request.
        futures::FutureExt::now_or_never(balancer.update())
            .ok_or("static discovery did not complete")?
            .map_err(|e| format!("cannot build the target set: {e}"))?;

        let mut peer_template = HttpPeer::new(first.addr, false, String::new());
        peer_template.options.connection_timeout = Some(config.connect_timeout);
        peer_template.options.read_timeout = Some(config.timeout);
        peer_template.options.write_timeout = Some(config.timeout);
        peer_template.options.idle_timeout = Some(config.keepalive_timeout);
        Ok(UpstreamPool {
            name: name.to_string(),
            config: config.clone(),
            balancer,
            backends,
            peer_template,
            health,
        })
    }

    /// Next healthy target by weighted round robin, avoiding `failed` (targets this request
    /// already tried) when another healthy one exists.
    pub fn select(&self, failed: &[SocketAddr]) -> Option<Backend> {
        if failed.is_empty() {
            return self.balancer.select(b"", MAX_SELECT_STEPS);
        }
        self.balancer
            .select_with(b"", MAX_SELECT_STEPS, |b, healthy| healthy && !failed.contains(&b.addr))
            .or_else(|| self.balancer.select(b"", MAX_SELECT_STEPS))
    }

    /// The peer to dial for `backend`, with the route's timeout if it has one.
    pub fn peer(&self, backend: &Backend, timeout: Option<Duration>) -> Box<HttpPeer> {
        let mut peer = Box::new(self.peer_template.clone());
        peer._address = backend.addr.clone();
        if let Some(t) = timeout {
            peer.options.read_timeout = Some(t);
            peer.options.write_timeout = Some(t);
        }
        peer
    }

    pub fn targets(&self) -> impl Iterator<Item = TargetStatus<'_>> {
        let view = self.balancer.backends();
        self.config
            .targets
            .iter()
            .zip(&self.backends)
            .map(move |(target, backend)| TargetStatus {
                target,
                healthy: view.ready(backend),
            })
    }

    pub fn health_schedule(&self) -> Option<&HealthSchedule> {
        self.health.as_ref()
    }

    /// One active check of every target; the supervisor calls this when it is due.
    pub async fn run_health_check(&self) {
        self.balancer.backends().run_health_check(true).await;
    }
}
