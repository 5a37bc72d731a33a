//! Every log line leaves the request path through a bounded buffer: access-log lines and
//! the other records (`Fail to proxy …` for each request a dead upstream fails) alike. A
//! line is formatted into its thread's reused buffer and appended to the shared pending
//! bytes (a lock held for one copy); one writer thread takes all the pending bytes at once
//! and writes them to stderr in one `write`, then lets lines gather for up to 10 ms while
//! they keep coming, so a busy gateway does not wake it per line. Past [`PENDING_BYTES`]
//! (stderr blocked, a slow pipe) a line is dropped and counted in
//! `gateway_access_log_dropped_total` instead of stalling requests.
//!
//! The writer runs once [`start`] is called, in the process that serves (after Pingora's
//! daemon fork: a thread does not survive a fork) and after its bootstrap, whose failure
//! ends the process at once. Until then, and on the writer's own thread, lines are
//! written directly.
//!
//! Through `env_logger`, an access line cost ≈ 8,000 instructions of formatting,
//! escape-stripping and a locked write per request. A queue of one `Vec` per line cost an
//! allocation, a channel slot and a free on the writer's thread; this path costs a copy.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Bytes of lines waiting for the writer before lines are dropped (≈ 25,000 typical lines,
/// about a second of a busy gateway's traffic with stderr blocked).
const PENDING_BYTES: usize = 8 * 1024 * 1024;
/// How long the writer lets lines gather while they keep coming: a line waits at most
/// this long.
const GATHER: Duration = Duration::from_millis(10);
/// A buffer that grew past this while stderr was slow is given back after its write.
const KEEP_CAPACITY: usize = 1024 * 1024;
/// Longest [`drain`] waits for the pending lines at exit.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// The lines written by requests and not yet taken by the writer.
struct Pending {
    bytes: Vec<u8>,
    lines: u64,
    /// The writer waits on [`WAKE`] (nothing was pending): the next line wakes it.
    writer_waiting: bool,
}

static PENDING: Mutex<Pending> = Mutex::new(Pending {
    bytes: Vec::new(),
    lines: 0,
    writer_waiting: false,
});
static WAKE: Condvar = Condvar::new();
/// Whether the writer thread runs (set by [`start`]).
static WRITER: OnceLock<bool> = OnceLock::new();
/// Lines handed to the writer and lines written: equal when the writer has caught up.
static QUEUED: AtomicU64 = AtomicU64::new(0);
static WRITTEN: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Counts drops in the process's metrics, once they exist.
static DROPPED_METRIC: OnceLock<prometheus::IntCounter> = OnceLock::new();

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
    /// Set on the writer's thread: what it logs itself is written directly, the buffer
    /// may be the full one it is reporting.
    static ON_WRITER: Cell<bool> = const { Cell::new(false) };
}

/// Writes the line `format` puts in the buffer, and a newline.
pub fn write(format: impl FnOnce(&mut Vec<u8>)) {
    let mut format = Some(format);
    // A line formatted while another is (a `Display` that logs), or while the thread is
    // being torn down, gets a buffer of its own rather than a panic.
    let reused = LINE
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut line) => {
                if let Some(format) = format.take() {
                    write_in(&mut line, format);
                }
                true
            }
            Err(_) => false,
        })
        .unwrap_or(false);
    if let (false, Some(format)) = (reused, format.take()) {
        write_in(&mut Vec::new(), format);
    }
}

fn write_in(line: &mut Vec<u8>, format: impl FnOnce(&mut Vec<u8>)) {
    line.clear();
    format(line);
    line.push(b'\n');
    let on_writer = ON_WRITER.try_with(Cell::get).unwrap_or(false);
    if on_writer || WRITER.get() != Some(&true) {
        let _ = std::io::stderr().lock().write_all(line);
        return;
    }
    // A panic elsewhere while the lock was held left whole lines: go on with them.
    let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
    if pending.bytes.len() + line.len() > PENDING_BYTES {
        drop(pending);
        dropped();
        return;
    }
    pending.bytes.extend_from_slice(line);
    pending.lines += 1;
    QUEUED.fetch_add(1, Ordering::Relaxed);
    if std::mem::take(&mut pending.writer_waiting) {
        drop(pending);
        WAKE.notify_one();
    }
}

/// Counts a dropped line. The warning is the writer's to log (see [`write_batches`]): a
/// request that wrote to a blocked stderr itself would stall on it.
fn dropped() {
    DROPPED.fetch_add(1, Ordering::Relaxed);
    if let Some(counter) = DROPPED_METRIC.get() {
        counter.inc();
    }
}

/// Starts the writer thread (once): from then on lines go through the buffer. Called in
/// the process that serves, once it is sure to go on serving (see the module's comment).
/// When the thread cannot be started, lines go on being written directly.
pub fn start() {
    WRITER.get_or_init(|| {
        let spawned = std::thread::Builder::new().name("log-writer".into()).spawn(|| {
            ON_WRITER.set(true);
            write_batches();
        });
        if let Err(e) = &spawned {
            log::error!("log writer thread not started, lines are written directly: {e}");
        }
        spawned.is_ok()
    });
}

/// The service that calls [`start`]: made to depend on Pingora's bootstrap, so that the
/// writer runs in the process that serves, once it is past the steps that end it at once.
pub struct StartWriter;

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for StartWriter {
    async fn start(&self, _shutdown: pingora::server::ShutdownWatch) {
        start();
    }
}

/// Counts dropped lines in `counter` from now on.
pub fn count_drops_in(counter: prometheus::IntCounter) {
    counter.inc_by(DROPPED.load(Ordering::Relaxed));
    let _ = DROPPED_METRIC.set(counter);
}

/// Waits (a little) until every pending line is written: called before the process exits.
pub fn drain() {
    let until = Instant::now() + DRAIN_WAIT;
    while WRITTEN.load(Ordering::Acquire) < QUEUED.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Takes the pending lines and writes them, for ever. While lines keep coming, the writer
/// sleeps [`GATHER`] between writes instead of waiting to be woken: waking a waiting
/// thread per line (a futex call, and on a busy core a switch to this thread) cost more
/// than the line itself (≈ 20 µs of CPU a request under wrk). Only a line after a quiet
/// spell wakes it.
fn write_batches() {
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    let (mut dropped_reported, mut reported_at) = (0, Instant::now());
    loop {
        let lines = {
            let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
            while pending.lines == 0 {
                pending.writer_waiting = true;
                pending = WAKE.wait(pending).unwrap_or_else(PoisonError::into_inner);
            }
            std::mem::swap(&mut pending.bytes, &mut batch);
            std::mem::take(&mut pending.lines)
        };
        // Whole lines in one locked write: a line written directly never lands mid-line.
        let _ = std::io::stderr().lock().write_all(&batch);
        batch.clear();
        if batch.capacity() > KEEP_CAPACITY {
            batch.shrink_to(64 * 1024);
        }
        WRITTEN.fetch_add(lines, Ordering::Release);
        let dropped = DROPPED.load(Ordering::Relaxed);
        // At most once a second while lines keep being dropped.
        if dropped > dropped_reported && (dropped_reported == 0 || reported_at.elapsed() >= Duration::from_secs(1)) {
            log::warn!("log buffer was full (stderr is not keeping up): {dropped} lines dropped so far, counted in gateway_access_log_dropped_total");
            (dropped_reported, reported_at) = (dropped, Instant::now());
        }
        // Busy: let lines gather without anyone waiting to wake the writer.
        std::thread::sleep(GATHER);
    }
}
