// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! gatehouse patch: the keep-alive pool of a [TransportConnector](super::TransportConnector).
//!
//! An idle connection waits in the pool itself, with nothing running for it. Before, each
//! release spawned a task that held the connection locked and watched it (read readiness,
//! idle timer, eviction and reuse signals), and each reuse signalled that task and waited
//! for it to let go: a task, a timer, a channel and a lock handed over per request.
//!
//! What the watcher did is done here in two places:
//! - on reuse, the connection taken is checked (idle timeout, closed or unexpected data)
//!   and, if it fails, dropped and the next one tried;
//! - one sweeper per pool checks every idle connection once a [`SWEEP_EVERY`], so that a
//!   connection past its idle timeout or closed by the server is closed within that
//!   interval, as before, even when it is never asked for again.
//!
//! The pool keeps at most `capacity` connections; past it, a release gives up the oldest
//! idle connection of the same server, else the oldest of all.

use super::{test_reusable_stream, PoolCallback};
use crate::protocols::Stream;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the sweeper checks idle connections: the most an idle connection outlives
/// its timeout, or a close by the server, when nothing asks for it.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A connection waiting for reuse.
pub(crate) struct Idle {
    pub(crate) stream: Stream,
    since: Instant,
    deadline: Option<Instant>,
}

impl Idle {
    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|deadline| now >= deadline)
    }
}

#[derive(Default)]
struct Groups {
    /// Idle connections per reuse key (`Peer::reuse_hash`), oldest first.
    by_key: HashMap<u64, VecDeque<Idle>, ahash::RandomState>,
    count: usize,
}

pub(crate) struct IdlePool {
    groups: Mutex<Groups>,
    capacity: usize,
    sweeping: AtomicBool,
    unexpected_data: Arc<AtomicU64>,
    callback: Option<PoolCallback>,
}

impl IdlePool {
    pub(crate) fn new(
        capacity: usize,
        unexpected_data: Arc<AtomicU64>,
        callback: Option<PoolCallback>,
    ) -> Self {
        IdlePool {
            groups: Mutex::new(Groups::default()),
            capacity,
            sweeping: AtomicBool::new(false),
            unexpected_data,
            callback,
        }
    }

    /// Keeps `stream` (already tested reusable) for reuse under `key` until `idle_timeout`.
    pub(crate) fn put(self: &Arc<Self>, key: u64, stream: Stream, idle_timeout: Option<Duration>) {
        if self.capacity == 0 {
            return;
        }
        self.start_sweeper();
        let since = Instant::now();
        let idle = Idle {
            stream,
            since,
            deadline: idle_timeout.and_then(|t| since.checked_add(t)),
        };
        let given_up = {
            let mut groups = self.groups.lock();
            let given_up = if groups.count >= self.capacity {
                groups.take_oldest(key)
            } else {
                None
            };
            groups.by_key.entry(key).or_default().push_back(idle);
            groups.count += 1;
            given_up
        };
        // Closed outside the lock: dropping a stream closes its socket.
        if let Some(idle) = given_up {
            self.given_up(idle);
        }
    }

    /// The most recently released connection under `key`, not yet checked: the caller
    /// checks it with [`IdlePool::usable`].
    pub(crate) fn take(&self, key: u64) -> Option<Idle> {
        let mut groups = self.groups.lock();
        let idle = groups.by_key.get_mut(&key)?.pop_back()?;
        groups.count -= 1;
        Some(idle)
    }

    /// Whether `idle`, just taken, may carry a request: not past its idle timeout, not
    /// closed by the server, nothing unexpected to read. One that may not is dropped.
    pub(crate) fn usable(&self, idle: &mut Idle, now: Instant) -> bool {
        let usable =
            !idle.expired(now) && test_reusable_stream(&mut idle.stream, &self.unexpected_data);
        if !usable {
            if let Some(callback) = &self.callback {
                callback(idle.since.elapsed());
            }
        }
        usable
    }

    fn given_up(&self, idle: Idle) {
        if let Some(callback) = &self.callback {
            callback(idle.since.elapsed());
        }
    }

    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeping.load(Ordering::Relaxed)
            || self
                .sweeping
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let pool = Arc::downgrade(self);
        pingora_runtime::current_handle().spawn(sweep_while_alive(pool));
    }

    /// Closes the idle connections past their timeout or no longer reusable.
    fn sweep(&self, now: Instant) {
        let mut gone = Vec::new();
        {
            let mut groups = self.groups.lock();
            let Groups { by_key, count } = &mut *groups;
            for queue in by_key.values_mut() {
                // One turn of the queue keeps the survivors in their order.
                for _ in 0..queue.len() {
                    let Some(mut idle) = queue.pop_front() else {
                        break;
                    };
                    if idle.expired(now)
                        || !test_reusable_stream(&mut idle.stream, &self.unexpected_data)
                    {
                        gone.push(idle);
                    } else {
                        queue.push_back(idle);
                    }
                }
            }
            *count -= gone.len();
            by_key.retain(|_, queue| !queue.is_empty());
        }
        for idle in gone {
            self.given_up(idle);
        }
    }
}

impl Groups {
    /// Makes room: the oldest idle connection under `key`, else the oldest of all.
    fn take_oldest(&mut self, key: u64) -> Option<Idle> {
        let from = match self.by_key.get(&key) {
            Some(queue) if !queue.is_empty() => key,
            _ => self
                .by_key
                .iter()
                .filter_map(|(k, queue)| queue.front().map(|idle| (idle.since, *k)))
                .min()
                .map(|(_, k)| k)?,
        };
        let idle = self.by_key.get_mut(&from)?.pop_front()?;
        self.count -= 1;
        Some(idle)
    }
}

async fn sweep_while_alive(pool: Weak<IdlePool>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.sweep(Instant::now());
    }
}
