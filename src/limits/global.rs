//! Limits shared by every gatehouse node through Redis: the GCRA of `gcra.rs` as one Lua
//! script, so each decision is one atomic round trip, timed by Redis' own clock (the nodes'
//! clocks may disagree). Keys are `{prefix}:rl:{limit}:{key}`, so nodes with the same
//! prefix and route names share limits.
//!
//! The connection is made (and remade) off the request path, by the supervisor as soon as
//! a snapshot with a new store is live (at start and at reload). Until that first attempt
//! has settled, a decision waits for it (bounded by the connect timeout) instead of
//! falling to the policy: a fresh node enforces its limits from its first request. A
//! decision that Redis cannot answer within `timeout`, or while it is unreachable, follows
//! the limit's `on_redis_error` policy; each is counted (and marked in the access log),
//! and logged at most once per second.

use super::gcra::{Quota, Verdict};
use crate::config::model::RedisConfig;
use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;
use redis::Script;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const GCRA_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission
if new_tat - now > period then
  return {0, 0, tat - now, new_tat - now - period}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((period - (new_tat - now)) / emission), new_tat - now, 0}
"#;

/// How long to wait between two connection attempts to an unreachable Redis.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// How long one connection attempt may take; also the longest a decision waits for the
/// first attempt of a new store.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The Redis every global limit of a snapshot uses (carried over reloads when unchanged).
pub struct RedisStore {
    pub config: RedisConfig,
    client: redis::Client,
    conn: ArcSwapOption<ConnectionManager>,
    connecting: AtomicBool,
    epoch: Instant,
    last_attempt_ms: AtomicU64,
    last_error_log_ms: AtomicU64,
    script: Script,
    /// Set once the first connection attempt has succeeded or failed; `settled` wakes
    /// the decisions that waited for it.
    first_attempt_done: AtomicBool,
    settled: Notify,
    /// Decisions made by policy because Redis could not answer: allowed, denied.
    pub policy_allowed: AtomicU64,
    pub policy_denied: AtomicU64,
}

impl RedisStore {
    pub fn new(config: &RedisConfig) -> Result<Self, String> {
        let client = redis::Client::open(config.url.as_str()).map_err(|e| format!("redis.url: {e}"))?;
        Ok(RedisStore {
            config: config.clone(),
            client,
            conn: ArcSwapOption::empty(),
            connecting: AtomicBool::new(false),
            epoch: Instant::now(),
            last_attempt_ms: AtomicU64::new(0),
            last_error_log_ms: AtomicU64::new(0),
            script: Script::new(GCRA_SCRIPT),
            first_attempt_done: AtomicBool::new(false),
            settled: Notify::new(),
            policy_allowed: AtomicU64::new(0),
            policy_denied: AtomicU64::new(0),
        })
    }

    /// Whether a connection is up (readiness, doctor).
    pub fn is_connected(&self) -> bool {
        self.conn.load().is_some()
    }

    /// Whether the first connection attempt has ended, either way.
    pub fn first_attempt_done(&self) -> bool {
        self.first_attempt_done.load(Ordering::Acquire)
    }

    /// Decisions taken by `on_redis_error` so far.
    pub fn policy_decisions(&self) -> u64 {
        self.policy_allowed.load(Ordering::Relaxed) + self.policy_denied.load(Ordering::Relaxed)
    }

    /// Counts one decision taken by policy.
    pub fn record_policy(&self, allowed: bool) {
        let counter = if allowed {
            &self.policy_allowed
        } else {
            &self.policy_denied
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Starts connecting in the background unless connected, connecting, or tried < 1s ago.
    pub fn ensure_connected(self: &Arc<Self>) {
        if self.conn.load().is_some() {
            return;
        }
        let now = self.now_ms();
        if now.saturating_sub(self.last_attempt_ms.load(Ordering::Relaxed)) < RECONNECT_EVERY.as_millis() as u64 {
            return;
        }
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        self.last_attempt_ms.store(now, Ordering::Relaxed);
        let store = self.clone();
        tokio::spawn(async move {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(CONNECT_TIMEOUT)
                .set_response_timeout(CONNECT_TIMEOUT)
                .set_number_of_retries(1);
            match ConnectionManager::new_with_config(store.client.clone(), config).await {
                Ok(conn) => {
                    log::info!("redis {}: connected", store.config.url);
                    store.conn.store(Some(Arc::new(conn)));
                }
                Err(e) => store.log_error(&format!("cannot connect: {e}")),
            }
            store.connecting.store(false, Ordering::Release);
            store.first_attempt_done.store(true, Ordering::Release);
            store.settled.notify_waiters();
        });
    }

    /// One global decision: `Some(verdict)`, or `None` when Redis could not answer in time.
    pub async fn check(self: &Arc<Self>, key: &str, quota: &Quota) -> Option<Verdict> {
        let conn = match self.conn.load_full() {
            Some(conn) => conn,
            None => self.first_connection().await?,
        };
        let mut conn = (*conn).clone();
        let mut invocation = self.script.key(key);
        invocation.arg(quota.emission_us).arg(quota.period_us);
        let reply: Result<Result<(u8, u64, u64, u64), _>, _> =
            tokio::time::timeout(self.config.timeout, invocation.invoke_async(&mut conn)).await;
        match reply {
            Ok(Ok((allowed, remaining, reset_us, retry_after_us))) => Some(Verdict {
                allowed: allowed == 1,
                remaining,
                reset_us,
                retry_after_us,
            }),
            Ok(Err(e)) => {
                self.failed(&format!("script failed: {e}"));
                None
            }
            Err(_) => {
                self.failed(&format!("no answer within {:?}", self.config.timeout));
                None
            }
        }
    }

    /// The connection of a store that has none: the first attempt's, waited for when it
    /// is still under way; `None` once an attempt has failed (the policy decides).
    async fn first_connection(self: &Arc<Self>) -> Option<Arc<ConnectionManager>> {
        self.ensure_connected();
        if !self.first_attempt_done() {
            let settled = self.settled.notified();
            // Registered before looking again: a wake-up between the two is not lost.
            if !self.first_attempt_done() {
                let _ = tokio::time::timeout(CONNECT_TIMEOUT, settled).await;
            }
        }
        let conn = self.conn.load_full();
        if conn.is_none() {
            self.log_error("not connected");
        }
        conn
    }

    fn failed(&self, what: &str) {
        self.log_error(what);
    }

    /// Logs at most once a second: a Redis outage must not flood the log.
    fn log_error(&self, what: &str) {
        let now = self.now_ms();
        let last = self.last_error_log_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .last_error_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log::warn!(
                "redis {}: {what}; rate-limit decisions follow on_redis_error ({} so far)",
                self.config.url,
                self.policy_decisions()
            );
        }
    }
}

/// What a one-off check of a Redis finds (`gatehouse doctor`).
pub struct Probe {
    /// Redis' clock minus this host's, in milliseconds (decisions use Redis' clock; a big
    /// skew only matters to people reading both).
    pub skew_ms: i64,
}

/// Connects to `config.url`, loads the limit script and reads Redis' clock: what the first
/// global decision will need, checked before serving.
pub async fn probe(config: &RedisConfig) -> Result<Probe, String> {
    let client = redis::Client::open(config.url.as_str()).map_err(|e| format!("redis.url: {e}"))?;
    let connect = client.get_multiplexed_async_connection();
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot connect: {e}"))?;
    let script = Script::new(GCRA_SCRIPT);
    let _: String = script
        .prepare_invoke()
        .load_async(&mut conn)
        .await
        .map_err(|e| format!("the rate-limit script does not load: {e}"))?;
    let (secs, micros): (i64, i64) = redis::cmd("TIME")
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("TIME failed: {e}"))?;
    let ours = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Ok(Probe {
        skew_ms: secs * 1000 + micros / 1000 - ours,
    })
}
