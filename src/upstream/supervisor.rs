//! The one background service that runs active health checks.
//!
//! Pingora services must exist before the server runs, so a pool created by a reload could
//! not get a background service of its own. Instead this service looks at whatever pools the
//! *current* snapshot holds, on a short tick, and starts each pool's check when it is due.
//! Checks run as separate tasks so that a slow target never delays another pool.

use crate::snapshot::SharedSnapshot;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::time::{Duration, Instant};

/// How often the supervisor looks for due checks; the finest useful check interval.
const TICK: Duration = Duration::from_millis(50);

pub struct HealthSupervisor {
    snapshot: SharedSnapshot,
}

impl HealthSupervisor {
    pub fn new(snapshot: SharedSnapshot) -> Self {
        HealthSupervisor { snapshot }
    }

    fn start_due_checks(&self) {
        let now = Instant::now();
        let snapshot = self.snapshot.load();
        for pool in snapshot.upstreams.values() {
            let Some(schedule) = pool.health_schedule() else {
                continue;
            };
            if schedule.claim(now) {
                let pool = pool.clone();
                tokio::spawn(async move {
                    pool.run_health_check().await;
                    if let Some(schedule) = pool.health_schedule() {
                        schedule.finish();
                    }
                });
            }
        }
    }
}

#[async_trait]
impl BackgroundService for HealthSupervisor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => self.start_due_checks(),
            }
        }
    }
}
