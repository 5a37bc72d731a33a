//! One JSON object per line on stderr, for everything: access-log lines are written as
//! they are, every other record becomes `{"ts","level","target","msg"}`. `RUST_LOG` sets
//! the level (default `info`).

use std::io::Write;

/// Log target of access-log lines.
pub const ACCESS_TARGET: &str = "access";
/// Log target of admin audit lines (already JSON, written as they are).
pub const AUDIT_TARGET: &str = "audit";

pub fn init() {
    // Pingora's cache warns once per process that its stored headers are compressed without
    // a dictionary: true and harmless (gatehouse keeps headers parsed in memory).
    let env = env_logger::Env::default().default_filter_or("info");
    let _ = env_logger::Builder::from_env(env)
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
        .try_init();
}
