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
//! [`EdgeCompression`] is the downstream module: Pingora's compression context, plus the
//! end of brotli streams. Pingora 0.9's brotli encoder flushes at the end of a body but
//! never closes the stream, and strict decoders (the brotli crate, curl) refuse a stream
//! without its last meta-block. After a flush the stream is byte-aligned, so the closing
//! empty last meta-block is one byte, `0x03` (ISLAST = 1, ISLASTEMPTY = 1).

use crate::config::model::{CompressionConfig, Encoding};
use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::{HttpModule, HttpModuleBuilder, HttpModuleCtx, Module, ModuleBuilder};
use pingora::protocols::http::compression::{Algorithm, ResponseCompressionCtx};

/// The byte that ends a flushed brotli stream: an empty last meta-block.
const BROTLI_END: u8 = 0x03;

/// The downstream compression module (off until a route turns it on).
pub struct EdgeCompression {
    ctx: ResponseCompressionCtx,
    /// The body is being brotli-compressed by the gateway.
    brotli: bool,
    finished: bool,
}

impl EdgeCompression {
    /// The module for `HttpModules::add_module`.
    pub fn builder() -> ModuleBuilder {
        Box::new(EdgeCompressionBuilder)
    }

    fn finish(&mut self, out: Option<Bytes>) -> Option<Bytes> {
        if !self.brotli || self.finished {
            return out;
        }
        self.finished = true;
        let mut end = BytesMut::with_capacity(out.as_ref().map_or(0, Bytes::len) + 1);
        if let Some(out) = out {
            end.extend_from_slice(&out);
        }
        end.put_u8(BROTLI_END);
        Some(end.freeze())
    }
}

struct EdgeCompressionBuilder;

impl HttpModuleBuilder for EdgeCompressionBuilder {
    fn init(&self) -> Module {
        Box::new(EdgeCompression {
            ctx: ResponseCompressionCtx::new(0, false, false),
            brotli: false,
            finished: false,
        })
    }

    fn order(&self) -> i16 {
        // After the other modules: compression is the last change to the body.
        i16::MIN / 2
    }
}

#[async_trait]
impl HttpModule for EdgeCompression {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    async fn response_header_filter(&mut self, resp: &mut ResponseHeader, end_of_stream: bool) -> pingora::Result<()> {
        self.ctx.response_header_filter(resp, end_of_stream);
        self.brotli = self.ctx.get_info().is_some_and(|(name, ..)| name == "brotli");
        Ok(())
    }

    fn response_body_filter(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) -> pingora::Result<()> {
        if !self.ctx.is_enabled() || self.finished {
            return Ok(());
        }
        let compressed = self.ctx.response_body_filter(body.as_ref(), end_of_stream);
        if compressed.is_some() {
            *body = compressed;
        }
        if end_of_stream {
            *body = self.finish(body.take());
        }
        Ok(())
    }

    fn response_done_filter(&mut self) -> pingora::Result<Option<Bytes>> {
        if !self.ctx.is_enabled() || self.finished {
            return Ok(None);
        }
        let rest = self.ctx.response_body_filter(None, true);
        Ok(self.finish(rest))
    }
}

pub struct Compression(CompressionConfig);

impl Compression {
    pub fn new(config: &CompressionConfig) -> Self {
        Compression(config.clone())
    }

    /// After routing: turns the module on with the codings this client takes.
    pub fn on_request(&self, modules: &mut HttpModuleCtx, req: &RequestHeader) {
        let Some(module) = modules.get_mut::<EdgeCompression>().map(|m| &mut m.ctx) else {
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
        let Some(module) = modules.get_mut::<EdgeCompression>().map(|m| &mut m.ctx) else {
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
