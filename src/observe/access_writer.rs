//! Access-log lines leave the request path through a bounded queue: a request formats its
//! line into its thread's reused buffer and queues a copy; one writer thread writes the
//! queued lines to stderr in batches (one `write` for many lines, gathered for up to 10 ms
//! while lines keep coming, so a busy gateway does not wake it per line). A full queue (stderr
//! blocked, a slow pipe) drops the line and counts it in
//! `gateway_access_log_dropped_total` instead of stalling requests.
//!
//! Through `env_logger`, a line cost ≈ 8,000 instructions of formatting, escape-stripping
//! and a locked write per request; this path costs a copy and a queue slot.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Lines the queue holds before it drops (about 20 MB of typical lines).
const QUEUE_LINES: usize = 65_536;
/// Bytes gathered before a write when more lines keep coming.
const BATCH_BYTES: usize = 64 * 1024;
/// How long the writer lets lines gather while they keep coming: a line waits at most
/// this long, and the queue takes ≈ 65,000 lines, so up to 6 M lines a second fit.
const GATHER: Duration = Duration::from_millis(10);
/// Longest [`drain`] waits for the queued lines at exit.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

struct Queue {
    lines: SyncSender<Vec<u8>>,
}

static QUEUE: OnceLock<Option<Queue>> = OnceLock::new();
/// Lines queued and lines written: equal when the writer has caught up.
static QUEUED: AtomicU64 = AtomicU64::new(0);
static WRITTEN: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Counts drops in the process's metrics, once they exist.
static DROPPED_METRIC: OnceLock<prometheus::IntCounter> = OnceLock::new();

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// Writes the line `format` puts in the buffer, and a newline.
pub fn write(format: impl FnOnce(&mut Vec<u8>)) {
    LINE.with_borrow_mut(|buf| {
        buf.clear();
        format(buf);
        buf.push(b'\n');
        let Some(queue) = QUEUE.get_or_init(start) else {
            let _ = std::io::stderr().lock().write_all(buf);
            return;
        };
        match queue.lines.try_send(buf.clone()) {
            Ok(()) => {
                QUEUED.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                if DROPPED.fetch_add(1, Ordering::Relaxed) == 0 {
                    log::warn!("access log queue full (stderr is not keeping up): lines are dropped and counted in gateway_access_log_dropped_total");
                }
                if let Some(counter) = DROPPED_METRIC.get() {
                    counter.inc();
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                let _ = std::io::stderr().lock().write_all(buf);
            }
        }
    });
}

/// The queue and its writer thread, started by the first line: in the process that
/// serves, after Pingora's daemon mode has forked (a thread does not survive a fork).
/// `None` when the thread cannot be started: lines are then written directly.
fn start() -> Option<Queue> {
    let (lines, queue) = sync_channel(QUEUE_LINES);
    let spawned = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || write_batches(&queue));
    match spawned {
        Ok(_) => Some(Queue { lines }),
        Err(e) => {
            log::error!("access log writer thread not started, lines are written directly: {e}");
            None
        }
    }
}

/// Counts dropped lines in `counter` from now on.
pub fn count_drops_in(counter: prometheus::IntCounter) {
    counter.inc_by(DROPPED.load(Ordering::Relaxed));
    let _ = DROPPED_METRIC.set(counter);
}

/// Waits (a little) until every queued line is written: called before the process exits.
pub fn drain() {
    let until = Instant::now() + DRAIN_WAIT;
    while WRITTEN.load(Ordering::Acquire) < QUEUED.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Writes the queued lines until the queue closes. While lines keep coming, the writer
/// sleeps [`GATHER`] between batches instead of waiting on the queue: a sender wakes a
/// waiting receiver (a futex call, and on a busy core a switch to this thread) for each
/// line, which cost more than the line itself (2 futex calls and a `write` per request,
/// ≈ 20 µs of CPU, under wrk). Only a line after a quiet spell wakes it.
fn write_batches(queue: &Receiver<Vec<u8>>) {
    let mut batch = Vec::with_capacity(BATCH_BYTES * 2);
    // Quiet: wait for a line.
    while let Ok(first) = queue.recv() {
        batch.extend_from_slice(&first);
        let mut lines = 1;
        loop {
            while let Ok(line) = queue.try_recv() {
                batch.extend_from_slice(&line);
                lines += 1;
                if batch.len() >= BATCH_BYTES {
                    write_out(&mut batch, &mut lines);
                }
            }
            if lines == 0 {
                break;
            }
            write_out(&mut batch, &mut lines);
            // Busy: let lines gather without anyone waiting on the queue.
            std::thread::sleep(GATHER);
        }
    }
}

/// Whole lines in one locked write: other log records never land mid-line.
fn write_out(batch: &mut Vec<u8>, lines: &mut u64) {
    let _ = std::io::stderr().lock().write_all(batch);
    batch.clear();
    WRITTEN.fetch_add(*lines, Ordering::Release);
    *lines = 0;
}
