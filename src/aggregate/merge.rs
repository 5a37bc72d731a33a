//! The merged JSON answer, and its status.

use super::{Part, PartError};
use bytes::Bytes;
use http::HeaderValue;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// One part's outcome.
pub struct PartResult {
    pub outcome: Result<Value, PartError>,
    pub status: u16,
    pub cached: bool,
    pub took: Duration,
}

impl PartResult {
    pub fn failed(e: PartError, took: Duration) -> Self {
        PartResult {
            outcome: Err(e),
            status: 0,
            cached: false,
            took,
        }
    }
}

pub struct Merged {
    pub status: u16,
    pub body: Bytes,
    /// Every part succeeded (only such answers are cached).
    pub complete: bool,
}

/// `deadline_passed`: the route's timeout ran out, so a timed-out required part is a 504
/// rather than a 502.
pub fn merge(parts: &[Part], results: &[PartResult], deadline_passed: bool, request_id: &HeaderValue) -> Merged {
    let mut data = Map::new();
    let mut errors = Map::new();
    let mut succeeded = 0;
    let mut required_failed: Vec<&str> = Vec::new();
    let mut required_timed_out = false;
    for (part, result) in parts.iter().zip(results) {
        let name = part.config.name.clone();
        match &result.outcome {
            Ok(value) => {
                succeeded += 1;
                data.insert(name, value.clone());
            }
            Err(e) => {
                if part.config.required {
                    required_failed.push(&part.config.name);
                    required_timed_out |= *e == PartError::Timeout && deadline_passed;
                }
                errors.insert(name.clone(), Value::from(e.message()));
                data.insert(name, Value::Null);
            }
        }
    }
    let called = parts.len();
    let meta = json!({
        "aggregated_at": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "services_called": called,
        "services_succeeded": succeeded,
    });
    let request_id = request_id.to_str().unwrap_or("");
    let (status, doc) = if !required_failed.is_empty() || succeeded == 0 {
        let status = if required_timed_out { 504 } else { 502 };
        let error = if required_failed.is_empty() {
            "every part of the aggregate failed".to_string()
        } else {
            format!("required part {} failed", required_failed.join(", "))
        };
        let code = if required_failed.is_empty() {
            "aggregate_failed"
        } else {
            "aggregate_required_part_failed"
        };
        (
            status,
            json!({ "error": error, "code": code, "status": status, "request_id": request_id,
                    "errors": errors, "meta": meta }),
        )
    } else {
        let state = if succeeded == called { "success" } else { "partial" };
        (
            200,
            json!({ "status": state, "data": data, "errors": errors, "meta": meta }),
        )
    };
    Merged {
        status,
        body: Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()),
        complete: succeeded == called,
    }
}
