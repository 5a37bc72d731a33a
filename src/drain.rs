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

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use std::sync::atomic::{AtomicBool, Ordering};
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
