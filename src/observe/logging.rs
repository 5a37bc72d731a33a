//! One JSON object per line on stderr, for everything: access-log lines are written as
//! they are, every other record becomes `{"level","msg","target","ts"}`. `RUST_LOG` sets
//! the level (default `info`; env_logger's filter syntax). All lines go through
//! [`log_writer`](super::log_writer), so that a record logged on the request path (a
//! failed upstream) neither waits for stderr nor stalls when it is blocked.
//!
//! Pingora logs what clients do wrong at ERROR (a TLS handshake a scanner abandons, an h2
//! connection that opens with garbage). At the edge that is routine: such records are
//! written at DEBUG and counted in `gateway_downstream_errors_total{kind}` instead.

use super::json_line::{key, write_str, JsonLine};
use super::log_writer;
use crate::text::TimestampText;
use prometheus::IntCounterVec;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
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
        .build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(EdgeLogger { filter: inner })).is_ok() {
        log::set_max_level(max);
    }
}

/// Counts the demoted client errors in `counter` (labelled by `kind`) from now on.
pub fn count_client_errors_in(counter: IntCounterVec) {
    let _ = CLIENT_ERRORS.set(counter);
}

/// env_logger decides which records are written (its `RUST_LOG` filters); the writing is
/// gatehouse's own.
struct EdgeLogger {
    filter: env_logger::Logger,
}

impl log::Log for EdgeLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        let Some(kind) = client_error_kind(record) else {
            if self.filter.matches(record) {
                write_record(record);
            }
            return;
        };
        if let Some(counter) = CLIENT_ERRORS.get() {
            counter.with_label_values(&[kind]).inc();
        }
        let demoted = log::Record::builder()
            .args(*record.args())
            .level(log::Level::Debug)
            .target(record.target())
            .build();
        if self.filter.matches(&demoted) {
            write_record(&demoted);
        }
    }

    fn flush(&self) {
        log_writer::drain();
        let _ = std::io::stderr().flush();
    }
}

thread_local! {
    /// A record's message, formatted before it is escaped into the line.
    static MESSAGE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// One record as one line: access and audit lines as they are, others as JSON with the
/// keys in the order serde_json wrote them.
fn write_record(record: &log::Record) {
    if record.target() == ACCESS_TARGET || record.target() == AUDIT_TARGET {
        return log_writer::write(|out| {
            let _ = write!(out, "{}", record.args());
        });
    }
    let ts = TimestampText::new(jiff::Timestamp::now());
    log_writer::write(|out| record_line(out, record, ts.as_bytes()));
}

/// The record's JSON object: its keys in the order serde_json wrote them.
fn record_line(out: &mut Vec<u8>, record: &log::Record, ts: &[u8]) {
    let mut line = JsonLine::start(out);
    line.str(key!("level"), record.level().as_str());
    line.raw(key!("msg"), |out| write_message(out, record.args()));
    line.str(key!("target"), record.target());
    line.own_text(key!("ts"), ts);
    line.finish();
}

/// The message as a JSON string: a literal as it is, anything else formatted into this
/// thread's reused buffer first (a fresh one when a `Display` in it logs too).
fn write_message(out: &mut Vec<u8>, args: &std::fmt::Arguments) {
    if let Some(text) = args.as_str() {
        return write_str(out, text);
    }
    let mut args = Some(args);
    let reused = MESSAGE
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut text) => {
                if let Some(args) = args.take() {
                    text.clear();
                    let _ = write!(text, "{args}");
                    write_str(out, &text);
                }
                true
            }
            Err(_) => false,
        })
        .unwrap_or(false);
    if let (false, Some(args)) = (reused, args) {
        write_str(out, &args.to_string());
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
    use super::{client_error_kind, record_line};

    /// Lines are the bytes serde_json's `json!` wrote before (escapes, key order).
    #[test]
    fn a_record_is_the_line_serde_json_wrote() {
        let ts = "2026-12-03T00:57:52.441933768Z";
        for (target, msg) in [
            ("gatehouse", "plain"),
            (
                "pingora_proxy",
                "Fail to proxy: \"quoted\" \\ path\nnext line\tand \u{1} ü",
            ),
        ] {
            // A literal (written without formatting) and formatted messages.
            for args in [
                format_args!("a \"literal\"\n"),
                format_args!("{msg}"),
                format_args!("with {} args: {msg}", 2),
            ] {
                let record = log::Record::builder()
                    .args(args)
                    .level(log::Level::Warn)
                    .target(target)
                    .build();
                let mut ours = Vec::new();
                record_line(&mut ours, &record, ts.as_bytes());
                let theirs = serde_json::json!({
                    "ts": ts,
                    "level": "WARN",
                    "target": target,
                    "msg": args.to_string(),
                });
                assert_eq!(String::from_utf8(ours).unwrap(), theirs.to_string());
            }
        }
    }

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
