//! The circuit breaker of one upstream, lock-free: closed → open after `failures`
//! consecutive failures → after `open_for`, half-open lets `half_open_requests` probes
//! through → closed when a probe succeeds, open again when one fails. While open, requests
//! are refused (503) without touching the upstream.

use crate::config::model::CircuitBreakerConfig;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

pub struct CircuitBreaker {
    upstream: String,
    config: CircuitBreakerConfig,
    state: AtomicU8,
    failures: AtomicU32,
    opened_at_ms: AtomicU64,
    probes: AtomicU32,
    epoch: Instant,
}

/// Leave to send one request. A probe that ends without a recorded result (the client
/// went away) gives its slot back.
pub struct Permit {
    breaker: Arc<CircuitBreaker>,
    probe: bool,
    settled: bool,
}

impl CircuitBreaker {
    pub fn new(upstream: &str, config: &CircuitBreakerConfig) -> Self {
        CircuitBreaker {
            upstream: upstream.to_string(),
            config: config.clone(),
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            opened_at_ms: AtomicU64::new(0),
            probes: AtomicU32::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn state(&self) -> &'static str {
        match self.state.load(Ordering::Acquire) {
            CLOSED => "closed",
            OPEN => "open",
            _ => "half_open",
        }
    }

    /// `None` while open (or half-open with every probe slot taken).
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let permit = |probe| Permit {
            breaker: self.clone(),
            probe,
            settled: false,
        };
        match self.state.load(Ordering::Acquire) {
            CLOSED => return Some(permit(false)),
            OPEN => {
                let waited = self.now_ms().saturating_sub(self.opened_at_ms.load(Ordering::Acquire));
                if waited < self.config.open_for.as_millis() as u64 {
                    return None;
                }
                if self
                    .state
                    .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.probes.store(0, Ordering::Release);
                    log::info!("upstream {}: circuit half-open, probing", self.upstream);
                }
            }
            _ => {}
        }
        if self.state.load(Ordering::Acquire) != HALF_OPEN {
            // Closed again meanwhile (a probe succeeded) or reopened.
            return (self.state.load(Ordering::Acquire) == CLOSED).then(|| permit(false));
        }
        if self.probes.fetch_add(1, Ordering::AcqRel) < self.config.half_open_requests {
            Some(permit(true))
        } else {
            self.probes.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }

    fn record(&self, probe: bool, success: bool) {
        if probe {
            self.probes.fetch_sub(1, Ordering::AcqRel);
        }
        let state = self.state.load(Ordering::Acquire);
        match (success, state) {
            (true, HALF_OPEN) => {
                if self
                    .state
                    .compare_exchange(HALF_OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.failures.store(0, Ordering::Release);
                    log::info!("upstream {}: circuit closed, the probe succeeded", self.upstream);
                }
            }
            (true, _) => self.failures.store(0, Ordering::Release),
            (false, HALF_OPEN) => self.open("a probe failed"),
            (false, CLOSED) => {
                let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
                if failures >= self.config.failures {
                    self.open("consecutive failures");
                }
            }
            (false, _) => {}
        }
    }

    fn open(&self, why: &str) {
        let previous = self.state.swap(OPEN, Ordering::AcqRel);
        self.opened_at_ms.store(self.now_ms(), Ordering::Release);
        self.failures.store(0, Ordering::Release);
        if previous != OPEN {
            log::warn!(
                "upstream {}: circuit open for {:?} ({why})",
                self.upstream,
                self.config.open_for
            );
        }
    }

    pub fn counts_5xx(&self) -> bool {
        self.config.count_5xx
    }
}

impl Permit {
    pub fn record(mut self, success: bool) {
        self.settled = true;
        self.breaker.record(self.probe, success);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            self.breaker.probes.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn breaker(open_for_ms: u64) -> Arc<CircuitBreaker> {
        Arc::new(CircuitBreaker::new(
            "u",
            &CircuitBreakerConfig {
                failures: 3,
                open_for: Duration::from_millis(open_for_ms),
                half_open_requests: 1,
                count_5xx: true,
            },
        ))
    }

    #[test]
    fn opens_after_consecutive_failures_and_closes_after_a_good_probe() {
        let b = breaker(0);
        for _ in 0..2 {
            b.try_acquire().unwrap().record(false);
        }
        b.try_acquire().unwrap().record(true);
        assert_eq!(b.state(), "closed", "a success resets the count");
        for _ in 0..3 {
            b.try_acquire().unwrap().record(false);
        }
        assert_eq!(b.state(), "open");
        let probe = b.try_acquire().expect("open_for 0: half-open at once");
        assert_eq!(b.state(), "half_open");
        assert!(b.try_acquire().is_none(), "one probe at a time");
        probe.record(true);
        assert_eq!(b.state(), "closed");
    }

    #[test]
    fn stays_open_for_its_time_and_reopens_on_a_failed_probe() {
        let b = breaker(60_000);
        for _ in 0..3 {
            b.try_acquire().unwrap().record(false);
        }
        assert!(b.try_acquire().is_none());
        let b = breaker(0);
        for _ in 0..3 {
            b.try_acquire().unwrap().record(false);
        }
        b.try_acquire().unwrap().record(false);
        assert_eq!(b.state(), "open");
        // An abandoned probe gives its slot back.
        drop(b.try_acquire().unwrap());
        assert!(b.try_acquire().is_some());
    }
}
