//! What the gateway tells operators: log format, access log, health report.

pub mod access_log;
pub mod access_writer;
pub mod health;
mod json_line;
pub mod logging;
pub mod metrics;
pub mod otel;
