//! gatehouse: an edge API gateway on Pingora.
//!
//! The request path (see `proxy`) reads one immutable [`snapshot::Snapshot`], compiled from
//! the config (`config`) and swapped atomically on reload (`reload`). Each request step
//! lives in its own module: `routing` picks the route, `filters` change the request and
//! response, `upstream` picks and health-checks targets, `observe` logs and reports.

// Denied everywhere but in `tls::session_tickets`, the one OpenSSL callback the
// `openssl` crate does not wrap.
#![deny(unsafe_code)]
#![warn(clippy::all)]

pub mod acme;
pub mod admin;
pub mod aggregate;
pub mod allocator;
pub mod auth;
pub mod cache;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod doctor;
pub mod drain;
pub mod etcd;
pub mod explain;
pub mod file_watch;
pub mod filters;
pub mod gitops;
#[cfg(test)]
#[allow(unsafe_code)]
mod heap_count;
pub mod intake;
pub mod limits;
pub mod memory;
pub mod metric_slots;
pub mod observe;
pub mod ports;
pub mod probe;
pub mod proxy;
pub mod register;
pub mod reload;
pub mod request;
pub mod routing;
pub mod server;
pub mod snapshot;
pub mod supervisor;
pub mod template;
pub mod text;
pub mod tls;
pub mod upstream;
pub mod watch;
