//! Normalising the request header values that select a stored variant (`Vary`), so that
//! requests that mean the same share one entry instead of filling the cache with copies
//! (`gzip, br` and `br,gzip`; `en-US` and `en-us`; `fr;q=0.50` and `fr; q=0.5`).
//!
//! Only where the header's syntax makes the rewrite meaning-preserving: the `Accept*`
//! headers are case-insensitive lists whose order carries no preference (q-values do),
//! so their members are lower-cased, stripped of optional whitespace, `q=1` dropped,
//! other q-values written canonically, and sorted. Any other header only loses the
//! whitespace around it, and repeated lines count as one comma-joined value.

use http::header::GetAll;
use http::HeaderValue;

pub fn normalised(name: &str, lines: GetAll<'_, HeaderValue>) -> String {
    let unordered_list = matches!(
        name,
        "accept" | "accept-encoding" | "accept-language" | "accept-charset"
    );
    if !unordered_list {
        let parts: Vec<&[u8]> = lines.iter().map(|v| trim(v.as_bytes())).collect();
        return String::from_utf8_lossy(&parts.join(&b","[..])).into_owned();
    }
    let mut members: Vec<String> = lines
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(member)
        .collect();
    members.sort_unstable();
    members.dedup();
    members.join(",")
}

/// One list member in canonical form; `None` for an empty one (RFC 9110 §5.6.1 lets
/// senders put empty elements in a list).
fn member(raw: &str) -> Option<String> {
    let mut params = raw.split(';').map(|p| p.trim().to_ascii_lowercase());
    let value = params.next().filter(|v| !v.is_empty())?;
    let mut out = value;
    for param in params {
        let Some((k, v)) = param.split_once('=') else {
            if !param.is_empty() {
                out.push(';');
                out.push_str(&param);
            }
            continue;
        };
        let (k, v) = (k.trim_end(), v.trim_start());
        if k == "q" {
            match v.parse::<f32>() {
                Ok(q) if q >= 1.0 => continue,
                Ok(q) if (0.0..1.0).contains(&q) => {
                    // At most three decimals (RFC 9110 §12.4.2): `0.500` → `0.5`.
                    let q = format!("{q:.3}");
                    out.push_str(";q=");
                    out.push_str(q.trim_end_matches('0').trim_end_matches('.'));
                    continue;
                }
                _ => {}
            }
        }
        out.push(';');
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    Some(out)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn norm(name: &'static str, lines: &[&str]) -> String {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(name, l.parse().unwrap());
        }
        normalised(name, h.get_all(name))
    }

    #[test]
    fn equal_accept_lists_normalise_alike() {
        assert_eq!(
            norm("accept-encoding", &["gzip, br"]),
            norm("accept-encoding", &["br,GZIP"])
        );
        assert_eq!(norm("accept-encoding", &["gzip", "br"]), "br,gzip");
        assert_eq!(norm("accept-language", &["en-US, fr;q=0.50"]), "en-us,fr;q=0.5");
        assert_eq!(norm("accept-language", &["fr ; q=0.5,en-us;q=1.0"]), "en-us,fr;q=0.5");
        assert_ne!(
            norm("accept-language", &["fr;q=0.5"]),
            norm("accept-language", &["fr;q=0.4"])
        );
        assert_eq!(norm("accept-encoding", &["gzip;q=0"]), "gzip;q=0");
        assert_eq!(
            norm("accept", &["text/html, , application/json"]),
            "application/json,text/html"
        );
    }

    #[test]
    fn other_headers_only_lose_surrounding_whitespace() {
        assert_eq!(norm("x-variant", &["  A b "]), "A b");
        assert_eq!(norm("x-variant", &["a", "b"]), "a,b");
        assert_ne!(norm("x-variant", &["A"]), norm("x-variant", &["a"]));
    }
}
