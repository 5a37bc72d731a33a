//! Limits counted in this process: one GCRA bucket per key, in a bounded TinyUFO cache
//! (pingora-memory-cache) so that a flood of distinct keys cannot grow memory without bound;
//! a key evicted for a while simply starts again with a full bucket.

use super::gcra::{Quota, Verdict};
use pingora_memory_cache::MemoryCache;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Keys tracked per limit.
const KEYS: usize = 100_000;

pub struct LocalLimiter {
    quota: Quota,
    epoch: Instant,
    buckets: MemoryCache<String, Arc<AtomicU64>>,
}

impl LocalLimiter {
    pub fn new(quota: Quota) -> Self {
        LocalLimiter {
            quota,
            epoch: Instant::now(),
            buckets: MemoryCache::new(KEYS),
        }
    }

    /// Counts one request under `key` at `now` (the caller's clock reading: the request's
    /// start is microseconds old here; reading the clock again costs ≈ 90 instructions).
    pub fn check(&self, key: &str, now: Instant) -> Verdict {
        let now = now.saturating_duration_since(self.epoch).as_micros() as u64 + 1;
        let bucket = match self.buckets.get(key) {
            (Some(b), _) => b,
            (None, _) => {
                let fresh = Arc::new(AtomicU64::new(0));
                self.buckets.put(key, fresh.clone(), None);
                fresh
            }
        };
        let mut tat = bucket.load(Ordering::Acquire);
        loop {
            let (verdict, next) = self.quota.decide(tat, now);
            if next == tat {
                return verdict;
            }
            match bucket.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return verdict,
                Err(current) => tat = current,
            }
        }
    }
}
