//! `gatehouse doctor`: every check an operator would make by hand before serving, one line
//! each with ok / warn / fail and what to do. The config first (nothing else can be
//! checked without it), then what is local (ports, certificates, stop timing, file
//! descriptors), then what is across the network (upstream targets and their health
//! paths, the identity provider, Redis), and the clock against the peers that tell time.
//!
//! Exit code: 0 when all is ok, 1 with a warning, 2 with a failure.

mod local;
mod remote;

use crate::config::ConfigSource;
use crate::snapshot::Snapshot;
use serde::Serialize;

/// How a check came out; ordered, so that the worst is the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn exit_code(self) -> u8 {
        match self {
            Level::Ok => 0,
            Level::Warn => 1,
            Level::Fail => 2,
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub status: Level,
    pub detail: String,
    /// What to do about it (warn and fail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Finding {
    pub fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        Finding {
            check,
            status: Level::Ok,
            detail: detail.into(),
            hint: None,
        }
    }

    pub fn warn(check: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Finding {
            check,
            status: Level::Warn,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn fail(check: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Finding {
            check,
            status: Level::Fail,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }
}

/// Runs every check of the config `source` points to.
pub async fn run(source: &ConfigSource) -> Vec<Finding> {
    let mut findings = match source {
        ConfigSource::Etcd { settings, .. } => remote::etcd(settings, &source.state_dir()).await,
        _ => Vec::new(),
    };
    let snapshot = match source.load().and_then(|c| Snapshot::build(c, None)) {
        Ok(s) => s,
        Err(e) => {
            findings.push(Finding::fail(
                "config",
                format!("{}: {} problem(s)", e.source, e.problems.len()),
                "fix each problem below (`gatehouse check` lists the same); nothing else is checked until the config loads",
            ));
            findings.extend(e.problems.iter().map(|p| {
                let at = p
                    .location
                    .map(|l| format!(":{}:{}", l.line, l.column))
                    .unwrap_or_default();
                Finding::fail(
                    "config",
                    format!("{}{at}: {p}", e.source),
                    "see docs/configuration.md, the configuration reference",
                )
            }));
            return findings;
        }
    };
    findings.push(Finding::ok(
        "config",
        format!(
            "{}: {} routes, {} upstreams",
            snapshot.source,
            snapshot.routes.len(),
            snapshot.upstreams.len()
        ),
    ));
    for w in &snapshot.warnings {
        findings.push(Finding::warn(
            "config",
            w.clone(),
            "a config that loads, but deserves a look",
        ));
    }
    findings.extend(local::ports(&snapshot));
    findings.extend(local::certificates(&snapshot));
    findings.push(local::stop_timing(&snapshot));
    findings.push(local::file_descriptors());
    let mut clocks = Vec::new();
    findings.extend(remote::upstreams(&snapshot).await);
    findings.extend(remote::identity_provider(&snapshot, &mut clocks).await);
    findings.extend(remote::redis(&snapshot, &mut clocks).await);
    findings.push(remote::clock(&clocks));
    findings
}

/// The worst status of `findings`.
pub fn worst(findings: &[Finding]) -> Level {
    findings.iter().map(|f| f.status).max().unwrap_or(Level::Ok)
}

/// One line per finding, the hint indented under it.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let status = match f.status {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        out.push_str(&format!("{status}  {:<10} {}\n", f.check, f.detail));
        if let Some(hint) = &f.hint {
            out.push_str(&format!("      {:<10} → {hint}\n", ""));
        }
    }
    let worst = worst(findings);
    let count = |l: Level| findings.iter().filter(|f| f.status == l).count();
    out.push_str(&format!(
        "\n{} ok, {} warnings, {} failures: {}\n",
        count(Level::Ok),
        count(Level::Warn),
        count(Level::Fail),
        match worst {
            Level::Ok => "ready to serve",
            Level::Warn => "can serve; read the warnings",
            Level::Fail => "fix the failures before serving",
        }
    ));
    out
}
