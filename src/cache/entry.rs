//! One stored response and what it weighs.

use bytes::Bytes;
use pingora::cache::key::HashBinary;
use pingora::cache::CacheMeta;
use pingora::http::ResponseHeader;
use pingora::Result;
use std::sync::{Arc, LazyLock};

/// What an entry costs beyond its body and header bytes: the structs, the TinyUFO and
/// index slots, allocator rounding (measured with loadtest/cache_rss.sh).
const ENTRY_OVERHEAD: usize = 1024;
/// Per stored header field, beyond its name and value bytes: its slot in the map.
const FIELD_OVERHEAD: usize = 96;

/// One stored response. Immutable: a refresh (304 revalidation) replaces the entry.
#[derive(Clone)]
pub struct Entry {
    pub key: HashBinary,
    /// `host/path?query`, for purges.
    pub url: Arc<str>,
    /// Pingora's own serialized meta fields (freshness, age reference, variance), without
    /// the header, which is kept parsed so a hit does not decompress it.
    pub internal: Vec<u8>,
    pub header: ResponseHeader,
    pub body: Bytes,
    pub weight_kib: u16,
    /// The origin's cache tags, for purges by tag.
    pub tags: Arc<[Arc<str>]>,
}

impl super::index::Indexed for Entry {
    fn key(&self) -> HashBinary {
        self.key
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn tags(&self) -> &[Arc<str>] {
        &self.tags
    }
}

impl Entry {
    pub fn meta(&self) -> Result<CacheMeta> {
        let mut meta = CacheMeta::deserialize(&self.internal, &EMPTY_HEADER)?;
        *meta.response_header_mut() = self.header.clone();
        Ok(meta)
    }

    pub fn bytes(&self) -> u64 {
        u64::from(self.weight_kib) * 1024
    }
}

/// The serialized form of an empty response header, paired with an entry's `internal`
/// bytes to rebuild its `CacheMeta` (Pingora only builds one from both halves).
pub static EMPTY_HEADER: LazyLock<Vec<u8>> = LazyLock::new(|| {
    // Cannot fail for 200; if it did, every lookup would error and count as a miss.
    let Ok(header) = ResponseHeader::build(200, Some(0)) else {
        return Vec::new();
    };
    let meta = CacheMeta::new(
        std::time::SystemTime::UNIX_EPOCH,
        std::time::SystemTime::UNIX_EPOCH,
        0,
        0,
        header,
    );
    meta.serialize().map(|(_, h)| h).unwrap_or_default()
});

pub fn weigh(header: &ResponseHeader, internal: &[u8], url: &str, body_len: usize) -> u16 {
    let header_bytes: usize = header
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + FIELD_OVERHEAD)
        .sum();
    let total = body_len + header_bytes + internal.len() + url.len() + ENTRY_OVERHEAD;
    total.div_ceil(1024).clamp(1, u16::MAX as usize) as u16
}

/// A copy of `header` that owns its bytes: the parsed upstream header's values can share
/// the whole read buffer they were parsed from (header and the start of the body), which
/// a stored entry would keep alive. The copy also drops the original-case map (HTTP/1
/// clients read names case-insensitively, HTTP/2 sends them lower case anyway).
pub fn owned(header: &ResponseHeader) -> ResponseHeader {
    let mut copy = match ResponseHeader::build_no_case(header.status, Some(header.headers.len())) {
        Ok(copy) => copy,
        Err(_) => return header.clone(),
    };
    copy.set_version(header.version);
    for (name, value) in header.headers.iter() {
        let value = http::HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        // Appending a field that already parsed cannot fail.
        let _ = copy.append_header(name.clone(), value);
    }
    copy
}
