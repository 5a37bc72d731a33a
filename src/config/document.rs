//! The config as loaded, kept as compact JSON text for what reads it whole: /admin/config,
//! `explain`, the file watch, admin edits and fleet mode's state file. None of them is on
//! the request path, so each parses the text when it needs the tree.
//!
//! As a `serde_json::Value` it cost ≈ 4.2 KB per route, mostly the `null` of every optional
//! key a route did not write (and the running node keeps two: the loaded config's and the
//! snapshot's); as text without the nulls it is about the size of the route in the file
//! (`loadtest/routes_scale.sh`).

use serde_json::Value;
use std::sync::Arc;

/// Compact JSON text of the config, without `null` fields (an absent key and a `null`
/// read the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document(Arc<str>);

impl Document {
    pub fn new(mut value: Value) -> Document {
        drop_nulls(&mut value);
        Document(value.to_string().into())
    }

    /// The tree again (`Null` for the empty document).
    pub fn value(&self) -> Value {
        // The text was written by serde_json from a `Value`: it parses.
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> &str {
        &self.0
    }
}

impl Default for Document {
    fn default() -> Self {
        Document("null".into())
    }
}

fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_document_drops_null_fields_and_reads_back() {
        let doc = Document::new(json!({ "a": null, "b": [null, { "c": null, "d": 1 }], "e": "x" }));
        assert_eq!(doc.text(), r#"{"b":[null,{"d":1}],"e":"x"}"#);
        assert_eq!(doc.value(), json!({ "b": [null, { "d": 1 }], "e": "x" }));
        assert_eq!(Document::default().value(), Value::Null);
    }
}
