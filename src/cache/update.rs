//! Freshening a stored response with a 304 (RFC 9111 §4.3.4 and §3.2): every field the
//! 304 carries replaces the stored one, so a new `Cache-Control`, `Date`, `Expires`, a
//! changed `Content-Type` or an application header reach the next hit. Pingora 0.9's own
//! merge copies five fields; gatehouse keeps the 304 in the request context and merges
//! it here before deciding the refreshed entry's freshness.

use http::header::{self, HeaderName};
use pingora::http::ResponseHeader;

/// Fields a 304 never updates: the framing of the stored body, what its bytes depend on,
/// and connection-level fields (§3.1 "not stored"; §3.2 "Content-Length").
fn kept_from_stored(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-length"
            | "content-encoding"
            | "content-range"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authentication-info"
    )
}

/// The stored header updated with the 304's fields.
pub fn merge_not_modified(stored: &ResponseHeader, not_modified: &ResponseHeader) -> ResponseHeader {
    let mut merged = stored.clone();
    // Fields named in the 304's `Connection` are hop-by-hop too.
    let connection_options: Vec<String> = not_modified
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|o| o.trim().to_ascii_lowercase())
        .collect();
    let replaced = not_modified
        .headers
        .keys()
        .filter(|name| !kept_from_stored(name) && !connection_options.iter().any(|o| o == name.as_str()));
    for name in replaced {
        merged.remove_header(name);
        for value in not_modified.headers.get_all(name) {
            // A field that parsed in the 304 can be appended again.
            let _ = merged.append_header(name.clone(), value.clone());
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(status: u16, fields: &[(&'static str, &str)]) -> ResponseHeader {
        let mut h = ResponseHeader::build(status, None).unwrap();
        for (k, v) in fields {
            h.append_header(*k, *v).unwrap();
        }
        h
    }

    #[test]
    fn every_field_but_framing_is_replaced() {
        let stored = header(
            200,
            &[
                ("content-type", "text/plain"),
                ("content-length", "5"),
                ("x-version", "1"),
                ("x-kept", "yes"),
                ("link", "</a>"),
                ("link", "</b>"),
            ],
        );
        let fresh = header(
            304,
            &[
                ("content-type", "text/markdown"),
                ("content-length", "0"),
                ("x-version", "2"),
                ("link", "</c>"),
                ("connection", "x-hop"),
                ("x-hop", "1"),
            ],
        );
        let merged = merge_not_modified(&stored, &fresh);
        assert_eq!(merged.status, 200);
        let get = |n: &str| {
            merged
                .headers
                .get_all(n)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("content-type"), ["text/markdown"]);
        assert_eq!(get("content-length"), ["5"]);
        assert_eq!(get("x-version"), ["2"]);
        assert_eq!(get("x-kept"), ["yes"]);
        assert_eq!(get("link"), ["</c>"]);
        assert!(get("x-hop").is_empty() && get("connection").is_empty());
    }
}
