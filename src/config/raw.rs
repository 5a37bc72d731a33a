//! The external config schema: serde structs that mirror `gatehouse.yaml` key for key.
//!
//! Nothing here is trusted: values stay as the user wrote them (durations as `"5s"`,
//! addresses as strings) and `validate.rs` turns them into the internal model, collecting
//! every problem with its path. Unknown keys are not silently dropped: the loader records
//! them with `serde_ignored` and reports each one as a problem.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    /// Plain-HTTP listen addresses. `PORT` overrides their port.
    pub listen: Option<Vec<String>>,
    /// Worker threads for the proxy service.
    pub threads: Option<usize>,
    /// Pid file used by daemon mode and graceful upgrade.
    pub pid_file: Option<String>,
    /// Unix socket through which a new binary takes over the listeners (`-u`).
    pub upgrade_sock: Option<String>,
    /// In daemon mode (`-d`), the file that receives the log (stderr); appended to.
    pub log_file: Option<String>,
    /// How long a terminating process keeps serving before it stops accepting (SIGTERM/SIGQUIT).
    pub grace_period: Option<String>,
    /// How long in-flight requests get after the grace period before the runtime is stopped.
    pub shutdown_timeout: Option<String>,
    /// Path of the built-in health endpoint on the main listener; `""` disables it.
    pub health_path: Option<String>,
    /// Whether every request writes a JSON access-log line.
    pub access_log: Option<bool>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

/// A named pool of backend servers.
#[derive(Debug, Default, Deserialize)]
pub struct RawUpstream {
    /// `"host:port"` or `{ addr: "host:port", weight: N }`; kept loose so that each
    /// wrong entry gets its own message.
    #[serde(default)]
    pub targets: Vec<serde_yaml::Value>,
    pub balance: Option<String>,
    pub health_check: Option<RawHealthCheck>,
    pub retries: Option<u32>,
    pub connect_timeout: Option<String>,
    /// Default time to wait for the upstream between reads/writes, when the route sets none.
    pub timeout: Option<String>,
    /// How long an idle upstream connection is kept in the keepalive pool.
    pub keepalive_timeout: Option<String>,
}

/// Active HTTP health check of an upstream's targets.
#[derive(Debug, Default, Deserialize)]
pub struct RawHealthCheck {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    /// Consecutive successes that bring an unhealthy target back.
    pub healthy: Option<usize>,
    /// Consecutive failures that take a healthy target out.
    pub unhealthy: Option<usize>,
    /// `Host` header sent with the probe (default: the target address).
    pub host: Option<String>,
}

/// One route: what it matches and where it goes.
#[derive(Debug, Default, Deserialize)]
pub struct RawRoute {
    pub name: Option<String>,
    /// `/exact`, `/users/:id` or `/files/*rest`.
    pub path: Option<String>,
    /// Any path starting with this.
    pub prefix: Option<String>,
    /// A regular expression matched against the path.
    pub regex: Option<String>,
    /// `api.example.com` or `*.example.com`.
    pub host: Option<String>,
    pub methods: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub query: Option<BTreeMap<String, String>>,
    pub upstream: Option<String>,
    pub strip_prefix: Option<String>,
    pub timeout: Option<String>,
}
