//! One JSON object per line on stderr, for everything: access-log lines are written as
//! they are, every other record becomes `{"ts","level","target","msg"}`. `RUST_LOG` sets
//! the level (default `info`).
//!
//! Pingora logs what clients do wrong at ERROR (a TLS handshake a scanner abandons, an h2
//! connection that opens with garbage). At the edge that is routine: such records are
//! written at DEBUG and counted in `gateway_downstream_errors_total{kind}` instead.

use prometheus::IntCounterVec;
use std::io::Write;
use std::sync::OnceLock;

/// Log target of access-log lines.
pub const ACCESS_TARGET: &str = "access";
/// Log target of admin audit lines (already JSON, written as they are).
pub const AUDIT_TARGET: &str = "audit";

/// Where demoted client errors are counted (the process's `Metrics`, set once it exists).
static CLIENT_ERRORS: OnceLock<IntCounterVec> = OnceLock::new();

pub fn init() {
    // Pingora's cache warns once per process that its stored headers are compressed without
    // a dictionary: true and harmless (gatehouse keeps headers parsed in memory).
    let env = env_logger::Env::default().default_filter_or("info");
    let inner = env_logger::Builder::from_env(env)
        .filter_module("pingora_cache::meta", log::LevelFilter::Error)
        .format(|buf, record| {
            if record.target() == ACCESS_TARGET || record.target() == AUDIT_TARGET {
                return writeln!(buf, "{}", record.args());
            }
            let line = serde_json::json!({
                "ts": jiff::Timestamp::now().to_string(),
                "level": record.level().as_str(),
                "target": record.target(),
                "msg": record.args().to_string(),
            });
            writeln!(buf, "{line}")
        })
        .build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(EdgeLogger { inner })).is_ok() {
        log::set_max_level(max);
    }
}

/// Counts the demoted client errors in `counter` (labelled by `kind`) from now on.
pub fn count_client_errors_in(counter: IntCounterVec) {
    let _ = CLIENT_ERRORS.set(counter);
}

struct EdgeLogger {
    inner: env_logger::Logger,
}

impl log::Log for EdgeLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        let Some(kind) = client_error_kind(record) else {
            return self.inner.log(record);
        };
        if let Some(counter) = CLIENT_ERRORS.get() {
            counter.with_label_values(&[kind]).inc();
        }
        let demoted = log::Record::builder()
            .args(*record.args())
            .level(log::Level::Debug)
            .target(record.target())
            .build();
        if self.inner.enabled(demoted.metadata()) {
            self.inner.log(&demoted);
        }
    }

    fn flush(&self) {
        super::access_writer::drain();
        self.inner.flush();
    }
}

/// Pingora's ERROR records that are about a client, not about the gateway.
fn client_error_kind(record: &log::Record) -> Option<&'static str> {
    if record.level() != log::Level::Error {
        return None;
    }
    let prefixes: &[(&str, &'static str)] = match record.target() {
        "pingora_core::services::listening" => &[
            ("Downstream handshake error", "tls_handshake"),
            ("Downstream handshake timeout", "tls_handshake"),
        ],
        "pingora_core::apps" => &[("H2 handshake error", "h2_protocol")],
        _ => return None,
    };
    let message = record.args().to_string();
    prefixes
        .iter()
        .find(|(prefix, _)| message.starts_with(prefix))
        .map(|(_, kind)| *kind)
}

#[cfg(test)]
mod tests {
    use super::client_error_kind;

    fn kind(target: &str, level: log::Level, msg: &str) -> Option<&'static str> {
        client_error_kind(
            &log::Record::builder()
                .args(format_args!("{msg}"))
                .level(level)
                .target(target)
                .build(),
        )
    }

    #[test]
    fn only_pingoras_client_side_errors_are_demoted() {
        let listening = "pingora_core::services::listening";
        assert_eq!(
            kind(
                listening,
                log::Level::Error,
                "Downstream handshake error from 1.2.3.4:5: bad"
            ),
            Some("tls_handshake")
        );
        assert_eq!(
            kind("pingora_core::apps", log::Level::Error, "H2 handshake error x"),
            Some("h2_protocol")
        );
        assert_eq!(kind(listening, log::Level::Error, "Accept() failed: EMFILE"), None);
        assert_eq!(kind("gatehouse::server", log::Level::Error, "H2 handshake error"), None);
        assert_eq!(kind(listening, log::Level::Warn, "Downstream handshake error"), None);
    }
}
