//! `json: { remove, mask }`: fields removed from or masked in JSON response bodies, by
//! JSONPath (RFC 9535). Runs on the upstream's response before the cache stores it, so a
//! cached copy is already transformed. The body is collected up to `max_size`; a larger
//! body, one that is not JSON (by Content-Type or by parsing) or one with a
//! Content-Encoding passes untouched, and each outcome is counted
//! (`gateway_json_transform_total{route,result}`). The response loses its Content-Length
//! (the new length is known only at the end) and goes chunked on HTTP/1.1.

use crate::config::model::JsonEdits;
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use pingora::http::ResponseHeader;
use serde_json::Value;

/// What happened to one response body; the metric's `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonOutcome {
    Applied,
    NotJson,
    Encoded,
    TooLarge,
    Invalid,
}

impl JsonOutcome {
    pub fn label(self) -> &'static str {
        match self {
            JsonOutcome::Applied => "applied",
            JsonOutcome::NotJson => "not_json",
            JsonOutcome::Encoded => "encoded",
            JsonOutcome::TooLarge => "too_large",
            JsonOutcome::Invalid => "invalid",
        }
    }
}

/// A body being collected for editing.
pub struct JsonBody {
    buf: BytesMut,
    /// Gave up (too large): the rest streams through.
    passing: bool,
}

/// Decides from the response head whether the body will be edited; if so the response
/// loses its Content-Length. `Err` says why not.
pub fn start(resp: &mut ResponseHeader, edits: &JsonEdits, has_body: bool) -> Result<JsonBody, JsonOutcome> {
    let json = resp
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_type);
    if !json || !has_body {
        return Err(JsonOutcome::NotJson);
    }
    if resp
        .headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity")
    {
        return Err(JsonOutcome::Encoded);
    }
    let declared = resp
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > edits.max_size) {
        return Err(JsonOutcome::TooLarge);
    }
    resp.remove_header(&CONTENT_LENGTH);
    Ok(JsonBody {
        buf: BytesMut::with_capacity(declared.unwrap_or(8 * 1024)),
        passing: false,
    })
}

/// `application/json`, `application/problem+json`, `text/json`, with parameters.
fn is_json_type(value: &str) -> bool {
    let mime = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || mime == "text/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl JsonBody {
    /// Takes each chunk; the edited body comes out with the last one. `Some(outcome)` once
    /// the outcome is known.
    pub fn feed(&mut self, body: &mut Option<Bytes>, end: bool, edits: &JsonEdits) -> Option<JsonOutcome> {
        if self.passing {
            return None;
        }
        if let Some(chunk) = body.take() {
            self.buf.extend_from_slice(&chunk);
        }
        if self.buf.len() > edits.max_size {
            // Send what was held back and let the rest through untouched.
            self.passing = true;
            *body = Some(std::mem::take(&mut self.buf).freeze());
            return Some(JsonOutcome::TooLarge);
        }
        if !end {
            return None;
        }
        let original = std::mem::take(&mut self.buf).freeze();
        match serde_json::from_slice::<Value>(&original) {
            Ok(mut doc) => {
                edit(&mut doc, edits);
                match serde_json::to_vec(&doc) {
                    Ok(bytes) => {
                        *body = Some(Bytes::from(bytes));
                        Some(JsonOutcome::Applied)
                    }
                    Err(_) => {
                        *body = Some(original);
                        Some(JsonOutcome::Invalid)
                    }
                }
            }
            Err(_) => {
                *body = Some(original);
                Some(JsonOutcome::Invalid)
            }
        }
    }
}

/// Applies the edits: masks first (a masked field that is also removed is removed).
pub fn edit(doc: &mut Value, edits: &JsonEdits) {
    for path in &edits.mask {
        for pointer in pointers(doc, path) {
            if let Some(v) = doc.pointer_mut(&pointer) {
                *v = Value::String(edits.mask_with.clone());
            }
        }
    }
    // Every match is found before any is removed, deepest and last first, so removing an
    // array element does not shift the ones still to remove.
    let mut found: Vec<String> = edits.remove.iter().flat_map(|path| pointers(doc, path)).collect();
    found.sort_by(|a, b| compare_pointers(b, a));
    found.dedup();
    for pointer in found {
        remove(doc, &pointer);
    }
}

fn pointers(doc: &Value, path: &serde_json_path::JsonPath) -> Vec<String> {
    path.query_located(doc)
        .locations()
        .map(|l| l.to_json_pointer())
        .collect()
}

/// Orders JSON pointers segment by segment, array indices numerically.
fn compare_pointers(a: &str, b: &str) -> std::cmp::Ordering {
    let mut a_parts = a.split('/');
    let mut b_parts = b.split('/');
    loop {
        match (a_parts.next(), b_parts.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<usize>(), y.parse::<usize>()) {
                    (Ok(i), Ok(j)) => i.cmp(&j),
                    _ => x.cmp(y),
                };
                if order.is_ne() {
                    return order;
                }
            }
        }
    }
}

fn remove(doc: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.remove(&key);
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = key.parse::<usize>() {
                if i < items.len() {
                    items.remove(i);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn edits(remove: &[&str], mask: &[&str]) -> JsonEdits {
        let parse = |l: &[&str]| l.iter().map(|p| serde_json_path::JsonPath::parse(p).unwrap()).collect();
        JsonEdits {
            remove: parse(remove),
            mask: parse(mask),
            mask_with: "****".into(),
            max_size: 64,
        }
    }

    #[test]
    fn fields_are_removed_and_masked_at_any_depth() {
        let mut doc = json!({"id": 1, "password": "x", "items": [{"ssn": "1", "n": 1}, {"ssn": "2"}], "card": "4111"});
        edit(&mut doc, &edits(&["$.password", "$.items[*].ssn"], &["$.card"]));
        assert_eq!(doc, json!({"id": 1, "items": [{"n": 1}, {}], "card": "****"}));
        let mut list = json!([1, 2, 3, 4]);
        edit(&mut list, &edits(&["$[1]", "$[3]"], &[]));
        assert_eq!(list, json!([1, 3]));
    }

    #[test]
    fn large_or_broken_bodies_pass_as_they_came() {
        let e = edits(&["$.a"], &[]);
        let mut body = JsonBody {
            buf: BytesMut::new(),
            passing: false,
        };
        let mut chunk = Some(Bytes::from(vec![b'x'; 100]));
        assert_eq!(body.feed(&mut chunk, false, &e), Some(JsonOutcome::TooLarge));
        assert_eq!(chunk.unwrap().len(), 100);
        let mut body = JsonBody {
            buf: BytesMut::new(),
            passing: false,
        };
        let mut chunk = Some(Bytes::from_static(b"{not json"));
        assert_eq!(body.feed(&mut chunk, true, &e), Some(JsonOutcome::Invalid));
        assert_eq!(chunk.unwrap(), Bytes::from_static(b"{not json"));
    }
}
