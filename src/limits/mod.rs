//! Rate limits: exact GCRA token buckets, counted in this process (`local`) or shared by
//! every node through Redis (`global`). The request step is `filters/rate_limit.rs`.

pub mod gcra;
pub mod global;
pub mod local;

use crate::config::model::{RateKey, RateLimitConfig, RateScope};
use gcra::{Quota, Verdict};
use global::RedisStore;
use http::HeaderValue;
use local::LocalLimiter;
use std::sync::Arc;

/// One configured limit, ready to decide.
pub struct RateLimit {
    /// Name in keys and logs: the route name, or `*` for the global limit.
    pub name: String,
    pub config: RateLimitConfig,
    /// `config.requests` as the RateLimit-Limit value, written once.
    limit_value: HeaderValue,
    quota: Quota,
    counter: Counter,
}

enum Counter {
    Local(Box<LocalLimiter>),
    Global { store: Arc<RedisStore>, prefix: String },
}

/// A decision, with what the RateLimit-* headers report.
#[derive(Debug, Clone)]
pub struct Decision {
    pub allowed: bool,
    /// The limit (requests per window) as a header value: the limit's own, shared, so that
    /// no text is made per request.
    pub limit_value: HeaderValue,
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds to wait before retrying, when refused.
    pub retry_after_secs: u64,
    /// Taken by `on_redis_error` (Redis could not answer): nothing was counted, so no
    /// RateLimit-* header may claim a bucket state.
    pub by_policy: bool,
}

impl RateLimit {
    /// `store` is required for `scope: global` (validation made sure one is configured).
    pub fn new(name: &str, config: &RateLimitConfig, store: Option<&Arc<RedisStore>>) -> Result<Self, String> {
        let quota = Quota::new(config.requests, config.per);
        let counter = match config.scope {
            RateScope::Local => Counter::Local(Box::new(LocalLimiter::new(quota))),
            RateScope::Global => {
                let store = store.ok_or("scope: global needs redis configured")?.clone();
                let prefix = format!("{}:rl:{name}:", store.config.key_prefix);
                Counter::Global { store, prefix }
            }
        };
        Ok(RateLimit {
            name: name.to_string(),
            config: config.clone(),
            limit_value: HeaderValue::from(config.requests),
            quota,
            counter,
        })
    }

    /// Whether this limit counts where a new one with `redis` would (same process, or the
    /// same Redis store).
    pub fn counts_in(&self, redis: Option<&Arc<RedisStore>>) -> bool {
        match &self.counter {
            Counter::Local(_) => true,
            Counter::Global { store, .. } => redis.is_some_and(|r| Arc::ptr_eq(r, store)),
        }
    }

    pub fn key_kind(&self) -> &RateKey {
        &self.config.key
    }

    /// Decides for `key` (the value of the configured key: address, consumer, ...).
    /// Counts one request under `key`; `now` is when it arrived (local limits count from it).
    pub async fn check(&self, key: &str, now: std::time::Instant) -> Decision {
        let verdict = match &self.counter {
            Counter::Local(limiter) => limiter.check(key, now),
            Counter::Global { store, prefix } => {
                let full_key = format!("{prefix}{key}");
                match store.check(&full_key, &self.quota).await {
                    Some(v) => v,
                    None => {
                        let decision = self.redis_unavailable();
                        store.record_policy(decision.allowed);
                        return decision;
                    }
                }
            }
        };
        self.decision(verdict)
    }

    fn decision(&self, v: Verdict) -> Decision {
        Decision {
            allowed: v.allowed,
            limit_value: self.limit_value.clone(),
            remaining: v.remaining,
            reset_secs: v.reset_us.div_ceil(1_000_000),
            retry_after_secs: v.retry_after_us.div_ceil(1_000_000).max(u64::from(!v.allowed)),
            by_policy: false,
        }
    }

    /// What `on_redis_error` says when Redis could not decide.
    fn redis_unavailable(&self) -> Decision {
        let allowed = !self.config.deny_on_redis_error;
        Decision {
            allowed,
            limit_value: self.limit_value.clone(),
            remaining: 0,
            reset_secs: 0,
            retry_after_secs: u64::from(!allowed),
            by_policy: true,
        }
    }
}
