//! Targeted cache control (RFC 9213): `Gatehouse-Cache-Control` (its name configurable)
//! and `CDN-Cache-Control` speak to this cache only and, when one of them has a valid
//! value, replace `Cache-Control` and `Expires` for it. The fields are Structured Field
//! dictionaries (RFC 8941); one that does not parse as one is ignored, as §2.1 says.

use http::HeaderMap;
use pingora::cache::cache_control::CacheControl;

/// The directives governing this cache: the first targeted field (in `targets` order)
/// with a valid value, else `Cache-Control`. `bool`: a targeted field was used (then
/// `Expires` does not count either).
pub fn governing(headers: &HeaderMap, targets: &[http::HeaderName]) -> (Option<CacheControl>, bool) {
    for name in targets {
        let mut lines = headers.get_all(name).iter().peekable();
        if lines.peek().is_none() {
            continue;
        }
        let valid = lines.all(|v| v.to_str().is_ok_and(is_sf_dictionary));
        if valid {
            if let Some(cc) = CacheControl::from_headers_named(name.as_str(), headers) {
                return (Some(cc), true);
            }
        }
    }
    (CacheControl::from_headers_named("cache-control", headers), false)
}

/// RFC 8941 §4.2.2 dictionary, for the member shapes cache directives use: `key`,
/// `key=integer|decimal|token|"string"|?0|?1`, each with optional `;params`.
fn is_sf_dictionary(value: &str) -> bool {
    let value = value.trim_matches(' ');
    if value.is_empty() {
        return false;
    }
    split_members(value).is_some_and(|members| {
        members
            .iter()
            .all(|m| is_member(m.trim_matches(|c| c == ' ' || c == '\t')))
    })
}

/// Splits on commas outside quoted strings; `None` for an unterminated string.
fn split_members(value: &str) -> Option<Vec<&str>> {
    let (mut members, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                members.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    members.push(&value[start..]);
    Some(members)
}

fn is_member(member: &str) -> bool {
    let mut parts = member.split(';');
    let Some(item) = parts.next() else { return false };
    let params_ok = parts.all(|p| {
        let p = p.trim_start_matches(' ');
        match p.split_once('=') {
            Some((k, v)) => is_key(k) && is_bare_item(v),
            None => is_key(p),
        }
    });
    let item_ok = match item.split_once('=') {
        Some((k, v)) => is_key(k) && is_bare_item(v),
        None => is_key(item),
    };
    item_ok && params_ok
}

fn is_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*'))
}

fn is_bare_item(v: &str) -> bool {
    let bytes = v.as_bytes();
    match bytes.first() {
        None => false,
        Some(b'"') => v.len() >= 2 && v.ends_with('"'),
        Some(b'?') => v == "?0" || v == "?1",
        Some(b'-' | b'0'..=b'9') => {
            let digits = v.trim_start_matches('-');
            let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
            !int.is_empty()
                && int.len() <= 15
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.len() <= 3
                && frac.bytes().all(|b| b.is_ascii_digit())
                && (frac.is_empty() || !digits.ends_with('.'))
        }
        Some(b) if b.is_ascii_alphabetic() || *b == b'*' => bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(b)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_dictionaries_and_what_is_not_one() {
        for ok in [
            "max-age=60",
            "no-store",
            "max-age=60, stale-while-revalidate=30",
            "private=\"set-cookie, x\"",
            "max-age=60;a=1",
            "must-revalidate, max-age=0",
        ] {
            assert!(is_sf_dictionary(ok), "{ok}");
        }
        for bad in [
            "",
            "max-age=",
            "Max-Age=60",
            "max-age=\"60",
            "max-age=60,,",
            "max-age=6 0",
            "max-age=1.2345",
        ] {
            assert!(!is_sf_dictionary(bad), "{bad}");
        }
    }

    #[test]
    fn the_first_valid_target_wins_over_cache_control() {
        let names = [
            http::HeaderName::from_static("gatehouse-cache-control"),
            http::HeaderName::from_static("cdn-cache-control"),
        ];
        let mut h = HeaderMap::new();
        h.insert("cache-control", "max-age=1".parse().unwrap());
        let (cc, targeted) = governing(&h, &names);
        assert_eq!((cc.unwrap().max_age().unwrap(), targeted), (Some(1), false));
        h.insert("cdn-cache-control", "max-age=2".parse().unwrap());
        assert_eq!(governing(&h, &names).0.unwrap().max_age().unwrap(), Some(2));
        h.insert("gatehouse-cache-control", "MAX-AGE=3".parse().unwrap());
        assert_eq!(
            governing(&h, &names).0.unwrap().max_age().unwrap(),
            Some(2),
            "invalid: skipped"
        );
        h.insert("gatehouse-cache-control", "max-age=3".parse().unwrap());
        assert_eq!(governing(&h, &names).0.unwrap().max_age().unwrap(), Some(3));
    }
}
