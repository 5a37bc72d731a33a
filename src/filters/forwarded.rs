//! `X-Forwarded-For` (appended), `X-Forwarded-Proto` and `X-Forwarded-Host` (set), so that
//! the upstream knows who asked and how.

use crate::request::RequestCtx;
use crate::text::AddrText;
use http::header::HOST;
use http::HeaderValue;
use pingora::http::{KnownHeaderName, RequestHeader};

pub struct Forwarded;

// Checked once: inserting a `KnownHeaderName` neither parses the name nor allocates.
const XFF: KnownHeaderName = KnownHeaderName::from_static("x-forwarded-for");
const XFP: KnownHeaderName = KnownHeaderName::from_static("x-forwarded-proto");
const XFH: KnownHeaderName = KnownHeaderName::from_static("x-forwarded-host");

impl Forwarded {
    pub fn apply(&self, req: &mut RequestHeader, ctx: &RequestCtx) -> pingora::Result<()> {
        // The hop that reached us, not the client resolved through trusted proxies: each
        // proxy appends its own peer.
        if let Some(ip) = ctx.peer_ip {
            let chain = if req.headers.contains_key(XFF.name()) {
                let previous: Vec<&str> = req
                    .headers
                    .get_all(XFF.name())
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                HeaderValue::try_from(format!("{}, {ip}", previous.join(", ")))
            } else if ctx.client_ip == Some(ip) {
                // The common case: the address alone, the text the access log and a
                // rate-limit key use too.
                HeaderValue::from_str(ctx.client_ip_text().map_or("", AddrText::as_str))
            } else {
                HeaderValue::from_str(AddrText::ip(ip).as_str())
            };
            if let Ok(chain) = chain {
                req.insert_known_header(&XFF, chain);
            }
        }
        req.insert_known_header(&XFP, HeaderValue::from_static(ctx.scheme));
        if let Some(host) = req.headers.get(HOST).cloned() {
            req.insert_known_header(&XFH, host);
        }
        Ok(())
    }
}
