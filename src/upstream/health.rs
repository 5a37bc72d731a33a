//! Active HTTP health checks: how a probe is built, and when the next one is due.

use crate::config::model::{HealthCheckConfig, UpstreamTls};
use pingora::http::RequestHeader;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Host header of probes when the config names none.
const DEFAULT_PROBE_HOST: &str = "localhost";

/// A `GET path` probe that counts a target healthy after `healthy` consecutive 200s and
/// unhealthy after `unhealthy` consecutive failures (non-200, timeout, refused).
pub fn http_check(
    upstream: &str,
    hc: &HealthCheckConfig,
    tls: Option<&UpstreamTls>,
) -> Result<Box<dyn HealthCheck + Send + Sync>, String> {
    let host = hc.host.as_deref().unwrap_or(DEFAULT_PROBE_HOST);
    let mut check = HttpHealthCheck::new(host, tls.is_some());
    if let Some(t) = tls {
        check.peer_template.sni = t.sni.clone();
        super::apply_tls(&mut check.peer_template, t)?;
    }
    let mut req = RequestHeader::build("GET", hc.path.as_bytes(), None)
        .map_err(|e| format!("health_check.path \"{}\": {e}", hc.path))?;
    req.insert_header(http::header::HOST, host)
        .map_err(|e| format!("health_check.host \"{host}\": {e}"))?;
    req.insert_header(
        http::header::USER_AGENT,
        concat!("gatehouse-health/", env!("CARGO_PKG_VERSION")),
    )
    .map_err(|e| format!("health check user agent: {e}"))?;
    check.req = req;
    check.consecutive_success = hc.healthy;
    check.consecutive_failure = hc.unhealthy;
    check.peer_template.options.connection_timeout = Some(hc.timeout);
    check.peer_template.options.read_timeout = Some(hc.timeout);
    check.peer_template.options.write_timeout = Some(hc.timeout);
    let name = upstream.to_string();
    check.set_backend_summary(move |b| format!("upstream {name} target {}", b.addr));
    Ok(Box::new(check))
}

/// When a pool's next check is due. Lives in the pool, so it survives reloads with it.
pub struct HealthSchedule {
    interval: Duration,
    next_due: Mutex<Instant>,
    running: AtomicBool,
    /// Set once the first check of every target completed (readiness).
    checked: AtomicBool,
}

impl HealthSchedule {
    pub fn new(interval: Duration) -> Self {
        HealthSchedule {
            interval,
            next_due: Mutex::new(Instant::now()),
            running: AtomicBool::new(false),
            checked: AtomicBool::new(false),
        }
    }

    /// Claims the check if it is due and none is running; the caller must call
    /// [`Self::finish`] when done.
    pub fn claim(&self, now: Instant) -> bool {
        let due = self.next_due.lock().map(|next| now >= *next).unwrap_or(true);
        due && !self.running.swap(true, Ordering::AcqRel)
    }

    /// Schedules the next check one interval after this one ended.
    pub fn finish(&self) {
        if let Ok(mut next) = self.next_due.lock() {
            *next = Instant::now() + self.interval;
        }
        self.checked.store(true, Ordering::Release);
        self.running.store(false, Ordering::Release);
    }

    pub fn checked_once(&self) -> bool {
        self.checked.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_is_claimed_once_then_waits_an_interval() {
        let s = HealthSchedule::new(Duration::from_secs(60));
        let now = Instant::now();
        assert!(s.claim(now));
        assert!(!s.claim(now), "a running check is not claimed twice");
        s.finish();
        assert!(!s.claim(Instant::now()), "not due before the interval");
        assert!(s.claim(Instant::now() + Duration::from_secs(61)));
    }
}
