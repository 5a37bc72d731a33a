//! The validated internal model: what `validate.rs` produces and `Snapshot::build` consumes.
//!
//! Unlike `raw.rs` this is never deserialized: every value here has been checked, every
//! reference resolves, every duration is a `Duration`. It may change shape freely; the
//! YAML keys in `raw.rs` are the stable contract.

use crate::routing::RouteMatcher;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// A whole validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from, for messages (`conf/gatehouse.yaml`, `environment`).
    pub source: String,
    pub server: ServerSettings,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// In config order; the router sorts them by specificity.
    pub routes: Vec<RouteConfig>,
    /// Things that load but deserve a look: unreachable routes, unused upstreams.
    pub warnings: Vec<String>,
}

/// Process-level settings. Listeners and threads cannot change on reload.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub listen: Vec<SocketAddr>,
    pub threads: usize,
    pub pid_file: String,
    pub upgrade_sock: String,
    /// Daemon mode's log file (stderr is redirected there).
    pub log_file: Option<String>,
    pub grace_period: Duration,
    pub shutdown_timeout: Duration,
    /// Built-in health endpoint on the main listener, answered before routing.
    pub health_path: Option<String>,
    pub access_log: bool,
}

/// A pool of targets. Compared on reload: an unchanged pool keeps its health state.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub targets: Vec<TargetConfig>,
    pub health_check: Option<HealthCheckConfig>,
    /// Further targets tried after a failed connection (or, for idempotent requests,
    /// a connection lost before any response byte).
    pub retries: u32,
    pub connect_timeout: Duration,
    /// Read/write timeout towards the upstream when the route sets none.
    pub timeout: Duration,
    pub keepalive_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    /// As written (`users.internal:8080`), for health output and logs.
    pub spec: String,
    /// Resolved once at load.
    pub addr: SocketAddr,
    pub weight: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy: usize,
    pub unhealthy: usize,
    pub host: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub matcher: RouteMatcher,
    pub upstream: String,
    pub strip_prefix: Option<String>,
    /// Overrides the upstream's read/write timeout.
    pub timeout: Option<Duration>,
}

// Defaults, in one place so that docs and code agree.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_PID_FILE: &str = "/tmp/gatehouse.pid";
pub const DEFAULT_UPGRADE_SOCK: &str = "/tmp/gatehouse_upgrade.sock";
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(5);
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_HEALTH_PATH: &str = "/health";
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_RETRIES: u32 = 1;
pub const DEFAULT_HC_PATH: &str = "/health";
pub const DEFAULT_HC_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_HC_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_HC_THRESHOLD: usize = 2;
pub const MAX_WEIGHT: u16 = 100;
