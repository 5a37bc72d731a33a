//! The one background service that keeps the snapshot's live parts fresh: active health
//! checks of upstream pools, JWKS refreshes, the Redis connection of global rate limits.
//!
//! Pingora services must exist before the server runs, so a pool or key set created by a
//! reload could not get a background service of its own. Instead this service looks at
//! whatever the *current* snapshot holds, on a short tick, and starts each job when it is
//! due. Jobs run as separate tasks so that a slow target or IdP never delays another.

use crate::snapshot::SharedSnapshot;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::time::{Duration, Instant};

/// How often the supervisor looks for due jobs; the finest useful check interval.
const TICK: Duration = Duration::from_millis(50);

pub struct Supervisor {
    snapshot: SharedSnapshot,
}

impl Supervisor {
    pub fn new(snapshot: SharedSnapshot) -> Self {
        Supervisor { snapshot }
    }

    fn start_due_jobs(&self) {
        let now = Instant::now();
        let snapshot = self.snapshot.load();
        for pool in snapshot.upstreams.values() {
            if pool.health_schedule().is_some_and(|s| s.claim(now)) {
                let pool = pool.clone();
                tokio::spawn(async move {
                    pool.run_health_check().await;
                    if let Some(schedule) = pool.health_schedule() {
                        schedule.finish();
                    }
                });
            }
        }
        // Connects (and reconnects) off the request path, at most once a second.
        if let Some(redis) = &snapshot.redis {
            redis.ensure_connected();
        }
        if let Some(jwks) = snapshot.edge.jwks.as_ref().filter(|j| j.claim_refresh(now)) {
            let jwks = jwks.clone();
            tokio::spawn(async move { jwks.refresh().await });
        }
    }
}

#[async_trait]
impl BackgroundService for Supervisor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => self.start_due_jobs(),
            }
        }
    }
}
