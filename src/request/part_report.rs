//! What each part of an aggregate answer did, for the access log and metrics.

#[derive(Debug, Clone, serde::Serialize)]
pub struct PartReport {
    pub name: String,
    /// `ok`, `cached`, or why it failed (`timeout`, `status`, `not_json`, …).
    pub result: &'static str,
    /// The upstream's status, when it answered.
    pub status: Option<u16>,
    pub millis: u64,
}
