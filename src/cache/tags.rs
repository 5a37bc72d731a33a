//! Cache tags: origins label answers (`Cache-Tag: product-42, catalog`, or Fastly's
//! space-separated `Surrogate-Key`; the header names are configurable) and an operator
//! drops every entry with a tag in one call (`POST /admin/cache/purge {"tags": [...]}`).
//!
//! The tags are read once when a response is admitted and travel to the store in the
//! `CacheMeta`'s extensions, which index entries by tag.

use http::HeaderName;
use pingora::cache::CacheMeta;
use pingora::http::ResponseHeader;
use std::sync::Arc;

/// At most this many tags per response, each at most this long; more are ignored (a
/// runaway origin must not make one entry cost megabytes of index).
pub const MAX_TAGS: usize = 128;
pub const MAX_TAG_LEN: usize = 256;

/// The tags of one stored response, deduplicated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheTags(pub Arc<[Arc<str>]>);

/// The tags `resp` carries in the `names` headers: split on commas and whitespace, so
/// both Cache-Tag and Surrogate-Key lists read right.
pub fn read(resp: &ResponseHeader, names: &[HeaderName]) -> CacheTags {
    let mut tags: Vec<Arc<str>> = Vec::new();
    let all = names
        .iter()
        .flat_map(|name| resp.headers.get_all(name).iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(|c: char| c == ',' || c.is_ascii_whitespace()))
        .filter(|t| !t.is_empty() && t.len() <= MAX_TAG_LEN);
    for tag in all {
        if tags.len() == MAX_TAGS {
            break;
        }
        if !tags.iter().any(|t| &**t == tag) {
            tags.push(tag.into());
        }
    }
    CacheTags(tags.into())
}

/// Attaches the tags to the meta handed to the store.
pub fn attach(meta: &mut CacheMeta, tags: CacheTags) {
    if !tags.0.is_empty() {
        meta.extensions_mut().insert(tags);
    }
}

/// The tags a meta carries (none when the response had none).
pub fn of(meta: &CacheMeta) -> Arc<[Arc<str>]> {
    meta.extensions()
        .get::<CacheTags>()
        .map_or_else(|| Arc::from(Vec::new()), |t| t.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_list_styles_deduplicated_and_bounded() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.append_header("cache-tag", "a, b,c").unwrap();
        r.append_header("surrogate-key", "c d  e").unwrap();
        r.append_header("x-other", "z").unwrap();
        let names = [
            HeaderName::from_static("cache-tag"),
            HeaderName::from_static("surrogate-key"),
        ];
        let tags: Vec<String> = read(&r, &names).0.iter().map(|t| t.to_string()).collect();
        assert_eq!(tags, ["a", "b", "c", "d", "e"]);

        let many: Vec<String> = (0..500).map(|i| format!("t{i}")).collect();
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.append_header("cache-tag", many.join(",")).unwrap();
        assert_eq!(read(&r, &names).0.len(), MAX_TAGS);
    }
}
