//! Response compression (gzip, brotli, zstd) by Pingora's compression module, steered per
//! route. The module streams (no whole-body buffering), adds `Vary: Accept-Encoding`, and
//! rewrites Content-Length / ETag / Accept-Ranges. What this file adds:
//!
//! - negotiation by the client's q-values (the module takes the first listed coding, even
//!   one with `q=0`): the module is handed the acceptable codings, best first, with the
//!   route's order of preference breaking ties;
//! - the route's policy: only the listed `types`, only bodies declared at least
//!   `min_size`, never a partial (206) answer;
//! - a response the upstream encoded in a coding the client does not take is decoded.
//!
//! The upstream is asked for identity (`Accept-Encoding` is not forwarded), so the cache
//! keeps one identity copy and compresses each answer, hits included, on the way out.
//!
//! The compressing itself happens in the downstream module (edge_module.rs).

use super::edge_module::EdgeModule;
use crate::config::model::{CompressionConfig, Encoding};
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModuleCtx;
use pingora::protocols::http::compression::Algorithm;

pub struct Compression(CompressionConfig);

impl Compression {
    pub fn new(config: &CompressionConfig) -> Self {
        Compression(config.clone())
    }

    /// After routing: turns the module on with the codings this client takes.
    pub fn on_request(&self, modules: &mut HttpModuleCtx, req: &RequestHeader) {
        let Some(module) = modules.get_mut::<EdgeModule>().map(|m| &mut m.compression) else {
            return;
        };
        if !module.is_header_phase() {
            return;
        }
        for encoding in [Encoding::Gzip, Encoding::Brotli, Encoding::Zstd] {
            let level = if self.0.encodings.contains(&encoding) {
                level_for(encoding, self.0.level)
            } else {
                0
            };
            module.adjust_algorithm_level(algorithm(encoding), level);
        }
        for encoding in [Encoding::Gzip, Encoding::Brotli, Encoding::Zstd] {
            module.adjust_algorithm_decompression(algorithm(encoding), true);
        }
        let accepted = negotiate(
            req.headers.get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok()),
            &self.0.encodings,
        );
        // The module reads the codings from a request header; it gets one listing only
        // what this client accepts, best first.
        let Ok(mut listing) = RequestHeader::build("GET", b"/", Some(1)) else {
            return;
        };
        if !accepted.is_empty() {
            let value: Vec<&str> = accepted.iter().map(|e| e.token()).collect();
            let _ = listing.insert_header(ACCEPT_ENCODING, value.join(", "));
        }
        module.request_filter(&listing);
    }

    /// Before the response header goes out: off for what the route does not compress.
    pub fn on_response(&self, modules: &mut HttpModuleCtx, resp: &ResponseHeader) {
        let Some(module) = modules.get_mut::<EdgeModule>().map(|m| &mut m.compression) else {
            return;
        };
        if !module.is_header_phase() || self.allows(resp) {
            return;
        }
        module.adjust_level(0);
    }

    fn allows(&self, resp: &ResponseHeader) -> bool {
        if resp.status.as_u16() == 206 || resp.headers.contains_key(CONTENT_RANGE) {
            return false;
        }
        let declared = resp
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n < self.0.min_size) {
            return false;
        }
        let mime = resp
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        mime.is_some_and(|m| self.0.types.iter().any(|t| type_matches(t, &m)))
    }
}

/// The client's acceptable codings among `ours`, best q first, ties in our order. No
/// header: none (RFC 9110 allows any, but identity is what every client reads).
pub fn negotiate(header: Option<&str>, ours: &[Encoding]) -> Vec<Encoding> {
    let Some(header) = header else {
        return Vec::new();
    };
    let mut any: Option<u16> = None;
    let mut listed: Vec<(&str, u16)> = Vec::new();
    for item in header.split(',') {
        let mut parts = item.split(';');
        let token = parts.next().unwrap_or("").trim();
        let q = parts
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k.trim().eq_ignore_ascii_case("q")).then(|| parse_q(v.trim()))
            })
            .unwrap_or(1000);
        if token == "*" {
            any = Some(q);
        } else if !token.is_empty() {
            listed.push((token, q));
        }
    }
    let mut out: Vec<(Encoding, u16, usize)> = ours
        .iter()
        .enumerate()
        .filter_map(|(rank, e)| {
            let q = listed
                .iter()
                .find(|(t, _)| t.eq_ignore_ascii_case(e.token()))
                .map(|(_, q)| *q)
                .or(any)?;
            (q > 0).then_some((*e, q, rank))
        })
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
    out.into_iter().map(|(e, _, _)| e).collect()
}

/// `0.8` → 800; anything unreadable counts as 1.
fn parse_q(v: &str) -> u16 {
    v.parse::<f32>()
        .map_or(1000, |q| (q.clamp(0.0, 1.0) * 1000.0).round() as u16)
}

fn type_matches(pattern: &str, mime: &str) -> bool {
    if let Some(major) = pattern.strip_suffix("/*") {
        return mime.split_once('/').is_some_and(|(m, _)| m == major);
    }
    if let Some((major, suffix)) = pattern.split_once("/*") {
        // `application/*+json`
        return mime
            .split_once('/')
            .is_some_and(|(m, sub)| m == major && sub.ends_with(suffix));
    }
    pattern == mime
}

fn algorithm(e: Encoding) -> Algorithm {
    match e {
        Encoding::Gzip => Algorithm::Gzip,
        Encoding::Brotli => Algorithm::Brotli,
        Encoding::Zstd => Algorithm::Zstd,
    }
}

/// The route's 1..9 on each coding's own scale: gzip as it is; brotli's 0..11 and zstd's
/// 1..19 are wider, the same number is a similar trade-off at the low end.
fn level_for(e: Encoding, level: u32) -> u32 {
    match e {
        Encoding::Gzip => level.clamp(1, 9),
        Encoding::Brotli => level.clamp(1, 11),
        Encoding::Zstd => level.clamp(1, 19),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::*;

    #[test]
    fn q_values_decide_and_the_route_breaks_ties() {
        let ours = [Zstd, Brotli, Gzip];
        assert_eq!(negotiate(Some("gzip, deflate, br"), &ours), [Brotli, Gzip]);
        assert_eq!(negotiate(Some("gzip;q=0, br;q=0.5"), &ours), [Brotli]);
        assert_eq!(negotiate(Some("gzip;q=1.0, br;q=0.5"), &ours), [Gzip, Brotli]);
        assert_eq!(negotiate(Some("*;q=0.1, gzip"), &ours), [Gzip, Zstd, Brotli]);
        assert_eq!(negotiate(Some("identity"), &ours), []);
        assert_eq!(negotiate(None, &ours), []);
        assert_eq!(negotiate(Some("GZIP"), &[Gzip]), [Gzip]);
    }

    #[test]
    fn types_match_exactly_or_by_pattern() {
        assert!(type_matches("text/*", "text/html"));
        assert!(type_matches("application/*+json", "application/problem+json"));
        assert!(!type_matches("application/*+json", "application/json"));
        assert!(type_matches("application/json", "application/json"));
        assert!(!type_matches("text/*", "image/png"));
    }
}
