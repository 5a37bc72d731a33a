//! What the gateway tells operators: log format, access log, health report.

pub mod access_log;
pub mod health;
mod json_line;
pub mod log_writer;
pub mod logging;
pub mod metrics;
pub mod otel;
