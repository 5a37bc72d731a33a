//! Per-target live state: requests in flight (for least_conn and the admin view) and
//! passive health (consecutive live failures → ejection for a while).

use crate::config::model::{PassiveHealthConfig, TargetConfig};
use pingora::lb::Backend;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub struct TargetState {
    pub config: TargetConfig,
    pub backend: Backend,
    /// `backend.addr` as text, for the access log: written once, not per request.
    pub addr_text: Box<str>,
    in_flight: AtomicUsize,
    consecutive_failures: AtomicU32,
    /// Milliseconds since `epoch` until which the target is ejected; 0 = not ejected.
    ejected_until_ms: AtomicU64,
    epoch: Instant,
}

impl TargetState {
    pub fn new(config: TargetConfig, backend: Backend, epoch: Instant) -> Self {
        TargetState {
            config,
            addr_text: backend.addr.to_string().into(),
            backend,
            in_flight: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            epoch,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// Records a live result; returns true when this failure ejected the target.
    pub fn record(&self, success: bool, passive: Option<&PassiveHealthConfig>, upstream: &str) -> bool {
        if success {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            return false;
        }
        let Some(passive) = passive else {
            return false;
        };
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < passive.failures || self.is_ejected() {
            return false;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let until = self.now_ms() + passive.eject_for.as_millis() as u64;
        self.ejected_until_ms.store(until, Ordering::Relaxed);
        log::warn!(
            "upstream {upstream} target {}: ejected for {:?} after {failures} consecutive failures",
            self.config.spec,
            passive.eject_for
        );
        true
    }
}

/// One request's hold on a target: counted in flight until dropped.
pub struct InFlight(Arc<TargetState>);

impl InFlight {
    pub fn start(target: Arc<TargetState>) -> Self {
        target.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(target)
    }

    pub fn target(&self) -> &Arc<TargetState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
