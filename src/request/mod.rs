//! The request's vocabulary: the per-request state every step reads and writes
//! ([`RequestCtx`]) and the answers the gateway makes up itself ([`GatewayError`]). Below
//! the steps (`filters/`, `cache/`, `observe/`) and the dispatcher (`proxy/`) that use
//! them, so that a step never imports the dispatcher.

mod cache_outcome;
mod ctx;
mod error;
pub mod grpc;
mod part_report;
pub mod trace;

pub use cache_outcome::CacheOutcome;
pub use ctx::{Attempt, RequestCtx};
pub use error::{downstream_kind, GatewayError};
pub use part_report::PartReport;
