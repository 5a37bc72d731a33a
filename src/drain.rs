//! Leaving without dropping a request. When Pingora shuts a service down it stops
//! accepting and drops every keep-alive connection that sits between two requests; a
//! client that sends on one just then gets a reset (HTTP/1.1 has no way to say "not
//! this one, retry"). So before Pingora is told, gatehouse drains: every response
//! carries `Connection: close`, and each keep-alive client finishes its current request
//! and reconnects (to the new process, or a sibling on the same port) on its own.
//!
//! - SIGQUIT (graceful upgrade): drain at once; Pingora hands the listeners over and
//!   keeps this process serving for its fixed hand-over window before it stops.
//! - SIGTERM: drain for `drain_period` while still accepting, then let Pingora stop
//!   accepting and give in-flight work `grace_period`.
//! - SIGINT: fast shutdown, no drain.
//!
//! Pingora then sleeps the whole `grace_period`, in flight or not; [`ExitWhenIdle`] ends
//! the process as soon as no client connection is left open (an idle gateway stops in
//! `drain_period` plus a moment, well inside `docker stop`'s 10 s).

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Set once a shutdown signal arrives; read on every request.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn start(&self, why: &str) {
        log::info!("{why}: draining, keep-alive connections close after their current request");
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// Pingora's shutdown signal watcher, with the drain in front.
pub struct DrainingSignals {
    pub drain: Arc<Drain>,
    pub drain_period: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for DrainingSignals {
    async fn recv(&self) -> ShutdownSignal {
        let (mut quit, mut term, mut int) = (
            listen(SignalKind::quit()),
            listen(SignalKind::terminate()),
            listen(SignalKind::interrupt()),
        );
        tokio::select! {
            _ = next(&mut quit) => {
                self.drain.start("SIGQUIT (graceful upgrade)");
                ShutdownSignal::GracefulUpgrade
            }
            _ = next(&mut term) => {
                self.drain.start("SIGTERM");
                tokio::time::sleep(self.drain_period).await;
                ShutdownSignal::GracefulTerminate
            }
            _ = next(&mut int) => ShutdownSignal::FastShutdown,
        }
    }
}

fn listen(kind: SignalKind) -> Option<Signal> {
    signal(kind)
        .inspect_err(|e| log::error!("cannot listen for signal {kind:?}: {e}"))
        .ok()
}

/// The next delivery of `s`; never, when the handler could not be installed.
async fn next(s: &mut Option<Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// How often an ending process looks whether its last client connection is gone.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Client connections open right now (HTTP/1.x and HTTP/2, upgraded WebSockets too).
#[derive(Debug, Default)]
pub struct OpenConnections(AtomicUsize);

impl OpenConnections {
    /// Counts a connection until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>) -> ConnectionGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

pub struct ConnectionGuard(Arc<OpenConnections>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Once Pingora has stopped accepting (SIGTERM after the drain, SIGQUIT after the
/// hand-over), exits the process when the last client connection closes instead of
/// sleeping out `grace_period`, which stays the upper bound. A background service so that
/// it runs in the daemon after the fork, and while Pingora's main thread sleeps.
pub struct ExitWhenIdle {
    pub open: Arc<OpenConnections>,
    /// Flushes what must not be lost (spans, logs) before the exit.
    pub before_exit: Box<dyn Fn() + Send + Sync>,
}

#[async_trait]
impl BackgroundService for ExitWhenIdle {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        loop {
            // First wait one poll: a connection accepted just before the listeners closed
            // is counted when its task starts.
            tokio::time::sleep(IDLE_POLL).await;
            if self.open.count() == 0 {
                log::info!("no client connection left: exiting before the grace period ends");
                // On a thread of its own: a flush may block (the span exporter's client
                // does), which a runtime thread must not.
                std::thread::scope(|s| {
                    s.spawn(|| (self.before_exit)());
                });
                log::logger().flush();
                std::process::exit(0);
            }
        }
    }
}
