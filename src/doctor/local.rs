//! The checks of this host: listen addresses, certificates, stop timing, descriptors.

use super::Finding;
use crate::config::model::CONTAINER_STOP_TIMEOUT;
use crate::ports;
use crate::snapshot::Snapshot;
use openssl::asn1::Asn1Time;

/// A certificate expiring sooner than this is a warning (ACME renews at 30 days).
const CERT_WARN_DAYS: i32 = 14;

/// Below this soft limit a busy edge runs out of descriptors (each proxied request holds
/// two: the client's and the upstream's).
const MIN_OPEN_FILES: u64 = 4096;

pub fn ports(s: &Snapshot) -> Vec<Finding> {
    let listeners = ports::listeners(&s.server);
    let busy = ports::unavailable(&listeners, s.server.reuse_port);
    listeners
        .iter()
        .map(|l| match busy.iter().find(|b| b.listener.addr == l.addr && b.listener.role == l.role) {
            None => Finding::ok("ports", format!("{} {} is free", l.role, l.addr)),
            Some(b) if b.owner.as_deref().is_some_and(|o| o.contains("(gatehouse)")) => Finding::ok(
                "ports",
                format!("{} {}: held by a running gatehouse ({})", l.role, l.addr, b.owner.as_deref().unwrap_or("")),
            )
            .with_hint("to replace it without dropping a request: `gatehouse run -u` then SIGQUIT the old one (make upgrade)"),
            Some(b) => Finding::fail(
                "ports",
                format!("{} {b}", l.role),
                "stop the process holding it, or listen elsewhere",
            ),
        })
        .collect()
}

impl Finding {
    fn with_hint(mut self, hint: &str) -> Self {
        self.hint = Some(hint.to_string());
        self
    }
}

pub fn certificates(s: &Snapshot) -> Vec<Finding> {
    let Ok(soon) = Asn1Time::days_from_now(CERT_WARN_DAYS as u32) else {
        return Vec::new();
    };
    let Ok(now) = Asn1Time::days_from_now(0) else {
        return Vec::new();
    };
    s.certs
        .iter()
        .map(|c| {
            let names = c.names.join(", ");
            let days = now.diff(c.cert.not_after()).map(|d| d.days).unwrap_or(0);
            if c.cert.not_after() < now {
                Finding::fail(
                    "tls",
                    format!("{} ({names}) expired", c.cert_path),
                    "replace the certificate, then reload (kill -HUP)",
                )
            } else if c.cert.not_after() < soon {
                Finding::warn(
                    "tls",
                    format!("{} ({names}) expires in {days} days", c.cert_path),
                    "renew it now; a reload (kill -HUP) serves the new one without a restart",
                )
            } else {
                Finding::ok(
                    "tls",
                    format!("{} ({names}) valid for {days} more days, key matches", c.cert_path),
                )
            }
        })
        .collect()
}

pub fn stop_timing(s: &Snapshot) -> Finding {
    let server = &s.server;
    let budget = server.drain_period + server.grace_period + server.shutdown_timeout;
    let detail = format!(
        "stopping takes at most {budget:?} (drain_period {:?} + grace_period {:?} + shutdown_timeout {:?}); an idle gateway leaves after the drain",
        server.drain_period, server.grace_period, server.shutdown_timeout
    );
    if budget > CONTAINER_STOP_TIMEOUT {
        Finding::warn(
            "shutdown",
            detail,
            format!(
                "over docker stop's {CONTAINER_STOP_TIMEOUT:?}: give the container more (docker stop -t, compose stop_grace_period, Kubernetes terminationGracePeriodSeconds > {}s) or shorten grace_period",
                budget.as_secs() + 1
            ),
        )
    } else {
        Finding::ok(
            "shutdown",
            format!("{detail}; fits docker stop's {CONTAINER_STOP_TIMEOUT:?} and Kubernetes' default 30s"),
        )
    }
}

pub fn file_descriptors() -> Finding {
    let Some((soft, hard)) = open_files_limit() else {
        return Finding::warn(
            "fds",
            "the open-files limit could not be read (/proc/self/limits)",
            "make sure `ulimit -n` is at least 65536 for an edge proxy",
        );
    };
    let detail = format!(
        "open files: {soft} (hard {hard}): about {} concurrent proxied connections",
        soft / 2
    );
    if soft < MIN_OPEN_FILES {
        Finding::warn(
            "fds",
            detail,
            "raise it: systemd LimitNOFILE=65536, docker --ulimit nofile=65536:65536, or ulimit -n before starting",
        )
    } else {
        Finding::ok("fds", detail)
    }
}

/// `Max open files  soft  hard  files` from `/proc/self/limits` (`unlimited` as u64::MAX).
fn open_files_limit() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut numbers = line["Max open files".len()..].split_whitespace().map(|n| match n {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    });
    Some((numbers.next()??, numbers.next()??))
}
